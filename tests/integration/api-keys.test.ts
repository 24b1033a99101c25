import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import { createDevice, expectError, expectValidation, type Data } from '../helpers/fixtures.js';
import { secretShapes } from '../helpers/secret-scan.js';
import { replayDiffers } from '../helpers/replay.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { UpgradeRefused, connect, wsUrl } from '../helpers/ws-client.js';

interface ApiKey {
  id: string;
  name: string;
  scope: string;
  status: 'active' | 'expired' | 'revoked';
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
  replaced_by: string | null;
  api_key?: string;
}

const KEY_FIELDS = ['created_at', 'expires_at', 'id', 'last_used_at', 'name', 'replaced_by', 'revoked_at', 'scope', 'status'];

describe('API keys with a lifecycle', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let admin: Awaited<ReturnType<typeof registerUser>>;
  let alice: Awaited<ReturnType<typeof registerUser>>;
  let bob: Awaited<ReturnType<typeof registerUser>>;

  const keys = async (token: string) => (await api.get<Data<ApiKey[]>>('/api/auth/keys', { token })).body.data;
  const makeKey = async (token: string, body: Record<string, unknown>) => {
    const answer = await api.post<Data<ApiKey>>('/api/auth/keys', body, { token });
    expect(answer.status).toBe(201);
    expect(answer.headers.get('cache-control')).toBe('no-store');
    return answer.body.data as ApiKey & { api_key: string };
  };
  const whoAmI = (token: string) => api.get('/api/auth/user', { token });

  beforeAll(async () => {
    server = await startTestServer();
    admin = await registerUser(api);
    alice = await registerUser(api);
    bob = await registerUser(api);
  });
  afterAll(() => server.close());

  it('the key made at registration is the first key: listed without its secret', async () => {
    const listed = await keys(alice.token);
    expect(listed).toHaveLength(1);
    expect(Object.keys(listed[0]!).sort()).toEqual(KEY_FIELDS);
    expect(listed[0]).toMatchObject({ name: 'default', scope: 'write', status: 'active', expires_at: null, revoked_at: null });
    expect(JSON.stringify(listed)).not.toContain(alice.apiKey);
    expect(secretShapes(listed)).toEqual([]);
  });

  it('makes several named keys, each shown once; each works and records its last use', async () => {
    const first = await makeKey(alice.token, { name: 'ci', scope: 'write' });
    const second = await makeKey(alice.token, { name: 'dashboard', scope: 'read', expires_in: 3600 });
    expect(first.api_key).toMatch(/^iotk_/);
    expect(second.expires_at).toBe(new Date(server.clock.now().getTime() + 3600_000).toISOString());
    expect(first.last_used_at).toBeNull();
    expect((await whoAmI(first.api_key)).body.data.id).toBe(alice.id);
    expect((await whoAmI(second.api_key)).body.data.id).toBe(alice.id);
    const listed = await keys(alice.token);
    expect(listed.map((k) => k.name)).toEqual(['default', 'ci', 'dashboard']);
    expect(listed.every((k) => k.api_key === undefined)).toBe(true);
    expect(listed.find((k) => k.id === first.id)!.last_used_at).toBe(server.clock.now().toISOString());
  });

  it('refuses bad bodies with 400 and stores nothing', async () => {
    const before = (await keys(alice.token)).length;
    expectValidation(await api.post('/api/auth/keys', {}, { token: alice.token }), 'name');
    expectValidation(await api.post('/api/auth/keys', { name: 'x', scope: 'admin' }, { token: alice.token }), 'scope');
    expectValidation(await api.post('/api/auth/keys', { name: 'x', expires_in: -5 }, { token: alice.token }), 'expires_in');
    expectValidation(await api.post('/api/auth/keys', { name: 'x', expires_in: '60' }, { token: alice.token }), 'expires_in');
    expectValidation(await api.post('/api/auth/keys', { name: 'x'.repeat(101) }, { token: alice.token }), 'name');
    expectError(await api.post('/api/auth/keys', { name: 'x', user_id: bob.id }, { token: alice.token }), 400, 'validation_failed');
    expectError(await api.post('/api/auth/keys', { name: 'x' }), 401, 'unauthenticated');
    expect((await keys(alice.token)).length).toBe(before);
  });

  it('enforces scopes: a read key cannot write (403), an ingest key only submits device data', async () => {
    const reader = await makeKey(alice.token, { name: 'reader', scope: 'read' });
    const ingest = await makeKey(alice.token, { name: 'ingest', scope: 'devices:ingest' });
    const device = await createDevice(api, alice.token);
    expect((await api.get('/api/devices', { token: reader.api_key })).status).toBe(200);
    expectError(await api.post('/api/devices', { name: 'd', type: 'sensor' }, { token: reader.api_key }), 403, 'forbidden');
    expectError(await api.post('/api/auth/keys', { name: 'escalate' }, { token: reader.api_key }), 403, 'forbidden');
    expectError(await api.del(`/api/devices/${device.id}`, { token: reader.api_key }), 403, 'forbidden');
    expect((await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { t: 1 } }, { token: ingest.api_key })).status).toBe(201);
    expectError(await api.get('/api/devices', { token: ingest.api_key }), 403, 'forbidden');
    expectError(await api.post('/api/auth/keys', { name: 'escalate' }, { token: ingest.api_key }), 403, 'forbidden');
    const refused = await connect(wsUrl(server.url, `/ws?token=${ingest.api_key}`)).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(UpgradeRefused);
    expect((refused as UpgradeRefused).status).toBe(403);
  });

  it('an expired key stops working and is listed as expired', async () => {
    const short = await makeKey(bob.token, { name: 'short', expires_in: 60 });
    expect((await whoAmI(short.api_key)).status).toBe(200);
    server.clock.advance(61_000);
    expectError(await whoAmI(short.api_key), 401, 'unauthenticated');
    expect((await keys(bob.token)).find((k) => k.id === short.id)!.status).toBe('expired');
  });

  it('revocation takes effect at once, on REST and on open sockets', async () => {
    const doomed = await makeKey(bob.token, { name: 'doomed' });
    const socket = await connect(wsUrl(server.url, `/ws?token=${doomed.api_key}`));
    await socket.next((m) => m.type === 'welcome');
    const answer = await api.del<Data<{ id: string; revoked: boolean }>>(`/api/auth/keys/${doomed.id}`, { token: bob.token });
    expect(answer.status).toBe(200);
    expect(answer.body.data).toEqual({ id: doomed.id, revoked: true });
    expect((await socket.waitForClose()).code).toBe(4401);
    expectError(await whoAmI(doomed.api_key), 401, 'unauthenticated');
    expect((await keys(bob.token)).find((k) => k.id === doomed.id)).toMatchObject({ status: 'revoked', revoked_at: server.clock.now().toISOString() });
    expectError(await api.del(`/api/auth/keys/${doomed.id}`, { token: bob.token }), 409, 'conflict');
  });

  it("another user's key id, or an unknown one, answers 404 to everyone (admins too) and changes nothing", async () => {
    const bobs = (await keys(bob.token))[0]!;
    for (const token of [alice.token, admin.token]) {
      expectError(await api.del(`/api/auth/keys/${bobs.id}`, { token }), 404, 'not_found');
      expectError(await api.post(`/api/auth/keys/${bobs.id}/rotate`, {}, { token }), 404, 'not_found');
    }
    expectError(await api.del('/api/auth/keys/00000000-0000-4000-8000-000000000000', { token: bob.token }), 404, 'not_found');
    expectError(await api.del('/api/auth/keys/not-a-uuid', { token: bob.token }), 404, 'not_found');
    expect((await whoAmI(bob.apiKey)).status).toBe(200);
    expect((await keys(alice.token)).some((k) => k.id === bobs.id)).toBe(false);
  });

  it('rotation hands out a new key; the old one works through the grace the caller chose, then stops', async () => {
    const old = await makeKey(alice.token, { name: 'rotating', scope: 'read' });
    const rotated = await api.post<Data<ApiKey>>(`/api/auth/keys/${old.id}/rotate`, { grace_seconds: 300 }, { token: alice.token });
    expect(rotated.status).toBe(201);
    expect(rotated.headers.get('cache-control')).toBe('no-store');
    const fresh = rotated.body.data as ApiKey & { api_key: string };
    expect(fresh).toMatchObject({ name: 'rotating', scope: 'read', status: 'active' });
    expect(fresh.api_key).not.toBe(old.api_key);
    expect((await whoAmI(old.api_key)).status).toBe(200);
    expect((await keys(alice.token)).find((k) => k.id === old.id)).toMatchObject({ replaced_by: fresh.id, expires_at: new Date(server.clock.now().getTime() + 300_000).toISOString() });
    server.clock.advance(301_000);
    expectError(await whoAmI(old.api_key), 401, 'unauthenticated');
    expect((await whoAmI(fresh.api_key)).status).toBe(200);
    expectError(await api.post(`/api/auth/keys/${old.id}/rotate`, {}, { token: alice.token }), 409, 'conflict');
    const now = await api.post<Data<ApiKey>>(`/api/auth/keys/${fresh.id}/rotate`, { grace_seconds: 0 }, { token: alice.token });
    expect(now.status).toBe(201);
    expectError(await whoAmI(fresh.api_key), 401, 'unauthenticated');
    expectValidation(await api.post(`/api/auth/keys/${now.body.data.id}/rotate`, { grace_seconds: -1 }, { token: alice.token }), 'grace_seconds');
  });

  it('records each step as an event with the key digest sealed, and a replay rebuilds the keys', async () => {
    const events = (await api.get<Data<Array<{ type: string; data: Record<string, unknown> }>>>('/api/events?limit=500&type=api_key.created,api_key.revoked,api_key.rotated', { token: alice.token })).body.data;
    expect(new Set(events.map((e) => e.type))).toEqual(new Set(['api_key.created', 'api_key.rotated']));
    for (const event of events.filter((e) => e.type === 'api_key.created')) expect(event.data.key_hash).toMatch(/^sealed:v1:/);
    expect(await replayDiffers(server)).toEqual([]);
  });
});
