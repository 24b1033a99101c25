import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser, type Answer } from '../helpers/client.js';
import { createDevice, expectError, expectValidation, headPosition, uniqueName, type Data, type Device, type List } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

type Account = Awaited<ReturnType<typeof registerUser>>;

const JSON_TYPE = { 'content-type': 'application/json' };
const ONE_MIB = 1024 * 1024;

interface JsonSchema {
  $ref?: string;
  type?: string;
  properties?: Record<string, unknown>;
  required?: string[];
}
interface OpenApiOperation {
  requestBody?: { content?: Record<string, { schema?: JsonSchema }> };
  responses?: Record<string, unknown>;
}
interface OpenApiDocument {
  openapi: string;
  info?: { title?: string };
  paths: Record<string, Record<string, OpenApiOperation>>;
  components: { schemas: Record<string, JsonSchema> };
}

/** An answer refused with some client error (4xx), in the error envelope. */
function expectClientError(answer: Answer): string {
  expect(answer.status, `${answer.status} ${JSON.stringify(answer.body)}`).toBeGreaterThanOrEqual(400);
  expect(answer.status).toBeLessThan(500);
  const code = (answer.body as { error?: { code?: string } }).error?.code;
  expect(typeof code).toBe('string');
  expectError(answer, answer.status, code!);
  return code!;
}

