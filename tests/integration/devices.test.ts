import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import {
  createDevice,
  createGroup,
  expectError,
  expectValidation,
  uniqueMac,
  uniqueName,
  type Data,
  type Device,
  type List,
  type RegisteredDevice,
  type StoredEvent,
} from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

type Detail = Device & { recent_data: unknown[]; recent_commands: unknown[]; metrics: Record<string, unknown> };
type Me = { device_count: number };

const DEVICE_KEYS = [
  'certificate_fingerprint',
  'configuration',
  'created_at',
  'description',
  'device_type',
  'firmware_version',
  'group_id',
  'id',
  'ip_address',
  'last_seen',
  'mac_address',
  'name',
  'status',
  'updated_at',
  'user_id',
  'version',
];
const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MINUTE = 60_000;

type Account = Awaited<ReturnType<typeof registerUser>>;

describe('devices', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let admin: Account;
  let alice: Account;
  let bob: Account;

  beforeAll(async () => {
    server = await startTestServer();
    admin = await registerUser(api, uniqueName('dadmin'));
    alice = await registerUser(api, uniqueName('alice'));
    bob = await registerUser(api, uniqueName('bob'));
  });
  afterAll(() => server.close());

  const deviceCount = async (token: string) => (await api.get<Data<Me>>('/api/auth/user', { token })).body.data.device_count;

  describe('register', () => {
    it('answers 201 with the device, a generated token and its ETag', async () => {
      const answer = await api.post<Data<RegisteredDevice>>(
        '/api/devices',
        { name: 'Hall sensor', device_type: 'sensor', description: 'by the door', ip_address: '192.168.1.20', mac_address: uniqueMac(), firmware_version: '1.0.0', configuration: { interval: 30 } },
        { token: alice.token },
      );
      expect(answer.status, JSON.stringify(answer.body)).toBe(201);
      const { credentials, ...device } = answer.body.data;
      expect(Object.keys(device).sort()).toEqual(DEVICE_KEYS);
      expect(device).toMatchObject({
        user_id: alice.id,
        name: 'Hall sensor',
        device_type: 'sensor',
        description: 'by the door',
        ip_address: '192.168.1.20',
        firmware_version: '1.0.0',
        status: 'offline',
        last_seen: null,
        group_id: null,
        configuration: { interval: 30 },
        version: 1,
      });
      expect(device.id).toMatch(UUID);
      expect(device.created_at).toMatch(ISO_MS);
      expect(device.updated_at).toMatch(ISO_MS);
      expect(credentials.device_id).toBe(device.id);
      expect(credentials.auth_token.length).toBeGreaterThanOrEqual(16);
      expect(credentials.auth_token.startsWith('eyJ')).toBe(false);
      expect(answer.headers.get('etag')).toBe('"1"');
    });

    it('generates a different token for every device', async () => {
      const a = await createDevice(api, alice.token);
      const b = await createDevice(api, alice.token);
      expect(a.credentials.auth_token).not.toBe(b.credentials.auth_token);
    });

    it('uses a given auth_token of 16 characters and it authenticates the device', async () => {
      const given = `given-${Date.now()}`.padEnd(16, 'x').slice(0, 16);
      expect(given).toHaveLength(16);
      const device = await createDevice(api, alice.token, { auth_token: given });
      expect(device.credentials.auth_token).toBe(given);
      const self = await api.get<Data<Detail>>(`/api/devices/${device.id}`, { headers: { 'x-device-token': given } });
      expect(self.status).toBe(200);
      expect(self.body.data.id).toBe(device.id);
    });

    it('refuses an auth_token shorter than 16 characters', async () => {
      expectValidation(await api.post('/api/devices', { name: 'short', type: 'sensor', auth_token: '123456789012345' }, { token: alice.token }), 'auth_token');
    });

    it('refuses an auth_token that another device already uses', async () => {
      const given = `shared-token-${Date.now()}`;
      await createDevice(api, alice.token, { auth_token: given });
      const again = await api.post('/api/devices', { name: 'copycat', type: 'sensor', auth_token: given }, { token: bob.token });
      expect(again.status).toBeGreaterThanOrEqual(400);
      expect(again.status).toBeLessThan(500);
    });

    it('makes a given auth_token that looks like a JWT either refused or usable', async () => {
      const given = `eyJ-device-token-${Date.now()}`;
      const answer = await api.post<Data<RegisteredDevice>>('/api/devices', { name: 'jwt-like', type: 'sensor', auth_token: given }, { token: alice.token });
      if (answer.status === 201) {
        const self = await api.get(`/api/devices/${answer.body.data.id}`, { headers: { 'x-device-token': given } });
        expect(self.status).toBe(200);
      } else {
        expectValidation(answer, 'auth_token');
      }
    });

    it('shows the token only at creation', async () => {
      const device = await createDevice(api, alice.token);
      const token = device.credentials.auth_token;
      const detail = await api.get(`/api/devices/${device.id}`, { token: alice.token });
      expect(detail.status).toBe(200);
      const list = await api.get('/api/devices?limit=500', { token: alice.token });
      const put = await api.put(`/api/devices/${device.id}`, { description: 'x' }, { token: alice.token });
      const history = await api.get(`/api/devices/${device.id}/history`, { token: alice.token });
      for (const answer of [detail, list, put, history]) {
        const text = JSON.stringify(answer.body);
        expect(text).not.toContain(token);
        expect(text).not.toContain('credentials');
        expect(text).not.toContain('auth_token');
      }
      expect(detail.body.data).not.toHaveProperty('token_hash');
    });

    it('accepts `type` as an alias of device_type', async () => {
      const answer = await api.post<Data<RegisteredDevice>>('/api/devices', { name: 'aliased', type: 'thermostat' }, { token: alice.token });
      expect(answer.status).toBe(201);
      expect(answer.body.data.device_type).toBe('thermostat');
    });

    it('refuses a device without any type', async () => {
      const answer = await api.post('/api/devices', { name: 'typeless' }, { token: alice.token });
      const error = expectError(answer, 400, 'validation_failed');
      expect(error.details.some((d) => /type/.test(d.path))).toBe(true);
    });

    it('refuses a device without a name, or with a blank one', async () => {
      expectValidation(await api.post('/api/devices', { type: 'sensor' }, { token: alice.token }), 'name');
      expectValidation(await api.post('/api/devices', { name: '   ', type: 'sensor' }, { token: alice.token }), 'name');
      expectValidation(await api.post('/api/devices', { name: 42, type: 'sensor' }, { token: alice.token }), 'name');
    });

    it('refuses thresholds and an anomaly_z in the configuration that would silently switch alerts off, and takes sensible ones', async () => {
      const register = (configuration: Record<string, unknown>) => api.post('/api/devices', { name: 'alarmed', type: 'sensor', configuration }, { token: alice.token });
      expectValidation(await register({ thresholds: { temperature: { min: 50, max: 10 } } }), 'configuration.thresholds.temperature.min');
      expectValidation(await register({ thresholds: { humidity: { max: 'hot' } } }), 'configuration.thresholds.humidity.max');
      expectValidation(await register({ thresholds: ['temperature'] }), 'configuration.thresholds');
      expectValidation(await register({ anomaly_z: -1 }), 'configuration.anomaly_z');
      expect((await register({ thresholds: { temperature: { min: 10, max: 50, severity: 'critical' } }, anomaly_z: 3, firmware: { channel: 'beta' } })).status).toBe(201);
      expect((await register({ thresholds: null })).status).toBe(201);
      const device = await createDevice(api, alice.token);
      expectValidation(await api.put(`/api/devices/${device.id}`, { configuration: { thresholds: { temperature: { min: 5, max: 1 } } } }, { token: alice.token }), 'configuration.thresholds.temperature.min');
      expectValidation(await api.put(`/api/devices/${device.id}`, { settings: { anomaly_z: 'high' } }, { token: alice.token }), 'settings.anomaly_z');
      const template = await api.post('/api/templates', { name: 'bad template', device_type: 'sensor', configuration: { thresholds: { temperature: { max: 'hot' } } } }, { token: alice.token });
      expectValidation(template, 'configuration.thresholds.temperature.max');
    });

    it.each([
      ['a NUL', 'pump\u0000room'],
      ['a line break', 'pump\nroom'],
      ['an unpaired surrogate', 'pump \ud800 room'],
    ])('refuses a name with %s', async (_label, name) => {
      expectValidation(await api.post('/api/devices', { name, type: 'sensor' }, { token: alice.token }), 'name');
    });

    it.each(['999.1.1.1', '1.2.3', 'localhost', '192.168.1.1/24', '12345', ':::1', '1.2.3.4 '])('refuses the IP address %j', async (ip) => {
      expectValidation(await api.post('/api/devices', { name: 'bad-ip', type: 'sensor', ip_address: ip }, { token: alice.token }), 'ip_address');
    });

    it.each(['10.0.0.1', '::1', 'fe80::1', '2001:db8::8a2e:370:7334'])('accepts the IP address %j', async (ip) => {
      const device = await createDevice(api, alice.token, { ip_address: ip });
      expect(device.ip_address).toBe(ip);
    });

    it.each(['00:11:22:33:44', '00:11:22:33:44:55:66', 'zz:11:22:33:44:55', '00:11-22:33:44:55', '001122334455', '0:11:22:33:44:55', 'hello'])(
      'refuses the MAC address %j',
      async (mac) => {
        expectValidation(await api.post('/api/devices', { name: 'bad-mac', type: 'sensor', mac_address: mac }, { token: alice.token }), 'mac_address');
      },
    );

    it('accepts MACs with colons or dashes in any case', async () => {
      const colon = uniqueMac().toUpperCase();
      const dash = uniqueMac().replaceAll(':', '-');
      expect((await createDevice(api, alice.token, { mac_address: colon })).mac_address).toBe(colon);
      expect((await createDevice(api, alice.token, { mac_address: dash })).mac_address).toBe(dash);
    });

    it('refuses a MAC already registered, whatever its case, separator or owner, with 409 already_exists', async () => {
      const mac = uniqueMac();
      await createDevice(api, alice.token, { mac_address: mac });
      for (const [token, variant] of [
        [alice.token, mac],
        [alice.token, mac.toUpperCase()],
        [alice.token, mac.replaceAll(':', '-')],
        [bob.token, mac],
      ] as const) {
        expectError(await api.post('/api/devices', { name: 'dup-mac', type: 'sensor', mac_address: variant }, { token }), 409, 'already_exists');
      }
    });

    it('registers only one of several simultaneous devices with the same MAC', async () => {
      const mac = uniqueMac();
      const answers = await Promise.all([1, 2, 3, 4].map((i) => api.post('/api/devices', { name: `race ${i}`, type: 'sensor', mac_address: mac }, { token: i % 2 ? alice.token : bob.token })));
      expect(answers.map((a) => a.status).sort()).toEqual([201, 409, 409, 409]);
      for (const answer of answers.filter((a) => a.status === 409)) expectError(answer, 409, 'already_exists');
    });

    it('refuses an unknown or foreign group_id with 400', async () => {
      const bobsGroup = await createGroup(api, bob.token);
      expectValidation(await api.post('/api/devices', { name: 'g', type: 'sensor', group_id: bobsGroup.id }, { token: alice.token }), 'group_id');
      expectValidation(await api.post('/api/devices', { name: 'g', type: 'sensor', group_id: '00000000-0000-4000-8000-000000000000' }, { token: alice.token }), 'group_id');
      expectValidation(await api.post('/api/devices', { name: 'g', type: 'sensor', group_id: 'not-a-uuid' }, { token: alice.token }), 'group_id');
    });

    it('refuses a configuration that is not an object', async () => {
      expectValidation(await api.post('/api/devices', { name: 'c', type: 'sensor', configuration: [1, 2] }, { token: alice.token }), 'configuration');
      expectValidation(await api.post('/api/devices', { name: 'c', type: 'sensor', configuration: 'on' }, { token: alice.token }), 'configuration');
    });

    it('needs authentication', async () => {
      expectError(await api.post('/api/devices', { name: 'anon', type: 'sensor' }), 401, 'unauthenticated');
    });
  });

  describe('list', () => {
    let carol: Account;
    let devices: RegisteredDevice[];
    let groupId: string;

    beforeAll(async () => {
      carol = await registerUser(api, uniqueName('carol'));
      groupId = (await createGroup(api, carol.token, { name: 'Kitchen' })).id;
      devices = [];
      for (const body of [
        { name: 'Kitchen Temp', device_type: 'sensor', group_id: groupId },
        { name: 'Garage Door', device_type: 'actuator' },
        { name: 'Kitchen Light', type: 'actuator', group_id: groupId },
        { name: '100% humidity', device_type: 'sensor' },
      ]) {
        devices.push(await createDevice(api, carol.token, body));
        server.clock.advance(1000);
      }
    });

    const list = (query: string, token = carol.token) => api.get<List<Device>>(`/api/devices${query}`, { token });

    it('lists only the caller’s devices, oldest first, with paging meta', async () => {
      const answer = await list('');
      expect(answer.status).toBe(200);
      expect(answer.body.meta).toEqual({ total: 4, limit: 50, offset: 0 });
      expect(answer.body.data.map((d) => d.id)).toEqual(devices.map((d) => d.id));
      for (const device of answer.body.data) {
        expect(Object.keys(device).sort()).toEqual(DEVICE_KEYS);
        expect(device.user_id).toBe(carol.id);
      }
    });

    it('pages with limit and offset', async () => {
      const page = await list('?limit=2&offset=1');
      expect(page.status).toBe(200);
      expect(page.body.meta).toEqual({ total: 4, limit: 2, offset: 1 });
      expect(page.body.data.map((d) => d.id)).toEqual(devices.slice(1, 3).map((d) => d.id));
      const past = await list('?offset=10');
      expect(past.body.data).toEqual([]);
      expect(past.body.meta).toEqual({ total: 4, limit: 50, offset: 10 });
      const max = await list('?limit=500');
      expect(max.status).toBe(200);
      expect(max.body.meta.limit).toBe(500);
    });

    it('filters by type (and device_type)', async () => {
      const answer = await list('?type=actuator');
      expect(answer.body.meta.total).toBe(2);
      expect(answer.body.data.map((d) => d.name).sort()).toEqual(['Garage Door', 'Kitchen Light']);
      expect((await list('?device_type=sensor')).body.meta.total).toBe(2);
      expect((await list('?type=nothing')).body.meta.total).toBe(0);
    });

    it('filters by status', async () => {
      const offline = await list('?status=offline');
      expect(offline.status).toBe(200);
      expect(offline.body.meta.total).toBe(4);
      const online = await list('?status=online');
      expect(online.status).toBe(200);
      expect(online.body).toEqual({ data: [], meta: { total: 0, limit: 50, offset: 0 } });
    });

    it('filters by group_id', async () => {
      const answer = await list(`?group_id=${groupId}`);
      expect(answer.body.meta.total).toBe(2);
      expect(answer.body.data.every((d) => d.group_id === groupId)).toBe(true);
    });

    it('filters by q (name contains, case-insensitive for ASCII, wildcards literal)', async () => {
      const answer = await list('?q=Kitchen');
      expect(answer.body.data.map((d) => d.name).sort()).toEqual(['Kitchen Light', 'Kitchen Temp']);
      expect((await list('?q=kitchen')).body.meta.total).toBe(2);
      expect((await list('?q=Door')).body.meta.total).toBe(1);
      const percent = await list(`?q=${encodeURIComponent('%')}`);
      expect(percent.body.data.map((d) => d.name)).toEqual(['100% humidity']);
      expect((await list(`?q=${encodeURIComponent('_')}`)).body.meta.total).toBe(0);
    });

    it('combines filters', async () => {
      const answer = await list(`?type=actuator&q=Kitchen&group_id=${groupId}&status=offline`);
      expect(answer.body.data.map((d) => d.name)).toEqual(['Kitchen Light']);
      expect(answer.body.meta.total).toBe(1);
    });

    it.each([
      ['limit above 500', '?limit=501', 'limit'],
      ['limit 0', '?limit=0', 'limit'],
      ['a non-numeric limit', '?limit=ten', 'limit'],
      ['a fractional limit', '?limit=1.5', 'limit'],
      ['a negative offset', '?offset=-1', 'offset'],
      ['an unknown status', '?status=sleeping', 'status'],
      ['a repeated status', '?status=online&status=offline', 'status'],
    ])('refuses %s with 400', async (_label, query, path) => {
      expectValidation(await list(query), path);
    });
  });

  describe('detail and update', () => {
    let device: RegisteredDevice;

    beforeAll(async () => {
      device = await createDevice(api, alice.token, { name: 'Detailed', configuration: { mode: 'eco' } });
    });

    it('answers the device with recent_data, recent_commands, metrics and an ETag of its version', async () => {
      const answer = await api.get<Data<Detail>>(`/api/devices/${device.id}`, { token: alice.token });
      expect(answer.status).toBe(200);
      const { recent_data, recent_commands, metrics, desired_configuration, reported_configuration, configuration_diff, configuration_in_sync, firmware, ...rest } = answer.body.data as Detail & Record<string, unknown>;
      expect(Object.keys(rest).sort()).toEqual(DEVICE_KEYS);
      expect(desired_configuration).toEqual({ mode: 'eco' });
      expect(reported_configuration).toBeNull();
      expect(configuration_diff).toEqual([]);
      expect(configuration_in_sync).toBe(false);
      expect(firmware).toBeNull();
      expect(Array.isArray(recent_data)).toBe(true);
      expect(Array.isArray(recent_commands)).toBe(true);
      expect(metrics).toBeTypeOf('object');
      expect(metrics).not.toBeNull();
      expect(answer.headers.get('etag')).toBe(`"${rest.version}"`);
    });

    it('answers 404 not_found for an unknown or malformed id', async () => {
      expectError(await api.get('/api/devices/00000000-0000-4000-8000-000000000000', { token: alice.token }), 404, 'not_found');
      expectError(await api.get('/api/devices/not-a-uuid', { token: alice.token }), 404, 'not_found');
    });

    it('updates fields, bumps the version and the ETag', async () => {
      server.clock.advance(5000);
      const before = (await api.get<Data<Detail>>(`/api/devices/${device.id}`, { token: alice.token })).body.data;
      const answer = await api.put<Data<Device>>(
        `/api/devices/${device.id}`,
        { name: 'Renamed', description: 'new text', ip_address: '10.1.2.3', firmware_version: '2.0', device_type: 'meter' },
        { token: alice.token },
      );
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      expect(Object.keys(answer.body.data).sort()).toEqual(DEVICE_KEYS);
      expect(answer.body.data).toMatchObject({ name: 'Renamed', description: 'new text', ip_address: '10.1.2.3', firmware_version: '2.0', device_type: 'meter' });
      expect(answer.body.data.version).toBe(before.version + 1);
      expect(answer.body.data.updated_at).not.toBe(before.updated_at);
      expect(answer.body.data.created_at).toBe(before.created_at);
      expect(answer.headers.get('etag')).toBe(`"${before.version + 1}"`);
      const after = await api.get<Data<Detail>>(`/api/devices/${device.id}`, { token: alice.token });
      expect(after.body.data).toMatchObject({ name: 'Renamed', version: before.version + 1 });
      expect(after.headers.get('etag')).toBe(`"${before.version + 1}"`);
    });

    it('clears nullable fields with null', async () => {
      const answer = await api.put<Data<Device>>(`/api/devices/${device.id}`, { description: null, ip_address: null }, { token: alice.token });
      expect(answer.status).toBe(200);
      expect(answer.body.data.description).toBeNull();
      expect(answer.body.data.ip_address).toBeNull();
    });

    it('honours If-Match: a stale version answers 412, the current one 200', async () => {
      const current = await api.get<Data<Detail>>(`/api/devices/${device.id}`, { token: alice.token });
      const etag = current.headers.get('etag')!;
      const version = current.body.data.version;
      const stale = await api.put(`/api/devices/${device.id}`, { name: 'stale write' }, { token: alice.token, headers: { 'if-match': `"${version - 1}"` } });
      expectError(stale, 412, 'precondition_failed');
      const garbage = await api.put(`/api/devices/${device.id}`, { name: 'garbage etag' }, { token: alice.token, headers: { 'if-match': '"abc"' } });
      expectError(garbage, 412, 'precondition_failed');
      // Nothing was written by the refused attempts.
      const unchanged = await api.get<Data<Detail>>(`/api/devices/${device.id}`, { token: alice.token });
      expect(unchanged.body.data.version).toBe(version);
      expect(unchanged.body.data.name).not.toBe('stale write');

      const fresh = await api.put<Data<Device>>(`/api/devices/${device.id}`, { name: 'fresh write' }, { token: alice.token, headers: { 'if-match': etag } });
      expect(fresh.status).toBe(200);
      expect(fresh.body.data).toMatchObject({ name: 'fresh write', version: version + 1 });
      // The ETag just used is now stale.
      expectError(await api.put(`/api/devices/${device.id}`, { name: 'again' }, { token: alice.token, headers: { 'if-match': etag } }), 412, 'precondition_failed');
    });

    it('takes a list of ETags in If-Match: any one that matches lets the write through, none answers 412', async () => {
      const { version } = (await api.get<Data<Detail>>(`/api/devices/${device.id}`, { token: alice.token })).body.data;
      const noneMatch = `"${version - 1}", W/"${version + 5}"`;
      expectError(await api.put(`/api/devices/${device.id}`, { name: 'listed, none current' }, { token: alice.token, headers: { 'if-match': noneMatch } }), 412, 'precondition_failed');
      expectError(await api.put(`/api/devices/${device.id}`, { name: 'listed, garbage' }, { token: alice.token, headers: { 'if-match': `"${version}", "abc"` } }), 412, 'precondition_failed');
      // A weak tag never matches (If-Match compares strongly), even naming the current version.
      expectError(await api.put(`/api/devices/${device.id}`, { name: 'weak' }, { token: alice.token, headers: { 'if-match': `W/"${version}"` } }), 412, 'precondition_failed');
      // Malformed lists are refused, never read as some version (an empty item is not version 0).
      for (const malformed of [`"${version}", `, `"${version - 1},${version}"`, `"${version}`, `"${version}.0"`, `"0x${version.toString(16)}"`, ',']) {
        expectError(await api.put(`/api/devices/${device.id}`, { name: 'malformed' }, { token: alice.token, headers: { 'if-match': malformed } }), 412, 'precondition_failed');
      }

      const listed = await api.put<Data<Device>>(`/api/devices/${device.id}`, { name: 'listed write' }, { token: alice.token, headers: { 'if-match': `"${version - 1}", "${version}"` } });
      expect(listed.status, JSON.stringify(listed.body)).toBe(200);
      expect(listed.body.data).toMatchObject({ name: 'listed write', version: version + 1 });
    });

    it('honours If-Match on DELETE: a stale version answers 412 and deletes nothing, the current one deletes', async () => {
      const doomed = await createDevice(api, alice.token, { name: 'Doomed' });
      await api.put(`/api/devices/${doomed.id}`, { name: 'Doomed 2' }, { token: alice.token });
      expectError(await api.del(`/api/devices/${doomed.id}`, { token: alice.token, headers: { 'if-match': '"1"' } }), 412, 'precondition_failed');
      const still = await api.get<Data<Device>>(`/api/devices/${doomed.id}`, { token: alice.token });
      expect(still.status).toBe(200);
      expect((await api.del(`/api/devices/${doomed.id}`, { token: alice.token, headers: { 'if-match': still.headers.get('etag')! } })).status).toBe(200);
      expectError(await api.get(`/api/devices/${doomed.id}`, { token: alice.token }), 404, 'not_found');
    });

    it('answers one 200 and otherwise 412 for simultaneous updates with the same If-Match', async () => {
      const racer = await createDevice(api, alice.token);
      const answers = await Promise.all([1, 2, 3, 4].map((i) => api.put(`/api/devices/${racer.id}`, { name: `racer ${i}` }, { token: alice.token, headers: { 'if-match': '"1"' } })));
      expect(answers.map((a) => a.status).sort()).toEqual([200, 412, 412, 412]);
      for (const answer of answers.filter((a) => a.status === 412)) expectError(answer, 412, 'precondition_failed');
      const detail = await api.get<Data<Detail>>(`/api/devices/${racer.id}`, { token: alice.token });
      expect(detail.body.data.version).toBe(2);
    });

    it('applies every one of several simultaneous updates without If-Match', async () => {
      const racer = await createDevice(api, alice.token);
      const answers = await Promise.all([1, 2, 3, 4].map((i) => api.put(`/api/devices/${racer.id}`, { name: `free ${i}` }, { token: alice.token })));
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
      const detail = await api.get<Data<Detail>>(`/api/devices/${racer.id}`, { token: alice.token });
      expect(detail.body.data.version).toBe(5);
    });

    it('accepts settings as an alias of configuration', async () => {
      const answer = await api.put<Data<Device>>(`/api/devices/${device.id}`, { settings: { mode: 'boost', target: 21.5 } }, { token: alice.token });
      expect(answer.status).toBe(200);
      expect(answer.body.data.configuration).toEqual({ mode: 'boost', target: 21.5 });
      const configured = await api.put<Data<Device>>(`/api/devices/${device.id}`, { configuration: { mode: 'off' } }, { token: alice.token });
      expect(configured.body.data.configuration).toEqual({ mode: 'off' });
      const detail = await api.get<Data<Detail>>(`/api/devices/${device.id}`, { token: alice.token });
      expect(detail.body.data.configuration).toEqual({ mode: 'off' });
    });

    it('keeps the version when nothing changes', async () => {
      const current = (await api.get<Data<Detail>>(`/api/devices/${device.id}`, { token: alice.token })).body.data;
      const same = await api.put<Data<Device>>(`/api/devices/${device.id}`, { name: current.name }, { token: alice.token });
      expect(same.status).toBe(200);
      expect(same.body.data.version).toBe(current.version);
    });

    it('refuses invalid updates with 400 and changes nothing', async () => {
      const current = (await api.get<Data<Detail>>(`/api/devices/${device.id}`, { token: alice.token })).body.data;
      expectValidation(await api.put(`/api/devices/${device.id}`, { ip_address: '300.0.0.1' }, { token: alice.token }), 'ip_address');
      expectValidation(await api.put(`/api/devices/${device.id}`, { name: '' }, { token: alice.token }), 'name');
      expectValidation(await api.put(`/api/devices/${device.id}`, { settings: 'loud' }, { token: alice.token }), 'settings');
      expectValidation(await api.put(`/api/devices/${device.id}`, { group_id: 'nope' }, { token: alice.token }), 'group_id');
      const after = (await api.get<Data<Detail>>(`/api/devices/${device.id}`, { token: alice.token })).body.data;
      expect(after.version).toBe(current.version);
    });

    it('moves a device into one of the owner’s groups and refuses a foreign one', async () => {
      const group = await createGroup(api, alice.token);
      const moved = await api.put<Data<Device>>(`/api/devices/${device.id}`, { group_id: group.id }, { token: alice.token });
      expect(moved.status).toBe(200);
      expect(moved.body.data.group_id).toBe(group.id);
      const foreign = await createGroup(api, bob.token);
      expectValidation(await api.put(`/api/devices/${device.id}`, { group_id: foreign.id }, { token: alice.token }), 'group_id');
      const ungrouped = await api.put<Data<Device>>(`/api/devices/${device.id}`, { group_id: null }, { token: alice.token });
      expect(ungrouped.body.data.group_id).toBeNull();
    });
  });

  describe('delete', () => {
    it('answers {id, deleted:true}; then the device is gone everywhere and its token is refused', async () => {
      const dave = await registerUser(api, uniqueName('dave'));
      const keep = await createDevice(api, dave.token);
      const device = await createDevice(api, dave.token);
      expect(await deviceCount(dave.token)).toBe(2);
      const token = device.credentials.auth_token;
      expect((await api.get(`/api/devices/${device.id}`, { token })).status).toBe(200);

      const answer = await api.del(`/api/devices/${device.id}`, { token: dave.token });
      expect(answer.status).toBe(200);
      expect(answer.body).toEqual({ data: { id: device.id, deleted: true } });

      expectError(await api.get(`/api/devices/${device.id}`, { token: dave.token }), 404, 'not_found');
      expectError(await api.put(`/api/devices/${device.id}`, { name: 'zombie' }, { token: dave.token }), 404, 'not_found');
      expectError(await api.del(`/api/devices/${device.id}`, { token: dave.token }), 404, 'not_found');
      const list = await api.get<List<Device>>('/api/devices', { token: dave.token });
      expect(list.body.data.map((d) => d.id)).toEqual([keep.id]);
      expect(list.body.meta.total).toBe(1);
      expect(await deviceCount(dave.token)).toBe(1);
      expectError(await api.get(`/api/devices/${device.id}`, { token }), 401, 'unauthenticated');
      expectError(await api.get(`/api/devices/${device.id}`, { headers: { 'x-device-token': token } }), 401, 'unauthenticated');
      const adminList = await api.get<List<Device>>('/api/devices?limit=500', { token: admin.token });
      expect(adminList.body.data.map((d) => d.id)).not.toContain(device.id);
    });

    it('frees the MAC address of a deleted device', async () => {
      const mac = uniqueMac();
      const device = await createDevice(api, alice.token, { mac_address: mac });
      expect((await api.del(`/api/devices/${device.id}`, { token: alice.token })).status).toBe(200);
      const again = await createDevice(api, alice.token, { mac_address: mac });
      expect(again.mac_address).toBe(mac);
    });
  });

  describe('history', () => {
    it('lists the device’s events oldest first, with paging', async () => {
      const device = await createDevice(api, alice.token, { name: 'Chronicle' });
      server.clock.advance(1000);
      await api.put(`/api/devices/${device.id}`, { name: 'Chronicle 2' }, { token: alice.token });
      server.clock.advance(1000);
      await api.put(`/api/devices/${device.id}`, { description: 'third' }, { token: alice.token });

      const answer = await api.get<List<StoredEvent>>(`/api/devices/${device.id}/history`, { token: alice.token });
      expect(answer.status).toBe(200);
      expect(answer.body.meta).toEqual({ total: 3, limit: 50, offset: 0 });
      const events = answer.body.data;
      expect(events.map((e) => e.type)).toEqual(['device.registered', 'device.updated', 'device.updated']);
      expect(events.map((e) => e.version)).toEqual([1, 2, 3]);
      expect(events.every((e) => e.stream_id.includes(device.id))).toBe(true);
      for (let i = 1; i < events.length; i++) {
        expect(events[i]!.position).toBeGreaterThan(events[i - 1]!.position);
        expect(events[i]!.recorded_at >= events[i - 1]!.recorded_at).toBe(true);
      }
      for (const event of events) {
        expect(event.recorded_at).toMatch(ISO_MS);
        expect(typeof event.hash).toBe('string');
        expect(event.metadata).toBeTypeOf('object');
      }
      expect(JSON.stringify(events)).not.toContain(device.credentials.auth_token);

      const page = await api.get<List<StoredEvent>>(`/api/devices/${device.id}/history?limit=1&offset=1`, { token: alice.token });
      expect(page.body.meta).toEqual({ total: 3, limit: 1, offset: 1 });
      expect(page.body.data.map((e) => e.version)).toEqual([2]);
      expectValidation(await api.get(`/api/devices/${device.id}/history?limit=501`, { token: alice.token }), 'limit');
    });

    it('includes everything of the device: its readings, heartbeats, commands and status changes, and nothing of another device', async () => {
      const device = await createDevice(api, alice.token, { name: 'Whole story' });
      const other = await createDevice(api, alice.token, { name: 'Bystander' });
      const token = device.credentials.auth_token;
      expect((await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 20 } }, { token })).status).toBe(201);
      expect((await api.post(`/api/devices/${device.id}/heartbeat`, {}, { token })).status).toBe(200);
      expect((await api.post(`/api/devices/${device.id}/commands`, { command_type: 'reboot' }, { token: alice.token })).status).toBe(202);
      expect((await api.post(`/api/devices/${other.id}/data`, { sensor_readings: { temperature: 1 } }, { token: other.credentials.auth_token })).status).toBe(201);

      const answer = await api.get<List<StoredEvent>>(`/api/devices/${device.id}/history`, { token: alice.token });
      expect(answer.body.data.map((e) => e.type)).toEqual(['device.registered', 'readings.recorded', 'device.came_online', 'device.heartbeat', 'command.queued']);
      expect(answer.body.meta.total).toBe(5);
      expect(answer.body.data.every((e) => e.stream_id.endsWith(device.id) || (e.data as { device_id?: string }).device_id === device.id)).toBe(true);
    });
  });

  describe('ownership', () => {
    let bobs: RegisteredDevice;

    beforeAll(async () => {
      bobs = await createDevice(api, bob.token, { name: 'Bob private' });
    });

    it('hides another user’s device: 404 on GET, PUT, DELETE and history', async () => {
      expectError(await api.get(`/api/devices/${bobs.id}`, { token: alice.token }), 404, 'not_found');
      expectError(await api.get(`/api/devices/${bobs.id}`, { headers: { 'x-api-key': alice.apiKey } }), 404, 'not_found');
      expectError(await api.put(`/api/devices/${bobs.id}`, { name: 'stolen' }, { token: alice.token }), 404, 'not_found');
      expectError(await api.del(`/api/devices/${bobs.id}`, { token: alice.token }), 404, 'not_found');
      expectError(await api.get(`/api/devices/${bobs.id}/history`, { token: alice.token }), 404, 'not_found');
      expectError(await api.get(`/api/devices/${bobs.id}?as_of=${server.clock.now().toISOString()}`, { token: alice.token }), 404, 'not_found');
      const list = await api.get<List<Device>>('/api/devices?limit=500', { token: alice.token });
      expect(list.body.data.map((d) => d.id)).not.toContain(bobs.id);
      expect(list.body.data.every((d) => d.user_id === alice.id)).toBe(true);
      // Bob's device is untouched.
      const own = await api.get<Data<Detail>>(`/api/devices/${bobs.id}`, { token: bob.token });
      expect(own.body.data).toMatchObject({ name: 'Bob private', version: 1 });
    });

    it('lets an admin see every user’s devices', async () => {
      const list = await api.get<List<Device>>('/api/devices?limit=500', { token: admin.token });
      expect(list.status).toBe(200);
      const owners = new Set(list.body.data.map((d) => d.user_id));
      expect(owners.has(alice.id)).toBe(true);
      expect(owners.has(bob.id)).toBe(true);
      const aliceList = await api.get<List<Device>>('/api/devices?limit=500', { token: alice.token });
      const bobList = await api.get<List<Device>>('/api/devices?limit=500', { token: bob.token });
      expect(list.body.meta.total).toBeGreaterThanOrEqual(aliceList.body.meta.total + bobList.body.meta.total);
      const detail = await api.get<Data<Detail>>(`/api/devices/${bobs.id}`, { token: admin.token });
      expect(detail.status).toBe(200);
      expect(detail.body.data.user_id).toBe(bob.id);
    });
  });

  describe('device tokens', () => {
    let mine: RegisteredDevice;
    let sibling: RegisteredDevice;
    let foreign: RegisteredDevice;

    beforeAll(async () => {
      mine = await createDevice(api, alice.token, { name: 'Token holder' });
      sibling = await createDevice(api, alice.token, { name: 'Sibling' });
      foreign = await createDevice(api, bob.token, { name: 'Foreign' });
    });

    it('reads its own device with Authorization: Bearer and with X-Device-Token', async () => {
      const bearer = await api.get<Data<Detail>>(`/api/devices/${mine.id}`, { token: mine.credentials.auth_token });
      expect(bearer.status).toBe(200);
      expect(bearer.body.data.id).toBe(mine.id);
      const header = await api.get<Data<Detail>>(`/api/devices/${mine.id}`, { headers: { 'x-device-token': mine.credentials.auth_token } });
      expect(header.status).toBe(200);
      expect(header.body.data.id).toBe(mine.id);
      expect(JSON.stringify(header.body)).not.toContain(mine.credentials.auth_token);
    });

    it('gets 403 for another device, of the same owner or another (a device token on another device)', async () => {
      expectError(await api.get(`/api/devices/${sibling.id}`, { token: mine.credentials.auth_token }), 403, 'forbidden');
      expectError(await api.get(`/api/devices/${foreign.id}`, { token: mine.credentials.auth_token }), 403, 'forbidden');
    });

    it('gets 403 forbidden on user-only routes', async () => {
      const token = mine.credentials.auth_token;
      expectError(await api.post('/api/devices', { name: 'spawned', type: 'sensor' }, { token }), 403, 'forbidden');
      expectError(await api.get('/api/devices', { token }), 403, 'forbidden');
      expectError(await api.put(`/api/devices/${mine.id}`, { name: 'self-renamed' }, { token }), 403, 'forbidden');
      expectError(await api.del(`/api/devices/${mine.id}`, { token }), 403, 'forbidden');
      expectError(await api.get(`/api/devices/${mine.id}/history`, { token }), 403, 'forbidden');
      expectError(await api.get('/api/auth/user', { token }), 403, 'forbidden');
      expectError(await api.get('/api/groups', { token }), 403, 'forbidden');
      expectError(await api.post('/api/groups', { name: 'device-made' }, { token }), 403, 'forbidden');
      // Nothing changed.
      const detail = await api.get<Data<Detail>>(`/api/devices/${mine.id}`, { token: alice.token });
      expect(detail.body.data).toMatchObject({ name: 'Token holder', version: 1 });
    });

    it('refuses an unknown device token with 401', async () => {
      expectError(await api.get(`/api/devices/${mine.id}`, { headers: { 'x-device-token': 'iotd_unknown-token-0000000000000000' } }), 401, 'unauthenticated');
    });
  });

  describe('as_of', () => {
    it('answers the device as it was at a past time, also after it was deleted', async () => {
      const t0 = server.clock.now().toISOString();
      server.clock.advance(MINUTE);
      const device = await createDevice(api, alice.token, { name: 'Time traveller', configuration: { v: 1 } });
      const t1 = server.clock.now();
      server.clock.advance(MINUTE);
      expect((await api.put(`/api/devices/${device.id}`, { name: 'Time traveller 2', settings: { v: 2 } }, { token: alice.token })).status).toBe(200);
      const t2 = server.clock.now();
      server.clock.advance(MINUTE);
      expect((await api.put(`/api/devices/${device.id}`, { name: 'Time traveller 3' }, { token: alice.token })).status).toBe(200);
      const t3 = server.clock.now();
      server.clock.advance(MINUTE);

      const asOf = (time: Date | string, token = alice.token) =>
        api.get<Data<Device>>(`/api/devices/${device.id}?as_of=${encodeURIComponent(typeof time === 'string' ? time : time.toISOString())}`, { token });
      const plus = (time: Date, ms: number) => new Date(time.getTime() + ms);

      expectError(await asOf(t0), 404, 'not_found');
      const v1 = await asOf(plus(t1, 30_000));
      expect(v1.status, JSON.stringify(v1.body)).toBe(200);
      expect(v1.body.data).toMatchObject({ id: device.id, user_id: alice.id, name: 'Time traveller', configuration: { v: 1 }, version: 1 });
      // The live view's fields the log can tell: the device, its desired and reported configuration, its firmware update.
      const AS_OF_KEYS = [...DEVICE_KEYS, 'configuration_diff', 'configuration_in_sync', 'desired_configuration', 'firmware', 'reported_configuration'].sort();
      expect(Object.keys(v1.body.data).sort()).toEqual(AS_OF_KEYS);
      expect(v1.body.data.created_at).toBe(device.created_at);
      const v2 = await asOf(plus(t2, 30_000));
      expect(v2.body.data).toMatchObject({ name: 'Time traveller 2', configuration: { v: 2 }, version: 2 });
      const v3 = await asOf(plus(t3, 30_000));
      expect(v3.body.data).toMatchObject({ name: 'Time traveller 3', configuration: { v: 2 }, version: 3 });
      // Exactly at the time of a change, that change is included.
      expect((await asOf(t2)).body.data.version).toBe(2);
      // A time with an offset names the same instant.
      const offset = new Date(t2.getTime() + 30_000 + 3600_000).toISOString().replace('Z', '+01:00');
      expect((await asOf(offset)).body.data).toMatchObject({ version: 2 });

      // An admin may look too; another user may not.
      expect((await asOf(plus(t2, 30_000), admin.token)).status).toBe(200);
      expectError(await asOf(plus(t2, 30_000), bob.token), 404, 'not_found');

      expect((await api.del(`/api/devices/${device.id}`, { token: alice.token })).status).toBe(200);
      const afterDelete = server.clock.now();
      server.clock.advance(MINUTE);
      expectError(await api.get(`/api/devices/${device.id}`, { token: alice.token }), 404, 'not_found');
      const past = await asOf(plus(t2, 30_000));
      expect(past.status, JSON.stringify(past.body)).toBe(200);
      expect(past.body.data).toMatchObject({ id: device.id, name: 'Time traveller 2', version: 2 });
      expectError(await asOf(plus(afterDelete, 1000)), 404, 'not_found');
      expectError(await asOf(plus(t2, 30_000), bob.token), 404, 'not_found');
    });

    it('answers the firmware and reported status a heartbeat gave, as the live device and status show them', async () => {
      const device = await createDevice(api, alice.token, { name: 'Reporter', firmware_version: '1.0.0' });
      const token = device.credentials.auth_token;
      server.clock.advance(MINUTE);
      const before = server.clock.now().toISOString();
      server.clock.advance(MINUTE);
      expect((await api.post(`/api/devices/${device.id}/heartbeat`, { firmware_version: '2.0.0', device_status: { battery: 80 } }, { token })).status).toBe(200);
      server.clock.advance(MINUTE);
      // A later reading that reports no status leaves the last reported one in place.
      expect((await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 20 } }, { token })).status).toBe(201);
      server.clock.advance(MINUTE);
      const now = encodeURIComponent(server.clock.now().toISOString());
      type Status = { health: { last_reported: unknown }; operational_state: { firmware_version: string | null } };

      const live = (await api.get<Data<Device>>(`/api/devices/${device.id}`, { token: alice.token })).body.data;
      const then = (await api.get<Data<Device>>(`/api/devices/${device.id}?as_of=${now}`, { token: alice.token })).body.data;
      expect(live.firmware_version).toBe('2.0.0');
      expect(then.firmware_version).toBe('2.0.0');
      const liveStatus = (await api.get<Data<Status>>(`/api/devices/${device.id}/status`, { token: alice.token })).body.data;
      const statusThen = (await api.get<Data<Status>>(`/api/devices/${device.id}/status?as_of=${now}`, { token: alice.token })).body.data;
      expect(liveStatus.health.last_reported).toEqual({ battery: 80 });
      expect(statusThen.health.last_reported).toEqual({ battery: 80 });
      expect(statusThen.operational_state.firmware_version).toBe('2.0.0');

      const earlier = (await api.get<Data<Device>>(`/api/devices/${device.id}?as_of=${encodeURIComponent(before)}`, { token: alice.token })).body.data;
      expect(earlier.firmware_version).toBe('1.0.0');
      // An edit made after the heartbeat wins over it, as it does in the live device.
      expect((await api.put(`/api/devices/${device.id}`, { firmware_version: '3.0.0' }, { token: alice.token })).status).toBe(200);
      server.clock.advance(MINUTE);
      const later = encodeURIComponent(server.clock.now().toISOString());
      expect((await api.get<Data<Device>>(`/api/devices/${device.id}?as_of=${later}`, { token: alice.token })).body.data.firmware_version).toBe('3.0.0');
    });

    it('lets a device token read its own device as of a past time', async () => {
      const device = await createDevice(api, alice.token, { name: 'Self historian' });
      server.clock.advance(MINUTE);
      const at = server.clock.now().toISOString();
      server.clock.advance(MINUTE);
      const answer = await api.get<Data<Device>>(`/api/devices/${device.id}?as_of=${encodeURIComponent(at)}`, { token: device.credentials.auth_token });
      expect(answer.status).toBe(200);
      expect(answer.body.data).toMatchObject({ id: device.id, name: 'Self historian', version: 1 });
    });

    it.each(['yesterday', '2026-13-01T00:00:00Z', '12345'])('refuses as_of=%j with 400', async (value) => {
      const device = await createDevice(api, alice.token);
      expectValidation(await api.get(`/api/devices/${device.id}?as_of=${encodeURIComponent(value)}`, { token: alice.token }), 'as_of');
    });
  });

  describe('quota', () => {
    let small: TestServer;
    const smallApi = client(() => small.url);

    beforeAll(async () => {
      small = await startTestServer({ DEFAULT_DEVICE_QUOTA: '2' });
    });
    afterAll(() => small.close());

    it('answers 403 quota_exceeded beyond device_quota, per user, and frees a slot on delete', async () => {
      const first = await registerUser(smallApi, uniqueName('quota1'));
      const second = await registerUser(smallApi, uniqueName('quota2'));
      const me = await smallApi.get<Data<{ device_quota: number }>>('/api/auth/user', { token: first.token });
      expect(me.body.data.device_quota).toBe(2);
      const a = await createDevice(smallApi, first.token);
      await createDevice(smallApi, first.token);
      const refused = await smallApi.post('/api/devices', { name: 'third', type: 'sensor' }, { token: first.token });
      expectError(refused, 403, 'quota_exceeded');
      expect((await smallApi.get<List<Device>>('/api/devices', { token: first.token })).body.meta.total).toBe(2);
      // Another user has their own quota.
      await createDevice(smallApi, second.token);
      // Deleting one frees a slot.
      expect((await smallApi.del(`/api/devices/${a.id}`, { token: first.token })).status).toBe(200);
      await createDevice(smallApi, first.token);
      expectError(await smallApi.post('/api/devices', { name: 'fourth', type: 'sensor' }, { token: first.token }), 403, 'quota_exceeded');
    });

    it('never exceeds the quota with simultaneous registrations', async () => {
      const racer = await registerUser(smallApi, uniqueName('quota3'));
      const answers = await Promise.all([1, 2, 3, 4, 5].map((i) => smallApi.post('/api/devices', { name: `q${i}`, type: 'sensor' }, { token: racer.token })));
      expect(answers.map((a) => a.status).sort()).toEqual([201, 201, 403, 403, 403]);
      const me = await smallApi.get<Data<Me>>('/api/auth/user', { token: racer.token });
      expect(me.body.data.device_count).toBe(2);
    });
  });
});
