import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import { uniqueName, type Data, type Device } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { countEventsInLog, deviceHistory, deviceOf, submitOk, type DeviceStatusBody, type Owner } from '../helpers/telemetry-fixtures.js';

/** OFFLINE_AFTER_SECONDS for this file. */
const OFFLINE_AFTER = 60;
const SECOND = 1000;

describe('offline detection with the injected clock', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let owner: Owner;

  beforeAll(async () => {
    server = await startTestServer({ OFFLINE_AFTER_SECONDS: String(OFFLINE_AFTER) });
    await registerUser(api, uniqueName('oadmin'));
    owner = await registerUser(api, uniqueName('owner'));
  });
  afterAll(() => server.close());

  const status = async (id: string): Promise<string> => {
    const answer = await api.get<Data<Device>>(`/api/devices/${id}`, { token: owner.token });
    expect(answer.status).toBe(200);
    return answer.body.data.status;
  };
  /** Moves the clock, then runs the timers as their interval would (twice: a sweep must be idempotent). */
  const advanceAndSweep = async (ms: number): Promise<void> => {
    server.clock.advance(ms);
    await server.server.timers.runAll();
    await server.server.timers.runAll();
  };
  /** The device's status-change events, from its history (GET /api/devices/:id/history). */
  const transitions = async (id: string): Promise<string[]> =>
    (await deviceHistory(api, id, owner.token)).map((e) => e.type).filter((type) => type === 'device.came_online' || type === 'device.went_offline');
  const reading = (device: { id: string; token: string }, value = 20) => submitOk(api, device.id, device.token, { sensor_readings: { temperature: value } });

  it('goes online when heard from, stays online before the deadline, and goes offline past it with exactly one event', async () => {
    const device = await deviceOf(api, owner);
    expect(await status(device.id)).toBe('offline');
    expect(await transitions(device.id)).toEqual([]);

    await reading(device);
    expect(await status(device.id)).toBe('online');
    expect(await transitions(device.id)).toEqual(['device.came_online']);

    // More readings while online: no more came_online.
    await advanceAndSweep(10 * SECOND);
    await reading(device, 21);
    expect(await transitions(device.id)).toEqual(['device.came_online']);

    await advanceAndSweep((OFFLINE_AFTER - 1) * SECOND);
    expect(await status(device.id)).toBe('online');
    expect(await transitions(device.id)).toEqual(['device.came_online']);

    await advanceAndSweep(2 * SECOND);
    expect(await status(device.id)).toBe('offline');
    expect(await transitions(device.id)).toEqual(['device.came_online', 'device.went_offline']);

    // Many more checks later: still exactly one went_offline.
    for (let i = 0; i < 4; i++) await advanceAndSweep(OFFLINE_AFTER * SECOND);
    expect(await transitions(device.id)).toEqual(['device.came_online', 'device.went_offline']);
    expect(countEventsInLog(server, 'device.went_offline', device.id)).toBe(1);

    const answer = await api.get<Data<DeviceStatusBody>>(`/api/devices/${device.id}/status`, { token: owner.token });
    expect(answer.body.data.connectivity.online).toBe(false);
    expect(answer.body.data.status).toBe('offline');
  });

  it('records the last_seen it went offline with', async () => {
    const device = await deviceOf(api, owner);
    const heardAt = server.clock.now().toISOString();
    await reading(device);
    await advanceAndSweep((OFFLINE_AFTER + 1) * SECOND);
    const wentOffline = (await deviceHistory(api, device.id, owner.token)).find((e) => e.type === 'device.went_offline');
    expect(wentOffline?.data).toMatchObject({ device_id: device.id, last_seen: heardAt });
  });

  it('comes back online with a new reading: exactly one came_online per change', async () => {
    const device = await deviceOf(api, owner);
    await reading(device);
    await advanceAndSweep((OFFLINE_AFTER + 1) * SECOND);
    expect(await status(device.id)).toBe('offline');

    await reading(device, 22);
    await reading(device, 23);
    expect(await status(device.id)).toBe('online');
    expect(await transitions(device.id)).toEqual(['device.came_online', 'device.went_offline', 'device.came_online']);

    await advanceAndSweep((OFFLINE_AFTER + 1) * SECOND);
    expect(await transitions(device.id)).toEqual(['device.came_online', 'device.went_offline', 'device.came_online', 'device.went_offline']);
    expect(countEventsInLog(server, 'device.came_online', device.id)).toBe(2);
    expect(countEventsInLog(server, 'device.went_offline', device.id)).toBe(2);
  });

  it('records one came_online for many concurrent first submissions and heartbeats', async () => {
    const device = await deviceOf(api, owner);
    const answers = await Promise.all([
      ...Array.from({ length: 10 }, (_, i) => api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: i } }, { token: device.token })),
      ...Array.from({ length: 5 }, () => api.post(`/api/devices/${device.id}/heartbeat`, {}, { token: device.token })),
    ]);
    expect(answers.map((a) => a.status).sort()).toEqual([...Array(5).fill(200), ...Array(10).fill(201)]);
    expect(await transitions(device.id)).toEqual(['device.came_online']);
  });

  it('does not mark offline a device heard from while the sweep runs', async () => {
    const device = await deviceOf(api, owner);
    await reading(device);
    server.clock.advance((OFFLINE_AFTER + 5) * SECOND);
    await Promise.all([reading(device, 30), server.server.timers.runAll()]);
    await server.server.timers.runAll();
    expect(await status(device.id)).toBe('online');
    const seen = await transitions(device.id);
    expect([['device.came_online'], ['device.came_online', 'device.went_offline', 'device.came_online']]).toContainEqual(seen);
  });

  it('counts a heartbeat as activity: it pushes the deadline back and brings an offline device online', async () => {
    const device = await deviceOf(api, owner);
    expect((await api.post(`/api/devices/${device.id}/heartbeat`, {}, { token: device.token })).status).toBe(200);
    expect(await status(device.id)).toBe('online');
    await advanceAndSweep((OFFLINE_AFTER - 10) * SECOND);
    expect((await api.post(`/api/devices/${device.id}/heartbeat`, {}, { token: device.token })).status).toBe(200);
    await advanceAndSweep((OFFLINE_AFTER - 10) * SECOND); // 100 s after the first beat, 50 s after the last
    expect(await status(device.id)).toBe('online');
    await advanceAndSweep(11 * SECOND);
    expect(await status(device.id)).toBe('offline');
    expect((await api.post(`/api/devices/${device.id}/heartbeat`, {}, { token: device.token })).status).toBe(200);
    expect(await status(device.id)).toBe('online');
    expect(await transitions(device.id)).toEqual(['device.came_online', 'device.went_offline', 'device.came_online']);
  });

  it('shortens the deadline with a per-device heartbeat_interval (3 missed beats), leaving other devices alone', async () => {
    const quick = await deviceOf(api, owner, { configuration: { heartbeat_interval: 5 } });
    const plain = await deviceOf(api, owner);
    await reading(quick);
    await reading(plain);
    await advanceAndSweep(14 * SECOND);
    expect(await status(quick.id)).toBe('online');
    await advanceAndSweep(2 * SECOND);
    expect(await status(quick.id)).toBe('offline');
    expect(await status(plain.id)).toBe('online');
    expect(countEventsInLog(server, 'device.went_offline', quick.id)).toBe(1);
    expect(countEventsInLog(server, 'device.went_offline', plain.id)).toBe(0);
  });

  it('never lengthens the deadline past OFFLINE_AFTER_SECONDS with a long heartbeat_interval', async () => {
    const slow = await deviceOf(api, owner, { configuration: { heartbeat_interval: 3600 } });
    await reading(slow);
    await advanceAndSweep((OFFLINE_AFTER + 1) * SECOND);
    expect(await status(slow.id)).toBe('offline');
  });

  it('applies a heartbeat_interval set later through PUT', async () => {
    const device = await deviceOf(api, owner);
    await reading(device);
    const put = await api.put(`/api/devices/${device.id}`, { configuration: { heartbeat_interval: 2 } }, { token: owner.token });
    expect(put.status).toBe(200);
    await advanceAndSweep(7 * SECOND);
    expect(await status(device.id)).toBe('offline');
  });

  it('keeps the deadline across a restart: a device online before it goes offline on time after it, once', async () => {
    const device = await deviceOf(api, owner);
    const quick = await deviceOf(api, owner, { configuration: { heartbeat_interval: 10 } });
    await reading(device);
    await reading(quick);
    await advanceAndSweep(20 * SECOND);
    expect(await status(device.id)).toBe('online');
    expect(await status(quick.id)).toBe('online');

    await server.restart();
    await server.server.timers.runAll();
    expect(await status(device.id)).toBe('online');
    expect(await status(quick.id)).toBe('online');

    // 29 s after the reading (20 before the restart): quick's 30 s deadline has not passed.
    await advanceAndSweep(9 * SECOND);
    expect(await status(quick.id)).toBe('online');
    await advanceAndSweep(2 * SECOND);
    expect(await status(quick.id)).toBe('offline');

    // The restart did not restart the clock of the plain device either: it goes at 60 s after its reading, not 60 s after the restart.
    await advanceAndSweep((OFFLINE_AFTER - 31 - 1) * SECOND);
    expect(await status(device.id)).toBe('online');
    await advanceAndSweep(2 * SECOND);
    expect(await status(device.id)).toBe('offline');

    await server.restart();
    await advanceAndSweep(OFFLINE_AFTER * SECOND);
    expect(await transitions(device.id)).toEqual(['device.came_online', 'device.went_offline']);
    expect(await transitions(quick.id)).toEqual(['device.came_online', 'device.went_offline']);

    await reading(device);
    expect(await status(device.id)).toBe('online');
    expect(await transitions(device.id)).toEqual(['device.came_online', 'device.went_offline', 'device.came_online']);
  });

  it('leaves a deleted device alone', async () => {
    const device = await deviceOf(api, owner);
    await reading(device);
    expect((await api.del(`/api/devices/${device.id}`, { token: owner.token })).status).toBe(200);
    await advanceAndSweep((OFFLINE_AFTER + 1) * SECOND);
    expect(countEventsInLog(server, 'device.went_offline', device.id)).toBe(0);
  });
  describe('operational states: error and maintenance, as the device reports them', () => {
    const heartbeat = (device: { id: string; token: string }, body: unknown) => api.post<Data<{ status: string }>>(`/api/devices/${device.id}/heartbeat`, body, { token: device.token });
    const listed = async (state: string): Promise<string[]> =>
      (await api.get<{ data: Device[] }>(`/api/devices?status=${state}&limit=500`, { token: owner.token })).body.data.map((d) => d.id);

    it('a heartbeat saying "maintenance" (a word or {status}) shows it while online, and "ok" clears it', async () => {
      const device = await deviceOf(api, owner);
      const answer = await heartbeat(device, { device_status: 'maintenance' });
      expect(answer.status).toBe(200);
      expect(answer.body.data.status).toBe('maintenance');
      expect(await status(device.id)).toBe('maintenance');
      expect(await listed('maintenance')).toContain(device.id);
      expect(await listed('online')).not.toContain(device.id);
      const detail = await api.get<Data<DeviceStatusBody>>(`/api/devices/${device.id}/status`, { token: owner.token });
      expect(detail.body.data).toMatchObject({ status: 'maintenance', connectivity: { online: true }, operational_state: { maintenance: true } });

      // Connected all the same: its group counts it online.
      const group = await api.post<Data<{ id: string }>>('/api/groups', { name: uniqueName('maint') }, { token: owner.token });
      await api.put(`/api/devices/${device.id}`, { group_id: group.body.data.id }, { token: owner.token });
      const stats = await api.get<Data<{ statistics: { online: number; offline: number } }>>(`/api/groups/${group.body.data.id}`, { token: owner.token });
      expect(stats.body.data.statistics).toEqual({ online: 1, offline: 0 });

      expect((await heartbeat(device, { device_status: { status: 'ok', battery: 80 } })).body.data.status).toBe('online');
      expect(await status(device.id)).toBe('online');
      expect(await listed('maintenance')).not.toContain(device.id);
    });

    it('readings reporting {status: "error"} show error; offline wins while unheard; back online the error stands until cleared', async () => {
      const device = await deviceOf(api, owner);
      await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 20 }, device_status: { status: 'error', error_code: 'E42' } });
      expect(await status(device.id)).toBe('error');
      expect(await listed('error')).toContain(device.id);

      // Readings that say nothing of the state leave it, now and as of now.
      await reading(device, 21);
      expect(await status(device.id)).toBe('error');
      const asOfNow = await api.get<Data<Device>>(`/api/devices/${device.id}?as_of=${encodeURIComponent(server.clock.now().toISOString())}`, { token: owner.token });
      expect(asOfNow.body.data.status).toBe('error');
      // The change is an event of the device's stream, and a line in its logs.
      expect((await deviceHistory(api, device.id, owner.token)).filter((e) => e.type === 'device.state_reported').map((e) => e.data)).toEqual([{ device_id: device.id, state: 'error' }]);
      const logs = await api.get<{ data: Array<{ severity: string; message: string }> }>(`/api/devices/${device.id}/logs`, { token: owner.token });
      expect(logs.body.data.map((l) => `${l.severity}:${l.message}`)).toContain('error:reports error');

      await advanceAndSweep((OFFLINE_AFTER + 1) * SECOND);
      expect(await status(device.id)).toBe('offline');
      expect(await transitions(device.id)).toEqual(['device.came_online', 'device.went_offline']);

      await reading(device, 22);
      expect(await status(device.id)).toBe('error');
      await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 23 }, device_status: { state: 'running' } });
      expect(await status(device.id)).toBe('online');
      // Exactly one event per connectivity change: the reported state adds none.
      expect(await transitions(device.id)).toEqual(['device.came_online', 'device.went_offline', 'device.came_online']);
    });
  });
});
