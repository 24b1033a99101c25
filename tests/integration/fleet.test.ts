import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser, type Answer } from '../helpers/client.js';
import { createDevice, createGroup, expectError, expectValidation, uniqueMac, uniqueName, type Data, type Device, type List, type Meta, type RegisteredDevice } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { submitOk, type Alert } from '../helpers/telemetry-fixtures.js';
import type { z } from 'zod';
import type { command as commandSchema } from '../../src/api/schemas/commands.js';

/** The Command shape of the contract plus the fields the server adds. */
type Command = z.infer<typeof commandSchema>;

interface BatchSummary {
  batch_id: string;
  by_status: Record<string, number>;
  status?: 'active' | 'completed' | 'aborted';
  reason?: string | null;
  total_devices?: number;
  rollout_per_minute?: number | null;
  abort_failure_percent?: number | null;
}

interface CommandList {
  data: Command[];
  meta: Meta & { batch?: BatchSummary };
}

interface FirmwareState {
  target_version: string;
  status: 'queued' | 'downloading' | 'installing' | 'done' | 'failed';
  detail: string | null;
  updated_at: string;
}

interface Difference {
  path: string;
  desired: unknown;
  reported: unknown;
}

interface DeviceDetail extends Device {
  desired_configuration: Record<string, unknown>;
  reported_configuration: Record<string, unknown> | null;
  configuration_diff: Difference[];
  configuration_in_sync: boolean;
  firmware: FirmwareState | null;
  recent_commands: Command[];
}

interface LogEntry {
  severity: string;
  category: string;
  message: string;
  details: Record<string, unknown>;
  timestamp: string;
  position: number;
}

interface Template {
  id: string;
  user_id: string;
  name: string;
  device_type: string;
  description: string | null;
  configuration: Record<string, unknown>;
  thresholds: Record<string, unknown>;
  created_at: string;
  updated_at: string;
  version: number;
}

interface BulkResult {
  index: number;
  action: string;
  status: number;
  data?: unknown;
  error?: { code: string; message: string; details: Array<{ path: string; message: string }> };
}

interface BulkAnswer {
  data: BulkResult[];
  meta: { total: number; succeeded: number; failed: number };
}

interface GroupCommandAnswer {
  batch_id: string;
  count: number;
  total_devices: number;
  status: 'active' | 'completed' | 'aborted';
  commands: Command[];
}

type Account = Awaited<ReturnType<typeof registerUser>>;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const NO_SUCH_ID = '00000000-0000-4000-8000-000000000000';
const CHECKSUM = 'ab'.repeat(32);

