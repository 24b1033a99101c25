import { z } from 'zod';
import type { RouteDefinition } from './route.js';

const toSchema = (schema: z.ZodType, io: 'input' | 'output') =>
  z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'openapi-3.0' }) as Record<string, unknown>;

const errorSchema = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: {
        code: { type: 'string' },
        message: { type: 'string' },
        details: { type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, message: { type: 'string' } } } },
        request_id: { type: 'string' },
      },
      required: ['code', 'message', 'request_id'],
    },
  },
};

/** The OpenAPI document, built from the very schemas that validate each route. */
export function openApiDocument(routes: readonly RouteDefinition[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const { spec } of routes) {
    const path = spec.path.replace(/:(\w+)/g, '{$1}');
    const pathParams = [...spec.path.matchAll(/:(\w+)/g)].map(([, name]) => ({ name, in: 'path', required: true, schema: { type: 'string' } }));
    const query = spec.query ? toSchema(spec.query, 'input') : undefined;
    const queryProperties = (query?.properties ?? {}) as Record<string, unknown>;
    const queryParams = Object.entries(queryProperties).map(([name, schema]) => ({ name, in: 'query', required: false, schema }));
    const data = spec.response ? toSchema(spec.response, 'output') : {};
    const paging = spec.list ? { total: { type: 'integer' }, limit: { type: 'integer' }, offset: { type: 'integer' } } : {};
    const metaProperties = { ...paging, ...((spec.meta ? toSchema(spec.meta, 'output').properties : {}) as Record<string, unknown>) };
    const envelope = {
      type: 'object',
      properties: { data, ...(Object.keys(metaProperties).length > 0 ? { meta: { type: 'object', properties: metaProperties } } : {}) },
      required: ['data'],
    };
    (paths[path] ??= {})[spec.method] = {
      summary: spec.summary,
      tags: [spec.tag],
      ...(spec.access === 'public' ? { security: [] } : {}),
      parameters: [...pathParams, ...queryParams],
      ...(spec.body ? { requestBody: { required: true, content: { 'application/json': { schema: toSchema(spec.body, 'input') } } } } : {}),
      responses: {
        [String(spec.status ?? 200)]: { description: 'success', content: { 'application/json': { schema: envelope } } },
        default: { description: 'error', content: { 'application/json': { schema: errorSchema } } },
      },
    };
  }
  return {
    openapi: '3.0.3',
    info: { title: 'IoT controller', version: '0.1.0', description: 'Event-sourced IoT controller. The guide to HTTP and WebSocket use is docs/guide.md in the repository.' },
    servers: [{ url: '/' }],
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'Session token, or a device token' },
        apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
        deviceToken: { type: 'apiKey', in: 'header', name: 'X-Device-Token' },
        cookie: { type: 'apiKey', in: 'cookie', name: 'session' },
      },
    },
    security: [{ bearer: [] }, { apiKey: [] }, { deviceToken: [] }, { cookie: [] }],
    paths,
  };
}
