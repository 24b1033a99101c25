import { z } from 'zod';
import type { Access, RouteDefinition, RouteSpec } from './route.js';
import { components, isRequestSchema } from './schemas/components.js';

/**
 * The OpenAPI 3.1 document, generated with zod's own JSON Schema output from the very schemas
 * that validate each route (no second library to keep in step with zod). Named schemas come
 * from the `components` registry; every route adds its request body, query and answer
 * envelope under names derived from its operationId, so one generation per reading (request,
 * answer) resolves every `$ref` inside components/schemas, recursive ones included.
 */
type JsonSchema = Record<string, unknown>;
type Spec = RouteSpec<z.ZodType, z.ZodType>;

const REF = '#/components/schemas/';
const ref = (id: string) => ({ $ref: `${REF}${id}` });
const pascal = (operationId: string) => operationId[0]!.toUpperCase() + operationId.slice(1);

/** A free-form object (z.record of unknown) says so plainly: any property, of any type. */
const markFreeForm: NonNullable<Parameters<typeof z.toJSONSchema>[1]>['override'] = ({ zodSchema, jsonSchema }) => {
  const def = zodSchema._zod.def as { type: string; valueType?: { _zod: { def: { type: string } } } };
  if (def.type === 'record' && def.valueType?._zod.def.type === 'unknown') {
    delete jsonSchema.propertyNames;
    jsonSchema.additionalProperties = true;
  }
};

/** Every schema of a registry, read as a request or as an answer, with refs into components/schemas. */
function generate(registry: z.core.$ZodRegistry<{ id: string }>, io: 'input' | 'output'): Record<string, JsonSchema> {
  const { schemas } = z.toJSONSchema(registry, { io, target: 'draft-2020-12', unrepresentable: 'any', uri: (id) => `${REF}${id}`, override: markFreeForm }) as { schemas: Record<string, JsonSchema> };
  for (const schema of Object.values(schemas)) {
    delete schema.$schema;
    delete schema.$id;
  }
  return schemas;
}

const pagingMeta = { total: z.number().int(), limit: z.number().int(), offset: z.number().int() };

/** The answer's envelope: `data`, and `meta` where the route pages or says more. */
function envelopeOf(spec: Spec): z.ZodType {
  if (spec.bare) return spec.response ?? z.unknown();
  const meta = z.object({ ...(spec.list ? pagingMeta : {}), ...(spec.meta?.shape ?? {}) });
  const hasMeta = Object.keys(meta.shape).length > 0;
  // Present on every answer when a field of it is (paging), else only when it has something to say (as_of).
  const always = Object.values(meta.shape).some((field) => !field.safeParse(undefined).success);
  return z.object({ data: spec.response ?? z.unknown(), ...(hasMeta ? { meta: always ? meta : meta.optional() } : {}) });
}

/** Generates the schemas of every route and the named ones, each as the side of the wire it stands on. */
function schemasOf(routes: readonly RouteDefinition[]): Record<string, JsonSchema> {
  const requests = z.registry<{ id: string }>();
  const answers = z.registry<{ id: string }>();
  // Both registries hold every named schema, so either generation can point at any of them.
  for (const registry of [requests, answers]) {
    for (const [schema, meta] of idsOf(components)) registry.add(schema, meta);
  }
  for (const { spec } of routes) {
    const name = pascal(spec.operationId);
    if (spec.body) requests.add(spec.body.clone(), { id: `${name}Request` });
    if (spec.query) requests.add(spec.query.clone(), { id: `${name}Query` });
    if (!spec.streams) answers.add(envelopeOf(spec), { id: `${name}Response` });
  }
  const asRequest = generate(requests, 'input');
  const asAnswer = generate(answers, 'output');
  const chosen: Record<string, JsonSchema> = {};
  for (const id of new Set([...Object.keys(asRequest), ...Object.keys(asAnswer)])) {
    chosen[id] = (isRequestSchema(id) || id.endsWith('Request') || id.endsWith('Query') ? asRequest[id] : asAnswer[id]) ?? asRequest[id] ?? asAnswer[id]!;
  }
  // Set after generation: zod flattens a refined schema into its parent's and drops what the registry adds.
  for (const [, { id, properties }] of idsOf(components)) if (properties) chosen[id] = { ...chosen[id], properties };
  return chosen;
}

function idsOf(registry: typeof components): Array<[z.ZodType, { id: string; properties?: Record<string, unknown> }]> {
  return [...registry._idmap.values()].map((schema) => [schema as z.ZodType, registry.get(schema)!]);
}

const security: Record<Access, Array<Record<string, string[]>>> = {
  public: [],
  user: [{ bearer: [] }, { apiKey: [] }, { sessionCookie: [] }],
  device: [{ deviceToken: [] }, { bearer: [] }],
  any: [{ bearer: [] }, { apiKey: [] }, { sessionCookie: [] }, { deviceToken: [] }],
};

const errorAnswer = (description: string, headers: Record<string, unknown> = {}) => ({
  description,
  ...(Object.keys(headers).length > 0 ? { headers } : {}),
  content: { 'application/json': { schema: ref('Error') } },
});
const retryAfter = { 'Retry-After': { description: 'seconds to wait before trying again', schema: { type: 'integer', minimum: 1 } } };

