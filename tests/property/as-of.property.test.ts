import { rmSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProjections } from '../../src/projections/index.js';
import { rebuildAndCompare } from '../../src/projections/rebuild.js';
import { client, registerUser } from '../helpers/client.js';
import { createGroup, expectError, uniqueName, type Data, type Device, type List, type RegisteredDevice, type StoredEvent } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/**
 * Point-in-time state: a random history of one device over HTTP (updates, readings,
 * heartbeats, clock moves with the offline sweep, maybe a deletion), tracked by a model; then
 * GET /api/devices/:id?as_of=<t> at every moment equals the model's state at t, the device's
 * events equal the model's, and a replay of the whole log rebuilds equal read models.
 */

const OFFLINE_AFTER_MS = 60_000;

type Attributes = Pick<Device, 'name' | 'device_type' | 'description' | 'ip_address' | 'mac_address' | 'group_id' | 'configuration' | 'firmware_version'>;
type Changes = Partial<Omit<Attributes, 'mac_address'>>;

interface Snapshot {
  at: string;
  type: string;
  /** null once deleted. */
  state: ModelState | null;
}

/** status is what the API shows: connectivity, or while online the state the device reported. */
type ModelState = Attributes & { status: string; connectivity: 'online' | 'offline'; reported: 'error' | 'maintenance' | null; version: number; updated_at: string };
const shown = (connectivity: 'online' | 'offline', reported: 'error' | 'maintenance' | null): string => (connectivity === 'online' && reported ? reported : connectivity);

type Action =
  | { kind: 'update'; changes: Changes; useGroup: boolean }
  | { kind: 'data' }
  /** report: what its device_status says of the state (undefined: no device_status at all). */
  | { kind: 'heartbeat'; report: 'error' | 'maintenance' | 'ok' | undefined }
  | { kind: 'advance'; ms: number };

const changes: fc.Arbitrary<Changes> = fc.record(
  {
    name: fc.constantFrom('Thermostat', 'Kitchen', 'Hall', 'Ünïcödé ✓'),
    device_type: fc.constantFrom('sensor', 'actuator', 'gateway'),
    description: fc.constantFrom(null, 'on the wall', 'in the attic'),
    ip_address: fc.constantFrom(null, '10.0.0.1', '10.0.0.2', '::1'),
    configuration: fc.constantFrom({}, { interval: 60 }, { interval: 30, unit: 'C' }, { nested: { a: [1, 2] } }),
    firmware_version: fc.constantFrom(null, '1.0.0', '2.1.0'),
    group_id: fc.constant(null),
  },
  { requiredKeys: [] },
);

const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ changes, useGroup: fc.boolean() }).map((r): Action => ({ kind: 'update', ...r })) },
  { weight: 2, arbitrary: fc.constant<Action>({ kind: 'data' }) },
  { weight: 2, arbitrary: fc.constantFrom('error', 'maintenance', 'ok', undefined).map((report): Action => ({ kind: 'heartbeat', report })) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 150_000 }).map((ms): Action => ({ kind: 'advance', ms })) },
);

