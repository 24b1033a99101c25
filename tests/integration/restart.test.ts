import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { startServer } from '../../src/server.js';
import { client, registerUser } from '../helpers/client.js';
import {
  createDevice,
  createGroup,
  expectError,
  headPosition,
  restartFromDisk,
  uniqueMac,
  uniqueName,
  type Data,
  type Device,
  type Group,
  type List,
  type RegisteredDevice,
  type StoredEvent,
} from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

type Account = Awaited<ReturnType<typeof registerUser>>;
type Me = { id: string; role: string; device_count: number };

const PASSWORD = 'correct horse';

describe('restart', () => {
  let server: TestServer;
  const api = client(() => server.url);

  let admin: Account;
  let owner: Account;
  let other: Account;
  /** A second, still open session of owner, from login. */
  let loginToken: string;
  /** A session of owner that was logged out before the restart. */
  let loggedOut: string;
  let parent: Group;
  let child: Group;
  let device: RegisteredDevice;
  let loose: RegisteredDevice;
  let othersDevice: RegisteredDevice;
  let mac: string;
  let positionBefore: number;
  let deviceBefore: Device;
  let etagBefore: string | null;
  let historyBefore: StoredEvent[];
  let treeBefore: Group[];

  const me = (headers: Record<string, string>) => api.get<Data<Me>>('/api/auth/user', { headers });
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  beforeAll(async () => {
    server = await startTestServer();
    admin = await registerUser(api, uniqueName('radmin'));
    owner = await registerUser(api, uniqueName('owner'));
    other = await registerUser(api, uniqueName('other'));

    const login = await api.post<Data<{ token: string }>>('/api/auth/login', { username: owner.username, password: PASSWORD });
    expect(login.status).toBe(200);
    loginToken = login.body.data.token;
    const doomed = await api.post<Data<{ token: string }>>('/api/auth/login', { username: owner.username, password: PASSWORD });
    loggedOut = doomed.body.data.token;
    expect((await api.post('/api/auth/logout', undefined, { token: loggedOut })).status).toBe(200);

    parent = await createGroup(api, owner.token, { name: 'Building' });
    child = await createGroup(api, owner.token, { name: 'Basement', parent_id: parent.id });
    mac = uniqueMac();
    device = await createDevice(api, owner.token, { name: 'Boiler', mac_address: mac, group_id: child.id, configuration: { target: 60 } });
    server.clock.advance(60_000);
    expect((await api.put(`/api/devices/${device.id}`, { description: 'gas boiler' }, { token: owner.token })).status).toBe(200);
    loose = await createDevice(api, owner.token, { name: 'Loose', auth_token: 'a-chosen-token-of-enough-length' });
    othersDevice = await createDevice(api, other.token, { name: 'Neighbour' });

    positionBefore = await headPosition(api);
    const detail = await api.get<Data<Device>>(`/api/devices/${device.id}`, { token: owner.token });
    deviceBefore = detail.body.data;
    etagBefore = detail.headers.get('etag');
    historyBefore = (await api.get<List<StoredEvent>>(`/api/devices/${device.id}/history`, { token: owner.token })).body.data;
    treeBefore = (await api.get<List<Group>>('/api/groups?tree=true', { token: owner.token })).body.data;
    expectError(await me(bearer(loggedOut)), 401, 'unauthenticated');

    await server.restart();
  });
  afterAll(() => server.close());

  it('keeps the event log: same head position, same history', async () => {
    expect(await headPosition(api)).toBe(positionBefore);
    const history = await api.get<List<StoredEvent>>(`/api/devices/${device.id}/history`, { token: owner.token });
    expect(history.status).toBe(200);
    expect(history.body.data).toEqual(historyBefore);
  });

  it('keeps every user, with role and device count', async () => {
    const a = await me(bearer(admin.token));
    expect(a.status).toBe(200);
    expect(a.body.data).toMatchObject({ id: admin.id, role: 'admin' });
    const o = await me(bearer(owner.token));
    expect(o.body.data).toMatchObject({ id: owner.id, role: 'user', device_count: 2 });
    const n = await me(bearer(other.token));
    expect(n.body.data).toMatchObject({ id: other.id, role: 'user', device_count: 1 });
  });

  it('keeps every open session, API key and cookie working with the same tokens', async () => {
    expect((await me(bearer(owner.token))).body.data.id).toBe(owner.id);
    expect((await me(bearer(loginToken))).body.data.id).toBe(owner.id);
    expect((await me({ 'x-api-key': owner.apiKey })).body.data.id).toBe(owner.id);
    expect((await me({ cookie: `session=${loginToken}` })).body.data.id).toBe(owner.id);
  });

  it('still refuses the session logged out before the restart', async () => {
    expectError(await me(bearer(loggedOut)), 401, 'unauthenticated');
    expectError(await me({ cookie: `session=${loggedOut}` }), 401, 'unauthenticated');
  });

  it('still logs in with the stored password and refuses a wrong one', async () => {
    const login = await api.post<Data<{ token: string }>>('/api/auth/login', { username: owner.username, password: PASSWORD });
    expect(login.status).toBe(200);
    expect((await me(bearer(login.body.data.token))).status).toBe(200);
    expectError(await api.post('/api/auth/login', { email: `${owner.username}@example.com`, password: 'not the password' }), 401, 'invalid_credentials');
  });

  it('keeps devices as they were, with the same ETag, and their tokens working', async () => {
    const detail = await api.get<Data<Device>>(`/api/devices/${device.id}`, { token: owner.token });
    expect(detail.status).toBe(200);
    expect(detail.headers.get('etag')).toBe(etagBefore);
    const { recent_data: _d, recent_commands: _c, metrics: _m, ...now } = detail.body.data as Device & Record<string, unknown>;
    const { recent_data: _d2, recent_commands: _c2, metrics: _m2, ...then } = deviceBefore as Device & Record<string, unknown>;
    expect(now).toEqual(then);
    expect(now).toMatchObject({ name: 'Boiler', description: 'gas boiler', group_id: child.id, mac_address: mac, configuration: { target: 60 }, version: 2 });

    const viaGenerated = await api.get<Data<Device>>(`/api/devices/${device.id}`, { token: device.credentials.auth_token });
    expect(viaGenerated.status).toBe(200);
    const viaChosen = await api.get<Data<Device>>(`/api/devices/${loose.id}`, { headers: { 'x-device-token': 'a-chosen-token-of-enough-length' } });
    expect(viaChosen.status).toBe(200);
    expectError(await api.get(`/api/devices/${device.id}`, { token: loose.credentials.auth_token }), 403, 'forbidden');
  });

  it('keeps ownership rules and the admin view', async () => {
    expectError(await api.get(`/api/devices/${othersDevice.id}`, { token: owner.token }), 404, 'not_found');
    const all = await api.get<List<Device>>('/api/devices?limit=500', { token: admin.token });
    expect(all.body.data.map((d) => d.id)).toEqual(expect.arrayContaining([device.id, loose.id, othersDevice.id]));
    const mine = await api.get<List<Device>>('/api/devices', { token: owner.token });
    expect(mine.body.data.map((d) => d.id)).toEqual([device.id, loose.id]);
  });

  it('keeps groups, their tree and counts', async () => {
    const tree = await api.get<List<Group>>('/api/groups?tree=true', { token: owner.token });
    expect(tree.status).toBe(200);
    expect(tree.body.data).toEqual(treeBefore);
    const top = await api.get<Data<Group>>(`/api/groups/${parent.id}`, { token: owner.token });
    expect(top.body.data).toMatchObject({ name: 'Building', device_count: 0, total_device_count: 1 });
    expectError(await api.get(`/api/groups/${parent.id}`, { token: other.token }), 404, 'not_found');
  });

  it('keeps uniqueness: username, email, MAC and group name', async () => {
    expectError(
      await api.post('/api/auth/register', { username: owner.username.toUpperCase(), email: 'fresh@example.com', password: PASSWORD }),
      409,
      'already_exists',
    );
    expectError(await api.post('/api/devices', { name: 'clone', type: 'sensor', mac_address: mac }, { token: other.token }), 409, 'already_exists');
    expectError(await api.post('/api/groups', { name: 'building' }, { token: owner.token }), 409, 'already_exists');
    // A new user after the restart is still not admin.
    const late = await registerUser(api, uniqueName('late'));
    expect((await me(bearer(late.token))).body.data.role).toBe('user');
  });

  it('continues streams: If-Match with the pre-restart ETag, then versions go on', async () => {
    const updated = await api.put<Data<Device>>(`/api/devices/${device.id}`, { name: 'Boiler 2' }, { token: owner.token, headers: { 'if-match': etagBefore! } });
    expect(updated.status, JSON.stringify(updated.body)).toBe(200);
    expect(updated.body.data.version).toBe(3);
    expect(await headPosition(api)).toBeGreaterThan(positionBefore);
    const history = await api.get<List<StoredEvent>>(`/api/devices/${device.id}/history`, { token: owner.token });
    expect(history.body.data.map((e) => e.version)).toEqual([1, 2, 3]);
  });

  it('keeps the generated JWT secret in DATA_DIR, readable only by its owner', () => {
    const file = join(server.dataDir, 'jwt-secret');
    expect(existsSync(file)).toBe(true);
    const secret = readFileSync(file, 'utf8').trim();
    expect(secret.length).toBeGreaterThanOrEqual(32);
    expect(statSync(file).mode & 0o077).toBe(0);
    // A fresh configuration of the same DATA_DIR (a new process) reads the same secret.
    expect(loadConfig({ DATA_DIR: server.dataDir }).jwtSecret).toBe(secret);
  });

  it('keeps sessions across a restart that reloads the configuration from disk', async () => {
    await restartFromDisk(server);
    expect((await me(bearer(owner.token))).status).toBe(200);
    expect((await me(bearer(loginToken))).status).toBe(200);
    expectError(await me(bearer(loggedOut)), 401, 'unauthenticated');
    expect((await api.get(`/api/devices/${device.id}`, { token: device.credentials.auth_token })).status).toBe(200);
  });

  it('refuses old sessions (but not API keys or device tokens) under another JWT_SECRET, and accepts them again with the kept one', async () => {
    await restartFromDisk(server, { JWT_SECRET: 'a-completely-different-secret-0123456789' });
    expectError(await me(bearer(owner.token)), 401, 'unauthenticated');
    expect((await me({ 'x-api-key': owner.apiKey })).status).toBe(200);
    expect((await api.get(`/api/devices/${device.id}`, { token: device.credentials.auth_token })).status).toBe(200);
    await restartFromDisk(server);
    expect((await me(bearer(owner.token))).status).toBe(200);
  });

  it('survives several restarts in a row', async () => {
    const position = await headPosition(api);
    await server.restart();
    await server.restart();
    expect(await headPosition(api)).toBe(position);
    expect((await me(bearer(loginToken))).status).toBe(200);
    expectError(await me(bearer(loggedOut)), 401, 'unauthenticated');
    const detail = await api.get<Data<Device>>(`/api/devices/${device.id}`, { token: owner.token });
    expect(detail.body.data).toMatchObject({ name: 'Boiler 2', version: 3 });
  });
});

describe('a start that fails', () => {
  it('leaves nothing open: on a port already taken it rejects, and its database is closed with its WAL folded away', async () => {
    const first = await startTestServer();
    const dataDir = mkdtempSync(join(tmpdir(), 'iot-failed-start-'));
    try {
      const config = loadConfig({ PORT: String(first.server.port), MQTT_PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, BCRYPT_ROUNDS: '4', LOG_LEVEL: 'silent' });
      await expect(startServer(config, { logger: pino({ level: 'silent' }) })).rejects.toThrow(/EADDRINUSE/);
      // The last connection to close folds the WAL away: the checkpointer's was closed too.
      expect(existsSync(join(dataDir, 'iot.db'))).toBe(true);
      expect(existsSync(join(dataDir, 'iot.db-wal'))).toBe(false);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      await first.close();
    }
  });
});