describe('hostile input and protocol errors', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let user: Account;

  beforeAll(async () => {
    server = await startTestServer();
    await registerUser(api, uniqueName('eadmin'));
    user = await registerUser(api, uniqueName('errs'));
  });
  afterAll(() => server.close());

  describe('bodies', () => {
    it('answers 400 invalid_json for a body that is not JSON', async () => {
      for (const raw of ['{"username": "x", ', "{'single': 'quotes'}", 'not json at all', '{"a":1}}', '\u0000']) {
        expectError(await api.post('/api/auth/register', undefined, { raw, headers: JSON_TYPE }), 400, 'invalid_json');
      }
      expectError(await api.post('/api/devices', undefined, { raw: '{"name":', headers: JSON_TYPE, token: user.token }), 400, 'invalid_json');
    });

    it('answers 400 invalid_json, naming the encoding, for a compressed body that does not decompress', async () => {
      for (const encoding of ['gzip', 'deflate', 'br']) {
        const answer = await api.post('/api/devices', undefined, { raw: 'abcde', headers: { ...JSON_TYPE, 'content-encoding': encoding }, token: user.token });
        expect(expectError(answer, 400, 'invalid_json').message).toMatch(/decompress/);
      }
    });

    it('refuses 1e999 (Infinity once parsed) anywhere in a free-form object, naming where, instead of storing null', async () => {
      const device = await createDevice(api, user.token);
      const before = await headPosition(api);
      const create = `{"name":"${uniqueName('inf')}","type":"sensor","configuration":{"limits":{"high":1e999}}}`;
      expectValidation(await api.post('/api/devices', undefined, { raw: create, headers: JSON_TYPE, token: user.token }), 'configuration.limits.high');
      const command = '{"command_type":"set","parameters":{"steps":[1,-1e999]}}';
      expectValidation(await api.post(`/api/devices/${device.id}/commands`, undefined, { raw: command, headers: JSON_TYPE, token: user.token }), 'parameters.steps.1');
      expect(await headPosition(api)).toBe(before);
    });

    it('answers 400 validation_failed, not invalid_json, for JSON that is not an object', async () => {
      for (const raw of ['"a string"', 'null', '123', 'true', '[1, 2]']) {
        expectError(await api.post('/api/auth/register', undefined, { raw, headers: JSON_TYPE }), 400, 'validation_failed');
      }
      expectError(await api.post('/api/devices', undefined, { raw: 'null', headers: JSON_TYPE, token: user.token }), 400, 'validation_failed');
    });

    it('answers 415 unsupported_media_type for a body that is not application/json', async () => {
      const body = JSON.stringify({ username: 'plain', email: 'plain@example.com', password: 'correct horse' });
      expectError(await api.post('/api/auth/register', undefined, { raw: body, headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type');
      expectError(await api.post('/api/auth/register', undefined, { raw: 'a=1', headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 415, 'unsupported_media_type');
      expectError(await api.post('/api/devices', undefined, { raw: body, headers: { 'content-type': 'text/xml' }, token: user.token }), 415, 'unsupported_media_type');
      expectError(await api.post('/api/devices', undefined, { raw: body, headers: { 'content-type': 'application/json; charset=latin1' }, token: user.token }), 415, 'unsupported_media_type');
      // fetch sends a string body as text/plain when no type is given.
      expectError(await api.post('/api/auth/register', undefined, { raw: body }), 415, 'unsupported_media_type');
    });

    it('refuses JSON in UTF-16 (it would slip past the checks that read the bytes as UTF-8) with 415 and stores nothing', async () => {
      const before = await headPosition(api);
      for (const charset of ['utf-16le', 'UTF-16', 'utf-32']) {
        const answer = await fetch(`${server.url}/api/devices`, {
          method: 'POST',
          headers: { 'content-type': `application/json; charset=${charset}`, authorization: `Bearer ${user.token}` },
          body: Buffer.from('{"name": "wide", "type": "sensor", "configuration": {"__proto__": {"a": 1}}}', 'utf16le'),
        });
        expect(answer.status, charset).toBe(415);
        expect(((await answer.json()) as { error: { code: string } }).error.code).toBe('unsupported_media_type');
      }
      expect(await headPosition(api)).toBe(before);
    });

    it('refuses a body whose bytes are not valid UTF-8 with 400, rather than store replacement characters', async () => {
      const before = await headPosition(api);
      const valid = Buffer.from('{"name": "caf\u00e9", "device_type": "sensor"}', 'utf8');
      const broken = Buffer.concat([Buffer.from('{"name": "caf'), Buffer.from([0xc3, 0x28]), Buffer.from('", "device_type": "sensor"}')]);
      const post = (body: Buffer) => fetch(`${server.url}/api/devices`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${user.token}` }, body });
      const refused = await post(broken);
      expect(refused.status).toBe(400);
      expect(((await refused.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'validation_failed', message: 'the body is not valid UTF-8' });
      expect(await headPosition(api)).toBe(before);
      const accepted = await post(valid);
      expect(accepted.status).toBe(201);
      expect(((await accepted.json()) as { data: { name: string } }).data.name).toBe('caf\u00e9');
    });

    it('accepts application/json with a UTF-8 charset', async () => {
      const name = uniqueName('charset');
      const raw = JSON.stringify({ username: name, email: `${name}@example.com`, password: 'correct horse' });
      const answer = await api.post('/api/auth/register', undefined, { raw, headers: { 'content-type': 'application/json; charset=utf-8' } });
      expect(answer.status).toBe(201);
    });

    it('answers 413 payload_too_large for a body over 1 MiB, and reads one just under it', async () => {
      const big = JSON.stringify({ name: 'big', type: 'sensor', description: 'x'.repeat(ONE_MIB) });
      expect(Buffer.byteLength(big)).toBeGreaterThan(ONE_MIB);
      expectError(await api.post('/api/devices', undefined, { raw: big, headers: JSON_TYPE, token: user.token }), 413, 'payload_too_large');
      expectError(await api.post('/api/auth/register', undefined, { raw: big, headers: JSON_TYPE }), 413, 'payload_too_large');
      const under = JSON.stringify({ name: 'under', type: 'sensor', description: 'x'.repeat(ONE_MIB - 200) });
      expect(Buffer.byteLength(under)).toBeLessThanOrEqual(ONE_MIB);
      // Read and validated (description is too long), not refused for its size.
      expectError(await api.post('/api/devices', undefined, { raw: under, headers: JSON_TYPE, token: user.token }), 400, 'validation_failed');
    });

    it.each([
      ['an array', '[]'],
      ['an array of objects', '[{"name":"a","type":"sensor"}]'],
      ['a number', '42'],
      ['null', 'null'],
      ['a string', '"name"'],
      ['true', 'true'],
    ])('refuses %s as the body with 400', async (_label, raw) => {
      const answer = await api.post('/api/devices', undefined, { raw, headers: JSON_TYPE, token: user.token });
      const error = expectError(answer, 400, (answer.body as { error: { code: string } }).error.code);
      expect(['validation_failed', 'invalid_json']).toContain(error.code);
    });

    it.each([
      ['name', { name: ['a'], type: 'sensor' }],
      ['name', { name: { first: 'a' }, type: 'sensor' }],
      ['name', { name: null, type: 'sensor' }],
      ['type', { name: 'a', type: 7 }],
      ['device_type', { name: 'a', device_type: false }],
      ['description', { name: 'a', type: 'sensor', description: ['x'] }],
      ['ip_address', { name: 'a', type: 'sensor', ip_address: 19216811 }],
      ['mac_address', { name: 'a', type: 'sensor', mac_address: { mac: '00:11:22:33:44:55' } }],
      ['auth_token', { name: 'a', type: 'sensor', auth_token: 1234567890123456 }],
      ['configuration', { name: 'a', type: 'sensor', configuration: null }],
      ['firmware_version', { name: 'a', type: 'sensor', firmware_version: 2 }],
      ['group_id', { name: 'a', type: 'sensor', group_id: 12 }],
    ])('refuses a device whose %s has the wrong type', async (path, body) => {
      const error = expectError(await api.post('/api/devices', body, { token: user.token }), 400, 'validation_failed');
      expect(error.details.map((d) => d.path)).toContain(path);
    });

    it.each([
      ['a 10,000-character username', '/api/auth/register', { username: 'u'.repeat(10_000), email: 'long@example.com', password: 'correct horse' }],
      ['a 100,000-character password', '/api/auth/register', { username: 'longpass', email: 'longpass@example.com', password: 'p'.repeat(100_000) }],
      ['a 300-character email', '/api/auth/register', { username: 'longmail', email: `${'m'.repeat(290)}@example.com`, password: 'correct horse' }],
      ['a 100,000-character login', '/api/auth/login', { username: 'l'.repeat(100_000), password: 'correct horse' }],
      ['a 101-character device name', '/api/devices', { name: 'n'.repeat(101), type: 'sensor' }],
      ['a 500,000-character description', '/api/devices', { name: 'd', type: 'sensor', description: 'd'.repeat(500_000) }],
      ['a 65-character device type', '/api/devices', { name: 'd', type: 't'.repeat(65) }],
      ['a 257-character auth_token', '/api/devices', { name: 'd', type: 'sensor', auth_token: 'a'.repeat(257) }],
      ['a 101-character group name', '/api/groups', { name: 'g'.repeat(101) }],
    ])('refuses %s with 400 and stores nothing', async (_label, path, body) => {
      const before = await headPosition(api);
      expectError(await api.post(path, body, { token: user.token }), 400, 'validation_failed');
      expect(await headPosition(api)).toBe(before);
    });

    it('copes with deeply nested JSON in an unknown or non-object field', async () => {
      const nested = `${'['.repeat(50_000)}${']'.repeat(50_000)}`;
      const before = await headPosition(api);
      expectClientError(await api.post('/api/devices', undefined, { raw: `{"name": ${nested}, "type": "sensor"}`, headers: JSON_TYPE, token: user.token }));
      expectClientError(await api.post('/api/groups', undefined, { raw: `{"description": ${nested}, "name": "deep"}`, headers: JSON_TYPE, token: user.token }));
      expect(await headPosition(api)).toBe(before);
    });

    it('accepts a moderately nested configuration', async () => {
      const raw = `{"name": "nested", "type": "sensor", "configuration": {"a": ${'['.repeat(100)}1${']'.repeat(100)}}}`;
      const answer = await api.post<Data<Device>>('/api/devices', undefined, { raw, headers: JSON_TYPE, token: user.token });
      expect(answer.status).toBe(201);
    });

    it('refuses a deeply nested configuration with 4xx, not 500', async () => {
      const before = await headPosition(api);
      const raw = `{"name": "deep", "type": "sensor", "configuration": {"a": ${'['.repeat(10_000)}${']'.repeat(10_000)}}}`;
      expectClientError(await api.post('/api/devices', undefined, { raw, headers: JSON_TYPE, token: user.token }));
      expect(await headPosition(api)).toBe(before);
    });

    it.each(['/api/commands', '/api/alerts', '/api/automation/rules', '/api/events', '/api/analytics'])('answers 400 naming device_id for a malformed id in %s?device_id=', async (path) => {
      expectValidation(await api.get(`${path}?device_id=not-a-uuid`, { token: user.token }), 'device_id');
    });

    it('refuses overlong query strings with 400', async () => {
      expectError(await api.get(`/api/devices?q=${'q'.repeat(101)}`, { token: user.token }), 400, 'validation_failed');
      expectError(await api.get(`/api/devices?type=${'t'.repeat(65)}`, { token: user.token }), 400, 'validation_failed');
    });

    it('answers a URL over 16 KiB with 431 and the error envelope, and garbage instead of HTTP with 400', async () => {
      const answer = await api.get(`/api/devices?q=${'q'.repeat(20_000)}`, { token: user.token });
      expect(answer.status).toBe(431);
      const body = answer.body as { error: { code: string; request_id: string } };
      expect(body.error.code).toBe('validation_failed');
      expect(body.error.request_id).toBe(answer.headers.get('x-request-id'));

      const raw = await new Promise<string>((resolve, reject) => {
        const socket = connect(Number(new URL(server.url).port), '127.0.0.1', () => socket.write('NOT HTTP AT ALL\r\n\r\n'));
        let received = '';
        socket.on('data', (chunk) => (received += chunk.toString()));
        socket.on('end', () => resolve(received));
        socket.on('error', reject);
      });
      expect(raw).toMatch(/^HTTP\/1\.1 400 /);
      expect(raw).toContain('"code":"validation_failed"');
      expect((await api.get('/api/health')).status).toBe(200);
    });
  });

  describe('prototype pollution', () => {
    const pollutionBodies: Array<[string, string, string]> = [
      ['register fields only under __proto__', '/api/auth/register', '{"__proto__": {"username": "protouser", "email": "proto@example.com", "password": "correct horse"}}'],
      ['register fields only under constructor.prototype', '/api/auth/register', '{"constructor": {"prototype": {"username": "ctoruser", "email": "ctor@example.com", "password": "correct horse"}}}'],
      ['a device type only under __proto__', '/api/devices', '{"name": "proto", "__proto__": {"device_type": "sensor", "type": "sensor"}}'],
      ['a group name only under __proto__', '/api/groups', '{"__proto__": {"name": "protogroup"}}'],
      ['a login password only under __proto__', '/api/auth/login', '{"username": "nobody", "__proto__": {"password": "x"}}'],
      ['a group name under __proto__ deep inside an array', '/api/groups', '{"name": "g", "parent_id": null, "x": [[{"y": {"__proto__": {"name": "deep"}}}]]}'],
    ];

    it.each(pollutionBodies)('refuses %s with 4xx and stores nothing', async (_label, path, raw) => {
      const before = await headPosition(api);
      expectClientError(await api.post(path, undefined, { raw, headers: JSON_TYPE, token: user.token }));
      expect(await headPosition(api)).toBe(before);
      expect(({} as Record<string, unknown>).username).toBeUndefined();
      expect(({} as Record<string, unknown>).device_type).toBeUndefined();
      expect(({} as Record<string, unknown>).name).toBeUndefined();
      expect(({} as Record<string, unknown>).password).toBeUndefined();
    });

    it('does not let __proto__ grant a role or pollute Object.prototype', async () => {
      const name = uniqueName('protorole');
      const raw = `{"username": "${name}", "email": "${name}@example.com", "password": "correct horse", "__proto__": {"role": "admin", "device_quota": 100000}, "role": "admin"}`;
      const answer = await api.post<Data<{ user: { role: string; device_quota: number } }>>('/api/auth/register', undefined, { raw, headers: JSON_TYPE });
      expect(answer.status).toBeLessThan(500);
      if (answer.status === 201) {
        expect(answer.body.data.user.role).toBe('user');
        expect(answer.body.data.user.device_quota).not.toBe(100000);
      }
      expect(({} as Record<string, unknown>).role).toBeUndefined();
      expect(({} as Record<string, unknown>).device_quota).toBeUndefined();
    });

    it('refuses __proto__ spelt with \\u escapes in an otherwise valid body, naming the key', async () => {
      const before = await headPosition(api);
      const raw = '{"name": "escaped", "type": "sensor", "configuration": {"\\u005f\\u005fproto\\u005f\\u005f": {"polluted": true}}}';
      const answer = await api.post('/api/devices', undefined, { raw, headers: JSON_TYPE, token: user.token });
      expectError(answer, 400, 'validation_failed');
      expect(JSON.stringify(answer.body)).toContain('__proto__');
      expect(await headPosition(api)).toBe(before);
    });

    it('walks a body nested 100,000 levels deep for reserved keys without failing', async () => {
      const depth = 100_000;
      const raw = `{"name": "deep\\u0041", "type": "sensor", "configuration": {"nested": ${'['.repeat(depth)}${']'.repeat(depth)}}}`;
      const answer = await api.post('/api/devices', undefined, { raw, headers: JSON_TYPE, token: user.token });
      expect(answer.status).toBeLessThan(500);
      expect((await api.get('/api/health')).status).toBe(200);
    });

    it('answers 400, not 500, for bodies nested 5,000 deep where validators and conditions recurse', async () => {
      const device = await createDevice(api, user.token, { name: 'deep target' });
      const nested = (depth: number, open: string, close: string, leaf: string) => `${open.repeat(depth)}${leaf}${close.repeat(depth)}`;
      const before = await headPosition(api);
      const command = `{"command_type": "x", "parameters": ${nested(5_000, '{"a":', '}', '1')}}`;
      expectError(await api.post(`/api/devices/${device.id}/commands`, undefined, { raw: command, headers: JSON_TYPE, token: user.token }), 400, 'validation_failed');
      const leaf = `{"type": "device_status", "device_id": "${device.id}", "status": "online"}`;
      const rule = `{"name": "deep", "trigger_conditions": ${nested(5_000, '{"not":', '}', leaf)}, "actions": [{"type": "alert", "severity": "info", "message": "m"}]}`;
      expectError(await api.post('/api/automation/rules', undefined, { raw: rule, headers: JSON_TYPE, token: user.token }), 400, 'validation_failed');
      // Brackets inside strings are text, not nesting.
      const bracketed = await api.post('/api/devices', { name: 'brackets', type: 'sensor', description: '{['.repeat(500) }, { token: user.token });
      expect(bracketed.status).toBe(201);
      expect(await headPosition(api)).toBe(before + 1);
    });

    it('keeps a __proto__ key inside configuration inert', async () => {
      const raw = '{"name": "cfg", "type": "sensor", "configuration": {"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}, "ok": 1}}';
      const answer = await api.post<Data<Device>>('/api/devices', undefined, { raw, headers: JSON_TYPE, token: user.token });
      expect(answer.status).toBeLessThan(500);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      if (answer.status === 201) {
        const detail = await api.get<Data<Device>>(`/api/devices/${answer.body.data.id}`, { token: user.token });
        expect(detail.status).toBe(200);
        expect(detail.body.data.configuration.ok).toBe(1);
        expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      } else {
        expectClientError(answer);
      }
    });
  });

  describe('query strings', () => {
    it.each([
      ['/api/devices?limit=1&limit=2', 'limit'],
      ['/api/events?type=device.registered&type=user.registered', 'type'],
      ['/api/devices?status=online&status=offline&offset=1', 'status'],
    ])('refuses a repeated parameter, naming it: %s', async (path, name) => {
      const error = expectValidation(await api.get(path, { token: user.token }), name);
      expect(error.message).toContain('more than once');
    });

    it.each([['/api/events?type[]=device.registered', 'type[]'], ['/api/devices?status[]=online&limit=5', 'status[]'], ['/api/devices?q[name]=x', 'q[name]']])(
      'refuses a bracketed parameter instead of dropping its filter: %s',
      async (path, name) => {
        const error = expectValidation(await api.get(path, { token: user.token }), name);
        expect(error.message).toContain('brackets');
      },
    );

    it('ignores a cache buster (_), repeated or not, and refuses any other parameter the route does not know', async () => {
      expect((await api.get('/api/devices?_=1&_=2', { token: user.token })).status).toBe(200);
      const error = expectValidation(await api.get('/api/devices?limt=5', { token: user.token }), 'limt');
      expect(error.details[0]?.message).toBe('unknown field "limt"; did you mean "limit"?');
    });
  });

  describe('routes and envelopes', () => {
    it.each([
      ['GET', '/api/nope'],
      ['GET', '/nope'],
      ['POST', '/api/devices/1/2/3/4'],
      ['DELETE', '/api/health'],
      ['PATCH', '/api/devices'],
      ['GET', '/api/openapi.yaml'],
    ])('answers %s %s with 404 not_found in JSON', async (method, path) => {
      const answer = await api.call(method, path, undefined, { token: user.token });
      expectError(answer, 404, 'not_found');
    });

    it('answers a route needing a user without credentials with 401 unauthenticated, also with odd Authorization headers', async () => {
      expectError(await api.get('/api/devices'), 401, 'unauthenticated');
      expectError(await api.get('/api/devices', { headers: { authorization: 'Basic dXNlcjpwYXNz' } }), 401, 'unauthenticated');
      expectError(await api.get('/api/devices', { headers: { authorization: 'Bearer' } }), 401, 'unauthenticated');
      expectError(await api.get('/api/devices', { headers: { authorization: `Bearer ${'x'.repeat(5000)}` } }), 401, 'unauthenticated');
      expectError(await api.get('/api/devices', { headers: { cookie: 'session=%E0%A4%A' } }), 401, 'unauthenticated');
    });

    it('puts the X-Request-Id header on every answer, echoing a sane one and replacing an unsafe one', async () => {
      const ok = await api.get('/api/health', { headers: { 'x-request-id': 'client-id-123' } });
      expect(ok.headers.get('x-request-id')).toBe('client-id-123');
      const refused = await api.get('/api/devices', { headers: { 'x-request-id': 'trace.abc_42' } });
      expect(expectError(refused, 401, 'unauthenticated').request_id).toBe('trace.abc_42');
      const unsafe = await api.get('/api/nope', { headers: { 'x-request-id': 'bad id <script>' } });
      const error = expectError(unsafe, 404, 'not_found');
      expect(error.request_id).not.toContain('<');
      expect(error.request_id).not.toBe('bad id <script>');
      const a = await api.get('/api/nope');
      const b = await api.get('/api/nope');
      expect(expectError(a, 404, 'not_found').request_id).not.toBe(expectError(b, 404, 'not_found').request_id);
    });

    it.each(['/api/devices/..%2F..%2Fetc%2Fpasswd', `/api/devices/${'a'.repeat(2000)}`, '/api/nope/%E0', '/api/devices/%20'])('answers the odd path %s with 404, not 500', async (path) => {
      expectError(await api.get(path, { token: user.token }), 404, 'not_found');
    });

    it.each(['/api/devices/%E0%A4%A', '/api/groups/%', '/api/devices/%E0%A4%A/history'])('answers the malformed path %s with a 4xx, not 500', async (path) => {
      expectClientError(await api.get(path, { token: user.token }));
    });

    it('refuses hostile query values without a 500', async () => {
      for (const query of ['?limit=1e3', '?limit=-0.5', '?limit=Infinity', '?limit=', '?offset=NaN', '?status=', "?q=' OR 1=1 --", '?group_id=%00']) {
        const answer = await api.get<List<Device>>(`/api/devices${query}`, { token: user.token });
        expect(answer.status, `${query}: ${JSON.stringify(answer.body)}`).toBeLessThan(500);
        if (answer.status >= 400) expectClientError(answer);
      }
      for (const query of ['?group_id=nope', '?group_id=', `?group_id=${'0'.repeat(36)}`]) {
        expectValidation(await api.get(`/api/devices${query}`, { token: user.token }), 'group_id');
      }
      // SQL in q is matched literally.
      const device = await createDevice(api, user.token, { name: 'innocent' });
      const injected = await api.get<List<Device>>(`/api/devices?q=${encodeURIComponent("' OR 1=1 --")}`, { token: user.token });
      expect(injected.status).toBe(200);
      expect(injected.body.data.map((d) => d.id)).not.toContain(device.id);
    });

    it('stores nothing for a whole battery of hostile requests', async () => {
      const before = await headPosition(api);
      const requests: Array<Promise<Answer>> = [
        api.post('/api/auth/register', undefined, { raw: '{', headers: JSON_TYPE }),
        api.post('/api/auth/register', undefined, { raw: '[]', headers: JSON_TYPE }),
        api.post('/api/auth/register', { username: ['x'], email: 'x@example.com', password: 'correct horse' }),
        api.post('/api/devices', undefined, { raw: 'name=x', headers: { 'content-type': 'text/plain' }, token: user.token }),
        api.post('/api/devices', { name: 'x', type: 'sensor', configuration: 'x' }, { token: user.token }),
        api.post('/api/groups', { name: 'x', parent_id: 'not-a-uuid' }, { token: user.token }),
        api.post('/api/groups', undefined, { raw: 'null', headers: JSON_TYPE, token: user.token }),
        api.put('/api/devices/00000000-0000-4000-8000-000000000000', { name: 'ghost' }, { token: user.token }),
      ];
      for (const answer of await Promise.all(requests)) expectClientError(answer);
      expect(await headPosition(api)).toBe(before);
    });
  });

  describe('CORS', () => {
    it('answers a preflight from an origin with credentials allowed', async () => {
      const answer = await api.call('OPTIONS', '/api/devices', undefined, {
        headers: { origin: 'http://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,authorization' },
      });
      expect(answer.status).toBeGreaterThanOrEqual(200);
      expect(answer.status).toBeLessThan(300);
      expect(answer.headers.get('access-control-allow-origin')).toBe('http://app.example.com');
      expect(answer.headers.get('access-control-allow-credentials')).toBe('true');
      expect((answer.headers.get('access-control-allow-methods') ?? '').toUpperCase()).toContain('POST');
      expect(answer.headers.get('x-request-id')).toBeTruthy();
    });

    it('echoes the origin on an ordinary request and exposes the request id and ETag', async () => {
      const answer = await api.get('/api/health', { headers: { origin: 'http://other.example.org' } });
      expect(answer.status).toBe(200);
      expect(answer.headers.get('access-control-allow-origin')).toBe('http://other.example.org');
      expect(answer.headers.get('access-control-allow-credentials')).toBe('true');
      const exposed = (answer.headers.get('access-control-expose-headers') ?? '').toLowerCase();
      expect(exposed).toContain('x-request-id');
      expect(exposed).toContain('etag');
    });

    it('does not echo the opaque origin "null" (sandboxed frames, files)', async () => {
      const answer = await api.get('/api/health', { headers: { origin: 'null' } });
      expect(answer.status).toBe(200);
      expect(answer.headers.get('access-control-allow-origin')).toBeNull();
    });
  });

  describe('OpenAPI', () => {
    it('serves an OpenAPI 3 document describing devices and registration', async () => {
      const answer = await api.get<OpenApiDocument>('/api/openapi.json');
      expect(answer.status).toBe(200);
      expect(answer.headers.get('content-type')).toMatch(/application\/json/);
      const doc = answer.body;
      expect(doc.openapi).toMatch(/^3\./);
      expect(doc.paths['/api/devices']).toBeDefined();
      expect(doc.paths['/api/devices']!.get).toBeDefined();
      const devicePost = doc.paths['/api/devices']!.post!;
      // Request bodies are named schemas: follow the $ref into components.
      const named = (schema: JsonSchema | undefined) => (schema?.$ref ? doc.components.schemas[schema.$ref.split('/').at(-1)!] : schema);
      const deviceSchema = named(devicePost.requestBody?.content?.['application/json']?.schema);
      expect(deviceSchema).toBeDefined();
      expect(Object.keys(deviceSchema!.properties ?? {})).toEqual(expect.arrayContaining(['name', 'type', 'device_type', 'ip_address', 'mac_address', 'auth_token']));
      const register = doc.paths['/api/auth/register']!.post!;
      const registerSchema = named(register.requestBody?.content?.['application/json']?.schema);
      expect(registerSchema).toBeDefined();
      expect(Object.keys(registerSchema!.properties ?? {})).toEqual(expect.arrayContaining(['username', 'email', 'password']));
      expect(registerSchema!.required).toEqual(expect.arrayContaining(['username', 'email', 'password']));
      expect(register.responses).toHaveProperty('201');
      for (const path of ['/api/auth/login', '/api/auth/logout', '/api/auth/user', '/api/devices/{id}', '/api/devices/{id}/history', '/api/groups', '/api/groups/{id}', '/api/health']) {
        expect(doc.paths, path).toHaveProperty([path]);
      }
    });
  });

  describe('RATE_LIMIT_PER_MINUTE', () => {
    let limited: TestServer;
    const limitedApi = client(() => limited.url);

    beforeAll(async () => {
      limited = await startTestServer({ RATE_LIMIT_PER_MINUTE: '5' });
    });
    afterAll(() => limited.close());

    it('answers 429 rate_limited with Retry-After past the limit, per credential, until the minute passes', async () => {
      const first = await registerUser(limitedApi, uniqueName('rl1'));
      const second = await registerUser(limitedApi, uniqueName('rl2'));
      for (let i = 0; i < 5; i++) {
        const answer = await limitedApi.get('/api/devices', { token: first.token });
        expect(answer.status, `request ${i + 1}`).toBe(200);
      }
      const refused = await limitedApi.get('/api/devices', { token: first.token });
      expectError(refused, 429, 'rate_limited');
      const retryAfter = Number(refused.headers.get('retry-after'));
      expect(Number.isInteger(retryAfter)).toBe(true);
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(60);
      // Every route counts, writes included, and nothing is stored.
      const before = await headPosition(limitedApi);
      expectError(await limitedApi.post('/api/devices', { name: 'late', type: 'sensor' }, { token: first.token }), 429, 'rate_limited');
      expect(await headPosition(limitedApi)).toBe(before);
      // Another credential has its own budget.
      expect((await limitedApi.get('/api/devices', { token: second.token })).status).toBe(200);

      limited.clock.advance(61_000);
      const again = await limitedApi.get('/api/devices', { token: first.token });
      expect(again.status).toBe(200);
    });
  });
});