/** Every error status a route can answer with, from what it reads and who may call it. */
function errorAnswers(spec: Spec): Record<string, unknown> {
  const stores = spec.method !== 'get' && !spec.storesNothing;
  const answers: Record<string, unknown> = {
    '400': errorAnswer('validation_failed (a field named in details) or invalid_json'),
  };
  const guarded = spec.access !== 'public';
  if (guarded || spec.errors?.includes(401)) answers['401'] = errorAnswer('unauthenticated (credentials missing, malformed, expired or revoked) or invalid_credentials');
  if (guarded || spec.errors?.includes(403)) answers['403'] = errorAnswer('forbidden (a credential of the wrong kind, or another owner) or quota_exceeded');
  // A resource named in the path, the query or the body (group_id, template_id) may not exist, or be another owner's.
  if (guarded) answers['404'] = errorAnswer('not_found');
  if (stores) answers['409'] = errorAnswer('conflict, already_exists or rule_conflict');
  if (spec.ifMatch) answers['412'] = errorAnswer('precondition_failed: If-Match names another version');
  if (spec.method !== 'get') answers['413'] = errorAnswer('payload_too_large: the body is over 1 MiB');
  if (spec.method !== 'get') answers['415'] = errorAnswer('unsupported_media_type: the body must be UTF-8 JSON');
  answers['429'] = errorAnswer('rate_limited', retryAfter);
  answers['431'] = errorAnswer('the request line and headers are larger than 16 KiB');
  answers['500'] = errorAnswer('internal');
  if (stores || spec.errors?.includes(503)) answers['503'] = errorAnswer('service_unavailable: the read models are stalled (retry), or the history asked for is in an archived log segment moved out of DATA_DIR/archive', retryAfter);
  return answers;
}

function parametersOf(spec: Spec, schemas: Record<string, JsonSchema>): unknown[] {
  const path = [...spec.path.matchAll(/:(\w+)/g)].map(([, name]) => ({ name, in: 'path', required: true, schema: { type: 'string' } }));
  const queryId = `${pascal(spec.operationId)}Query`;
  const query = schemas[queryId];
  delete schemas[queryId];
  const required = new Set((query?.required as string[] | undefined) ?? []);
  const queryParams = Object.entries((query?.properties ?? {}) as Record<string, JsonSchema>).map(([name, schema]) => ({
    name,
    in: 'query',
    required: required.has(name),
    ...(typeof schema.description === 'string' ? { description: schema.description } : {}),
    schema,
  }));
  const headers = [
    ...(spec.ifMatch ? [{ name: 'If-Match', in: 'header', required: false, description: 'the ETag of the version this change is based on; 412 when another is current', schema: { type: 'string' } }] : []),
    ...(spec.idempotencyKey ? [{ name: 'Idempotency-Key', in: 'header', required: false, description: 'a repeat with the same key answers as the first and stores nothing more', schema: { type: 'string', maxLength: 200 } }] : []),
  ];
  return [...path, ...queryParams, ...headers];
}

function operationOf(spec: Spec, schemas: Record<string, JsonSchema>): Record<string, unknown> {
  const name = pascal(spec.operationId);
  const success = spec.streams
    ? { description: 'a file, streamed', content: Object.fromEntries(spec.streams.map((type) => [type, { schema: { type: 'string' } }])) }
    : {
        description: 'success',
        ...(spec.etag ? { headers: { ETag: { description: "the resource's version, for If-Match", schema: { type: 'string' } } } } : {}),
        content: { 'application/json': { schema: ref(`${name}Response`) } },
      };
  return {
    operationId: spec.operationId,
    summary: spec.summary,
    tags: [spec.tag],
    security: security[spec.access],
    parameters: parametersOf(spec, schemas),
    ...(spec.body ? { requestBody: { required: true, content: { 'application/json': { schema: ref(`${name}Request`), ...(spec.example ? { example: spec.example } : {}) } } } } : {}),
    responses: { [String(spec.status ?? 200)]: success, ...(spec.alsoStatus ? { [String(spec.alsoStatus)]: success } : {}), ...errorAnswers(spec) },
  };
}

const TAGS: Record<string, string> = {
  system: 'Health and this document',
  auth: 'Users, sessions and API keys',
  devices: 'Registering, provisioning and changing devices',
  groups: 'Device groups, nested',
  telemetry: 'Readings, heartbeats, status and device logs',
  alerts: 'Threshold, anomaly and rule alerts',
  analytics: 'Counts and statistics over a range',
  audit: 'The event log, its hash chain and export',
  commands: 'Commands to devices, firmware updates and group rollouts',
  templates: 'Device templates: a type with default configuration and thresholds',
  automation: 'Rules: conditions, actions, schedules and dry runs',
};

/** The OpenAPI document, built from the very schemas that validate each route. */
export function openApiDocument(routes: readonly RouteDefinition[]): Record<string, unknown> {
  const schemas = schemasOf(routes);
  const paths: Record<string, Record<string, unknown>> = {};
  for (const { spec } of routes) (paths[spec.path.replace(/:(\w+)/g, '{$1}')] ??= {})[spec.method] = operationOf(spec, schemas);
  return {
    openapi: '3.1.0',
    info: {
      title: 'IoT controller',
      version: '0.1.0',
      description: 'Event-sourced IoT controller. Every answer is `{data, meta?}` or `{error}`; unknown fields are refused with 400. The guide to HTTP and WebSocket use is docs/guide.md in the repository.',
      license: { name: 'UNLICENSED', identifier: 'UNLICENSED' },
    },
    servers: [{ url: '/' }],
    tags: [...new Set(routes.map(({ spec }) => spec.tag))].map((name) => ({ name, description: TAGS[name] ?? name })),
    components: {
      schemas,
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'A session token (from login), an API key or a device token' },
        apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'A user API key' },
        deviceToken: { type: 'apiKey', in: 'header', name: 'X-Device-Token', description: "A device's own token" },
        sessionCookie: { type: 'apiKey', in: 'cookie', name: 'session', description: 'The session cookie set at login' },
      },
    },
    security: security.user,
    paths,
  };
}
