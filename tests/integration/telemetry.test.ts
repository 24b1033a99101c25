import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import { expectError, expectValidation, uniqueName, type Data, type Device } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import {
  HOUR,
  MINUTE,
  allRawReadings,
  at,
  deviceOf,
  head,
  readData,
  submit,
  submitOk,
  submitRaw,
  type BucketRow,
  type DeviceLogEntry,
  type DeviceStatusBody,
  type Owner,
  type RawReading,
} from '../helpers/telemetry-fixtures.js';

const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

describe('telemetry', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let alice: Owner;
  let bob: Owner;

  beforeAll(async () => {
    server = await startTestServer();
    await registerUser(api, uniqueName('tadmin')); // the first user is an admin: keep alice and bob ordinary
    alice = await registerUser(api, uniqueName('alice'));
    bob = await registerUser(api, uniqueName('bob'));
  });
  afterAll(() => server.close());

  const deviceDetail = async (id: string, token = alice.token) => (await api.get<Data<Device>>(`/api/devices/${id}`, { token })).body.data;

  describe('who may submit', () => {
    it('accepts the device token for its own device: 201 {accepted, position} at the head of the log', async () => {
      const device = await deviceOf(api, alice);
      const answer = await submit(api, device.id, device.token, { sensor_readings: [{ sensor_type: 'temperature', value: 21.5, unit: 'C' }] });
      expect(answer.status).toBe(201);
      expect(answer.body).toEqual({ data: { accepted: 1, position: expect.any(Number) as number } });
      expect(answer.body.data.position).toBeGreaterThan(0);
      expect(answer.body.data.position).toBeLessThanOrEqual(await head(api));
      const readings = await allRawReadings(api, device.id, alice.token);
      expect(readings).toMatchObject([{ sensor_type: 'temperature', value: 21.5, unit: 'C' }]);
    });

    it('accepts the device token in X-Device-Token too', async () => {
      const device = await deviceOf(api, alice);
      const answer = await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 20 } }, { headers: { 'x-device-token': device.token } });
      expect(answer.status).toBe(201);
      expect(answer.body.data.accepted).toBe(1);
    });

    it('refuses a device token on another device with 403 forbidden, storing nothing', async () => {
      const mine = await deviceOf(api, alice);
      const sibling = await deviceOf(api, alice);
      const foreign = await deviceOf(api, bob);
      const before = await head(api);
      for (const target of [sibling, foreign]) {
        expectError(await submit(api, target.id, mine.token, { sensor_readings: { temperature: 20 } }), 403, 'forbidden');
      }
      expect(await head(api)).toBe(before);
      expect(await allRawReadings(api, sibling.id, alice.token)).toEqual([]);
    });

    it('accepts the owner (session token and API key)', async () => {
      const device = await deviceOf(api, alice);
      expect((await submit(api, device.id, alice.token, { sensor_readings: { temperature: 20 } })).status).toBe(201);
      const byKey = await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 21 } }, { headers: { 'x-api-key': alice.apiKey } });
      expect(byKey.status).toBe(201);
      expect((await allRawReadings(api, device.id, alice.token)).map((r) => r.value).sort()).toEqual([20, 21]);
    });

    it('answers 404 to another user, 401 without credentials', async () => {
      const device = await deviceOf(api, alice);
      const before = await head(api);
      expectError(await submit(api, device.id, bob.token, { sensor_readings: { temperature: 20 } }), 404, 'not_found');
      expectError(await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 20 } }), 401, 'unauthenticated');
      expectError(await submit(api, device.id, 'not-a-token-at-all', { sensor_readings: { temperature: 20 } }), 401, 'unauthenticated');
      expect(await head(api)).toBe(before);
    });

    it('answers 401 to the token of a deleted device, 404 to its owner', async () => {
      const device = await deviceOf(api, alice);
      await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 20 } });
      expect((await api.del(`/api/devices/${device.id}`, { token: alice.token })).status).toBe(200);
      const before = await head(api);
      expectError(await submit(api, device.id, device.token, { sensor_readings: { temperature: 20 } }), 401, 'unauthenticated');
      expectError(await api.post(`/api/devices/${device.id}/heartbeat`, {}, { token: device.token }), 401, 'unauthenticated');
      expectError(await submit(api, device.id, alice.token, { sensor_readings: { temperature: 20 } }), 404, 'not_found');
      expect(await head(api)).toBe(before);
    });

    it('marks the device online when it stores readings', async () => {
      const device = await deviceOf(api, alice);
      expect((await deviceDetail(device.id)).status).toBe('offline');
      await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 20 } });
      const detail = await deviceDetail(device.id);
      expect(detail.status).toBe('online');
      expect(detail.last_seen).toBe(server.clock.now().toISOString());
    });
  });

  describe('shapes', () => {
    it('takes sensor_readings as a list, with units and per-reading timestamps', async () => {
      const device = await deviceOf(api, alice);
      const t1 = at(server, -2 * MINUTE);
      const t2 = at(server, -1 * MINUTE);
      const answer = await submitOk(api, device.id, device.token, {
        sensor_readings: [
          { sensor_type: 'temperature', value: 21.5, unit: 'C', timestamp: t1 },
          { sensor_type: 'humidity', value: 40, unit: '%', timestamp: t2 },
          { sensor_type: 'pressure', value: 1013 },
        ],
      });
      expect(answer.accepted).toBe(3);
      const readings = await allRawReadings(api, device.id, alice.token);
      expect(readings).toEqual([
        { sensor_type: 'temperature', value: 21.5, unit: 'C', timestamp: t1, quality_score: 100, quality_reasons: [] },
        { sensor_type: 'humidity', value: 40, unit: '%', timestamp: t2, quality_score: 100, quality_reasons: [] },
        { sensor_type: 'pressure', value: 1013, unit: null, timestamp: server.clock.now().toISOString(), quality_score: 100, quality_reasons: [] },
      ]);
    });

    it('takes sensor_readings as an object {type: value}, stamped with the submission timestamp', async () => {
      const device = await deviceOf(api, alice);
      const stamp = at(server, -30_000);
      const answer = await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 22.25, humidity: 41 }, timestamp: stamp });
      expect(answer.accepted).toBe(2);
      const readings = await allRawReadings(api, device.id, alice.token);
      expect(readings.map(({ sensor_type, value, unit, timestamp }) => ({ sensor_type, value, unit, timestamp })).sort((a, b) => a.sensor_type.localeCompare(b.sensor_type))).toEqual([
        { sensor_type: 'humidity', value: 41, unit: null, timestamp: stamp },
        { sensor_type: 'temperature', value: 22.25, unit: null, timestamp: stamp },
      ]);
    });

    it('accepts a timestamp 4 minutes ahead, and readings from days ago (backfill)', async () => {
      const device = await deviceOf(api, alice);
      const ahead = at(server, 4 * MINUTE);
      const old = at(server, -3 * 24 * HOUR);
      expect((await submitOk(api, device.id, device.token, { sensor_readings: [{ sensor_type: 'temperature', value: 1, timestamp: ahead }] })).accepted).toBe(1);
      expect((await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 2 }, timestamp: ahead })).accepted).toBe(1);
      expect((await submitOk(api, device.id, device.token, { sensor_readings: [{ sensor_type: 'temperature', value: 3, timestamp: old }] })).accepted).toBe(1);
      expect((await allRawReadings(api, device.id, alice.token)).map((r) => r.timestamp).sort()).toEqual([old, ahead, ahead]);
    });

    it('normalises timestamps to UTC milliseconds (offsets, no zone, date only)', async () => {
      const device = await deviceOf(api, alice);
      await submitOk(api, device.id, device.token, {
        sensor_readings: [
          { sensor_type: 'a', value: 1, timestamp: '2026-02-28T13:00:00+02:00' },
          { sensor_type: 'b', value: 2, timestamp: '2026-02-28T11:00:00.5' },
          { sensor_type: 'c', value: 3, timestamp: '2026-02-27' },
        ],
      });
      const byType = Object.fromEntries((await allRawReadings(api, device.id, alice.token)).map((r) => [r.sensor_type, r.timestamp]));
      expect(byType).toEqual({ a: '2026-02-28T11:00:00.000Z', b: '2026-02-28T11:00:00.500Z', c: '2026-02-27T00:00:00.000Z' });
    });

    it('accepts a timestamp exactly 5 minutes ahead (only more is refused)', async () => {
      const device = await deviceOf(api, alice);
      expect((await submitOk(api, device.id, device.token, { sensor_readings: [{ sensor_type: 'temperature', value: 1, timestamp: at(server, 5 * MINUTE) }] })).accepted).toBe(1);
    });

    it('keeps duplicate readings (same sensor, same time) as separate readings', async () => {
      const device = await deviceOf(api, alice);
      const stamp = at(server, -MINUTE);
      const twice = { sensor_readings: [{ sensor_type: 'temperature', value: 20, timestamp: stamp }, { sensor_type: 'temperature', value: 20, timestamp: stamp }] };
      await submitOk(api, device.id, device.token, twice);
      await submitOk(api, device.id, device.token, twice);
      expect(await allRawReadings(api, device.id, alice.token)).toHaveLength(4);
      expect((await readData<BucketRow>(api, device.id, alice.token, 'interval=minute')).data).toMatchObject([{ count: 4, sum: 80 }]);
    });

    it('accepts sensor types with . : / - _ and an explicit null unit or device_status', async () => {
      const device = await deviceOf(api, alice);
      const answer = await submitOk(api, device.id, device.token, {
        sensor_readings: [
          { sensor_type: 'zone-1/temp_c.avg:1m', value: 1, unit: null },
          { sensor_type: 'T'.repeat(64), value: 2, unit: 'u'.repeat(32) },
        ],
        device_status: null,
      });
      expect(answer.accepted).toBe(2);
    });

    it('treats a "__proto__" sensor in the object shape like the list shape does', async () => {
      const device = await deviceOf(api, alice);
      const answer = await submitRaw(api, device.id, device.token, '{"sensor_readings":{"__proto__":5,"temperature":3}}');
      if (answer.status === 400) {
        expect(await allRawReadings(api, device.id, alice.token)).toEqual([]);
        return;
      }
      expect(answer.status).toBe(201);
      expect((answer.body as Data<{ accepted: number }>).data.accepted).toBe(2);
      expect((await allRawReadings(api, device.id, alice.token)).map((r) => r.sensor_type).sort()).toEqual(['__proto__', 'temperature']);
    });

    it('accepts exactly 1,000 readings in one submission', async () => {
      const device = await deviceOf(api, alice);
      const readings = Array.from({ length: 1000 }, (_, i) => ({ sensor_type: 'counter', value: i, timestamp: at(server, -HOUR + i * 1000) }));
      expect((await submitOk(api, device.id, device.token, { sensor_readings: readings })).accepted).toBe(1000);
      expect((await readData(api, device.id, alice.token, 'limit=1')).meta.total).toBe(1000);
    });
  });

  describe('validation: the whole submission is refused with 400 and nothing is stored', () => {
    let device: Awaited<ReturnType<typeof deviceOf>>;
    beforeAll(async () => {
      device = await deviceOf(api, alice);
    });

    const longType = 'x'.repeat(65);
    const cases: Array<[string, () => unknown, string]> = [
      ['value as a string', () => ({ sensor_readings: [{ sensor_type: 'temperature', value: '21.5' }] }), 'sensor_readings.0.value'],
      ['value as a string (object shape)', () => ({ sensor_readings: { temperature: '21.5' } }), 'sensor_readings.temperature'],
      ['value null (what NaN serialises to)', () => ({ sensor_readings: [{ sensor_type: 'temperature', value: null }] }), 'sensor_readings.0.value'],
      ['value a boolean', () => ({ sensor_readings: [{ sensor_type: 'temperature', value: true }] }), 'sensor_readings.0.value'],
      ['value missing', () => ({ sensor_readings: [{ sensor_type: 'temperature' }] }), 'sensor_readings.0.value'],
      ['sensor_type missing', () => ({ sensor_readings: [{ value: 1 }] }), 'sensor_readings.0.sensor_type'],
      ['an empty list', () => ({ sensor_readings: [] }), 'sensor_readings'],
      ['an empty object', () => ({ sensor_readings: {} }), 'sensor_readings'],
      ['no sensor_readings at all', () => ({ timestamp: at(server, 0) }), 'sensor_readings'],
      ['sensor_readings a number', () => ({ sensor_readings: 42 }), 'sensor_readings'],
      ['sensor_type empty', () => ({ sensor_readings: [{ sensor_type: '', value: 1 }] }), 'sensor_readings.0.sensor_type'],
      ['sensor_type blank', () => ({ sensor_readings: [{ sensor_type: '   ', value: 1 }] }), 'sensor_readings.0.sensor_type'],
      ['sensor_type too long', () => ({ sensor_readings: [{ sensor_type: longType, value: 1 }] }), 'sensor_readings.0.sensor_type'],
      ['sensor_type with a space', () => ({ sensor_readings: [{ sensor_type: 'air temp', value: 1 }] }), 'sensor_readings.0.sensor_type'],
      ['sensor_type with markup', () => ({ sensor_readings: [{ sensor_type: '<script>', value: 1 }] }), 'sensor_readings.0.sensor_type'],
      ['sensor_type with a quote and semicolon', () => ({ sensor_readings: [{ sensor_type: "t';drop", value: 1 }] }), 'sensor_readings.0.sensor_type'],
      ['sensor_type a number', () => ({ sensor_readings: [{ sensor_type: 7, value: 1 }] }), 'sensor_readings.0.sensor_type'],
      ['an object key with bad characters', () => ({ sensor_readings: { 'air temp': 1 } }), 'sensor_readings'],
      ['an object key too long', () => ({ sensor_readings: { [longType]: 1 } }), 'sensor_readings'],
      ['unit too long', () => ({ sensor_readings: [{ sensor_type: 'temperature', value: 1, unit: 'u'.repeat(33) }] }), 'sensor_readings.0.unit'],
      ['unit a number', () => ({ sensor_readings: [{ sensor_type: 'temperature', value: 1, unit: 5 }] }), 'sensor_readings.0.unit'],
      ['a reading timestamp that is not a date', () => ({ sensor_readings: [{ sensor_type: 'temperature', value: 1, timestamp: 'yesterday' }] }), 'sensor_readings.0.timestamp'],
      ['a reading timestamp out of the calendar', () => ({ sensor_readings: [{ sensor_type: 'temperature', value: 1, timestamp: '2026-13-45T25:61:00Z' }] }), 'sensor_readings.0.timestamp'],
      ['a reading timestamp as epoch number', () => ({ sensor_readings: [{ sensor_type: 'temperature', value: 1, timestamp: 1767225600000 }] }), 'sensor_readings.0.timestamp'],
      ['a submission timestamp that is not a date', () => ({ sensor_readings: { temperature: 1 }, timestamp: 'now' }), 'timestamp'],
      ['a submission timestamp on a day the month lacks (Feb 30)', () => ({ sensor_readings: { temperature: 1 }, timestamp: '2026-02-30T00:00:00Z' }), 'timestamp'],
      ['a reading at 24:00', () => ({ sensor_readings: [{ sensor_type: 'temperature', value: 1, timestamp: '2026-01-10T24:00:00Z' }] }), 'sensor_readings.0.timestamp'],
      ['a reading at 24:00 written in full UTC milliseconds', () => ({ sensor_readings: [{ sensor_type: 'temperature', value: 1, timestamp: '2026-01-10T24:00:00.000Z' }] }), 'sensor_readings.0.timestamp'],
      ['a reading on Feb 30 written in full UTC milliseconds', () => ({ sensor_readings: [{ sensor_type: 'temperature', value: 1, timestamp: '2026-02-30T10:00:00.000Z' }] }), 'sensor_readings.0.timestamp'],
      [
        'a real time, then the same day rolled over, in one submission',
        () => ({ sensor_readings: [{ sensor_type: 'temperature', value: 1, timestamp: '2026-02-28T10:00:00.000Z' }, { sensor_type: 'temperature', value: 1, timestamp: '2026-02-29T10:00:00.000Z' }] }),
        'sensor_readings.1.timestamp',
      ],
      ['a reading on Feb 29 of a common year', () => ({ sensor_readings: [{ sensor_type: 'temperature', value: 1, timestamp: '2025-02-29' }] }), 'sensor_readings.0.timestamp'],
      ['a reading more than 5 minutes ahead', () => ({ sensor_readings: [{ sensor_type: 'temperature', value: 1, timestamp: at(server, 5 * MINUTE + 1000) }] }), 'sensor_readings.0.timestamp'],
      ['a submission timestamp more than 5 minutes ahead', () => ({ sensor_readings: { temperature: 1 }, timestamp: at(server, 6 * MINUTE) }), 'timestamp'],
      [
        'a submission timestamp more than 5 minutes ahead, though every reading has its own',
        () => ({ sensor_readings: [{ sensor_type: 'temperature', value: 1, timestamp: at(server, -HOUR) }], timestamp: at(server, HOUR) }),
        'timestamp',
      ],
      ['a reading a day ahead', () => ({ sensor_readings: [{ sensor_type: 'temperature', value: 1, timestamp: at(server, 24 * HOUR) }] }), 'sensor_readings.0.timestamp'],
      [
        'one bad reading among good ones',
        () => ({ sensor_readings: [{ sensor_type: 'temperature', value: 20 }, { sensor_type: 'humidity', value: 'wet' }, { sensor_type: 'pressure', value: 1000 }] }),
        'sensor_readings.1.value',
      ],
      [
        'one future reading among good ones',
        () => ({ sensor_readings: [{ sensor_type: 'temperature', value: 20 }, { sensor_type: 'temperature', value: 21, timestamp: at(server, 10 * MINUTE) }] }),
        'sensor_readings.1.timestamp',
      ],
      ['device_status neither an object nor a status word', () => ({ sensor_readings: { temperature: 1 }, device_status: 42 }), 'device_status'],
      ['device_status an empty word', () => ({ sensor_readings: { temperature: 1 }, device_status: '  ' }), 'device_status'],
    ];

    it.each(cases)('refuses %s', async (_label, body, path) => {
      const before = await head(api);
      expectValidation(await submit(api, device.id, device.token, body()), path);
      expect(await head(api)).toBe(before);
    });

    it.each([['missing', {}], ['null', { sensor_readings: null }], ['a number', { sensor_readings: 5 }]])('says what sensor_readings must be when it is %s', async (_label, body) => {
      const error = expectValidation(await submit(api, device.id, device.token, body), 'sensor_readings');
      expect(error.message).toContain('a list of readings, or an object of sensor type to value');
    });

    const rawCases: Array<[string, string]> = [
      ['1e999 (Infinity) in a list', '{"sensor_readings":[{"sensor_type":"temperature","value":1e999}]}'],
      ['-1e999 (-Infinity) in a list', '{"sensor_readings":[{"sensor_type":"temperature","value":-1e999}]}'],
      ['1e999 in the object shape', '{"sensor_readings":{"temperature":1e999}}'],
      ['1e999 next to a good reading', '{"sensor_readings":[{"sensor_type":"temperature","value":20},{"sensor_type":"temperature","value":1e999}]}'],
      ['NaN (not JSON)', '{"sensor_readings":[{"sensor_type":"temperature","value":NaN}]}'],
      ['a bare string', '"temperature=20"'],
      ['a bare number', '42'],
      ['null', 'null'],
      ['true', 'true'],
      ['a list instead of an object', '[{"sensor_type":"temperature","value":20}]'],
      ['an empty list', '[]'],
      ['truncated JSON', '{"sensor_readings":[{"sensor_type":"temperature","value":2'],
    ];

    it.each(rawCases)('refuses the raw body %s', async (_label, raw) => {
      const before = await head(api);
      const answer = await submitRaw(api, device.id, device.token, raw);
      expect(answer.status, JSON.stringify(answer.body)).toBe(400);
      expect(['validation_failed', 'invalid_json']).toContain((answer.body as { error: { code: string } }).error.code);
      expect(await head(api)).toBe(before);
    });

    it('refuses a body over 1 MiB with 413', async () => {
      const before = await head(api);
      const answer = await submit(api, device.id, device.token, { sensor_readings: { temperature: 1 }, device_status: { note: 'x'.repeat(1_100_000) } });
      expectError(answer, 413, 'payload_too_large');
      expect(await head(api)).toBe(before);
    });

    it('refuses more than 1,000 readings with 413 (list and object shapes)', async () => {
      const before = await head(api);
      const list = Array.from({ length: 1001 }, (_, i) => ({ sensor_type: 'counter', value: i }));
      expectError(await submit(api, device.id, device.token, { sensor_readings: list }), 413, 'payload_too_large');
      const object = Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`s${i}`, i]));
      expectError(await submit(api, device.id, device.token, { sensor_readings: object }), 413, 'payload_too_large');
      expect(await head(api)).toBe(before);
    });

    it('stored nothing for any of them', async () => {
      expect(await allRawReadings(api, device.id, alice.token)).toEqual([]);
      expect((await deviceDetail(device.id)).status).toBe('offline');
    });
  });

  describe('Idempotency-Key', () => {
    it('repeats the first answer and stores once', async () => {
      const device = await deviceOf(api, alice);
      const key = { 'idempotency-key': `key-${device.id}` };
      const first = await submitOk(api, device.id, device.token, { sensor_readings: [{ sensor_type: 'temperature', value: 20 }, { sensor_type: 'humidity', value: 40 }] }, key);
      const position = await head(api);
      const again = await submitOk(api, device.id, device.token, { sensor_readings: [{ sensor_type: 'temperature', value: 20 }, { sensor_type: 'humidity', value: 40 }] }, key);
      expect(again).toEqual(first);
      expect(await head(api)).toBe(position);
      // Even with another body, the key answers what it answered the first time.
      const different = await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 99 } }, key);
      expect(different).toEqual(first);
      expect(await head(api)).toBe(position);
      expect((await allRawReadings(api, device.id, alice.token)).map((r) => r.value).sort()).toEqual([20, 40]);
    });

    it('stores once when the same key arrives concurrently', async () => {
      const device = await deviceOf(api, alice);
      const key = { 'idempotency-key': `race-${device.id}` };
      const answers = await Promise.all(Array.from({ length: 8 }, () => submitOk(api, device.id, device.token, { sensor_readings: { temperature: 23 } }, key)));
      for (const answer of answers) expect(answer).toEqual(answers[0]);
      expect(await allRawReadings(api, device.id, alice.token)).toHaveLength(1);
    });

    it('stores again under a new key, and keeps keys of different devices apart', async () => {
      const device = await deviceOf(api, alice);
      const other = await deviceOf(api, alice);
      const first = await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 1 } }, { 'idempotency-key': 'boot-1' });
      const second = await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 2 } }, { 'idempotency-key': 'boot-2' });
      expect(second.position).toBeGreaterThan(first.position);
      const elsewhere = await submitOk(api, other.id, other.token, { sensor_readings: { temperature: 3 } }, { 'idempotency-key': 'boot-1' });
      expect(elsewhere.position).toBeGreaterThan(second.position);
      expect((await allRawReadings(api, device.id, alice.token)).map((r) => r.value)).toEqual([1, 2]);
      expect((await allRawReadings(api, other.id, alice.token)).map((r) => r.value)).toEqual([3]);
    });

    it.each([['a key with a space', 'boot 1'], ['a 201-character key', 'k'.repeat(201)]])('honours (or refuses) %s, never storing twice', async (_label, value) => {
      const device = await deviceOf(api, alice);
      const key = { 'idempotency-key': value };
      const first = await submit(api, device.id, device.token, { sensor_readings: { temperature: 5 } }, key);
      const second = await submit(api, device.id, device.token, { sensor_readings: { temperature: 5 } }, key);
      if (first.status === 400) {
        expect(second.status).toBe(400);
        expect(await allRawReadings(api, device.id, alice.token)).toEqual([]);
      } else {
        expect(first.status).toBe(201);
        expect(second.body).toEqual(first.body);
        expect(await allRawReadings(api, device.id, alice.token)).toHaveLength(1);
      }
    });

    it('does not remember a refused submission: a fixed retry under the same key is stored', async () => {
      const device = await deviceOf(api, alice);
      const key = { 'idempotency-key': `fix-${device.id}` };
      expect((await submit(api, device.id, device.token, { sensor_readings: { temperature: 'hot' } }, key)).status).toBe(400);
      expect((await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 30 } }, key)).accepted).toBe(1);
      expect((await allRawReadings(api, device.id, alice.token)).map((r) => r.value)).toEqual([30]);
    });
  });

  describe('heartbeat', () => {
    it('answers 200, marks the device online and counts as activity', async () => {
      const device = await deviceOf(api, alice);
      const answer = await api.post<Data<{ device_id: string; status: string; position: number }>>(
        `/api/devices/${device.id}/heartbeat`,
        { device_status: { battery: 55 }, firmware_version: '2.1.0', metrics: { cpu: 12 } },
        { token: device.token },
      );
      expect(answer.status).toBe(200);
      expect(answer.body.data).toMatchObject({ device_id: device.id, status: 'online' });
      const detail = await deviceDetail(device.id);
      expect(detail.status).toBe('online');
      expect(detail.last_seen).toBe(server.clock.now().toISOString());
      expect(detail.firmware_version).toBe('2.1.0');
      const status = await api.get<Data<DeviceStatusBody>>(`/api/devices/${device.id}/status`, { token: alice.token });
      expect(status.body.data.health.battery).toBe(55);
    });

    it('takes an empty body', async () => {
      const device = await deviceOf(api, alice);
      expect((await api.post(`/api/devices/${device.id}/heartbeat`, {}, { token: device.token })).status).toBe(200);
    });

    it('refuses another device (403), any user, the owner too (403: a device token only), and a bad body (400)', async () => {
      const device = await deviceOf(api, alice);
      const other = await deviceOf(api, alice);
      const before = await head(api);
      expectError(await api.post(`/api/devices/${other.id}/heartbeat`, {}, { token: device.token }), 403, 'forbidden');
      expectError(await api.post(`/api/devices/${device.id}/heartbeat`, {}, { token: alice.token }), 403, 'forbidden');
      expectError(await api.post(`/api/devices/${device.id}/heartbeat`, {}, { token: bob.token }), 403, 'forbidden');
      expectValidation(await api.post(`/api/devices/${device.id}/heartbeat`, { device_status: ['ok'] }, { token: device.token }), 'device_status');
      expect(await head(api)).toBe(before);
    });
  });

  describe('GET /api/devices/:id/status', () => {
    it('answers connectivity, health from device_status (battery, signal, errors, mean quality) and operational state', async () => {
      const device = await deviceOf(api, alice, { firmware_version: '1.0.0' });
      const never = await api.get<Data<DeviceStatusBody>>(`/api/devices/${device.id}/status`, { token: alice.token });
      expect(never.status).toBe(200);
      expect(never.body.data).toMatchObject({ device_id: device.id, status: 'offline', connectivity: { online: false, last_seen: null } });
      expect(never.body.data.health.mean_quality_score).toBeNull();
      expect(never.body.data.health.error_count).toBe(0);

      const sentAt = server.clock.now().toISOString();
      await submitOk(api, device.id, device.token, {
        sensor_readings: [
          { sensor_type: 'temperature', value: 20 }, // 100
          { sensor_type: 'temperature', value: 500 }, // out of range: 50
        ],
        device_status: { battery: 87, signal: -61, error: 'E42 sensor fault' },
      });
      server.clock.advance(30_000);
      const answer = await api.get<Data<DeviceStatusBody>>(`/api/devices/${device.id}/status`, { token: alice.token });
      expect(answer.status).toBe(200);
      const status = answer.body.data;
      expect(status.device_id).toBe(device.id);
      expect(status.status).toBe('online');
      expect(status.connectivity).toMatchObject({ online: true, last_seen: sentAt, seconds_since_last_seen: 30 });
      expect(status.health).toMatchObject({ battery: 87, signal: -61, error_count: 1, mean_quality_score: 75 });
      expect(typeof status.operational_state).toBe('object');

      // Later reports: the last battery wins, errors add up.
      await submitOk(api, device.id, device.token, { sensor_readings: { humidity: 50 }, device_status: { battery: 80 } });
      await submitOk(api, device.id, device.token, { sensor_readings: { humidity: 50 }, device_status: { battery: 79, error: 'E43' } });
      const later = (await api.get<Data<DeviceStatusBody>>(`/api/devices/${device.id}/status`, { token: alice.token })).body.data;
      expect(later.health).toMatchObject({ battery: 79, error_count: 2, mean_quality_score: (100 + 50 + 100 + 100) / 4 });
      expect(later.connectivity.seconds_since_last_seen).toBe(0);
    });

    it('answers the device itself, refuses another device (403) and another user (404)', async () => {
      const device = await deviceOf(api, alice);
      const other = await deviceOf(api, alice);
      expect((await api.get(`/api/devices/${device.id}/status`, { token: device.token })).status).toBe(200);
      expectError(await api.get(`/api/devices/${device.id}/status`, { token: other.token }), 403, 'forbidden');
      expectError(await api.get(`/api/devices/${device.id}/status`, { token: bob.token }), 404, 'not_found');
    });
  });

  describe('GET /api/devices/:id/data', () => {
    let device: Awaited<ReturnType<typeof deviceOf>>;
    let t: (minutes: number) => string;
    beforeAll(async () => {
      device = await deviceOf(api, alice);
      const base = Math.floor(server.clock.now().getTime() / HOUR) * HOUR - 2 * HOUR; // two whole hours back
      t = (minutes) => new Date(base + minutes * MINUTE).toISOString();
      // Arrives out of order: the answer is in time order all the same.
      await submitOk(api, device.id, device.token, { sensor_readings: [{ sensor_type: 'temperature', value: 3, timestamp: t(2.5) }] });
      await submitOk(api, device.id, device.token, {
        sensor_readings: [
          { sensor_type: 'temperature', value: 1, timestamp: t(0.25) },
          { sensor_type: 'temperature', value: 2, timestamp: t(0.75) },
          { sensor_type: 'humidity', value: 40, timestamp: t(1.5) },
          { sensor_type: 'temperature', value: 10, timestamp: t(70) },
        ],
      });
    });

    it('answers raw readings oldest first with quality_score and list meta', async () => {
      const answer = await readData(api, device.id, alice.token);
      expect(answer.meta).toEqual({ total: 5, limit: 50, offset: 0, next_cursor: null });
      expect(answer.data.map((r) => r.value)).toEqual([1, 2, 40, 3, 10]);
      for (const r of answer.data) {
        expect(Object.keys(r)).toEqual(expect.arrayContaining(['sensor_type', 'value', 'unit', 'timestamp', 'quality_score']));
        expect(r.timestamp).toMatch(ISO_MS);
        expect(Number.isInteger(r.quality_score)).toBe(true);
      }
      expect(answer.data.map((r) => r.timestamp)).toEqual([t(0.25), t(0.75), t(1.5), t(2.5), t(70)]);
    });

    it('pages with limit and offset: each page oldest first, together every reading once', async () => {
      const seen: RawReading[] = [];
      for (let offset = 0; offset < 5; offset += 2) {
        const page = await readData(api, device.id, alice.token, `limit=2&offset=${offset}`);
        expect(page.meta).toMatchObject({ total: 5, limit: 2, offset });
        const times = page.data.map((r) => r.timestamp);
        expect(times).toEqual([...times].sort());
        seen.push(...page.data);
      }
      expect(seen.map((r) => r.value).sort((a, b) => a - b)).toEqual([1, 2, 3, 10, 40]);
    });

    it('pages by cursor: each page resumes just after the last, newest page first, and the last has none', async () => {
      const pages: number[][] = [];
      let query = 'limit=2';
      for (;;) {
        const page = await readData(api, device.id, alice.token, query);
        expect(page.meta).toMatchObject({ total: 5, limit: 2 });
        pages.push(page.data.map((r) => r.value));
        const next = page.meta.next_cursor;
        if (!next) break;
        query = `limit=2&cursor=${encodeURIComponent(next)}`;
      }
      expect(pages).toEqual([[3, 10], [2, 40], [1]]);
    });

    it('refuses a cursor it did not give, a cursor with an offset, and a cursor on aggregates', async () => {
      const first = await readData(api, device.id, alice.token, 'limit=2');
      const cursor = encodeURIComponent(first.meta.next_cursor!);
      for (const query of ['cursor=not-a-cursor', `cursor=${Buffer.from('[1,2]').toString('base64url')}`, `cursor=${cursor}&offset=2`, `cursor=${cursor}&interval=hour`]) {
        expectValidation(await api.get(`/api/devices/${device.id}/data?${query}`, { token: alice.token }), 'cursor');
      }
    });

    it('filters by sensor_type and by date range (inclusive)', async () => {
      expect((await readData(api, device.id, alice.token, 'sensor_type=humidity')).data.map((r) => r.value)).toEqual([40]);
      expect((await readData(api, device.id, alice.token, `start_date=${t(0.75)}&end_date=${t(2.5)}`)).data.map((r) => r.value)).toEqual([2, 40, 3]);
      expect((await readData(api, device.id, alice.token, `sensor_type=temperature&start_date=${t(1)}`)).data.map((r) => r.value)).toEqual([3, 10]);
    });

    it('aggregates per minute, hour and day, oldest first', async () => {
      const minute = await readData<BucketRow>(api, device.id, alice.token, 'interval=minute');
      expect(minute.data).toEqual([
        { sensor_type: 'temperature', bucket_start: t(0), count: 2, avg: 1.5, min: 1, max: 2, sum: 3 },
        { sensor_type: 'humidity', bucket_start: t(1), count: 1, avg: 40, min: 40, max: 40, sum: 40 },
        { sensor_type: 'temperature', bucket_start: t(2), count: 1, avg: 3, min: 3, max: 3, sum: 3 },
        { sensor_type: 'temperature', bucket_start: t(70), count: 1, avg: 10, min: 10, max: 10, sum: 10 },
      ]);
      const hour = await readData<BucketRow>(api, device.id, alice.token, 'interval=hour&sensor_type=temperature');
      expect(hour.data).toEqual([
        { sensor_type: 'temperature', bucket_start: t(0), count: 3, avg: 2, min: 1, max: 3, sum: 6 },
        { sensor_type: 'temperature', bucket_start: t(60), count: 1, avg: 10, min: 10, max: 10, sum: 10 },
      ]);
      const day = await readData<BucketRow>(api, device.id, alice.token, 'interval=day&sensor_type=temperature');
      expect(day.data).toHaveLength(1);
      expect(day.data[0]).toMatchObject({ sensor_type: 'temperature', count: 4, min: 1, max: 10, sum: 16, avg: 4 });
      expect(day.data[0]!.bucket_start).toBe(`${t(0).slice(0, 10)}T00:00:00.000Z`);
      const ranged = await readData<BucketRow>(api, device.id, alice.token, `interval=hour&start_date=${t(60)}`);
      expect(ranged.data.map((r) => r.sum)).toEqual([10]);
      // A range starting inside a bucket holds that bucket whole.
      const inside = await readData<BucketRow>(api, device.id, alice.token, `interval=hour&sensor_type=temperature&start_date=${t(2)}&end_date=${t(61)}`);
      expect(inside.data.map((r) => [r.bucket_start, r.sum])).toEqual([[t(0), 6], [t(60), 10]]);
    });

    it('reads a date alone as the whole day for end_date: start_date=end_date=D covers D', async () => {
      const day = t(0).slice(0, 10);
      const sameDay = t(70).slice(0, 10) === day;
      const raw = await readData(api, device.id, alice.token, `start_date=${day}&end_date=${day}`);
      expect(raw.data.map((r) => r.value)).toEqual(sameDay ? [1, 2, 40, 3, 10] : [1, 2, 40, 3]);
      const previous = new Date(Date.parse(`${day}T00:00:00.000Z`) - 24 * HOUR).toISOString().slice(0, 10);
      expect((await readData(api, device.id, alice.token, `start_date=${previous}&end_date=${previous}`)).data).toEqual([]);
    });

    it('refuses start_date after end_date, unknown intervals and bad paging with 400', async () => {
      expectValidation(await api.get(`/api/devices/${device.id}/data?start_date=${t(10)}&end_date=${t(0)}`, { token: alice.token }), 'start_date');
      expectValidation(await api.get(`/api/devices/${device.id}/data?interval=week`, { token: alice.token }), 'interval');
      expectValidation(await api.get(`/api/devices/${device.id}/data?start_date=soon`, { token: alice.token }), 'start_date');
      expectValidation(await api.get(`/api/devices/${device.id}/data?limit=501`, { token: alice.token }), 'limit');
      expectValidation(await api.get(`/api/devices/${device.id}/data?limit=0`, { token: alice.token }), 'limit');
    });

    it('answers the device itself; 403 to another device, 404 to another user', async () => {
      expect((await api.get(`/api/devices/${device.id}/data`, { token: device.token })).status).toBe(200);
      const other = await deviceOf(api, alice);
      expectError(await api.get(`/api/devices/${device.id}/data`, { token: other.token }), 403, 'forbidden');
      expectError(await api.get(`/api/devices/${device.id}/data`, { token: bob.token }), 404, 'not_found');
    });
  });

  describe('quality_score', () => {
    const lastReading = async (deviceId: string): Promise<RawReading> => {
      const readings = await allRawReadings(api, deviceId, alice.token);
      return readings.at(-1)!;
    };

    it('is 100 with no reasons for a plausible, fresh, in-order reading', async () => {
      const device = await deviceOf(api, alice);
      await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 21 } });
      expect(await lastReading(device.id)).toMatchObject({ quality_score: 100, quality_reasons: [] });
    });

    it('is lowered for a reading out of range (temperature 500)', async () => {
      const device = await deviceOf(api, alice);
      await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 500 } });
      const reading = await lastReading(device.id);
      expect(reading.quality_score).toBeLessThan(100);
      expect(reading.quality_reasons).toContain('out_of_range');
    });

    it('is lowered for a stale reading (2 h old)', async () => {
      const device = await deviceOf(api, alice);
      await submitOk(api, device.id, device.token, { sensor_readings: [{ sensor_type: 'temperature', value: 20, timestamp: at(server, -2 * HOUR) }] });
      const reading = await lastReading(device.id);
      expect(reading.quality_score).toBeLessThan(100);
      expect(reading.quality_reasons).toEqual(['stale']);
    });

    it('is lowered for an out-of-order reading', async () => {
      const device = await deviceOf(api, alice);
      await submitOk(api, device.id, device.token, { sensor_readings: [{ sensor_type: 'temperature', value: 20, timestamp: at(server, 0) }] });
      await submitOk(api, device.id, device.token, { sensor_readings: [{ sensor_type: 'temperature', value: 20.1, timestamp: at(server, -10 * MINUTE) }] });
      const readings = await allRawReadings(api, device.id, alice.token);
      const late = readings.find((r) => r.value === 20.1)!;
      expect(late.quality_score).toBeLessThan(100);
      expect(late.quality_reasons).toEqual(['out_of_order']);
      expect(readings.find((r) => r.value === 20)!.quality_score).toBe(100);
    });

    it('is lowered for a jump far beyond the recent spread', async () => {
      const device = await deviceOf(api, alice);
      const steady = [20, 20.1, 19.9, 20, 20.1, 19.9, 20].map((value) => ({ sensor_type: 'temperature', value }));
      await submitOk(api, device.id, device.token, { sensor_readings: steady });
      await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 45 } });
      const reading = await lastReading(device.id);
      expect(reading.value).toBe(45);
      expect(reading.quality_score).toBeLessThan(100);
      expect(reading.quality_reasons).toEqual(['jump']);
    });
  });

  describe('plausible ranges in the configuration', () => {
    it('scores a boiler pressure of 1.9 bar out of range by default, and plausible once the device says its range', async () => {
      const plain = await deviceOf(api, alice);
      await submitOk(api, plain.id, plain.token, { sensor_readings: [{ sensor_type: 'pressure', value: 1.9, unit: 'bar' }] });
      expect((await allRawReadings(api, plain.id, alice.token)).at(-1)).toMatchObject({ quality_score: 50, quality_reasons: ['out_of_range'] });

      const boiler = await deviceOf(api, alice, { configuration: { ranges: { pressure: { min: 0, max: 6 }, flow: { min: 0, max: 120 } } } });
      await submitOk(api, boiler.id, boiler.token, { sensor_readings: [{ sensor_type: 'pressure', value: 1.9, unit: 'bar' }, { sensor_type: 'flow', value: 121 }, { sensor_type: 'temperature', value: 500 }] });
      const readings = await allRawReadings(api, boiler.id, alice.token);
      const bySensor = (sensor: string) => readings.find((r) => r.sensor_type === sensor)!;
      expect(bySensor('pressure')).toMatchObject({ quality_score: 100, quality_reasons: [] });
      // A sensor without a default range gets the device's; the others keep their defaults.
      expect(bySensor('flow').quality_reasons).toEqual(['out_of_range']);
      expect(bySensor('temperature').quality_reasons).toEqual(['out_of_range']);
    });

    it('refuses ranges that make no sense, on devices and templates, storing nothing', async () => {
      const before = await head(api);
      const register = (configuration: Record<string, unknown>) => api.post('/api/devices', { name: 'ranged', type: 'sensor', configuration }, { token: alice.token });
      expectValidation(await register({ ranges: { pressure: { min: 6, max: 0 } } }), 'configuration.ranges.pressure.min');
      expectValidation(await register({ ranges: { pressure: { min: 0 } } }), 'configuration.ranges.pressure.max');
      expectValidation(await register({ ranges: { pressure: { min: '0', max: 6 } } }), 'configuration.ranges.pressure.min');
      expectValidation(await register({ ranges: [1, 2] }), 'configuration.ranges');
      const misspelt = expectValidation(await register({ ranges: { pressure: { min: 0, maximum: 6 } } }), 'configuration.ranges.pressure.maximum');
      expect(misspelt.details.map((d) => d.message).join(' ')).toContain('unknown field "maximum"');
      const template = await api.post('/api/templates', { name: uniqueName('ranged'), device_type: 'sensor', configuration: { ranges: { co2: { min: 1, max: 0 } } } }, { token: alice.token });
      expectValidation(template, 'configuration.ranges.co2.min');
      expect(await head(api)).toBe(before);
    });
  });

  describe('GET /api/devices/:id/logs', () => {
    it('lists status changes, configuration pushes and reported errors, filtered by severity and dates', async () => {
      const device = await deviceOf(api, alice, { configuration: { heartbeat_interval: 5 } });
      server.clock.advance(10_000);
      const onlineAt = server.clock.now().toISOString();
      await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 20 } });
      server.clock.advance(10_000);
      const errorAt = server.clock.now().toISOString();
      await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 20 }, device_status: { error: 'overheat' } });
      server.clock.advance(10_000);
      const configuredAt = server.clock.now().toISOString();
      const put = await api.put(`/api/devices/${device.id}`, { configuration: { heartbeat_interval: 5, sampling: 10 } }, { token: alice.token });
      expect(put.status).toBe(200);
      server.clock.advance(20_000); // past 3 × heartbeat_interval
      const offlineAt = server.clock.now().toISOString();
      await server.server.timers.runAll();

      const all = await api.get<{ data: DeviceLogEntry[]; meta: { total: number } }>(`/api/devices/${device.id}/logs`, { token: alice.token });
      expect(all.status).toBe(200);
      const entries = all.body.data;
      const find = (category: string, severity: string) => entries.filter((e) => e.category === category && e.severity === severity);
      expect(find('status', 'info').map((e) => e.timestamp)).toEqual([onlineAt]);
      expect(find('status', 'warning').map((e) => e.timestamp)).toEqual([offlineAt]);
      expect(find('device_error', 'error')).toEqual([expect.objectContaining({ timestamp: errorAt, message: expect.stringContaining('overheat') as string })]);
      expect(find('configuration', 'info').map((e) => e.timestamp)).toEqual([configuredAt]);
      expect(all.body.meta.total).toBe(entries.length);

      const severities = async (query: string) =>
        (await api.get<{ data: DeviceLogEntry[] }>(`/api/devices/${device.id}/logs?${query}`, { token: alice.token })).body.data.map((e) => `${e.severity}:${e.category}`).sort();
      expect(await severities('severity=error')).toEqual(['error:device_error']);
      expect(await severities('severity=warning')).toEqual(['error:device_error', 'warning:status']);
      expect(await severities('severity=critical')).toEqual([]);

      const times = async (query: string) =>
        (await api.get<{ data: DeviceLogEntry[] }>(`/api/devices/${device.id}/logs?${query}`, { token: alice.token })).body.data.map((e) => e.timestamp).sort();
      expect(await times(`start_date=${errorAt}`)).toEqual([errorAt, configuredAt, offlineAt]);
      expect(await times(`start_date=${errorAt}&end_date=${configuredAt}`)).toEqual([errorAt, configuredAt]);
      expect((await times(`end_date=${onlineAt}`)).every((time) => time <= onlineAt)).toBe(true);
      expect(await times(`end_date=${onlineAt}`)).toContain(onlineAt);
      expect(await times(`start_date=${at(server, HOUR)}`)).toEqual([]);
    });

    it('refuses bad filters (400) and other users (404)', async () => {
      const device = await deviceOf(api, alice);
      expectValidation(await api.get(`/api/devices/${device.id}/logs?severity=loud`, { token: alice.token }), 'severity');
      expectValidation(await api.get(`/api/devices/${device.id}/logs?start_date=${at(server, 0)}&end_date=${at(server, -HOUR)}`, { token: alice.token }), 'start_date');
      expectError(await api.get(`/api/devices/${device.id}/logs`, { token: bob.token }), 404, 'not_found');
    });
  });

  describe('export', () => {
    const TOTAL = 100_000;
    let device: Awaited<ReturnType<typeof deviceOf>>;
    let start: number;

    beforeAll(async () => {
      device = await deviceOf(api, alice);
      start = server.clock.now().getTime() - 2 * 24 * HOUR;
      for (let batch = 0; batch < TOTAL / 1000; batch++) {
        const readings = Array.from({ length: 1000 }, (_, i) => {
          const n = batch * 1000 + i;
          return { sensor_type: 'counter', value: n, unit: 'n', timestamp: new Date(start + n * 1000).toISOString() };
        });
        const answer = await submit(api, device.id, device.token, { sensor_readings: readings });
        if (answer.status !== 201) throw new Error(`batch ${batch}: ${answer.status} ${JSON.stringify(answer.body)}`);
      }
    }, 180_000);

    it('streams 100,000 readings as CSV: a header and one line per reading, in time order', async () => {
      const response = await fetch(`${server.url}/api/devices/${device.id}/data/export?format=csv`, { headers: { authorization: `Bearer ${alice.token}` } });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/csv/);
      expect(response.headers.get('content-length')).toBeNull(); // streamed (chunked), not buffered
      const text = await response.text();
      const lines = text.split('\n');
      expect(lines.at(-1)).toBe('');
      lines.pop();
      expect(lines).toHaveLength(TOTAL + 1);
      expect(lines[0]).toBe('timestamp,sensor_type,value,unit,quality_score');
      const seen = new Set<number>();
      const malformed: string[] = [];
      let previous = '';
      for (const line of lines.slice(1)) {
        const [timestamp = '', sensor, value, unit, score, ...rest] = line.split(',');
        const wellFormed = rest.length === 0 && sensor === 'counter' && unit === 'n' && Number.isInteger(Number(score)) && ISO_MS.test(timestamp) && timestamp >= previous;
        if (!wellFormed && malformed.length < 5) malformed.push(line);
        previous = timestamp;
        seen.add(Number(value));
      }
      expect(malformed).toEqual([]);
      expect(seen.size).toBe(TOTAL);
      expect(Math.min(...seen)).toBe(0);
      expect(Math.max(...seen)).toBe(TOTAL - 1);
      expect(lines[1]!.startsWith(`${new Date(start).toISOString()},counter,0,n,`)).toBe(true);
    });

    it('streams NDJSON: one JSON object per line', async () => {
      const response = await fetch(`${server.url}/api/devices/${device.id}/data/export?format=ndjson`, { headers: { authorization: `Bearer ${alice.token}` } });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/ndjson/);
      const lines = (await response.text()).split('\n').filter((line) => line.length > 0);
      expect(lines).toHaveLength(TOTAL);
      const first = JSON.parse(lines[0]!) as Record<string, unknown>;
      expect(first).toMatchObject({ timestamp: new Date(start).toISOString(), sensor_type: 'counter', value: 0, unit: 'n' });
      const values = new Set(lines.map((line) => (JSON.parse(line) as { value: number }).value));
      expect(values.size).toBe(TOTAL);
    });

    it('exports only the range asked for', async () => {
      const from = new Date(start + 10 * 1000).toISOString();
      const to = new Date(start + 19 * 1000).toISOString();
      const answer = await api.get<string>(`/api/devices/${device.id}/data/export?format=csv&start_date=${from}&end_date=${to}`, { token: alice.token });
      expect(answer.status).toBe(200);
      const lines = answer.body.trim().split('\n');
      expect(lines).toHaveLength(11);
      expect(lines.slice(1).map((line) => Number(line.split(',')[2]))).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
    });

    it('exports every reading once when more than a page of them share one timestamp', async () => {
      const crowded = await deviceOf(api, alice);
      const stamp = at(server, -HOUR);
      for (let batch = 0; batch < 6; batch++) {
        const readings = Array.from({ length: 1000 }, (_, i) => ({ sensor_type: 'same', value: batch * 1000 + i, timestamp: stamp }));
        await submitOk(api, crowded.id, crowded.token, { sensor_readings: readings });
      }
      const answer = await api.get<string>(`/api/devices/${crowded.id}/data/export?format=ndjson`, { token: alice.token });
      const values = answer.body
        .split('\n')
        .filter((line) => line.length > 0)
        .map((line) => (JSON.parse(line) as { value: number }).value);
      expect(values).toHaveLength(6000);
      expect(new Set(values).size).toBe(6000);
    });

    it('refuses another user (404) and an unknown format (400)', async () => {
      expectError(await api.get(`/api/devices/${device.id}/data/export?format=csv`, { token: bob.token }), 404, 'not_found');
      expectValidation(await api.get(`/api/devices/${device.id}/data/export?format=xml`, { token: alice.token }), 'format');
    });
  });
});