describe('as_of equals the state folded from the events up to that moment (fast-check)', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let admin: Awaited<ReturnType<typeof registerUser>>;
  let owner: Awaited<ReturnType<typeof registerUser>>;
  let other: Awaited<ReturnType<typeof registerUser>>;
  let groupId: string;
  let run = 0;

  beforeAll(async () => {
    server = await startTestServer({ OFFLINE_AFTER_SECONDS: String(OFFLINE_AFTER_MS / 1000), DEFAULT_DEVICE_QUOTA: '1000' });
    admin = await registerUser(api, uniqueName('asofadm'));
    owner = await registerUser(api, uniqueName('owner'));
    other = await registerUser(api, uniqueName('other'));
    groupId = (await createGroup(api, owner.token)).id;
  });
  afterAll(async () => {
    await server?.close();
  });

  const now = (): string => server.clock.now().toISOString();
  const tick = async (): Promise<void> => {
    await server.server.timers.runAll();
    await server.server.timers.runAll();
  };

  /** Plays the history, returning the model's snapshots (one per event of the device's stream). */
  async function play(actions: readonly Action[], deleteAtEnd: boolean): Promise<{ device: RegisteredDevice; snapshots: Snapshot[]; heard: string[] }> {
    const initial: Attributes = {
      name: 'Thermostat',
      device_type: 'sensor',
      description: null,
      ip_address: null,
      mac_address: null,
      group_id: null,
      configuration: { interval: 60 },
      firmware_version: '1.0.0',
    };
    const registered = await api.post<Data<RegisteredDevice>>('/api/devices', initial, { token: owner.token });
    expect(registered.status, JSON.stringify(registered.body)).toBe(201);
    const device = registered.body.data;
    const token = device.credentials.auth_token;
    let current: ModelState = { ...initial, status: 'offline', connectivity: 'offline', reported: null, version: 1, updated_at: now() };
    const snapshots: Snapshot[] = [{ at: now(), type: 'device.registered', state: { ...current } }];
    let lastSeen = 0;
    /** When the device was heard from (readings, heartbeats): last_seen as it was. */
    const heardAt: string[] = [];
    const record = (type: string, next: Partial<typeof current>): void => {
      current = { ...current, ...next, version: current.version + 1, updated_at: now() };
      snapshots.push({ at: now(), type, state: { ...current } });
    };
    const heard = (report?: 'error' | 'maintenance' | 'ok'): void => {
      lastSeen = server.clock.now().getTime();
      heardAt.push(now());
      const reported = report === undefined ? current.reported : report === 'ok' ? null : report;
      if (reported !== current.reported) record('device.state_reported', { reported, status: shown(current.connectivity, reported) });
      if (current.connectivity !== 'online') record('device.came_online', { connectivity: 'online', status: shown('online', current.reported) });
    };

    for (const a of actions) {
      switch (a.kind) {
        case 'update': {
          const body: Changes = { ...a.changes, ...(a.changes.group_id !== undefined && a.useGroup ? { group_id: groupId } : {}) };
          const answer = await api.put<Data<Device>>(`/api/devices/${device.id}`, body, { token: owner.token });
          expect(answer.status, JSON.stringify(answer.body)).toBe(200);
          const changed = Object.fromEntries(Object.entries(body).filter(([key, value]) => JSON.stringify(current[key as keyof Attributes]) !== JSON.stringify(value)));
          if (Object.keys(changed).length > 0) record('device.updated', changed);
          expect(answer.body.data.version).toBe(current.version);
          break;
        }
        case 'data': {
          const answer = await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 21 } }, { token });
          expect(answer.status, JSON.stringify(answer.body)).toBe(201);
          heard();
          break;
        }
        case 'heartbeat': {
          const answer = await api.post(`/api/devices/${device.id}/heartbeat`, a.report ? { device_status: { status: a.report, battery: 80 } } : {}, { token });
          expect(answer.status, JSON.stringify(answer.body)).toBe(200);
          heard(a.report);
          break;
        }
        case 'advance':
          server.clock.advance(a.ms);
          await tick();
          if (current.connectivity === 'online' && server.clock.now().getTime() - lastSeen >= OFFLINE_AFTER_MS) record('device.went_offline', { connectivity: 'offline', status: 'offline' });
          break;
      }
    }
    if (deleteAtEnd) {
      server.clock.advance(1);
      expect((await api.del(`/api/devices/${device.id}`, { token: owner.token })).status).toBe(200);
      snapshots.push({ at: now(), type: 'device.decommissioned', state: null });
    }
    return { device, snapshots, heard: heardAt };
  }

  /** The model at t: the last snapshot recorded at or before t; undefined before registration. */
  const modelAt = (snapshots: readonly Snapshot[], t: string): Snapshot | undefined => snapshots.filter((s) => s.at <= t).pop();

  it('for any random history (deleted since or not), as_of at any moment answers the device as it was, and replay finds no difference', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 14 }), fc.boolean(), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 3, maxLength: 6 }), async (actions, deleteAtEnd, fractions) => {
        run += 1;
        const { device, snapshots, heard } = await play(actions, deleteAtEnd);
        const asOf = (token: string, t: string) => api.get<Data<Device>>(`/api/devices/${device.id}?as_of=${encodeURIComponent(t)}`, { token });

        // The device's stream holds exactly the model's events, at the model's times.
        const stream = await api.get<List<StoredEvent>>(`/api/events?stream_id=device-${device.id}&limit=500`, { token: admin.token });
        expect(stream.body.data.map((e) => [e.type, e.recorded_at])).toEqual(snapshots.map((s) => [s.type, s.at]));
        const ownerView = await api.get<List<StoredEvent>>(`/api/events?stream_id=device-${device.id}&limit=500`, { token: owner.token });
        expect(ownerView.body.data).toEqual(stream.body.data);
        if (!deleteAtEnd) {
          // Its history: everything of the device (its stream, telemetry, pushed commands), as the audit log lists it.
          const history = await api.get<List<StoredEvent>>(`/api/devices/${device.id}/history?limit=500`, { token: owner.token });
          const everything = await api.get<List<StoredEvent>>(`/api/events?device_id=${device.id}&limit=500`, { token: owner.token });
          expect(history.body.data).toEqual(everything.body.data);
          expect(history.body.data.filter((e) => e.stream_id === `device-${device.id}`)).toEqual(stream.body.data);
        }

        // Probes: every event's moment, a millisecond either side, random moments in between, and now.
        const first = Date.parse(snapshots[0]!.at);
        const last = Date.parse(now());
        const probes = new Set<string>([now(), new Date(first - 1).toISOString()]);
        for (const s of snapshots) for (const d of [-1, 0, 1]) probes.add(new Date(Date.parse(s.at) + d).toISOString());
        for (const f of fractions) probes.add(new Date(first + Math.floor(f * (last - first))).toISOString());

        for (const t of [...probes].sort()) {
          const expected = modelAt(snapshots, t);
          const answer = await asOf(owner.token, t);
          if (!expected || expected.state === null) {
            expectError(answer, 404, 'not_found');
            continue;
          }
          expect(answer.status, `${t}: ${JSON.stringify(answer.body)}`).toBe(200);
          const lastSeen = heard.filter((h) => h <= t).pop() ?? null;
          const { connectivity, reported: _reported, ...shownState } = expected.state;
          // The live view's configuration fields come too; the device as it was is the rest.
          const { desired_configuration, reported_configuration: _r, configuration_diff: _d, configuration_in_sync: _s, firmware: _f, ...asItWas } = answer.body.data as unknown as Record<string, unknown>;
          expect(asItWas, `as_of ${t}`).toEqual({ id: device.id, user_id: owner.id, ...shownState, certificate_fingerprint: null, last_seen: lastSeen, created_at: snapshots[0]!.at });
          expect(desired_configuration, `as_of ${t}`).toEqual(shownState.configuration);
          const status = await api.get<Data<{ status: string; connectivity: { online: boolean; last_seen: string | null } }>>(`/api/devices/${device.id}/status?as_of=${encodeURIComponent(t)}`, { token: owner.token });
          expect(status.status, JSON.stringify(status.body)).toBe(200);
          expect(status.body.data).toMatchObject({ status: expected.state.status, connectivity: { online: connectivity === 'online', last_seen: lastSeen } });
        }

        // Other users never see it; admins do, before a deletion.
        const alive = snapshots[snapshots.length - 2] ?? snapshots[0]!;
        expectError(await asOf(other.token, snapshots[0]!.at), 404, 'not_found');
        expectError(await asOf(other.token, alive.at), 404, 'not_found');
        const atStart = modelAt(snapshots, snapshots[0]!.at)!.state;
        const byAdmin = await asOf(admin.token, snapshots[0]!.at);
        if (atStart === null) expectError(byAdmin, 404, 'not_found');
        else {
          expect(byAdmin.status).toBe(200);
          expect(byAdmin.body.data.version).toBe(atStart.version);
        }

        if (!deleteAtEnd) {
          // as_of now agrees with the live device.
          const live = await api.get<Data<Device>>(`/api/devices/${device.id}`, { token: owner.token });
          const current = await asOf(owner.token, now());
          const keys = ['id', 'user_id', 'name', 'device_type', 'description', 'ip_address', 'mac_address', 'group_id', 'configuration', 'firmware_version', 'certificate_fingerprint', 'status', 'last_seen', 'created_at', 'updated_at', 'version'] as const;
          for (const key of keys) expect(current.body.data[key], key).toEqual(live.body.data[key]);
        } else {
          expectError(await api.get(`/api/devices/${device.id}`, { token: owner.token }), 404, 'not_found');
        }

        // Replay of the whole log so far: no read model differs.
        const { db, services } = server.server;
        await services.runner.waitFor(services.log.headPosition());
        const file = join(server.dataDir, `replay-${run}.db`);
        try {
          const result = await rebuildAndCompare({ db, log: services.log }, file, createProjections(services.config), pino({ level: 'silent' }));
          expect(result.differing).toEqual([]);
        } finally {
          for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true });
        }
      }),
      { numRuns: 25 },
    );
    expect((await server.server.services.log.verify()).ok).toBe(true);
  });
});
