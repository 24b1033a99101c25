import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from '../helpers/client.js';
import { checkAnswer } from '../helpers/contract.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

type Json = Record<string, unknown>;
interface Operation {
  operationId?: string;
  requestBody?: { content: Record<string, { schema: { $ref: string }; example?: unknown }> };
  security?: unknown[];
  parameters?: Array<{ name: string; in: string }>;
  responses: Record<string, { headers?: Json; content?: Record<string, { schema: Json }> }>;
}
interface Document {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Json>; securitySchemes: Json };
}

/** Every `$ref` anywhere in a value. */
function refsIn(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(refsIn);
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([key, child]) => (key === '$ref' && typeof child === 'string' ? [child] : refsIn(child)));
}

describe('the OpenAPI 3.1 document', () => {
  let server: TestServer;
  let document: Document;
  const operations = () => Object.entries(document.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, operation]) => ({ route: `${method.toUpperCase()} ${path}`, operation })));

  beforeAll(async () => {
    server = await startTestServer();
    document = (await client(() => server.url).get<Document>('/api/openapi.json')).body;
  });
  afterAll(() => server?.close());

  it('is valid OpenAPI 3.1 for an independent validator', async () => {
    const result = await new Validator().validate(structuredClone(document) as never);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(document.openapi).toMatch(/^3\.1\./);
    // The validator does refuse: an operation without answers is not OpenAPI.
    const broken = structuredClone(document) as unknown as { paths: Record<string, unknown> };
    broken.paths['/broken'] = { get: { responses: 'none' } };
    expect((await new Validator().validate(broken as never)).valid).toBe(false);
  });

  it('names every resource and message, and every $ref resolves inside the document', () => {
    const names = ['Device', 'DeviceDetail', 'DeviceStatus', 'Reading', 'Bucket', 'Command', 'Rule', 'Condition', 'Action', 'Schedule', 'Alert', 'Group', 'GroupTree', 'Template', 'Event', 'User', 'Error', 'Thresholds'];
    expect(Object.keys(document.components.schemas)).toEqual(expect.arrayContaining(names));
    const refs = refsIn(document);
    expect(refs.length).toBeGreaterThan(100);
    for (const ref of refs) {
      expect(ref, 'a ref into components/schemas').toMatch(/^#\/components\/schemas\/\w+$/);
      expect(document.components.schemas[ref.split('/').at(-1)!], ref).toBeDefined();
    }
    // Recursion goes through names, not through the document root or a private definition.
    expect(JSON.stringify(document.components.schemas.Condition)).toContain('"#/components/schemas/Condition"');
    expect(JSON.stringify(document.components.schemas.GroupTree)).toContain('"#/components/schemas/GroupTree"');
  });

  it('gives each operation a unique camelCase operationId, its security and its error answers with the Error schema', () => {
    const ids = operations().map(({ operation }) => operation.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    for (const { route, operation } of operations()) {
      expect(operation.operationId, route).toMatch(/^[a-z][A-Za-z]+$/);
      expect(Array.isArray(operation.security), route).toBe(true);
      const errors = Object.entries(operation.responses).filter(([status]) => status.startsWith('4') || status.startsWith('5'));
      expect(errors.map(([status]) => status), route).toEqual(expect.arrayContaining(['400', '429', '500']));
      for (const [, answer] of errors) expect(answer.content?.['application/json']?.schema, route).toEqual({ $ref: '#/components/schemas/Error' });
    }
    const error = document.components.schemas.Error as { required: string[]; properties: { error: { required: string[] } } };
    expect(error.required).toEqual(['error']);
    expect(error.properties.error.required).toEqual(expect.arrayContaining(['code', 'message', 'request_id']));
  });

  it('says who may call: nobody for login, a user for devices, a device token for heartbeats', () => {
    const op = (path: string, method: string) => document.paths[path]![method]!;
    expect(op('/api/auth/login', 'post').security).toEqual([]);
    expect(op('/api/devices', 'get').security).toContainEqual({ bearer: [] });
    expect(op('/api/devices/{id}/heartbeat', 'post').security).toContainEqual({ deviceToken: [] });
    expect(op('/api/devices/{id}/heartbeat', 'post').responses['401']).toBeDefined();
  });

  it('documents the headers read and set: If-Match, Idempotency-Key, ETag, Retry-After', () => {
    const update = document.paths['/api/devices/{id}']!.put!;
    expect(update.parameters).toContainEqual(expect.objectContaining({ name: 'If-Match', in: 'header' }));
    expect(update.responses['200']!.headers).toHaveProperty('ETag');
    expect(update.responses['412']).toBeDefined();
    expect(document.paths['/api/devices/{id}/data']!.post!.parameters).toContainEqual(expect.objectContaining({ name: 'Idempotency-Key', in: 'header' }));
    expect(update.responses['429']!.headers).toHaveProperty('Retry-After');
  });

  it('documents the raw readings cursor: the cursor parameter and meta.next_cursor', () => {
    const list = document.paths['/api/devices/{id}/data']!.get!;
    expect(list.parameters).toContainEqual(expect.objectContaining({ name: 'cursor', in: 'query' }));
    const envelope = document.components.schemas[(list.responses['200']!.content!['application/json']!.schema.$ref as string).split('/').at(-1)!] as { properties: { meta: { properties: Json } } };
    expect(envelope.properties.meta.properties).toHaveProperty('next_cursor');
  });

  it('marks free-form objects as such, and strict ones as closed', () => {
    const schemas = document.components.schemas as Record<string, { properties: Record<string, Json>; additionalProperties?: unknown }>;
    expect(schemas.DeviceConfiguration!.additionalProperties).toBe(true);
    expect(schemas.DeviceConfiguration!.properties).toHaveProperty('thresholds');
    expect(schemas.QueueCommandRequest!.additionalProperties).toBe(false);
    expect(JSON.stringify(schemas.QueueCommandRequest!.properties.parameters)).toContain('"additionalProperties":true');
  });

  it('makes the test client fail on an answer off the document: drift fails a test', async () => {
    const check = (path: string, status: number, body: unknown) => checkAnswer(server.url, 'GET', path, status, 'application/json', body);
    await expect(check('/api/health', 200, { data: { status: 'ok', position: 3 } })).resolves.toBeUndefined();
    await expect(check('/api/health', 200, { data: { status: 'ok' } })).rejects.toThrow(/position/);
    await expect(check('/api/health', 200, { data: { status: 'ok', position: 3, extra: 1 } })).rejects.toThrow(/additional/);
    await expect(check('/api/devices/abc', 404, { error: { code: 'not_found', message: 'm', details: [] } })).rejects.toThrow(/request_id/);
    await expect(check('/api/devices/abc', 418, { error: {} })).rejects.toThrow(/does not document status 418/);
  });

  it('shows the walk-through request bodies as examples, each valid for its own schema', () => {
    const ajv = new Ajv2020({ strict: false });
    ajv.addSchema(document as object, 'openapi');
    const examples = operations().flatMap(({ route, operation }) => {
      const body = operation.requestBody?.content['application/json'];
      return body?.example === undefined ? [] : [{ route, body }];
    });
    expect(examples.map(({ route }) => route)).toEqual(expect.arrayContaining(['POST /api/devices', 'POST /api/devices/{id}/data', 'POST /api/automation/rules']));
    for (const { route, body } of examples) {
      const validate = ajv.compile({ $ref: `openapi${body.schema.$ref}` });
      expect(validate(body.example), `${route}: ${JSON.stringify(validate.errors)}`).toBe(true);
    }
  });
});
