import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import { createGroup, expectError, expectValidation, uniqueName, type Data, type List } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { HOUR, deviceOf, iso, meanAndStddev, submitOk, type Alert, type Analytics, type Owner } from '../helpers/telemetry-fixtures.js';

const ALERT_KEYS = ['id', 'device_id', 'rule_id', 'kind', 'sensor_type', 'severity', 'status', 'message', 'count', 'last_value', 'raised_at', 'acknowledged_at', 'cleared_at'];

/** Least-squares slope of (hour, mean) points, x in hours. */
function slope(points: ReadonlyArray<[number, number]>): number {
  const mx = points.reduce((a, [x]) => a + x, 0) / points.length;
  const my = points.reduce((a, [, y]) => a + y, 0) / points.length;
  const num = points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0);
  const den = points.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  return num / den;
}

describe('alerts and analytics', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let alice: Owner;
  let bob: Owner;

  beforeAll(async () => {
    server = await startTestServer();
    await registerUser(api, uniqueName('aadmin'));
    alice = await registerUser(api, uniqueName('alice'));
    bob = await registerUser(api, uniqueName('bob'));
  });
  afterAll(() => server.close());

  const alertsOf = async (token: string, query = ''): Promise<List<Alert>> => {
    const answer = await api.get<List<Alert>>(`/api/alerts${query ? `?${query}` : ''}`, { token });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    return answer.body;
  };
  const analytics = async (token: string, query = ''): Promise<Analytics> => {
    const answer = await api.get<Data<Analytics>>(`/api/analytics${query ? `?${query}` : ''}`, { token });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    return answer.body.data;
  };
  const deviceAlerts = async (deviceId: string, token = alice.token): Promise<Alert[]> => (await alertsOf(token, `device_id=${deviceId}&limit=500`)).data;
  const alertEvents = (type: string, alertId: string): number =>
    server.server.db.prepare<[string, string], { n: number }>(`SELECT count(*) AS n FROM events WHERE type = ? AND json_extract(data, '$.alert_id') = ?`).get(type, alertId)!.n;
  const send = (device: { id: string; token: string }, value: number, sensor = 'temperature') => submitOk(api, device.id, device.token, { sensor_readings: { [sensor]: value } });

  describe('thresholds in the configuration', () => {
    let device: Awaited<ReturnType<typeof deviceOf>>;
    let firstId: string;

    beforeAll(async () => {
      device = await deviceOf(api, alice, { configuration: { thresholds: { temperature: { min: 0, max: 30 } } } });
    });

    it('raises nothing while readings stay in range', async () => {
      await send(device, 20);
      await send(device, 30);
      expect(await deviceAlerts(device.id)).toEqual([]);
    });

    it('raises one active alert when a reading crosses the max', async () => {
      await send(device, 35);
      const alerts = await deviceAlerts(device.id);
      expect(alerts).toHaveLength(1);
      const [alert] = alerts as [Alert];
      expect(Object.keys(alert)).toEqual(expect.arrayContaining(ALERT_KEYS));
      expect(alert).toMatchObject({
        device_id: device.id,
        rule_id: null,
        kind: 'threshold',
        sensor_type: 'temperature',
        severity: 'warning',
        status: 'active',
        count: 1,
        last_value: 35,
        raised_at: server.clock.now().toISOString(),
        acknowledged_at: null,
        cleared_at: null,
      });
      expect(alert.message.length).toBeGreaterThan(0);
      firstId = alert.id;
      expect(alertEvents('alert.raised', firstId)).toBe(1);
    });

    it('counts a repeat on the same alert instead of raising a new one', async () => {
      await send(device, 36);
      const alerts = await deviceAlerts(device.id);
      expect(alerts).toHaveLength(1);
      expect(alerts[0]).toMatchObject({ id: firstId, status: 'active', count: 2, last_value: 36 });
      // The log says so too: subscribers and auditors see one raise and one repeat.
      expect(alertEvents('alert.raised', firstId)).toBe(1);
      expect(alertEvents('alert.repeated', firstId)).toBe(1);
    });

    it('does not clear inside the hysteresis band (29.9 with max 30 and a 1.5 band)', async () => {
      await send(device, 29.9);
      await send(device, 28.6);
      const alerts = await deviceAlerts(device.id);
      expect(alerts).toHaveLength(1);
      expect(alerts[0]).toMatchObject({ id: firstId, status: 'active', count: 2, cleared_at: null });
    });

    it('clears once the value is back past the band (28)', async () => {
      await send(device, 28);
      const alerts = await deviceAlerts(device.id);
      expect(alerts).toHaveLength(1);
      expect(alerts[0]).toMatchObject({ id: firstId, status: 'cleared', cleared_at: server.clock.now().toISOString() });
      expect(alertEvents('alert.cleared', firstId)).toBe(1);
    });

    it('raises a new alert after a cleared one, and one for a breach of the min', async () => {
      await send(device, 40);
      const alerts = await deviceAlerts(device.id);
      expect(alerts).toHaveLength(2);
      const fresh = alerts.find((a) => a.id !== firstId)!;
      expect(fresh).toMatchObject({ status: 'active', count: 1, last_value: 40 });
      await send(device, -5); // still the same open threshold alert for this sensor
      const after = await deviceAlerts(device.id);
      expect(after).toHaveLength(2);
      expect(after.find((a) => a.id === fresh.id)).toMatchObject({ status: 'active', count: 2, last_value: -5 });
      await send(device, 15); // back in range: clears
      expect((await deviceAlerts(device.id)).every((a) => a.status === 'cleared')).toBe(true);
    });

    it('keeps one alert per sensor: a breach of another sensor is its own alert', async () => {
      const multi = await deviceOf(api, alice, { configuration: { thresholds: { temperature: { max: 30 }, humidity: { max: 80, severity: 'critical' } } } });
      await submitOk(api, multi.id, multi.token, { sensor_readings: { temperature: 31, humidity: 90 } });
      await submitOk(api, multi.id, multi.token, { sensor_readings: { temperature: 32, humidity: 91 } });
      const alerts = await deviceAlerts(multi.id);
      expect(alerts.map((a) => `${a.sensor_type}:${a.severity}:${a.count}:${a.last_value}`).sort()).toEqual(['humidity:critical:2:91', 'temperature:warning:2:32']);
    });

    it('keeps one alert under concurrent breaching submissions', async () => {
      const busy = await deviceOf(api, alice, { configuration: { thresholds: { temperature: { max: 30 } } } });
      const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => submitOk(api, busy.id, busy.token, { sensor_readings: { temperature: 40 + i } })));
      expect(answers).toHaveLength(10);
      const alerts = await deviceAlerts(busy.id);
      expect(alerts).toHaveLength(1);
      expect(alerts[0]!.count).toBe(10);
    });

    describe('readings older than the sensor\'s newest (backfills) move no alert', () => {
      const ago = (ms: number) => new Date(server.clock.now().getTime() - ms).toISOString();
      const sendAt = (device: { id: string; token: string }, readings: Array<[number, string]>) =>
        submitOk(api, device.id, device.token, { sensor_readings: readings.map(([value, timestamp]) => ({ sensor_type: 'temperature', value, timestamp })) });
      const statuses = async (deviceId: string) => (await deviceAlerts(deviceId)).map((a) => a.status);

      it('given the newest reading over the max and an older one in range in the same submission, then the alert stays active', async () => {
        const device = await deviceOf(api, alice, { configuration: { thresholds: { temperature: { max: 50 } } } });
        await sendAt(device, [[99, ago(1_000)], [20, ago(10_000)]]);
        expect(await statuses(device.id)).toEqual(['active']);
      });

      it('given an active alert, when an hour-old value in range is backfilled, then it stays active', async () => {
        const device = await deviceOf(api, alice, { configuration: { thresholds: { temperature: { max: 50 } } } });
        await sendAt(device, [[80, ago(0)]]);
        await sendAt(device, [[1, ago(3_600_000)]]);
        expect(await statuses(device.id)).toEqual(['active']);
      });

      it('given a reading stamped minutes ahead, when a breach stamped now arrives, then it is judged', async () => {
        const device = await deviceOf(api, alice, { configuration: { thresholds: { temperature: { max: 50 } } } });
        await sendAt(device, [[20, ago(-4 * 60_000)]]);
        await send(device, 99);
        expect(await statuses(device.id)).toEqual(['active']);
      });

      it('given a value in range now, when a two-hour-old breach is backfilled, then nothing is raised; a newer breach still is', async () => {
        const device = await deviceOf(api, alice, { configuration: { thresholds: { temperature: { max: 50 } } } });
        await sendAt(device, [[20, ago(0)]]);
        await sendAt(device, [[99, ago(7_200_000)]]);
        expect(await statuses(device.id)).toEqual([]);
        await sendAt(device, [[99, ago(0)]]);
        expect(await statuses(device.id)).toEqual(['active']);
      });
    });

    it('raises for several breaches in one submission as one alert', async () => {
      const batch = await deviceOf(api, alice, { configuration: { thresholds: { temperature: { max: 30 } } } });
      await submitOk(api, batch.id, batch.token, { sensor_readings: [31, 32, 33].map((value) => ({ sensor_type: 'temperature', value })) });
      const alerts = await deviceAlerts(batch.id);
      expect(alerts).toHaveLength(1);
      expect(alerts[0]).toMatchObject({ count: 3, last_value: 33 });
    });
  });

  describe('acknowledge and clear', () => {
    let device: Awaited<ReturnType<typeof deviceOf>>;
    let alert: Alert;

    beforeAll(async () => {
      device = await deviceOf(api, alice, { configuration: { thresholds: { temperature: { max: 30 } } } });
      await send(device, 50);
      alert = (await deviceAlerts(device.id))[0]!;
    });

    it('hides the alert from other users: 404 on acknowledge and clear, absent from their list', async () => {
      expectError(await api.post(`/api/alerts/${alert.id}/acknowledge`, undefined, { token: bob.token }), 404, 'not_found');
      expectError(await api.post(`/api/alerts/${alert.id}/clear`, undefined, { token: bob.token }), 404, 'not_found');
      expect((await alertsOf(bob.token, 'limit=500')).data.map((a) => a.id)).not.toContain(alert.id);
      expectError(await api.post(`/api/alerts/00000000-0000-4000-8000-000000000000/acknowledge`, undefined, { token: alice.token }), 404, 'not_found');
      // The device's own token is not a user credential.
      expect([401, 403, 404]).toContain((await api.post(`/api/alerts/${alert.id}/acknowledge`, undefined, { token: device.token })).status);
      expect((await deviceAlerts(device.id))[0]!.status).toBe('active');
    });

    it('acknowledges once (200, then 409), as an event', async () => {
      const answer = await api.post<Data<Alert>>(`/api/alerts/${alert.id}/acknowledge`, undefined, { token: alice.token });
      expect(answer.status).toBe(200);
      expect(answer.body.data).toMatchObject({ id: alert.id, status: 'acknowledged', acknowledged_at: server.clock.now().toISOString() });
      expectError(await api.post(`/api/alerts/${alert.id}/acknowledge`, undefined, { token: alice.token }), 409, 'conflict');
      expect(alertEvents('alert.acknowledged', alert.id)).toBe(1);
    });

    it('counts a repeat breach on the acknowledged alert without a new alert', async () => {
      await send(device, 51);
      const alerts = await deviceAlerts(device.id);
      expect(alerts).toHaveLength(1);
      expect(alerts[0]).toMatchObject({ id: alert.id, count: 2, last_value: 51 });
      expect(alerts[0]!.status).not.toBe('cleared');
    });

    it('clears once (200, then 409), as an event', async () => {
      const answer = await api.post<Data<Alert>>(`/api/alerts/${alert.id}/clear`, undefined, { token: alice.token });
      expect(answer.status).toBe(200);
      expect(answer.body.data).toMatchObject({ id: alert.id, status: 'cleared' });
      expect(answer.body.data.cleared_at).not.toBeNull();
      expectError(await api.post(`/api/alerts/${alert.id}/clear`, undefined, { token: alice.token }), 409, 'conflict');
      expectError(await api.post(`/api/alerts/${alert.id}/acknowledge`, undefined, { token: alice.token }), 409, 'conflict');
      expect(alertEvents('alert.cleared', alert.id)).toBe(1);
    });

    it('clears an acknowledged alert by itself once the value is back in range', async () => {
      const other = await deviceOf(api, alice, { configuration: { thresholds: { temperature: { max: 30 } } } });
      await send(other, 45);
      const [raised] = await deviceAlerts(other.id);
      expect((await api.post(`/api/alerts/${raised!.id}/acknowledge`, undefined, { token: alice.token })).status).toBe(200);
      await send(other, 20);
      expect(await deviceAlerts(other.id)).toMatchObject([{ id: raised!.id, status: 'cleared' }]);
    });

    it('clears an active alert directly', async () => {
      const other = await deviceOf(api, alice, { configuration: { thresholds: { temperature: { max: 30 } } } });
      await send(other, 45);
      const [active] = await deviceAlerts(other.id);
      const answer = await api.post<Data<Alert>>(`/api/alerts/${active!.id}/clear`, undefined, { token: alice.token });
      expect(answer.status).toBe(200);
      expect(answer.body.data.status).toBe('cleared');
      // Still over the line: the next breach is a new alert.
      await send(other, 46);
      expect((await deviceAlerts(other.id)).map((a) => a.status).sort()).toEqual(['active', 'cleared']);
    });
  });

  describe('anomalies', () => {
    const steady = Array.from({ length: 30 }, (_, i) => ({ sensor_type: 'temperature', value: 20 + ((i % 3) - 1) * 0.1 }));

    it('raises an anomaly alert for a value far from a steady history', async () => {
      const device = await deviceOf(api, alice);
      await submitOk(api, device.id, device.token, { sensor_readings: steady });
      expect(await deviceAlerts(device.id)).toEqual([]);
      await send(device, 100);
      const alerts = await deviceAlerts(device.id);
      expect(alerts).toHaveLength(1);
      expect(alerts[0]).toMatchObject({ kind: 'anomaly', sensor_type: 'temperature', status: 'active', last_value: 100, device_id: device.id });
    });

    it('raises the anomaly also when the steady history arrived one reading at a time', async () => {
      const device = await deviceOf(api, alice);
      for (const reading of steady) await submitOk(api, device.id, device.token, { sensor_readings: [reading] });
      await send(device, 100);
      expect((await deviceAlerts(device.id)).map((a) => a.kind)).toEqual(['anomaly']);
    });

    it('raises nothing for an ordinary value, or with a configured limit above the deviation', async () => {
      const calm = await deviceOf(api, alice);
      await submitOk(api, calm.id, calm.token, { sensor_readings: steady });
      await send(calm, 20.05);
      expect(await deviceAlerts(calm.id)).toEqual([]);

      const tolerant = await deviceOf(api, alice, { configuration: { anomaly_z: 100_000 } });
      await submitOk(api, tolerant.id, tolerant.token, { sensor_readings: steady });
      await send(tolerant, 100);
      expect(await deviceAlerts(tolerant.id)).toEqual([]);
    });
  });

  describe('GET /api/alerts filters', () => {
    let carolToken: string;
    let warm: Awaited<ReturnType<typeof deviceOf>>;
    let wet: Awaited<ReturnType<typeof deviceOf>>;

    beforeAll(async () => {
      const carol = await registerUser(api, uniqueName('carol'));
      carolToken = carol.token;
      warm = await deviceOf(api, carol, { configuration: { thresholds: { temperature: { max: 30 } } } });
      wet = await deviceOf(api, carol, { configuration: { thresholds: { humidity: { max: 80, severity: 'critical' } } } });
      await send(warm, 40); // warning, then cleared below
      await send(warm, 10);
      await send(warm, 41); // a second warning, active
      await send(wet, 95, 'humidity'); // critical, active
    });

    it('lists every alert of the user, with list meta', async () => {
      const all = await alertsOf(carolToken);
      expect(all.meta).toEqual({ total: 3, limit: 50, offset: 0 });
      expect(all.data).toHaveLength(3);
    });

    it('filters by status, severity and device_id, alone and together', async () => {
      const pick = async (query: string) => (await alertsOf(carolToken, query)).data.map((a) => `${a.device_id === warm.id ? 'warm' : 'wet'}:${a.severity}:${a.status}`).sort();
      expect(await pick('status=active')).toEqual(['warm:warning:active', 'wet:critical:active']);
      expect(await pick('status=cleared')).toEqual(['warm:warning:cleared']);
      expect(await pick('status=acknowledged')).toEqual([]);
      expect(await pick('severity=critical')).toEqual(['wet:critical:active']);
      expect(await pick('severity=warning')).toEqual(['warm:warning:active', 'warm:warning:cleared']);
      expect(await pick(`device_id=${warm.id}`)).toEqual(['warm:warning:active', 'warm:warning:cleared']);
      expect(await pick(`device_id=${warm.id}&status=active`)).toEqual(['warm:warning:active']);
      expect(await pick(`device_id=${wet.id}&severity=warning`)).toEqual([]);
    });

    it('pages', async () => {
      const first = await alertsOf(carolToken, 'limit=2');
      const second = await alertsOf(carolToken, 'limit=2&offset=2');
      expect(first.data).toHaveLength(2);
      expect(second.data).toHaveLength(1);
      expect(new Set([...first.data, ...second.data].map((a) => a.id)).size).toBe(3);
    });

    it('refuses unknown filter values with 400', async () => {
      expectValidation(await api.get('/api/alerts?status=open', { token: carolToken }), 'status');
      expectValidation(await api.get('/api/alerts?severity=loud', { token: carolToken }), 'severity');
    });

    it('shows nothing of carol to bob, even when he names her device', async () => {
      expect((await alertsOf(bob.token, `device_id=${warm.id}`)).data).toEqual([]);
    });
  });

  describe('GET /api/analytics', () => {
    let dana: Owner;
    let d1: Awaited<ReturnType<typeof deviceOf>>;
    let d2: Awaited<ReturnType<typeof deviceOf>>;
    let d3: Awaited<ReturnType<typeof deviceOf>>;
    let groupId: string;
    let childId: string;
    /** The hour `n` hours before the current one. */
    let hour: (n: number) => number;

    beforeAll(async () => {
      dana = await registerUser(api, uniqueName('dana'));
      const group = await createGroup(api, dana.token);
      const child = await createGroup(api, dana.token, { parent_id: group.id });
      groupId = group.id;
      childId = child.id;
      d1 = await deviceOf(api, dana, { device_type: 'sensor', group_id: group.id });
      d2 = await deviceOf(api, dana, { device_type: 'actuator', group_id: child.id });
      d3 = await deviceOf(api, dana, { device_type: 'sensor', configuration: { thresholds: { temperature: { max: 30, severity: 'critical' } } } });
      await deviceOf(api, dana, { device_type: 'sensor' }); // never heard from: offline
      const current = Math.floor(server.clock.now().getTime() / HOUR) * HOUR;
      hour = (n) => current - n * HOUR;
      const at = (n: number, minutes: number) => iso(hour(n) + minutes * 60_000);
      // d1: hourly temperature means 10, 12, 14 — rising by 2 per hour.
      await submitOk(api, d1.id, d1.token, {
        sensor_readings: [
          { sensor_type: 'temperature', value: 9, timestamp: at(5, 10) },
          { sensor_type: 'temperature', value: 11, timestamp: at(5, 40) },
          { sensor_type: 'temperature', value: 11, timestamp: at(4, 10) },
          { sensor_type: 'temperature', value: 13, timestamp: at(4, 40) },
          { sensor_type: 'temperature', value: 13, timestamp: at(3, 10) },
          { sensor_type: 'temperature', value: 15, timestamp: at(3, 40) },
        ],
      });
      // d2: humidity 40, 50 in hour -4 and 60 in hour -2.
      await submitOk(api, d2.id, d2.token, {
        sensor_readings: [
          { sensor_type: 'humidity', value: 40, timestamp: at(4, 5) },
          { sensor_type: 'humidity', value: 50, timestamp: at(4, 55) },
          { sensor_type: 'humidity', value: 60, timestamp: at(2, 30) },
          // Outside the default range (the last 24 h).
          { sensor_type: 'humidity', value: 1000, timestamp: at(40, 0) },
        ],
      });
      // d3: one temperature over its critical threshold.
      await submitOk(api, d3.id, d3.token, { sensor_readings: [{ sensor_type: 'temperature', value: 35, timestamp: at(2, 0) }] });
    });

    it('answers devices, readings, commands, rules and alerts for all the user’s devices', async () => {
      const data = await analytics(dana.token);
      expect(Object.keys(data).sort()).toEqual(['alerts', 'commands', 'devices', 'readings', 'rules']);
      expect(data.devices).toEqual({ total: 4, by_status: { online: 3, offline: 1 }, by_type: { sensor: 3, actuator: 1 } });
      expect(data.readings.total).toBe(10);
      expect(data.readings.per_hour.filter((h) => h.count > 0)).toEqual([
        { hour: iso(hour(5)), count: 2 },
        { hour: iso(hour(4)), count: 4 },
        { hour: iso(hour(3)), count: 2 },
        { hour: iso(hour(2)), count: 2 },
      ]);
      const bySensor = Object.fromEntries(data.readings.by_sensor.map((s) => [s.sensor_type, s]));
      expect(Object.keys(bySensor).sort()).toEqual(['humidity', 'temperature']);

      const temps = [9, 11, 11, 13, 13, 15, 35];
      const t = meanAndStddev(temps);
      expect(bySensor.temperature).toMatchObject({ count: 7, min: 9, max: 35 });
      expect(bySensor.temperature!.avg).toBeCloseTo(t.mean, 9);
      expect(bySensor.temperature!.stddev).toBeCloseTo(t.stddev, 6);
      expect(bySensor.temperature!.trend_per_hour).toBeCloseTo(slope([[-5, 10], [-4, 12], [-3, 14], [-2, 35]]), 6);

      const h = meanAndStddev([40, 50, 60]);
      expect(bySensor.humidity).toMatchObject({ count: 3, min: 40, max: 60 });
      expect(bySensor.humidity!.avg).toBeCloseTo(h.mean, 9);
      expect(bySensor.humidity!.stddev).toBeCloseTo(h.stddev, 6);
      expect(bySensor.humidity!.trend_per_hour).toBeCloseTo(slope([[-4, 45], [-2, 60]]), 6);

      expect(data.alerts).toEqual({ active: 1, by_severity: { critical: 1 } });
      expect(data.commands).toMatchObject({ total: expect.any(Number) as number });
      expect(data.rules).toMatchObject({ total: expect.any(Number) as number, enabled: expect.any(Number) as number });
    });

    it('scopes to one device: a positive trend for rising hourly means', async () => {
      const data = await analytics(dana.token, `device_id=${d1.id}`);
      expect(data.devices).toEqual({ total: 1, by_status: { online: 1 }, by_type: { sensor: 1 } });
      expect(data.readings.total).toBe(6);
      expect(data.readings.by_sensor).toHaveLength(1);
      const [temperature] = data.readings.by_sensor;
      const stats = meanAndStddev([9, 11, 11, 13, 13, 15]);
      expect(temperature).toMatchObject({ sensor_type: 'temperature', count: 6, min: 9, max: 15 });
      expect(temperature!.avg).toBeCloseTo(stats.mean, 9);
      expect(temperature!.stddev).toBeCloseTo(stats.stddev, 6);
      expect(temperature!.trend_per_hour).toBeGreaterThan(0);
      expect(temperature!.trend_per_hour).toBeCloseTo(2, 6);
      expect(data.alerts).toEqual({ active: 0, by_severity: {} });
    });

    it('scopes to a group with its subgroups, and to the subgroup alone', async () => {
      const group = await analytics(dana.token, `group_id=${groupId}`);
      expect(group.devices).toEqual({ total: 2, by_status: { online: 2 }, by_type: { sensor: 1, actuator: 1 } });
      expect(group.readings.total).toBe(9);
      expect(group.readings.by_sensor.map((s) => `${s.sensor_type}:${s.count}`).sort()).toEqual(['humidity:3', 'temperature:6']);
      expect(group.alerts.active).toBe(0);

      const child = await analytics(dana.token, `group_id=${childId}`);
      expect(child.devices.total).toBe(1);
      expect(child.readings.total).toBe(3);
      expect(child.readings.by_sensor.map((s) => s.sensor_type)).toEqual(['humidity']);
    });

    it('scopes to a date range', async () => {
      const data = await analytics(dana.token, `start_date=${iso(hour(4))}&end_date=${iso(hour(4) + HOUR - 1)}`);
      expect(data.readings.per_hour.filter((h) => h.count > 0)).toEqual([{ hour: iso(hour(4)), count: 4 }]);
      expect(data.readings.total).toBe(4);
      expect(data.readings.by_sensor.map((s) => `${s.sensor_type}:${s.count}:${s.avg}`).sort()).toEqual(['humidity:2:45', 'temperature:2:12']);
      const single = data.readings.by_sensor.find((s) => s.sensor_type === 'temperature')!;
      expect(single.trend_per_hour).toBeNull(); // one hour: no trend
      const empty = await analytics(dana.token, `start_date=${iso(hour(30))}&end_date=${iso(hour(20))}`);
      expect(empty.readings.total).toBe(0);
      expect(empty.readings.by_sensor).toEqual([]);
      expect(empty.readings.per_hour.every((h) => h.count === 0)).toBe(true);
      const old = await analytics(dana.token, `start_date=${iso(hour(48))}&end_date=${iso(hour(30))}`);
      expect(old.readings.total).toBe(1);
      expect(old.readings.by_sensor).toMatchObject([{ sensor_type: 'humidity', count: 1, avg: 1000, min: 1000, max: 1000, stddev: 0 }]);
    });

    it('counts rules and commands within the scope and the range', async () => {
      const quinn = await registerUser(api, uniqueName('quinn'));
      const group = await createGroup(api, quinn.token);
      const inGroup = await deviceOf(api, quinn, { group_id: group.id });
      const elsewhere = await deviceOf(api, quinn);
      const ruleOn = async (device: { id: string }) => {
        const body = { name: uniqueName('rule'), trigger_conditions: { type: 'reading', device_id: device.id, sensor_type: 'temperature', operator: '>', value: 50 }, actions: [{ type: 'alert', severity: 'info', message: 'hot' }] };
        expect((await api.post('/api/automation/rules', body, { token: quinn.token })).status).toBe(201);
      };
      await ruleOn(inGroup);
      await ruleOn(elsewhere);
      await ruleOn(elsewhere);
      expect((await api.post(`/api/devices/${inGroup.id}/commands`, { command_type: 'reboot' }, { token: quinn.token })).status).toBe(202);

      expect((await analytics(quinn.token)).rules).toMatchObject({ total: 3, enabled: 3 });
      expect((await analytics(quinn.token, `device_id=${inGroup.id}`)).rules).toMatchObject({ total: 1, enabled: 1 });
      expect((await analytics(quinn.token, `group_id=${group.id}`)).rules).toMatchObject({ total: 1, enabled: 1 });
      expect((await analytics(quinn.token, `device_id=${elsewhere.id}`)).rules).toMatchObject({ total: 2, enabled: 2 });
      const empty = await createGroup(api, quinn.token);
      expect((await analytics(quinn.token, `group_id=${empty.id}`)).rules).toEqual({ total: 0, enabled: 0, triggered: 0 });

      expect((await analytics(quinn.token, `device_id=${inGroup.id}`)).commands.total).toBe(1);
      const before = await analytics(quinn.token, `device_id=${inGroup.id}&start_date=2020-01-01&end_date=2020-01-02`);
      expect(before.commands.total).toBe(0);
    });

    it('covers only the user’s own devices: 404 for another user’s device or group', async () => {
      const bobsOwn = await analytics(bob.token);
      expect(bobsOwn.devices.total).toBe(0);
      expect(bobsOwn.readings.total).toBe(0);
      expect(bobsOwn.alerts.active).toBe(0);
      expectError(await api.get(`/api/analytics?device_id=${d1.id}`, { token: bob.token }), 404, 'not_found');
      expectError(await api.get(`/api/analytics?group_id=${groupId}`, { token: bob.token }), 404, 'not_found');
    });

    it('refuses values whose squares would overflow (1e200) and keeps stddev numeric at the bound (1e15)', async () => {
      const erin = await registerUser(api, uniqueName('erin'));
      const huge = await deviceOf(api, erin);
      expect((await api.post(`/api/devices/${huge.id}/data`, { sensor_readings: { temperature: 1e200 } }, { token: huge.token })).status).toBe(400);
      await submitOk(api, huge.id, huge.token, { sensor_readings: { temperature: 1e15 } });
      const data = await analytics(erin.token, `device_id=${huge.id}`);
      expect(data.readings.by_sensor).toHaveLength(1);
      expect(data.readings.by_sensor[0]!.stddev).toBe(0);
    });

    it('refuses a start after the end, bad dates, and a device with a group with 400', async () => {
      expectValidation(await api.get(`/api/analytics?start_date=${iso(hour(1))}&end_date=${iso(hour(3))}`, { token: dana.token }), 'start_date');
      expectValidation(await api.get('/api/analytics?end_date=tomorrow', { token: dana.token }), 'end_date');
      expectValidation(await api.get(`/api/analytics?device_id=${d1.id}&group_id=${groupId}`, { token: dana.token }), 'group_id');
    });

    it('forgets a deleted device: its counts, readings and alerts leave analytics and alert lists', async () => {
      const [alert] = await deviceAlerts(d3.id, dana.token);
      expect(alert).toMatchObject({ severity: 'critical', status: 'active' });
      expect((await api.del(`/api/devices/${d3.id}`, { token: dana.token })).status).toBe(200);

      const data = await analytics(dana.token);
      expect(data.devices).toEqual({ total: 3, by_status: { online: 2, offline: 1 }, by_type: { sensor: 2, actuator: 1 } });
      expect(data.readings.total).toBe(9);
      expect(data.readings.by_sensor.find((s) => s.sensor_type === 'temperature')).toMatchObject({ count: 6, max: 15 });
      expect(data.alerts).toEqual({ active: 0, by_severity: {} });
      expect((await alertsOf(dana.token, 'limit=500')).data.map((a) => a.id)).not.toContain(alert!.id);
      expectError(await api.get(`/api/analytics?device_id=${d3.id}`, { token: dana.token }), 404, 'not_found');
    });
  });

  describe('analytics of alerts', () => {
    it('counts active alerts as the alert list does: also those a rule raised without a device, not acknowledged ones', async () => {
      const fay = await registerUser(api, uniqueName('fay'));
      const device = await deviceOf(api, fay, { configuration: { thresholds: { temperature: { max: 30, severity: 'critical' } } } });
      const rule = await api.post('/api/automation/rules', {
        name: 'fleet note',
        trigger_conditions: { type: 'reading', device_id: device.id, sensor_type: 'humidity', operator: '>', value: 80 },
        actions: [{ type: 'alert', severity: 'info', message: 'humid somewhere' }],
      }, { token: fay.token });
      expect(rule.status).toBe(201);
      await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 35, humidity: 90 } });
      await submitOk(api, device.id, device.token, { sensor_readings: { pressure: 1000 } });

      const listed = await alertsOf(fay.token, 'status=active&limit=500');
      expect(listed.meta.total).toBe(2);
      expect((await analytics(fay.token)).alerts).toEqual({ active: 2, by_severity: { critical: 1, info: 1 } });
      // Scoped to the device, only its own.
      expect((await analytics(fay.token, `device_id=${device.id}`)).alerts).toEqual({ active: 1, by_severity: { critical: 1 } });

      const threshold = listed.data.find((a) => a.severity === 'critical')!;
      expect((await api.post(`/api/alerts/${threshold.id}/acknowledge`, {}, { token: fay.token })).status).toBe(200);
      expect((await analytics(fay.token)).alerts).toEqual({ active: 1, by_severity: { info: 1 } });
    });
  });

  describe('deleting a device', () => {
    it('removes its alerts from every list', async () => {
      const device = await deviceOf(api, alice, { configuration: { thresholds: { temperature: { max: 30 } } } });
      await send(device, 50);
      const [alert] = await deviceAlerts(device.id);
      expect(alert).toBeDefined();
      const before = (await alertsOf(alice.token, 'status=active&limit=500')).meta.total;
      expect((await api.del(`/api/devices/${device.id}`, { token: alice.token })).status).toBe(200);
      expect((await alertsOf(alice.token, 'status=active&limit=500')).meta.total).toBe(before - 1);
      expect((await alertsOf(alice.token, 'limit=500')).data.map((a) => a.id)).not.toContain(alert!.id);
      expectError(await api.post(`/api/alerts/${alert!.id}/acknowledge`, undefined, { token: alice.token }), 404, 'not_found');
    });
  });
});
