import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { streams } from '../../src/domain/events.js';
import { verifyExport } from '../../src/eventlog/export-verifier.js';
import { client, registerUser } from '../helpers/client.js';
import { createDevice, expectError, expectValidation, type Data } from '../helpers/fixtures.js';
import { replayDiffers } from '../helpers/replay.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { connect, wsUrl } from '../helpers/ws-client.js';

const PASSWORD = 'correct horse';

describe('erasure by crypto-shredding', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let admin: Awaited<ReturnType<typeof registerUser>>;
  const exportText = async () => (await fetch(`${server.url}/api/events/export`, { headers: { authorization: `Bearer ${admin.token}` } })).text();
  const personalOf = (user: { username: string }) => [user.username, `${user.username}@example.com`];

  beforeAll(async () => {
    server = await startTestServer();
    admin = await registerUser(api, `root.${Date.now() % 1000}`);
  });
  afterAll(() => server.close());

  it('a user erases themselves with their password: devices decommissioned, sessions, keys and sockets end, personal data unreadable everywhere', async () => {
    const carol = await registerUser(api, `carol.${Date.now() % 1000}`);
    const device = await createDevice(api, carol.token);
    await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { t: 1 } }, { token: device.credentials.auth_token });
    const socket = await connect(wsUrl(server.url, `/ws?token=${carol.apiKey}`));
    await socket.next((m) => m.type === 'welcome');
    expectError(await api.call('DELETE', '/api/auth/user', { password: 'wrong password' }, { token: carol.token }), 401, 'invalid_credentials');
    expectValidation(await api.call('DELETE', '/api/auth/user', {}, { token: carol.token }), 'password');
    expect((await api.get('/api/auth/user', { token: carol.token })).status).toBe(200);

    const answer = await api.call<Data<{ id: string; erased: boolean }>>('DELETE', '/api/auth/user', { password: PASSWORD }, { token: carol.token });
    expect(answer.status).toBe(200);
    expect(answer.body.data).toEqual({ id: carol.id, erased: true });
    expect((await socket.waitForClose()).code).toBe(4401);
    for (const token of [carol.token, carol.apiKey]) expectError(await api.get('/api/auth/user', { token }), 401, 'unauthenticated');
    expectError(await api.post('/api/auth/login', { username: carol.username, password: PASSWORD }), 401, 'invalid_credentials');
    expectError(await api.post(`/api/devices/${device.id}/heartbeat`, {}, { token: device.credentials.auth_token }), 401, 'unauthenticated');
    expectError(await api.get(`/api/devices/${device.id}`, { token: admin.token }), 404, 'not_found');

    const exported = await exportText();
    const users = JSON.stringify((await api.get('/api/users?limit=500', { token: admin.token })).body);
    const events = JSON.stringify((await api.get('/api/events?limit=500', { token: admin.token })).body);
    const readModels = JSON.stringify(server.server.db.prepare('SELECT * FROM users').all());
    for (const text of [exported, users, events, readModels]) for (const personal of personalOf(carol)) expect(text).not.toContain(personal);
    expect(verifyExport(exported.split('\n'))).toMatchObject({ ok: true, complete_chain: true, redacted: 0 });
    expect(((await api.get('/api/events/verify', { token: admin.token })).body as Data<{ ok: boolean }>).data.ok).toBe(true);

    const erasure = exported.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { type: string; stream_id: string; data: Record<string, unknown> }).filter((e) => e.stream_id === streams.user(carol.id));
    expect(erasure.map((e) => e.type).slice(-3)).toEqual(['session.ended', 'api_key.revoked', 'user.erased']);
    expect(erasure.at(-1)!.data).toEqual({ user_id: carol.id });
    // The device's history stays in the log, countable.
    const history = await api.get<Data<unknown[]> & { meta: { total: number } }>(`/api/events?device_id=${device.id}&limit=500`, { token: admin.token });
    expect(history.body.meta.total).toBeGreaterThanOrEqual(3);
  });

  it("an admin erases a user; the user's name is free again; the last admin cannot be erased; others get 403, unknown or erased ids 404", async () => {
    const dave = await registerUser(api, `dave.${Date.now() % 1000}`);
    const eve = await registerUser(api, `eve.${Date.now() % 1000}`);
    expectError(await api.del(`/api/users/${dave.id}`, { token: eve.token }), 403, 'forbidden');
    expectError(await api.del(`/api/users/${admin.id}`, { token: admin.token }), 409, 'conflict');
    expect((await api.del(`/api/users/${dave.id}`, { token: admin.token })).status).toBe(200);
    expectError(await api.del(`/api/users/${dave.id}`, { token: admin.token }), 404, 'not_found');
    expectError(await api.call('PATCH', `/api/users/${dave.id}`, { disabled: false }, { token: admin.token }), 404, 'not_found');
    expectError(await api.del('/api/users/00000000-0000-4000-8000-000000000000', { token: admin.token }), 404, 'not_found');
    const listed = (await api.get<Data<Array<{ id: string; username: string; email: string; disabled: boolean }>>>('/api/users?limit=500', { token: admin.token })).body.data.find((u) => u.id === dave.id);
    expect(listed).toMatchObject({ username: '[erased]', email: '[erased]', disabled: true });
    const again = await api.post('/api/auth/register', { username: dave.username, email: `${dave.username}@example.com`, password: PASSWORD });
    expect(again.status).toBe(201);
  });

  it('a replay without the destroyed keys rebuilds exactly the live read models', async () => {
    expect(await replayDiffers(server)).toEqual([]);
  });
});
