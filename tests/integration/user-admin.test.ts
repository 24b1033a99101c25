import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import { createDevice, expectError, expectValidation, type Data, type User } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { connect, wsUrl } from '../helpers/ws-client.js';

type ManagedUser = User & { disabled: boolean };

describe('admin user management', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let admin: Awaited<ReturnType<typeof registerUser>>;
  let alice: Awaited<ReturnType<typeof registerUser>>;
  let bob: Awaited<ReturnType<typeof registerUser>>;
  const patch = (id: string, body: unknown, token: string) => api.call<Data<ManagedUser>>('PATCH', `/api/users/${id}`, body, { token });

  beforeAll(async () => {
    server = await startTestServer();
    admin = await registerUser(api);
    alice = await registerUser(api);
    bob = await registerUser(api);
  });
  afterAll(() => server.close());

  it('lists every user to an admin, with paging, never a hash', async () => {
    const answer = await api.get<Data<ManagedUser[]> & { meta: { total: number } }>('/api/users?limit=2', { token: admin.token });
    expect(answer.status).toBe(200);
    expect(answer.body.meta.total).toBe(3);
    expect(answer.body.data.map((u) => u.id)).toEqual([admin.id, alice.id]);
    expect(Object.keys(answer.body.data[0]!).sort()).toEqual(['created_at', 'device_quota', 'disabled', 'email', 'id', 'role', 'username']);
  });

  it('answers 403 to anyone but an admin, and 401 without credentials; nothing changes', async () => {
    for (const token of [alice.token, alice.apiKey]) {
      expectError(await api.get('/api/users', { token }), 403, 'forbidden');
      expectError(await patch(bob.id, { device_quota: 0 }, token), 403, 'forbidden');
      expectError(await patch(alice.id, { role: 'admin' }, token), 403, 'forbidden');
    }
    expectError(await api.get('/api/users'), 401, 'unauthenticated');
    expect((await api.get<Data<User>>('/api/auth/user', { token: alice.token })).body.data.role).toBe('user');
  });

  it('sets a quota that registration then honours', async () => {
    const answer = await patch(bob.id, { device_quota: 1 }, admin.token);
    expect(answer.status).toBe(200);
    expect(answer.body.data).toMatchObject({ id: bob.id, device_quota: 1, disabled: false });
    await createDevice(api, bob.token);
    expectError(await api.post('/api/devices', { name: 'two', type: 'sensor' }, { token: bob.token }), 403, 'quota_exceeded');
  });

  it('refuses bad bodies (400) and unknown users (404)', async () => {
    expectValidation(await patch(bob.id, {}, admin.token), 'device_quota');
    expectValidation(await patch(bob.id, { device_quota: -1 }, admin.token), 'device_quota');
    expectValidation(await patch(bob.id, { role: 'root' }, admin.token), 'role');
    expectValidation(await patch(bob.id, { disabled: 'yes' }, admin.token), 'disabled');
    expectError(await patch(bob.id, { username: 'mallory' }, admin.token), 400, 'validation_failed');
    expectError(await patch('00000000-0000-4000-8000-000000000000', { disabled: true }, admin.token), 404, 'not_found');
  });

  it("disabling stops the user's sessions, keys and sockets at once; enabling lets them back", async () => {
    const socket = await connect(wsUrl(server.url, `/ws?token=${alice.apiKey}`));
    await socket.next((m) => m.type === 'welcome');
    expect((await patch(alice.id, { disabled: true }, admin.token)).body.data.disabled).toBe(true);
    expect((await socket.waitForClose()).code).toBe(4401);
    expectError(await api.get('/api/auth/user', { token: alice.token }), 401, 'unauthenticated');
    expectError(await api.get('/api/auth/user', { token: alice.apiKey }), 401, 'unauthenticated');
    expectError(await api.post('/api/auth/login', { username: alice.username, password: 'correct horse' }), 401, 'invalid_credentials');
    await patch(alice.id, { disabled: false }, admin.token);
    expect((await api.get('/api/auth/user', { token: alice.apiKey })).status).toBe(200);
  });

  it('promotes and demotes; the last admin can be neither demoted nor disabled (409)', async () => {
    expectError(await patch(admin.id, { role: 'user' }, admin.token), 409, 'conflict');
    expectError(await patch(admin.id, { disabled: true }, admin.token), 409, 'conflict');
    expect((await patch(bob.id, { role: 'admin' }, admin.token)).body.data.role).toBe('admin');
    expect((await api.get('/api/users', { token: bob.token })).status).toBe(200);
    expect((await patch(admin.id, { role: 'user' }, bob.token)).body.data.role).toBe('user');
    expectError(await api.get('/api/users', { token: admin.token }), 403, 'forbidden');
    expectError(await patch(bob.id, { role: 'user' }, bob.token), 409, 'conflict');
    const events = (await api.get<Data<Array<{ type: string }>>>('/api/events?limit=500&type=user.role_changed,user.quota_set,user.disabled,user.enabled', { token: bob.token })).body.data;
    expect(events.map((e) => e.type)).toEqual(['user.quota_set', 'user.disabled', 'user.enabled', 'user.role_changed', 'user.role_changed']);
  });

  it('documents the routes of this area in /api/openapi.json, with their schemas', async () => {
    const doc = (await api.get('/api/openapi.json')).body as { paths: Record<string, Record<string, { requestBody?: unknown; responses: Record<string, unknown> }>>; components: { schemas: Record<string, unknown> } };
    const expected: Array<[string, string]> = [
      ['/api/users', 'get'],
      ['/api/users/{id}', 'patch'],
      ['/api/users/{id}', 'delete'],
      ['/api/auth/user', 'delete'],
      ['/api/auth/keys', 'get'],
      ['/api/auth/keys', 'post'],
      ['/api/auth/keys/{id}', 'delete'],
      ['/api/auth/keys/{id}/rotate', 'post'],
      ['/api/groups/{id}/members', 'get'],
      ['/api/groups/{id}/members', 'post'],
      ['/api/groups/{id}/members/{user_id}', 'delete'],
    ];
    for (const [path, method] of expected) expect(doc.paths[path]?.[method], `${method} ${path}`).toBeDefined();
    // Request bodies are named schemas: follow the reference.
    const schemaOf = (body: unknown) => {
      const ref = (body as { content: { 'application/json': { schema: { $ref: string } } } }).content['application/json'].schema.$ref;
      return JSON.stringify(doc.components.schemas[ref.split('/').at(-1)!]);
    };
    expect(schemaOf(doc.paths['/api/auth/keys']!.post!.requestBody)).toContain('devices:ingest');
    expect(schemaOf(doc.paths['/api/users/{id}']!.patch!.requestBody)).toContain('device_quota');
  });
});
