import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSecret } from '../../src/commands/credentials.js';
import { streams } from '../../src/domain/events.js';
import { verifyExport } from '../../src/eventlog/export-verifier.js';
import { client, registerUser } from '../helpers/client.js';
import { createDevice, createGroup, uniqueMac, type Data } from '../helpers/fixtures.js';
import { recording, secretShapes, secretShapesInText } from '../helpers/secret-scan.js';
import { replayDiffers } from '../helpers/replay.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { connect, wsUrl } from '../helpers/ws-client.js';

const PASSWORD = 'correct horse';

describe('secrets sealed in the log, never served', () => {
  let server: TestServer;
  const api = recording(client(() => server.url));
  const exportText = async (token: string) => (await fetch(`${server.url}/api/events/export`, { headers: { authorization: `Bearer ${token}` } })).text();

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  it('no answer of a whole flow, no export line and no /ws event holds a bcrypt hash or a credential digest', async () => {
    const admin = await registerUser(api);
    const alice = await registerUser(api);
    await api.post('/api/auth/login', { username: alice.username, password: PASSWORD });
    const group = await createGroup(api, alice.token);
    const generated = await createDevice(api, alice.token, { group_id: group.id });
    const chosen = await createDevice(api, alice.apiKey, { auth_token: 'a-weak-but-long-token-1' });
    const mac = uniqueMac();
    await api.post('/api/devices/provision', { mac_address: mac }, { token: alice.token });
    const again = await api.post('/api/devices/provision', { mac_address: mac }, { token: alice.token });
    await api.post(`/api/devices/${generated.id}/data`, { sensor_readings: { temperature: 21 } }, { token: generated.credentials.auth_token });
    await api.post(`/api/devices/${chosen.id}/heartbeat`, {}, { token: 'a-weak-but-long-token-1' });
    await api.post(`/api/devices/${generated.id}/commands`, { command_type: 'reboot' }, { token: alice.token });
    await api.put(`/api/devices/${generated.id}`, { name: 'renamed' }, { token: alice.token });
    const key = await api.post('/api/auth/keys', { name: 'ci', scope: 'read', expires_in: 3600 }, { token: alice.token });
    await api.post(`/api/auth/keys/${(key.body as Data<{ id: string }>).data.id}/rotate`, { grace_seconds: 60 }, { token: alice.token });
    const bob = await registerUser(api);
    await api.post(`/api/groups/${group.id}/members`, { user_id: bob.id, role: 'viewer' }, { token: alice.token });
    await api.get(`/api/groups/${group.id}/members`, { token: bob.token });
    await api.get(`/api/devices/${generated.id}`, { token: bob.token });
    await api.post(`/api/devices/${chosen.id}/transfer`, { user_id: bob.id }, { token: alice.token });
    await api.post(`/api/devices/${chosen.id}/transfer/accept`, undefined, { token: bob.token });
    await api.call('PATCH', `/api/users/${bob.id}`, { device_quota: 5 }, { token: admin.token });
    for (const who of [admin, alice, bob]) {
      await api.get('/api/auth/keys', { token: who.token });
      await api.get('/api/alerts', { token: who.token });
      await api.get('/api/groups', { token: who.token });
      await api.get('/api/auth/user', { token: who.token });
      await api.get('/api/events?limit=500', { token: who.token });
      await api.get(`/api/devices/${generated.id}/history?limit=500`, { token: who.token });
      await api.get('/api/devices', { token: who.token });
    }
    await api.get('/api/users', { token: admin.token });
    await api.call('DELETE', '/api/auth/user', { password: PASSWORD }, { token: bob.token });
    await api.get('/api/events?limit=500', { token: admin.token });
    expect(api.answers.filter(({ answer }) => answer.status >= 400).map(({ request, answer }) => `${request} ${answer.status}`)).toEqual([]);
    const problems = api.answers.flatMap(({ request, answer }) =>
      (typeof answer.body === 'string' ? secretShapesInText(answer.body) : secretShapes(answer.body)).map((p) => `${request} ${p}`),
    );
    expect(problems).toEqual([]);

    const exported = await exportText(admin.token);
    expect(secretShapesInText(exported)).toEqual([]);
    expect(verifyExport(exported.split('\n'))).toMatchObject({ ok: true, complete_chain: true, redacted: 0 });

    const ws = await connect(wsUrl(server.url, `/ws?token=${encodeURIComponent(admin.token)}`));
    ws.send({ type: 'subscribe', from_position: 0 });
    const head = server.server.services.log.headPosition();
    await ws.until((received) => received.some((m) => m.type === 'event' && m.position === head));
    expect(secretShapes(ws.received)).toEqual([]);
    await ws.close();

    // The digests a read model finds credentials by are keyed: not the plain SHA-256 of the token.
    const tokens = [generated.credentials.auth_token, 'a-weak-but-long-token-1', (again.body as Data<{ credentials: { auth_token: string } }>).data.credentials.auth_token, alice.apiKey];
    const everything = `${exported}\n${JSON.stringify(server.server.db.prepare('SELECT * FROM devices').all())}${JSON.stringify(server.server.db.prepare('SELECT * FROM users').all())}`;
    for (const token of tokens) expect(everything).not.toContain(hashSecret(token));
  });

  it('the stored bytes of every event hold secret fields only sealed', () => {
    const rows = server.server.db.prepare<[], { data: string }>(`SELECT data FROM events WHERE type IN ('user.registered', 'device.registered', 'device.token_rotated')`).all();
    expect(rows.length).toBeGreaterThan(3);
    for (const { data } of rows) {
      const parsed = JSON.parse(data) as Record<string, string>;
      for (const field of ['password_hash', 'api_key_hash', 'token_hash'].filter((f) => f in parsed)) expect(parsed[field]).toMatch(/^sealed:v1:[A-Za-z0-9_-]+$/);
      expect(secretShapes(parsed)).toEqual([]);
    }
  });

  it('a replay opens the sealed fields and rebuilds every read model exactly', async () => {
    expect(await replayDiffers(server)).toEqual([]);
  });
});