describe('fleet: configuration, firmware, bulk, templates, provisioning, rollouts', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let alice: Account;
  let bob: Account;

  beforeAll(async () => {
    server = await startTestServer({ DEFAULT_DEVICE_QUOTA: '1000' });
    // The timers run only when a test says so (runAll), never on their own wall-clock interval,
    // so rollout pacing depends on the manual clock alone.
    server.server.timers.stop();
    await registerUser(api, uniqueName('fadmin'));
    alice = await registerUser(api, uniqueName('alice'));
    bob = await registerUser(api, uniqueName('bob'));
  });
  afterAll(async () => {
    await server?.close();
  });

  const ok = <T>(answer: Answer<T>, status = 200): T => {
    expect(answer.status, JSON.stringify(answer.body)).toBe(status);
    return answer.body;
  };
  const detail = async (deviceId: string, token = alice.token): Promise<DeviceDetail> => ok(await api.get<Data<DeviceDetail>>(`/api/devices/${deviceId}`, { token })).data;
  const list = async (query: string, token = alice.token): Promise<CommandList> => ok(await api.get<CommandList>(`/api/commands?${query}`, { token }));
  const command = async (id: string, token = alice.token): Promise<Command> => ok(await api.get<Data<Command>>(`/api/commands/${id}`, { token })).data;
  const fetchPending = async (device: RegisteredDevice): Promise<Command[]> =>
    ok(await api.get<Data<Command[]>>(`/api/devices/${device.id}/commands/pending`, { token: device.credentials.auth_token })).data;
  const report = (device: RegisteredDevice, commandId: string, body: Record<string, unknown>) =>
    api.post<Data<Command>>(`/api/devices/${device.id}/commands/${commandId}/result`, body, { token: device.credentials.auth_token });
  const logs = async (deviceId: string, token = alice.token): Promise<LogEntry[]> => ok(await api.get<List<LogEntry>>(`/api/devices/${deviceId}/logs?limit=500`, { token })).data;
  const deviceCount = async (token: string): Promise<number> => ok(await api.get<Data<{ device_count: number }>>('/api/auth/user', { token })).data.device_count;
  const restart = async (): Promise<void> => {
    await server.restart();
    server.server.timers.stop();
  };
  /** Moves the clock, then runs the timers (twice: a run already under way may have read the old time). */
  const advanceAndTick = async (ms: number): Promise<void> => {
    server.clock.advance(ms);
    await server.server.timers.runAll();
    await server.server.timers.runAll();
  };

  describe('configuration: desired, reported and the difference', () => {
    const configCommands = async (deviceId: string) => (await list(`device_id=${deviceId}&command_type=update_configuration`)).data;

    it('PUT with a new configuration queues update_configuration; the result with a configuration records it as reported; a heartbeat reporting another one shows the differing paths', async () => {
      const device = await createDevice(api, alice.token, { configuration: { interval: 60 } });
      const fresh = await detail(device.id);
      expect(fresh).toMatchObject({ desired_configuration: { interval: 60 }, reported_configuration: null, configuration_diff: [], configuration_in_sync: false, firmware: null });

      const desired = { interval: 30, network: { ssid: 'lab', dhcp: true, dns: { primary: '10.0.0.1' } }, tags: ['a', 'b'] };
      ok(await api.put(`/api/devices/${device.id}`, { configuration: desired }, { token: alice.token }));
      const [pushed, ...more] = await configCommands(device.id);
      expect(more).toEqual([]);
      expect(pushed).toMatchObject({ device_id: device.id, user_id: alice.id, command_type: 'update_configuration', status: 'pending', parameters: { configuration: desired } });

      const waiting = await detail(device.id);
      expect(waiting.desired_configuration).toEqual(desired);
      expect(waiting.configuration).toEqual(desired);
      expect(waiting.reported_configuration).toBeNull();
      expect(waiting.configuration_in_sync).toBe(false);
      expect(waiting.recent_commands.map((c) => c.id)).toContain(pushed!.id);

      const fetched = await fetchPending(device);
      expect(fetched.map((c) => c.id)).toEqual([pushed!.id]);
      expect(fetched[0]!.parameters).toEqual({ configuration: desired });
      const executed = await report(device, pushed!.id, { status: 'executed', response: { configuration: desired } });
      expect(executed.status, JSON.stringify(executed.body)).toBe(200);

      const synced = await detail(device.id);
      expect(synced.reported_configuration).toEqual(desired);
      expect(synced.configuration_diff).toEqual([]);
      expect(synced.configuration_in_sync).toBe(true);

      const heartbeat = await api.post(
        `/api/devices/${device.id}/heartbeat`,
        { configuration: { interval: 30, network: { ssid: 'guest', dhcp: true, dns: { primary: '10.0.0.2' }, mtu: 1500 }, tags: ['b', 'a'], debug: false } },
        { token: device.credentials.auth_token },
      );
      expect(heartbeat.status, JSON.stringify(heartbeat.body)).toBe(200);
      const drifted = await detail(device.id);
      expect(drifted.desired_configuration).toEqual(desired);
      expect(drifted.reported_configuration).toEqual({ interval: 30, network: { ssid: 'guest', dhcp: true, dns: { primary: '10.0.0.2' }, mtu: 1500 }, tags: ['b', 'a'], debug: false });
      expect(drifted.configuration_in_sync).toBe(false);
      expect(drifted.configuration_diff).toEqual([
        { path: 'debug', desired: null, reported: false },
        { path: 'network.dns.primary', desired: '10.0.0.1', reported: '10.0.0.2' },
        { path: 'network.mtu', desired: null, reported: 1500 },
        { path: 'network.ssid', desired: 'lab', reported: 'guest' },
        { path: 'tags', desired: ['a', 'b'], reported: ['b', 'a'] },
      ]);

      // The log tells both reports apart.
      const entries = (await logs(device.id)).filter((e) => e.category === 'configuration').map((e) => e.message);
      expect(entries).toEqual(expect.arrayContaining(['device reported its configuration (command)', 'device reported its configuration (heartbeat)', 'configuration changed']));
    });

    it('an executed result without a response records the pushed configuration as reported', async () => {
      const device = await createDevice(api, alice.token, { configuration: { mode: 'auto' } });
      ok(await api.put(`/api/devices/${device.id}`, { settings: { mode: 'eco', limits: { max: 5 } } }, { token: alice.token }));
      const [pushed] = await fetchPending(device);
      expect(pushed!.command_type).toBe('update_configuration');
      ok(await report(device, pushed!.id, { status: 'executed' }));
      const after = await detail(device.id);
      expect(after).toMatchObject({ reported_configuration: { mode: 'eco', limits: { max: 5 } }, configuration_diff: [], configuration_in_sync: true });
    });

    it('a failed result records nothing; a response differing from the desired configuration shows where; a new desired configuration goes out of sync', async () => {
      const device = await createDevice(api, alice.token, { configuration: { a: 0 } });
      ok(await api.put(`/api/devices/${device.id}`, { configuration: { a: 1, nested: { b: 2 } } }, { token: alice.token }));
      const [first] = await fetchPending(device);
      ok(await report(device, first!.id, { status: 'failed', response: { configuration: { a: 1, nested: { b: 2 } }, error: 'flash full' } }));
      expect(await detail(device.id)).toMatchObject({ reported_configuration: null, configuration_in_sync: false, configuration_diff: [] });

      ok(await api.put(`/api/devices/${device.id}`, { configuration: { a: 2, nested: { b: 2 } } }, { token: alice.token }));
      const [second] = await fetchPending(device);
      ok(await report(device, second!.id, { status: 'executed', response: { configuration: { a: 2, nested: { b: 3 }, extra: true } } }));
      const partial = await detail(device.id);
      expect(partial.reported_configuration).toEqual({ a: 2, nested: { b: 3 }, extra: true });
      expect(partial.configuration_diff).toEqual([
        { path: 'extra', desired: null, reported: true },
        { path: 'nested.b', desired: 2, reported: 3 },
      ]);
      expect(partial.configuration_in_sync).toBe(false);

      // The device comes round (heartbeat), then the user changes the desired configuration again.
      ok(await api.post(`/api/devices/${device.id}/heartbeat`, { configuration: { a: 2, nested: { b: 2 } } }, { token: device.credentials.auth_token }));
      expect((await detail(device.id)).configuration_in_sync).toBe(true);
      ok(await api.put(`/api/devices/${device.id}`, { configuration: { a: 3, nested: { b: 2 } } }, { token: alice.token }));
      const moved = await detail(device.id);
      expect(moved.configuration_in_sync).toBe(false);
      expect(moved.configuration_diff).toEqual([{ path: 'a', desired: 3, reported: 2 }]);
    });

    it('a heartbeat without a configuration keeps the reported one; a hostile configuration in a heartbeat is refused and changes nothing', async () => {
      const device = await createDevice(api, alice.token, { configuration: { a: 1 } });
      const other = await createDevice(api, alice.token);
      ok(await api.post(`/api/devices/${device.id}/heartbeat`, { configuration: { a: 1 } }, { token: device.credentials.auth_token }));
      ok(await api.post(`/api/devices/${device.id}/heartbeat`, {}, { token: device.credentials.auth_token }));
      expect(await detail(device.id)).toMatchObject({ reported_configuration: { a: 1 }, configuration_in_sync: true });

      expectValidation(await api.post(`/api/devices/${device.id}/heartbeat`, { configuration: ['a', 1] }, { token: device.credentials.auth_token }), 'configuration');
      expectValidation(await api.post(`/api/devices/${device.id}/heartbeat`, { configuration: 'a=2' }, { token: device.credentials.auth_token }), 'configuration');
      expectValidation(await api.post(`/api/devices/${device.id}/heartbeat`, { configuration: null }, { token: device.credentials.auth_token }), 'configuration');
      let deep: Record<string, unknown> = { leaf: 1 };
      for (let i = 0; i < 200; i++) deep = { d: deep };
      expectValidation(await api.post(`/api/devices/${device.id}/heartbeat`, { configuration: deep }, { token: device.credentials.auth_token }), 'configuration');
      // Another device cannot report for it.
      expectError(await api.post(`/api/devices/${device.id}/heartbeat`, { configuration: { a: 9 } }, { token: other.credentials.auth_token }), 403, 'forbidden');
      expect(await detail(device.id)).toMatchObject({ reported_configuration: { a: 1 }, configuration_in_sync: true });
      // Nor another user see its state.
      expectError(await api.get(`/api/devices/${device.id}`, { token: bob.token }), 404, 'not_found');
    });
  });

  describe('firmware updates', () => {
    const firmware = { version: '2.1.0', url: 'https://updates.example.com/fw/2.1.0.bin', checksum: CHECKSUM };
    const progress = (device: RegisteredDevice, body: Record<string, unknown>, token: string | undefined = device.credentials.auth_token) =>
      api.post<Data<{ version: string; status: string }>>(`/api/devices/${device.id}/firmware/progress`, body, token ? { token } : {});
    const start = async (device: RegisteredDevice, body: Record<string, unknown> = firmware): Promise<Command> =>
      ok(await api.post<Data<Command>>(`/api/devices/${device.id}/firmware`, body, { token: alice.token }), 202).data;

    it('POST /firmware answers 202 with a queued firmware_update command; the device state shows the queued target', async () => {
      const device = await createDevice(api, alice.token, { firmware_version: '1.0.0' });
      const queued = await start(device, { ...firmware, checksum: `sha256:${CHECKSUM}` });
      expect(queued.id).toMatch(UUID);
      expect(queued).toMatchObject({ device_id: device.id, user_id: alice.id, command_type: 'firmware_update', status: 'pending', parameters: { ...firmware, checksum: `sha256:${CHECKSUM}` } });
      expect(await command(queued.id)).toEqual(queued);
      const state = await detail(device.id);
      expect(state.firmware_version).toBe('1.0.0');
      expect(state.firmware).toEqual({ target_version: '2.1.0', status: 'queued', detail: null, updated_at: server.clock.now().toISOString() });
      expect((await fetchPending(device)).map((c) => c.id)).toEqual([queued.id]);
    });

    it.each<[string, Record<string, unknown>, string]>([
      ['a url that is not a URL', { ...firmware, url: 'not a url' }, 'url'],
      ['an ftp url', { ...firmware, url: 'ftp://updates.example.com/fw.bin' }, 'url'],
      ['a javascript: url', { ...firmware, url: 'javascript:alert(1)' }, 'url'],
      ['a file: url', { ...firmware, url: 'file:///etc/passwd' }, 'url'],
      ['a url over 2048 characters', { ...firmware, url: `https://example.com/${'a'.repeat(2100)}` }, 'url'],
      ['no url', { version: '2.1.0', checksum: CHECKSUM }, 'url'],
      ['a short checksum', { ...firmware, checksum: 'abc123' }, 'checksum'],
      ['a checksum that is not hex', { ...firmware, checksum: 'z'.repeat(64) }, 'checksum'],
      ['a checksum one digit long', { ...firmware, checksum: `${CHECKSUM}0` }, 'checksum'],
      ['a sha1: prefixed checksum', { ...firmware, checksum: `sha1:${CHECKSUM}` }, 'checksum'],
      ['no checksum', { version: '2.1.0', url: firmware.url }, 'checksum'],
      ['no version', { url: firmware.url, checksum: CHECKSUM }, 'version'],
      ['a blank version', { ...firmware, version: '   ' }, 'version'],
      ['a version of 65 characters', { ...firmware, version: 'v'.repeat(65) }, 'version'],
      ['a version that is a number', { ...firmware, version: 2 }, 'version'],
    ])('refuses %s with 400 and queues nothing', async (_name, body, path) => {
      const device = await createDevice(api, alice.token);
      expectValidation(await api.post(`/api/devices/${device.id}/firmware`, body, { token: alice.token }), path);
      expect((await list(`device_id=${device.id}`)).meta.total).toBe(0);
      expect((await detail(device.id)).firmware).toBeNull();
    });

    it("answers 404 for another user's or an unknown device, 403 for a device token, 401 without credentials; nothing queued", async () => {
      const device = await createDevice(api, alice.token);
      expectError(await api.post(`/api/devices/${device.id}/firmware`, firmware, { token: bob.token }), 404, 'not_found');
      expectError(await api.post(`/api/devices/${NO_SUCH_ID}/firmware`, firmware, { token: alice.token }), 404, 'not_found');
      expectError(await api.post(`/api/devices/${device.id}/firmware`, firmware, { token: device.credentials.auth_token }), 403, 'forbidden');
      expectError(await api.post(`/api/devices/${device.id}/firmware`, firmware), 401, 'unauthenticated');
      expect((await list(`device_id=${device.id}`)).meta.total).toBe(0);
      expect((await detail(device.id)).firmware).toBeNull();
    });

    it('progress downloading → installing → done moves the firmware state; done sets firmware_version; the log has every step', async () => {
      const device = await createDevice(api, alice.token, { firmware_version: '1.0.0' });
      await start(device);
      const steps: Array<[FirmwareState['status'], string | null]> = [
        ['downloading', '12%'],
        ['installing', null],
        ['done', 'rebooted'],
      ];
      for (const [status, note] of steps) {
        server.clock.advance(5 * SECOND);
        const answer = await progress(device, { version: '2.1.0', status, ...(note ? { detail: note } : {}) });
        expect(ok(answer).data).toEqual({ version: '2.1.0', status });
        const state = await detail(device.id);
        expect(state.firmware).toEqual({ target_version: '2.1.0', status, detail: note, updated_at: server.clock.now().toISOString() });
        expect(state.firmware_version).toBe(status === 'done' ? '2.1.0' : '1.0.0');
      }
      const entries = (await logs(device.id)).filter((e) => e.category === 'firmware');
      expect(entries.map((e) => e.message).reverse()).toEqual(['firmware 2.1.0: queued', 'firmware 2.1.0: downloading', 'firmware 2.1.0: installing', 'firmware 2.1.0: done']);
      expect(entries.every((e) => e.severity === 'info')).toBe(true);
      // The device list shows the new version too.
      const listed = ok(await api.get<List<Device>>('/api/devices?limit=500', { token: alice.token })).data.find((d) => d.id === device.id);
      expect(listed?.firmware_version).toBe('2.1.0');
    });

    it('failed leaves firmware_version as it was, keeps the detail and logs an error', async () => {
      const device = await createDevice(api, alice.token, { firmware_version: '1.0.0' });
      await start(device);
      ok(await progress(device, { version: '2.1.0', status: 'downloading' }));
      ok(await progress(device, { version: '2.1.0', status: 'failed', detail: 'checksum mismatch' }));
      const state = await detail(device.id);
      expect(state.firmware_version).toBe('1.0.0');
      expect(state.firmware).toMatchObject({ target_version: '2.1.0', status: 'failed', detail: 'checksum mismatch' });
      const [last] = (await logs(device.id)).filter((e) => e.category === 'firmware');
      expect(last).toMatchObject({ severity: 'error', message: 'firmware 2.1.0: failed', details: { detail: 'checksum mismatch' } });
    });

    it('progress is for the device itself: a user token 403, another device 403, no credentials 401; invalid bodies 400; the state is untouched', async () => {
      const device = await createDevice(api, alice.token, { firmware_version: '1.0.0' });
      const other = await createDevice(api, alice.token);
      await start(device);
      const done = { version: '2.1.0', status: 'done' };
      expectError(await progress(device, done, alice.token), 403, 'forbidden');
      expectError(await progress(device, done, bob.token), 403, 'forbidden');
      expectError(await progress(device, done, other.credentials.auth_token), 403, 'forbidden');
      expectError(await progress(device, done, ''), 401, 'unauthenticated');
      expectValidation(await progress(device, { version: '2.1.0', status: 'exploded' }), 'status');
      expectValidation(await progress(device, { version: '2.1.0' }), 'status');
      expectValidation(await progress(device, { status: 'done' }), 'version');
      expectValidation(await progress(device, { version: '', status: 'done' }), 'version');
      expectValidation(await progress(device, { version: '2.1.0', status: 'done', detail: 'x'.repeat(501) }), 'detail');
      expectValidation(await progress(device, { version: '2.1.0', status: 'done', detail: { text: 'ok' } }), 'detail');
      const state = await detail(device.id);
      expect(state.firmware_version).toBe('1.0.0');
      expect(state.firmware?.status).toBe('queued');
      expect((await detail(other.id)).firmware).toBeNull();
    });

    it('the firmware_update command executed marks the update done and sets the version; failed marks it failed with the detail', async () => {
      const device = await createDevice(api, alice.token, { firmware_version: '1.0.0' });
      const queued = await start(device);
      const [delivered] = await fetchPending(device);
      expect(delivered).toMatchObject({ id: queued.id, status: 'sent', parameters: firmware });
      ok(await report(device, queued.id, { status: 'executed', response: { installed: '2.1.0' } }));
      const state = await detail(device.id);
      expect(state.firmware_version).toBe('2.1.0');
      expect(state.firmware).toMatchObject({ target_version: '2.1.0', status: 'done' });

      const broken = await createDevice(api, alice.token, { firmware_version: '1.0.0' });
      const attempt = await start(broken, { ...firmware, version: '3.0.0' });
      await fetchPending(broken);
      ok(await report(broken, attempt.id, { status: 'failed', response: { detail: 'bootloader locked' } }));
      const failed = await detail(broken.id);
      expect(failed.firmware_version).toBe('1.0.0');
      expect(failed.firmware).toMatchObject({ target_version: '3.0.0', status: 'failed', detail: 'bootloader locked' });
      expect((await logs(broken.id)).filter((e) => e.category === 'firmware').map((e) => e.message)).toEqual(['firmware 3.0.0: failed', 'firmware 3.0.0: queued']);
    });
  });

  describe('POST /api/devices/bulk', () => {
    const bulk = (operations: unknown, token = alice.token) => api.post<BulkAnswer>('/api/devices/bulk', { operations }, { token });

    it('answers 207 with one result per item, in order; invalid items store nothing; other users’ devices are 404 in that item only', async () => {
      const carol = await registerUser(api, uniqueName('carol'));
      const keep = await createDevice(api, carol.token, { name: 'keep-me', ip_address: '10.0.0.1' });
      const drop = await createDevice(api, carol.token, { name: 'drop-me' });
      const bobs = await createDevice(api, bob.token, { name: 'bobs-device' });
      const mac = uniqueMac();
      const before = await deviceCount(carol.token);

      const operations = [
        { action: 'register', device: { name: 'bulk-one', device_type: 'sensor', mac_address: mac } },
        { action: 'register', device: { name: '' } },
        { action: 'update', id: keep.id, changes: { name: 'kept-renamed' } },
        { action: 'update', id: keep.id, changes: { ip_address: 'not-an-ip', name: 'should-not-stick' } },
        { action: 'update', id: NO_SUCH_ID, changes: { name: 'ghost' } },
        { action: 'update', id: bobs.id, changes: { name: 'stolen' } },
        { action: 'delete', id: drop.id },
        { action: 'delete', id: drop.id },
        { action: 'delete', id: bobs.id },
        { action: 'register' },
        { action: 'update', changes: { name: 'no id' } },
        { action: 'register', device: { name: 'bulk-dup-mac', device_type: 'sensor', mac_address: mac.toUpperCase() } },
        { action: 'register', device: { name: 'bulk-bad-group', device_type: 'sensor', group_id: NO_SUCH_ID } },
        { action: 'register', device: { name: 'bulk-two', type: 'actuator', configuration: { on: false } } },
      ];
      const answer = await bulk(operations, carol.token);
      expect(answer.status, JSON.stringify(answer.body)).toBe(207);
      const results = answer.body.data;
      expect(results.map((r) => r.index)).toEqual(operations.map((_, i) => i));
      expect(results.map((r) => r.action)).toEqual(operations.map((o) => o.action));
      expect(results.map((r) => r.status)).toEqual([201, 400, 200, 400, 404, 404, 200, 404, 404, 400, 400, 409, 400, 201]);
      expect(results.map((r) => r.error?.code ?? null)).toEqual([
        null,
        'validation_failed',
        null,
        'validation_failed',
        'not_found',
        'not_found',
        null,
        'not_found',
        'not_found',
        'validation_failed',
        'validation_failed',
        'already_exists',
        'validation_failed',
        null,
      ]);
      expect(answer.body.meta).toEqual({ total: 14, succeeded: 4, failed: 10 });
      for (const failed of results.filter((r) => r.status >= 400)) {
        expect(failed.data).toBeUndefined();
        expect(typeof failed.error?.message).toBe('string');
        expect(Array.isArray(failed.error?.details)).toBe(true);
      }
      // Validation details name the item's own path.
      expect(results[1]!.error!.details.some((d) => d.path.startsWith('operations.1.device'))).toBe(true);
      expect(results[3]!.error!.details.map((d) => d.path)).toContain('operations.3.changes.ip_address');
      expect(results[10]!.error!.details.map((d) => d.path)).toContain('operations.10.id');

      const registered = results[0]!.data as RegisteredDevice;
      expect(registered).toMatchObject({ name: 'bulk-one', device_type: 'sensor', user_id: carol.id, mac_address: mac });
      expect(registered.credentials.device_id).toBe(registered.id);
      expect((results[13]!.data as RegisteredDevice).configuration).toEqual({ on: false });
      expect(results[2]!.data).toMatchObject({ id: keep.id, name: 'kept-renamed', ip_address: '10.0.0.1' });
      expect(results[6]!.data).toEqual({ id: drop.id, deleted: true });
      // The registered device's token works.
      ok(await api.get(`/api/devices/${registered.id}`, { token: registered.credentials.auth_token }));

      // What is stored: the two registrations, the rename and the delete, nothing else.
      expect(await deviceCount(carol.token)).toBe(before + 2 - 1);
      const names = ok(await api.get<List<Device>>('/api/devices?limit=500', { token: carol.token })).data.map((d) => d.name).sort();
      expect(names).toEqual(['bulk-one', 'bulk-two', 'kept-renamed']);
      expect(await detail(keep.id, carol.token)).toMatchObject({ name: 'kept-renamed', ip_address: '10.0.0.1' });
      expectError(await api.get(`/api/devices/${drop.id}`, { token: carol.token }), 404, 'not_found');
      expect(await detail(bobs.id, bob.token)).toMatchObject({ name: 'bobs-device' });
    });

    it('an update that changes the configuration pushes it to the device, as a single PUT does', async () => {
      const device = await createDevice(api, alice.token, { configuration: { interval: 60 } });
      const answer = await bulk([{ action: 'update', id: device.id, changes: { configuration: { interval: 5 } } }]);
      expect(answer.status).toBe(207);
      expect(answer.body.data[0]).toMatchObject({ status: 200 });
      const pushed = (await list(`device_id=${device.id}&command_type=update_configuration`)).data;
      expect(pushed.map((c) => c.parameters)).toEqual([{ configuration: { interval: 5 } }]);
    });

    it.each<[string, unknown, string]>([
      ['more than 100 operations', Array.from({ length: 101 }, (_, i) => ({ action: 'register', device: { name: `too-many-${i}`, type: 'sensor' } })), 'operations'],
      ['no operations', [], 'operations'],
      ['an unknown action', [{ action: 'register', device: { name: 'fine', type: 'sensor' } }, { action: 'upsert', id: NO_SUCH_ID }], 'operations.1.action'],
      ['an operation without action', [{ device: { name: 'x', type: 'sensor' } }], 'operations.0.action'],
      ['an operation that is not an object', ['register'], 'operations.0'],
      ['operations that are not a list', { action: 'register' }, 'operations'],
    ])('refuses %s with 400 for the whole request and stores nothing', async (_name, operations, path) => {
      const dave = await registerUser(api, uniqueName('dave'));
      expectValidation(await bulk(operations, dave.token), path);
      expect(await deviceCount(dave.token)).toBe(0);
    });

    it('refuses a missing body, a device token (403) and no credentials (401)', async () => {
      const device = await createDevice(api, alice.token);
      const before = await deviceCount(alice.token);
      expectValidation(await api.post('/api/devices/bulk', {}, { token: alice.token }), 'operations');
      expectError(await api.post('/api/devices/bulk', { operations: [{ action: 'delete', id: device.id }] }, { token: device.credentials.auth_token }), 403, 'forbidden');
      expectError(await api.post('/api/devices/bulk', { operations: [{ action: 'delete', id: device.id }] }), 401, 'unauthenticated');
      expectError(await api.post('/api/devices/bulk', undefined, { token: alice.token, raw: '{"operations": [', headers: { 'content-type': 'application/json' } }), 400, 'invalid_json');
      expect(await deviceCount(alice.token)).toBe(before);
    });

    it('accepts exactly 100 operations', async () => {
      const erin = await registerUser(api, uniqueName('erin'));
      const answer = await bulk(Array.from({ length: 100 }, (_, i) => ({ action: 'register', device: { name: `hundred-${i}`, type: 'sensor' } })), erin.token);
      expect(answer.status).toBe(207);
      expect(answer.body.meta).toEqual({ total: 100, succeeded: 100, failed: 0 });
      expect(await deviceCount(erin.token)).toBe(100);
    });
  });

  describe('device templates', () => {
    const createTemplate = async (body: Record<string, unknown>, token = alice.token): Promise<Answer<Data<Template>>> => api.post<Data<Template>>('/api/templates', body, { token });
    const thermo = { name: 'Thermostat', device_type: 'thermostat', description: 'lab thermostats', configuration: { interval: 60, unit: 'C' }, thresholds: { temperature: { min: 0, max: 30 } } };

    it('creates (201, ETag), reads, lists per user, updates with If-Match (412 on a stale one) and deletes (then 404)', async () => {
      const created = await createTemplate(thermo);
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      const t = created.body.data;
      expect(t.id).toMatch(UUID);
      expect(t).toMatchObject({ ...thermo, user_id: alice.id, version: 1, created_at: server.clock.now().toISOString(), updated_at: server.clock.now().toISOString() });
      expect(created.headers.get('etag')).toBe('"1"');

      const minimal = ok(await createTemplate({ name: 'Bare', device_type: 'plug' }), 201).data;
      expect(minimal).toMatchObject({ description: null, configuration: {}, thresholds: {} });

      expect(ok(await api.get<Data<Template>>(`/api/templates/${t.id}`, { token: alice.token })).data).toEqual(t);
      const mine = ok(await api.get<List<Template>>('/api/templates?limit=500', { token: alice.token }));
      expect(mine.data.map((x) => x.id)).toEqual(expect.arrayContaining([t.id, minimal.id]));
      expect(ok(await api.get<List<Template>>('/api/templates?limit=500', { token: bob.token })).data.map((x) => x.id)).not.toContain(t.id);

      server.clock.advance(SECOND);
      const updated = await api.put<Data<Template>>(`/api/templates/${t.id}`, { name: 'Thermostat v2', thresholds: { temperature: { max: 28 } } }, { token: alice.token, headers: { 'if-match': '"1"' } });
      expect(updated.status, JSON.stringify(updated.body)).toBe(200);
      expect(updated.body.data).toMatchObject({ name: 'Thermostat v2', device_type: 'thermostat', configuration: thermo.configuration, thresholds: { temperature: { max: 28 } }, version: 2, updated_at: server.clock.now().toISOString(), created_at: t.created_at });
      expect(updated.headers.get('etag')).toBe('"2"');

      expectError(await api.put(`/api/templates/${t.id}`, { name: 'stale' }, { token: alice.token, headers: { 'if-match': '"1"' } }), 412, 'precondition_failed');
      expectError(await api.put(`/api/templates/${t.id}`, { name: 'garbage' }, { token: alice.token, headers: { 'if-match': 'yesterday' } }), 412, 'precondition_failed');
      expect(ok(await api.get<Data<Template>>(`/api/templates/${t.id}`, { token: alice.token })).data).toMatchObject({ name: 'Thermostat v2', version: 2 });
      // Nothing changed: still 200, same version.
      expect(ok(await api.put<Data<Template>>(`/api/templates/${t.id}`, { name: 'Thermostat v2' }, { token: alice.token })).data.version).toBe(2);

      expect(ok(await api.del<Data<{ id: string; deleted: boolean }>>(`/api/templates/${t.id}`, { token: alice.token })).data).toEqual({ id: t.id, deleted: true });
      expectError(await api.get(`/api/templates/${t.id}`, { token: alice.token }), 404, 'not_found');
      expectError(await api.put(`/api/templates/${t.id}`, { name: 'back' }, { token: alice.token }), 404, 'not_found');
      expectError(await api.del(`/api/templates/${t.id}`, { token: alice.token }), 404, 'not_found');
      expect(ok(await api.get<List<Template>>('/api/templates?limit=500', { token: alice.token })).data.map((x) => x.id)).not.toContain(t.id);
    });

    it.each<[string, Record<string, unknown>, string]>([
      ['no name', { device_type: 'x' }, 'name'],
      ['a blank name', { name: '   ', device_type: 'x' }, 'name'],
      ['a name of 101 characters', { name: 'n'.repeat(101), device_type: 'x' }, 'name'],
      ['no device_type', { name: 'T' }, 'device_type'],
      ['an empty device_type', { name: 'T', device_type: '' }, 'device_type'],
      ['a configuration that is a string', { name: 'T', device_type: 'x', configuration: 'interval=5' }, 'configuration'],
      ['a configuration that is a list', { name: 'T', device_type: 'x', configuration: [1] }, 'configuration'],
      ['thresholds as a list', { name: 'T', device_type: 'x', thresholds: [{ min: 0 }] }, 'thresholds'],
      ['a threshold that is a number', { name: 'T', device_type: 'x', thresholds: { temperature: 30 } }, 'thresholds.temperature'],
      ['a threshold max that is a string', { name: 'T', device_type: 'x', thresholds: { temperature: { max: 'hot' } } }, 'thresholds.temperature.max'],
      ['a negative hysteresis', { name: 'T', device_type: 'x', thresholds: { temperature: { max: 30, hysteresis: -1 } } }, 'thresholds.temperature.hysteresis'],
      ['an unknown severity', { name: 'T', device_type: 'x', thresholds: { temperature: { max: 30, severity: 'panic' } } }, 'thresholds.temperature.severity'],
    ])('refuses %s with 400 and stores nothing', async (_name, body, path) => {
      const frank = await registerUser(api, uniqueName('frank'));
      expectValidation(await createTemplate(body, frank.token), path);
      expect(ok(await api.get<List<Template>>('/api/templates', { token: frank.token })).meta.total).toBe(0);
    });

    it('refuses __proto__ keys in configuration and thresholds (400); constructor.prototype is plain data; nothing is polluted', async () => {
      const ivan = await registerUser(api, uniqueName('ivan'));
      const post = (raw: string) => api.post<Data<Template>>('/api/templates', undefined, { token: ivan.token, raw, headers: { 'content-type': 'application/json' } });
      expectError(await post('{"name":"T","device_type":"x","configuration":{"__proto__":{"polluted":true}}}'), 400, 'validation_failed');
      expectError(await post('{"name":"T","device_type":"x","thresholds":{"__proto__":{"max":1}}}'), 400, 'validation_failed');
      expect(ok(await api.get<List<Template>>('/api/templates', { token: ivan.token })).meta.total).toBe(0);
      const literal = ok(await post('{"name":"T","device_type":"x","configuration":{"nested":{"constructor":{"prototype":{"polluted":true}}}}}'), 201).data;
      expect(literal.configuration).toEqual({ nested: { constructor: { prototype: { polluted: true } } } });
      const device = ok(await api.post<Data<RegisteredDevice>>('/api/devices', { name: 'literal', template_id: literal.id }, { token: ivan.token }), 201).data;
      expect(device.configuration).toEqual({ nested: { constructor: { prototype: { polluted: true } } }, thresholds: {} });
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect(({} as Record<string, unknown>).max).toBeUndefined();
    });

    it('PUT validates too and leaves the template as it was', async () => {
      const t = ok(await createTemplate(thermo), 201).data;
      expectValidation(await api.put(`/api/templates/${t.id}`, { thresholds: { temperature: { min: 'cold' } } }, { token: alice.token }), 'thresholds.temperature.min');
      expectValidation(await api.put(`/api/templates/${t.id}`, { name: '' }, { token: alice.token }), 'name');
      expectValidation(await api.put(`/api/templates/${t.id}`, { configuration: null }, { token: alice.token }), 'configuration');
      expect(ok(await api.get<Data<Template>>(`/api/templates/${t.id}`, { token: alice.token })).data).toEqual(t);
    });

    it("another user's template is 404 on GET, PUT and DELETE; an unknown one 404; a device token 403; no credentials 401", async () => {
      const t = ok(await createTemplate(thermo), 201).data;
      const device = await createDevice(api, alice.token);
      expectError(await api.get(`/api/templates/${t.id}`, { token: bob.token }), 404, 'not_found');
      expectError(await api.put(`/api/templates/${t.id}`, { name: 'mine now' }, { token: bob.token }), 404, 'not_found');
      expectError(await api.del(`/api/templates/${t.id}`, { token: bob.token }), 404, 'not_found');
      expectError(await api.get(`/api/templates/${NO_SUCH_ID}`, { token: alice.token }), 404, 'not_found');
      expectError(await api.get(`/api/templates/${t.id}`, { token: device.credentials.auth_token }), 403, 'forbidden');
      expectError(await api.post('/api/templates', thermo, { token: device.credentials.auth_token }), 403, 'forbidden');
      expectError(await api.get('/api/templates'), 401, 'unauthenticated');
      expect(ok(await api.get<Data<Template>>(`/api/templates/${t.id}`, { token: alice.token })).data).toEqual(t);
    });

    it('POST /api/devices with template_id starts from its type, configuration and thresholds, the body overriding; the thresholds raise alerts', async () => {
      const t = ok(await createTemplate(thermo), 201).data;
      // Not through createDevice: it would add a device_type of its own.
      const made = await api.post<Data<RegisteredDevice>>('/api/devices', { name: uniqueName('tpl'), template_id: t.id }, { token: alice.token });
      const plain = ok(made, 201).data;
      expect(plain.device_type).toBe('thermostat');
      expect(plain.configuration).toEqual({ interval: 60, unit: 'C', thresholds: { temperature: { min: 0, max: 30 } } });

      const custom = await createDevice(api, alice.token, { template_id: t.id, device_type: 'fancy', configuration: { interval: 5, thresholds: { temperature: { max: 50 } } } });
      expect(custom.device_type).toBe('fancy');
      expect(custom.configuration).toEqual({ interval: 5, unit: 'C', thresholds: { temperature: { max: 50 } } });

      const aliased = await createDevice(api, alice.token, { template_id: t.id, type: 'aliased' });
      expect(aliased.device_type).toBe('aliased');

      // The template's threshold (max 30) raises; the overridden one (max 50) does not.
      await submitOk(api, plain.id, plain.credentials.auth_token, { sensor_readings: { temperature: 35 } });
      await submitOk(api, custom.id, custom.credentials.auth_token, { sensor_readings: { temperature: 35 } });
      const alerts = async (deviceId: string) => ok(await api.get<List<Alert>>(`/api/alerts?device_id=${deviceId}`, { token: alice.token })).data;
      const [raised, ...others] = await alerts(plain.id);
      expect(others).toEqual([]);
      expect(raised).toMatchObject({ kind: 'threshold', sensor_type: 'temperature', status: 'active', last_value: 35, severity: 'warning' });
      expect(await alerts(custom.id)).toEqual([]);

      // Changing the template later leaves devices made from it alone.
      ok(await api.put(`/api/templates/${t.id}`, { configuration: { interval: 1 }, thresholds: {} }, { token: alice.token }));
      expect((await detail(plain.id)).configuration).toEqual({ interval: 60, unit: 'C', thresholds: { temperature: { min: 0, max: 30 } } });
      expect((await list(`device_id=${plain.id}`)).meta.total).toBe(0);
    });

    it("refuses another user's template (404), an unknown one (404), a deleted one (404) and a malformed id (400); nothing is registered", async () => {
      const gina = await registerUser(api, uniqueName('gina'));
      const bobs = ok(await createTemplate(thermo, bob.token), 201).data;
      const gone = ok(await createTemplate(thermo, gina.token), 201).data;
      ok(await api.del(`/api/templates/${gone.id}`, { token: gina.token }));
      expectError(await api.post('/api/devices', { name: 'from-bob', template_id: bobs.id }, { token: gina.token }), 404, 'not_found');
      expectError(await api.post('/api/devices', { name: 'from-none', template_id: NO_SUCH_ID }, { token: gina.token }), 404, 'not_found');
      expectError(await api.post('/api/devices', { name: 'from-gone', template_id: gone.id }, { token: gina.token }), 404, 'not_found');
      expectValidation(await api.post('/api/devices', { name: 'from-junk', template_id: "1' OR '1'='1" }, { token: gina.token }), 'template_id');
      expectValidation(await api.post('/api/devices', { name: 'no-type' }, { token: gina.token }), 'device_type');

      // In a bulk request the foreign template fails its own item only.
      const mine = ok(await createTemplate({ name: 'G', device_type: 'gauge', configuration: { range: 10 } }, gina.token), 201).data;
      const answer = await api.post<BulkAnswer>(
        '/api/devices/bulk',
        { operations: [{ action: 'register', device: { name: 'b-foreign', template_id: bobs.id } }, { action: 'register', device: { name: 'b-mine', template_id: mine.id } }] },
        { token: gina.token },
      );
      expect(answer.status).toBe(207);
      expect(answer.body.data.map((r) => [r.status, r.error?.code ?? null])).toEqual([
        [404, 'not_found'],
        [201, null],
      ]);
      expect(answer.body.data[1]!.data).toMatchObject({ device_type: 'gauge', configuration: { range: 10, thresholds: {} } });
      expect(await deviceCount(gina.token)).toBe(1);
    });
  });

  describe('provisioning by MAC address', () => {
    const provision = (body: Record<string, unknown>, apiKey: string) => api.post<Data<RegisteredDevice>>('/api/devices/provision', body, { headers: { 'x-api-key': apiKey } });
    const tokenWorks = async (deviceId: string, token: string): Promise<number> => (await api.get(`/api/devices/${deviceId}`, { token })).status;

    it('registers the first time (201), then, given its current token, answers the same device with a fresh token (200); the old token is refused', async () => {
      const mac = uniqueMac();
      const before = await deviceCount(alice.token);
      const first = await provision({ mac_address: mac }, alice.apiKey);
      expect(first.status, JSON.stringify(first.body)).toBe(201);
      const device = first.body.data;
      expect(device).toMatchObject({ user_id: alice.id, mac_address: mac, name: `device ${mac}`, device_type: 'generic' });
      expect(device.credentials.device_id).toBe(device.id);
      expect(await tokenWorks(device.id, device.credentials.auth_token)).toBe(200);
      expect(await deviceCount(alice.token)).toBe(before + 1);

      const again = await provision({ mac_address: mac, name: 'ignored the second time', current_token: device.credentials.auth_token }, alice.apiKey);
      expect(again.status, JSON.stringify(again.body)).toBe(200);
      expect(again.body.data.id).toBe(device.id);
      expect(again.body.data.name).toBe(`device ${mac}`);
      expect(again.body.data.credentials.auth_token).not.toBe(device.credentials.auth_token);
      expectError(await api.get(`/api/devices/${device.id}`, { token: device.credentials.auth_token }), 401, 'unauthenticated');
      expect(await tokenWorks(device.id, again.body.data.credentials.auth_token)).toBe(200);
      expect(await deviceCount(alice.token)).toBe(before + 1);
    });

    it('takes the body on first registration; a MAC in another case or separator form is the same device, also one registered by POST /api/devices', async () => {
      const mac = uniqueMac();
      const first = await provision({ mac_address: mac.toUpperCase(), name: 'boiler', type: 'heater', configuration: { target: 21 }, firmware_version: '0.9' }, alice.apiKey);
      expect(first.status).toBe(201);
      expect(first.body.data).toMatchObject({ name: 'boiler', device_type: 'heater', configuration: { target: 21 }, firmware_version: '0.9' });
      const dashed = await provision({ mac_address: mac.toLowerCase().replaceAll(':', '-'), current_token: first.body.data.credentials.auth_token }, alice.apiKey);
      expect(dashed.status).toBe(200);
      expect(dashed.body.data.id).toBe(first.body.data.id);

      const other = uniqueMac();
      const made = await createDevice(api, alice.token, { mac_address: other });
      const found = await provision({ mac_address: other.toUpperCase().replaceAll(':', '-'), current_token: made.credentials.auth_token }, alice.apiKey);
      expect(found.status).toBe(200);
      expect(found.body.data.id).toBe(made.id);
      expectError(await api.get(`/api/devices/${made.id}`, { token: made.credentials.auth_token }), 401, 'unauthenticated');
    });

    it('does not evict a registered device for a holder of the provisioning key alone: 409, its token still works', async () => {
      const mac = uniqueMac();
      const device = ok(await provision({ mac_address: mac }, alice.apiKey), 201).data;
      const refused = expectError(await provision({ mac_address: mac }, alice.apiKey), 409, 'already_exists');
      expect(refused.message).toMatch(/current token.*owner signed in/);
      expectError(await provision({ mac_address: mac, current_token: `${device.credentials.auth_token}x` }, alice.apiKey), 409, 'already_exists');
      expect(await tokenWorks(device.id, device.credentials.auth_token)).toBe(200);
      // The owner signed in approves it.
      const approved = await api.post<Data<RegisteredDevice>>('/api/devices/provision', { mac_address: mac }, { token: alice.token });
      expect(approved.status, JSON.stringify(approved.body)).toBe(200);
      expect(approved.body.data.id).toBe(device.id);
      expectError(await api.get(`/api/devices/${device.id}`, { token: device.credentials.auth_token }), 401, 'unauthenticated');
      expect(await tokenWorks(device.id, approved.body.data.credentials.auth_token)).toBe(200);
    });

    it("answers 409 for another user's MAC and leaves that device and its token alone", async () => {
      const mac = uniqueMac();
      const mine = ok(await provision({ mac_address: mac }, alice.apiKey), 201).data;
      const bobBefore = await deviceCount(bob.token);
      expectError(await provision({ mac_address: mac }, bob.apiKey), 409, 'already_exists');
      expectError(await provision({ mac_address: mac.toUpperCase().replaceAll(':', '-') }, bob.apiKey), 409, 'already_exists');
      expectError(await api.post('/api/devices/provision', { mac_address: mac }, { token: bob.token }), 409, 'already_exists');
      expect(await tokenWorks(mine.id, mine.credentials.auth_token)).toBe(200);
      expect(await deviceCount(bob.token)).toBe(bobBefore);
    });

    it.each<[string, Record<string, unknown>, string]>([
      ['no mac_address', {}, 'mac_address'],
      ['a MAC with non-hex digits', { mac_address: 'zz:00:00:00:00:01' }, 'mac_address'],
      ['a MAC with mixed separators', { mac_address: '02:00:00-00:00:01' }, 'mac_address'],
      ['a MAC with five pairs', { mac_address: '02:00:00:00:00' }, 'mac_address'],
      ['a MAC without separators', { mac_address: '020000000001' }, 'mac_address'],
      ['a MAC that is a number', { mac_address: 20000000001 }, 'mac_address'],
      ['a SQL-looking MAC', { mac_address: "' OR 1=1 --" }, 'mac_address'],
      ['a configuration that is a list', { mac_address: '02:00:00:00:00:02', configuration: [] }, 'configuration'],
    ])('refuses %s with 400', async (_name, body, path) => {
      const before = await deviceCount(alice.token);
      expectValidation(await provision(body, alice.apiKey), path);
      expect(await deviceCount(alice.token)).toBe(before);
    });

    it('refuses a device token (403), a wrong API key and no credentials (401)', async () => {
      const device = await createDevice(api, alice.token);
      const mac = uniqueMac();
      expectError(await api.post('/api/devices/provision', { mac_address: mac }, { token: device.credentials.auth_token }), 403, 'forbidden');
      expectError(await provision({ mac_address: mac }, `${alice.apiKey.slice(0, -2)}xx`), 401, 'unauthenticated');
      expectError(await api.post('/api/devices/provision', { mac_address: mac }), 401, 'unauthenticated');
      expect((await provision({ mac_address: mac }, alice.apiKey)).status).toBe(201);
    });

    it('a deleted device provisions afresh (201, new id); a foreign group_id is refused on first registration', async () => {
      const mac = uniqueMac();
      const first = ok(await provision({ mac_address: mac }, alice.apiKey), 201).data;
      ok(await api.del(`/api/devices/${first.id}`, { token: alice.token }));
      const again = ok(await provision({ mac_address: mac }, alice.apiKey), 201).data;
      expect(again.id).not.toBe(first.id);

      const bobsGroup = await createGroup(api, bob.token);
      const before = await deviceCount(alice.token);
      expectValidation(await provision({ mac_address: uniqueMac(), group_id: bobsGroup.id }, alice.apiKey), 'group_id');
      expect(await deviceCount(alice.token)).toBe(before);
    });

    it('10 concurrent calls with one provisioning key and one MAC make one device: one 201, nine 409, its token valid', async () => {
      const kai = await registerUser(api, uniqueName('kai'));
      const mac = uniqueMac();
      const answers = await Promise.all(Array.from({ length: 10 }, () => provision({ mac_address: mac }, kai.apiKey)));
      expect(answers.map((a) => a.status).sort()).toEqual([201, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
      const made = answers.find((a) => a.status === 201)!.body.data;
      expect(await tokenWorks(made.id, made.credentials.auth_token)).toBe(200);
      expect(await deviceCount(kai.token)).toBe(1);
    });

    it('10 concurrent calls with one MAC by its owner signed in make one device: one 201, nine 200, the same id, exactly one token left valid', async () => {
      const hana = await registerUser(api, uniqueName('hana'));
      const mac = uniqueMac();
      const forms = [mac, mac.toUpperCase(), mac.replaceAll(':', '-'), mac.toUpperCase().replaceAll(':', '-')];
      const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => api.post<Data<RegisteredDevice>>('/api/devices/provision', { mac_address: forms[i % forms.length]! }, { token: hana.token })));
      expect(answers.map((a) => a.status).sort()).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 200, 201]);
      const ids = new Set(answers.map((a) => a.body.data.id));
      expect(ids.size).toBe(1);
      const [id] = [...ids];
      const tokens = answers.map((a) => a.body.data.credentials.auth_token);
      expect(new Set(tokens).size).toBe(10);
      const working = (await Promise.all(tokens.map((token) => tokenWorks(id!, token)))).filter((status) => status === 200);
      expect(working).toHaveLength(1);
      expect(await deviceCount(hana.token)).toBe(1);
      expect(ok(await api.get<List<Device>>('/api/devices', { token: hana.token })).meta.total).toBe(1);
    });
  });

  describe('with a device quota of 3', () => {
    let small: TestServer;
    const smallApi = client(() => small.url);

    beforeAll(async () => {
      small = await startTestServer({ DEFAULT_DEVICE_QUOTA: '3' });
      await registerUser(smallApi, uniqueName('qadmin'));
    });
    afterAll(async () => {
      await small?.close();
    });

    it('bulk registration respects the quota item by item; a delete earlier in the request frees a slot', async () => {
      const user = await registerUser(smallApi, uniqueName('quota'));
      const existing = await createDevice(smallApi, user.token);
      const register = (name: string) => ({ action: 'register', device: { name, type: 'sensor' } });
      const answer = await smallApi.post<BulkAnswer>(
        '/api/devices/bulk',
        { operations: [register('q1'), register('q2'), register('q3'), { action: 'delete', id: existing.id }, register('q4'), register('q5')] },
        { token: user.token },
      );
      expect(answer.status, JSON.stringify(answer.body)).toBe(207);
      expect(answer.body.data.map((r) => r.status)).toEqual([201, 201, 403, 200, 201, 403]);
      expect(answer.body.data[2]!.error?.code).toBe('quota_exceeded');
      expect(answer.body.data[5]!.error?.code).toBe('quota_exceeded');
      expect(answer.body.meta).toEqual({ total: 6, succeeded: 4, failed: 2 });
      const names = ok(await smallApi.get<List<Device>>('/api/devices', { token: user.token })).data.map((d) => d.name).sort();
      expect(names).toEqual(['q1', 'q2', 'q4']);
    });

    it('provisioning a new MAC at the quota is 403; an already provisioned MAC still answers 200', async () => {
      const user = await registerUser(smallApi, uniqueName('quotap'));
      const macs = [uniqueMac(), uniqueMac(), uniqueMac()];
      for (const mac of macs) expect((await smallApi.post('/api/devices/provision', { mac_address: mac }, { headers: { 'x-api-key': user.apiKey } })).status).toBe(201);
      expectError(await smallApi.post('/api/devices/provision', { mac_address: uniqueMac() }, { headers: { 'x-api-key': user.apiKey } }), 403, 'quota_exceeded');
      expect((await smallApi.post('/api/devices/provision', { mac_address: macs[1] }, { token: user.token })).status).toBe(200);
      expect(ok(await smallApi.get<Data<{ device_count: number }>>('/api/auth/user', { token: user.token })).data.device_count).toBe(3);
    });
  });

  describe('group rollouts', () => {
    const fleet = async (size: number, owner: Account = alice) => {
      const group = await createGroup(api, owner.token);
      const devices: RegisteredDevice[] = [];
      for (let i = 0; i < size; i++) devices.push(await createDevice(api, owner.token, { group_id: group.id }));
      return { group, devices };
    };
    const startBatch = async (groupId: string, body: Record<string, unknown>): Promise<GroupCommandAnswer> =>
      ok(await api.post<Data<GroupCommandAnswer>>(`/api/groups/${groupId}/commands`, body, { token: alice.token }), 202).data;
    const batch = async (batchId: string, token = alice.token): Promise<CommandList> => list(`batch_id=${batchId}&limit=500`, token);
    const byDevice = (devices: RegisteredDevice[]) => new Map(devices.map((d) => [d.id, d]));
    /** Each device of the batch fetches and reports `status` for its command. */
    const finish = async (commands: Command[], devices: Map<string, RegisteredDevice>, status: 'executed' | 'failed') => {
      for (const c of commands) ok(await report(devices.get(c.device_id)!, c.id, { status }));
    };

    it('rolls out at rollout_per_minute: one at once, one more each 30 s at 2/min, all 6 after 3 minutes; completed once all executed', async () => {
      const { group, devices } = await fleet(6);
      const started = await startBatch(group.id, { command_type: 'reboot', rollout_per_minute: 2, priority: 'high' });
      expect(started).toMatchObject({ count: 1, total_devices: 6, status: 'active' });
      expect(started.batch_id).toMatch(UUID);
      expect(started.commands).toHaveLength(1);
      expect(started.commands[0]).toMatchObject({ batch_id: started.batch_id, command_type: 'reboot', priority: 'high', status: 'pending' });

      const first = await batch(started.batch_id);
      expect(first.meta.total).toBe(1);
      expect(first.meta.batch).toMatchObject({ batch_id: started.batch_id, status: 'active', total_devices: 6, rollout_per_minute: 2, abort_failure_percent: null, by_status: { pending: 1 } });

      await advanceAndTick(29 * SECOND);
      expect((await batch(started.batch_id)).meta.total).toBe(1);
      await advanceAndTick(1 * SECOND);
      expect((await batch(started.batch_id)).meta.total).toBe(2);
      await advanceAndTick(30 * SECOND);
      expect((await batch(started.batch_id)).meta.total).toBe(3);
      await advanceAndTick(2 * MINUTE);
      const all = await batch(started.batch_id);
      expect(all.meta.total).toBe(6);
      expect(all.data.map((c) => c.device_id).sort()).toEqual(devices.map((d) => d.id).sort());
      expect(all.meta.batch).toMatchObject({ status: 'active', by_status: { pending: 6 } });
      // Nothing more is queued later: one command per device.
      await advanceAndTick(5 * MINUTE);
      expect((await batch(started.batch_id)).meta.total).toBe(6);

      const devicesById = byDevice(devices);
      const [last, ...rest] = all.data;
      for (const c of rest) expect((await fetchPending(devicesById.get(c.device_id)!)).map((x) => x.id)).toEqual([c.id]);
      await finish(rest, devicesById, 'executed');
      await advanceAndTick(SECOND);
      expect((await batch(started.batch_id)).meta.batch).toMatchObject({ status: 'active', by_status: { executed: 5, pending: 1 } });
      await finish([last!], devicesById, 'executed');
      await advanceAndTick(SECOND);
      expect((await batch(started.batch_id)).meta.batch).toMatchObject({ status: 'completed', reason: null, by_status: { executed: 6 } });
    });

    it('keeps its pace when a device of the batch is deleted: the deleted device\'s command still counts as queued', async () => {
      const { group, devices } = await fleet(4);
      const started = await startBatch(group.id, { command_type: 'reboot', rollout_per_minute: 1 });
      const [first] = (await batch(started.batch_id)).data;
      expect((await api.del(`/api/devices/${first!.device_id}`, { token: alice.token })).status).toBe(200);
      await advanceAndTick(60 * SECOND);
      // One more a minute: one new command, the deleted device's one hidden from the list.
      const listed = await batch(started.batch_id);
      expect(listed.meta.total).toBe(1);
      expect(listed.data[0]!.device_id).not.toBe(first!.device_id);
      expect(devices.map((d) => d.id)).toContain(listed.data[0]!.device_id);
    });

    it('aborts past abort_failure_percent: 3 of 6 failed at 40% cancels the not-yet-sent commands (batch_aborted), leaves sent ones', async () => {
      const { group, devices } = await fleet(6);
      const started = await startBatch(group.id, { command_type: 'calibrate', abort_failure_percent: 40 });
      expect(started).toMatchObject({ count: 6, total_devices: 6, status: 'active' });
      const devicesById = byDevice(devices);
      const [c1, c2, c3, c4, c5, c6] = started.commands as [Command, Command, Command, Command, Command, Command];
      expect((await fetchPending(devicesById.get(c1.device_id)!)).map((c) => c.id)).toEqual([c1.id]);

      // 2 of 6 failed (33%): below the threshold, still active.
      await finish([c2, c3], devicesById, 'failed');
      await advanceAndTick(SECOND);
      expect((await batch(started.batch_id)).meta.batch).toMatchObject({ status: 'active', abort_failure_percent: 40, by_status: { failed: 2, pending: 3, sent: 1 } });

      // 3 of 6 (50%): aborted at the next timer run.
      await finish([c4], devicesById, 'failed');
      await advanceAndTick(SECOND);
      const aborted = await batch(started.batch_id);
      expect(aborted.meta.batch).toMatchObject({ status: 'aborted', by_status: { failed: 3, sent: 1, cancelled: 2 } });
      expect(aborted.meta.batch?.reason).toMatch(/3 of 6/);
      for (const c of [c5, c6]) {
        expect(await command(c.id)).toMatchObject({ status: 'cancelled', failure_reason: 'batch_aborted' });
        expect(await fetchPending(devicesById.get(c.device_id)!)).toEqual([]);
      }
      expect((await command(c1.id)).status).toBe('sent');
      // The sent command may still report; the batch stays aborted.
      ok(await report(devicesById.get(c1.device_id)!, c1.id, { status: 'executed' }));
      await advanceAndTick(SECOND);
      expect((await batch(started.batch_id)).meta.batch).toMatchObject({ status: 'aborted', by_status: { failed: 3, executed: 1, cancelled: 2 } });
    });

    it('a paced rollout stops queuing once aborted', async () => {
      const { group, devices } = await fleet(3);
      const started = await startBatch(group.id, { command_type: 'update', rollout_per_minute: 1, abort_failure_percent: 0 });
      expect(started.count).toBe(1);
      await finish(started.commands, byDevice(devices), 'failed');
      await advanceAndTick(SECOND);
      expect((await batch(started.batch_id)).meta.batch).toMatchObject({ status: 'aborted', by_status: { failed: 1 } });
      await advanceAndTick(10 * MINUTE);
      expect((await batch(started.batch_id)).meta.total).toBe(1);
    });

    it('validates rollout_per_minute and abort_failure_percent; another user sees no batch', async () => {
      const { group, devices } = await fleet(1);
      for (const [body, path] of [
        [{ command_type: 'reboot', rollout_per_minute: 0 }, 'rollout_per_minute'],
        [{ command_type: 'reboot', rollout_per_minute: -2 }, 'rollout_per_minute'],
        [{ command_type: 'reboot', rollout_per_minute: 1.5 }, 'rollout_per_minute'],
        [{ command_type: 'reboot', rollout_per_minute: '2' }, 'rollout_per_minute'],
        [{ command_type: 'reboot', abort_failure_percent: 101 }, 'abort_failure_percent'],
        [{ command_type: 'reboot', abort_failure_percent: -1 }, 'abort_failure_percent'],
        [{ command_type: 'reboot', abort_failure_percent: 'half' }, 'abort_failure_percent'],
      ] as const) {
        expectValidation(await api.post(`/api/groups/${group.id}/commands`, body, { token: alice.token }), path);
      }
      expect((await list(`device_id=${devices[0]!.id}`)).meta.total).toBe(0);

      const started = await startBatch(group.id, { command_type: 'ping', rollout_per_minute: 1, abort_failure_percent: 10 });
      const forBob = await batch(started.batch_id, bob.token);
      expect(forBob.meta.total).toBe(0);
      expect(forBob.meta.batch).toEqual({ batch_id: started.batch_id, by_status: {} });
      expectError(await api.post(`/api/groups/${group.id}/commands`, { command_type: 'ping', rollout_per_minute: 1 }, { token: bob.token }), 404, 'not_found');
    });

    it('one command per device even when the rollout timer runs while the batch starts', async () => {
      const { group, devices } = await fleet(6);
      let started = false;
      const ticking = (async () => {
        while (!started) {
          await server.server.timers.runAll();
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      const answer = await api.post<Data<GroupCommandAnswer>>(`/api/groups/${group.id}/commands`, { command_type: 'reboot' }, { token: alice.token });
      started = true;
      await ticking;
      const body = ok(answer, 202).data;
      expect(body.count).toBe(6);
      const queued = await batch(body.batch_id);
      expect(queued.meta.total).toBe(6);
      expect(queued.data.map((c) => c.device_id).sort()).toEqual(devices.map((d) => d.id).sort());
    });

    it('an empty group completes at once', async () => {
      const group = await createGroup(api, alice.token);
      const started = await startBatch(group.id, { command_type: 'ping', rollout_per_minute: 5 });
      expect(started).toMatchObject({ count: 0, total_devices: 0, commands: [] });
      await advanceAndTick(SECOND);
      expect((await batch(started.batch_id)).meta.batch?.status).toBe('completed');
    });

    it('continues across restarts, paced from when it started', async () => {
      const { group, devices } = await fleet(3);
      const started = await startBatch(group.id, { command_type: 'reboot', rollout_per_minute: 1 });
      expect(started.count).toBe(1);

      await restart();
      const resumed = await batch(started.batch_id);
      expect(resumed.meta.total).toBe(1);
      expect(resumed.meta.batch).toMatchObject({ status: 'active', rollout_per_minute: 1, total_devices: 3 });

      await advanceAndTick(MINUTE);
      expect((await batch(started.batch_id)).meta.total).toBe(2);
      await restart();
      await advanceAndTick(MINUTE);
      const all = await batch(started.batch_id);
      expect(all.meta.total).toBe(3);
      expect(new Set(all.data.map((c) => c.device_id))).toEqual(new Set(devices.map((d) => d.id)));

      await finish(all.data, byDevice(devices), 'executed');
      await restart();
      await advanceAndTick(SECOND);
      expect((await batch(started.batch_id)).meta.batch).toMatchObject({ status: 'completed', by_status: { executed: 3 } });
    });
  });
});
