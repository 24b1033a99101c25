import { z } from 'zod';
import type { Services } from '../../commands/services.js';
import { DOCS_PAGE } from '../docs.js';
import { openApiDocument } from '../openapi.js';
import { defineRoute, type RouteDefinition } from '../route.js';

const listenerState = z.object({ state: z.enum(['off', 'listening', 'failed']), port: z.number().int().nullable(), error: z.string().optional() });
const healthAnswer = z.object({
  status: z.literal('ok'),
  position: z.number().int(),
  mqtt: z
    .object({
      tcp: listenerState.optional(),
      tls: listenerState.optional(),
      websocket: z.string().optional(),
      broker: z.object({ url: z.string(), state: z.enum(['connecting', 'connected', 'reconnecting', 'closed']), error: z.string().optional() }).optional(),
    })
    .optional()
    .describe('MQTT: the embedded broker (its TCP listener on MQTT_PORT, its TLS listener on MQTT_TLS_PORT when TLS is on, and its WebSocket path), or the existing broker of MQTT_BROKER_URL (without credentials)'),
});
export type HealthExtras = () => Partial<Omit<z.infer<typeof healthAnswer>, 'status' | 'position'>>;

export function systemRoutes(services: Services, allRoutes: () => readonly RouteDefinition[], extras: HealthExtras = () => ({})) {
  let document: Record<string, unknown> | undefined;
  return [
    defineRoute(
      { method: 'get', path: '/api/health', operationId: 'getHealth', errors: [503], summary: 'Health and the last event position; 503 while the read models are stalled', tag: 'system', access: 'public', response: healthAnswer },
      () => {
        // Read models that stopped answer every write with 503: whatever watches the health should know.
        services.runner.refuseWhileStalled();
        return { data: { status: 'ok', position: services.log.headPosition(), ...extras() } };
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/openapi.json', operationId: 'getOpenApiDocument', summary: 'This document (OpenAPI 3.1), as it is: not inside {data}', tag: 'system', access: 'public', bare: true, response: z.record(z.string(), z.unknown()) },
      ({ res }) => {
        // The routes are fixed once the app is built: generate once (tens of milliseconds), answer many.
        document ??= openApiDocument(allRoutes());
        res.json(document);
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/docs', operationId: 'getApiReference', summary: 'This reference, interactive, in a browser', tag: 'system', access: 'public', streams: ['text/html'] },
      ({ res }) => {
        res.type('html').send(DOCS_PAGE);
      },
    ),
  ];
}