describe('telemetry retention (RETENTION_DAYS=1)', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let owner: Owner;

  beforeAll(async () => {
    server = await startTestServer({ RETENTION_DAYS: '1' });
    await registerUser(api, uniqueName('radmin'));
    owner = await registerUser(api, uniqueName('keeper'));
  });
  afterAll(() => server.close());

  it('prunes raw readings older than the retention while the day rollups keep them', async () => {
    const device = await deviceOf(api, owner);
    const firstDay = server.clock.now().toISOString().slice(0, 10);
    await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 1 } });
    expect(await allRawReadings(api, device.id, owner.token)).toHaveLength(1);
    server.clock.advance(26 * HOUR);
    await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 2 } });
    expect((await allRawReadings(api, device.id, owner.token)).map((r) => r.value)).toEqual([2]);
    const days = await readData<BucketRow>(api, device.id, owner.token, 'interval=day');
    expect(days.data.map((d) => `${d.bucket_start.slice(0, 10)}:${d.count}:${d.sum}`)).toContain(`${firstDay}:1:1`);
  });

  it('prunes every device, not only the one whose reading moved the clock past the retention', async () => {
    const quiet = await deviceOf(api, owner);
    const busy = await deviceOf(api, owner);
    await submitOk(api, quiet.id, quiet.token, { sensor_readings: { humidity: 40 } });
    server.clock.advance(26 * HOUR);
    await submitOk(api, busy.id, busy.token, { sensor_readings: { humidity: 41 } });
    expect(await allRawReadings(api, quiet.id, owner.token)).toEqual([]);
    expect((await allRawReadings(api, busy.id, owner.token)).map((r) => r.value)).toEqual([41]);
  });

  it("keeps each sensor's newest reading in the device's recent_data after its raw row is pruned, and a backfill does not replace it", async () => {
    const device = await deviceOf(api, owner);
    const newest = server.clock.now().toISOString();
    await submitOk(api, device.id, device.token, { sensor_readings: [{ sensor_type: 'temperature', value: 7, unit: 'C', timestamp: newest }, { sensor_type: 'co2', value: 400, timestamp: newest }] });
    await submitOk(api, device.id, device.token, { sensor_readings: [{ sensor_type: 'temperature', value: 3, unit: 'C', timestamp: at(server, -HOUR) }] });
    server.clock.advance(26 * HOUR);
    const other = await deviceOf(api, owner);
    await submitOk(api, other.id, other.token, { sensor_readings: { temperature: 1 } });
    expect(await allRawReadings(api, device.id, owner.token)).toEqual([]);
    const detail = await api.get<Data<{ recent_data: Array<{ sensor_type: string; value: number; timestamp: string }> }>>(`/api/devices/${device.id}`, { token: owner.token });
    expect(detail.body.data.recent_data.map((r) => [r.sensor_type, r.value, r.timestamp])).toEqual([
      ['co2', 400, newest],
      ['temperature', 7, newest],
    ]);
  });
});