describe('a log written before sealing', () => {
  let server: TestServer;
  const api = client(() => server.url);
  const legacyUser = 'f0000000-0000-4000-8000-000000000001';
  const legacyDevice = 'f0000000-0000-4000-8000-000000000002';
  const legacyKey = 'iotk_legacy-key-0000000000000000000000000000000000';
  const legacyToken = 'an-owner-chosen-legacy-token';

  beforeAll(async () => {
    server = await startTestServer();
    const { services } = server.server;
    // Events as the server wrote them before: plain bcrypt and plain SHA-256 digests.
    await services.log.append([
      {
        streamId: streams.user(legacyUser),
        expectedVersion: 'no_stream',
        events: [{ type: 'user.registered', data: { user_id: legacyUser, username: 'old_timer', email: 'old@example.com', role: 'admin', password_hash: await bcrypt.hash(PASSWORD, 4), api_key_hash: hashSecret(legacyKey), device_quota: 10 } }],
      },
      {
        streamId: streams.device(legacyDevice),
        expectedVersion: 'no_stream',
        events: [
          {
            type: 'device.registered',
            data: { device_id: legacyDevice, user_id: legacyUser, token_hash: hashSecret(legacyToken), name: 'old', device_type: 'sensor', description: null, ip_address: null, mac_address: null, group_id: null, configuration: {}, firmware_version: null },
          },
        ],
      },
    ]);
    await services.runner.waitFor(services.log.headPosition());
  });
  afterAll(() => server.close());

  it('keeps its credentials working: the password logs in, the API key and the device token authenticate', async () => {
    const login = await api.post('/api/auth/login', { username: 'old_timer', password: PASSWORD });
    expect(login.status).toBe(200);
    expect((await api.get('/api/auth/user', { token: legacyKey })).status).toBe(200);
    expect((await api.post(`/api/devices/${legacyDevice}/heartbeat`, {}, { token: legacyToken })).status).toBe(200);
    expect((await api.post(`/api/devices/${legacyDevice}/heartbeat`, {}, { token: 'an-owner-chosen-legacy-tokeX' })).status).toBe(401);
  });

  it('serves its plain hashes redacted, and its export verifies, naming the redacted events', async () => {
    const events = await api.get('/api/events?limit=500', { token: legacyKey });
    expect(secretShapes(events.body)).toEqual([]);
    const registered = (events.body as Data<Array<{ type: string; data: Record<string, unknown>; redacted?: string[] }>>).data.find((e) => e.type === 'user.registered')!;
    expect(registered.data.password_hash).toBe('[redacted]');
    expect(registered.redacted).toEqual(['password_hash', 'api_key_hash']);
    const exported = await (await fetch(`${server.url}/api/events/export`, { headers: { 'x-api-key': legacyKey } })).text();
    expect(secretShapesInText(exported)).toEqual([]);
    expect(verifyExport(exported.split('\n'))).toMatchObject({ ok: true, complete_chain: true, redacted: 2 });
  });

  it('erasing a user of that log redacts the names stored plain in every answer; the export still verifies', async () => {
    const heir = await registerUser(api, 'heir.admin');
    expect((await api.call('PATCH', `/api/users/${heir.id}`, { role: 'admin' }, { token: legacyKey })).status).toBe(200);
    expect((await api.del(`/api/users/${legacyUser}`, { token: heir.token })).status).toBe(200);
    const exported = await (await fetch(`${server.url}/api/events/export`, { headers: { authorization: `Bearer ${heir.token}` } })).text();
    const events = JSON.stringify((await api.get('/api/events?limit=500', { token: heir.token })).body);
    const users = JSON.stringify((await api.get('/api/users', { token: heir.token })).body);
    for (const text of [exported, events, users]) {
      expect(text).not.toContain('old_timer');
      expect(text).not.toContain('old@example.com');
    }
    expect(verifyExport(exported.split('\n'))).toMatchObject({ ok: true, complete_chain: true, redacted: 2 });
  });

  it('replays to the same read models', async () => {
    expect(await replayDiffers(server)).toEqual([]);
  });
});
