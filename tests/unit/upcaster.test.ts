import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.js';
import { eventSchemas, streams, upcast, type DomainEvent } from '../../src/domain/events.js';
import { chainHash } from '../../src/eventlog/hash.js';
import { SqliteEventLog, openDatabase, type SqliteDatabase } from '../../src/eventlog/index.js';
import { ProjectionRunner, Sql, createProjections } from '../../src/projections/index.js';
import { iterateReadings } from '../../src/projections/telemetry-queries.js';

/**
 * readings.recorded changed shape: it first carried bare readings ({sensor_type, value,
 * timestamp}) and no device_status. An old row, chained correctly into the log, must read as
 * the current shape everywhere (readStream, readAll), verify, and rebuild the read models.
 */

const T0 = '2026-03-01T12:00:00.000Z';
const at = (ms: number): string => new Date(Date.parse(T0) + ms).toISOString();

const registered: DomainEvent = {
  type: 'device.registered',
  data: {
    device_id: 'd1',
    user_id: 'u1',
    token_hash: 'h',
    name: 'Thermostat',
    device_type: 'sensor',
    description: null,
    ip_address: null,
    mac_address: null,
    group_id: null,
    configuration: {},
    firmware_version: null,
  },
};
const currentShape: DomainEvent = {
  type: 'readings.recorded',
  data: {
    device_id: 'd1',
    readings: [{ sensor_type: 'humidity', value: 40, unit: '%', timestamp: at(0), quality_score: 90, quality_reasons: ['stale'] }],
    device_status: { battery: 80 },
  },
};

/** The old shape, exactly as an old version of the code stored it. */
const oldData = {
  device_id: 'd1',
  readings: [
    { sensor_type: 'temperature', value: 21.5, timestamp: at(60_000) },
    { sensor_type: 'temperature', value: 22, timestamp: at(61_000) },
  ],
};

interface Row {
  position: number;
  stream_id: string;
  version: number;
  type: string;
  data: string;
  metadata: string;
  recorded_at: string;
  hash: string;
}

describe('upcaster: readings.recorded in its old shape', () => {
  const clock = new ManualClock(T0);
  let db: SqliteDatabase;
  let oldPosition: number;
  let oldHash: string;

  /** Writes a raw row chained onto the current last row, as the old code would have appended it. */
  const insertRaw = (streamId: string, version: number, type: string, data: unknown, recordedAt: string): Row => {
    const previous = db.prepare<[], { position: number; hash: string }>('SELECT position, hash FROM events ORDER BY position DESC LIMIT 1').get()!;
    const fields = { position: previous.position + 1, stream_id: streamId, version, type, data: JSON.stringify(data), metadata: JSON.stringify({ actor_type: 'device', actor_id: 'd1' }), recorded_at: recordedAt };
    const hash = chainHash(previous.hash, fields);
    db.prepare('INSERT INTO events (position, stream_id, version, type, data, metadata, recorded_at, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(
      fields.position,
      fields.stream_id,
      fields.version,
      fields.type,
      fields.data,
      fields.metadata,
      fields.recorded_at,
      hash,
    );
    return { ...fields, hash };
  };

  beforeEach(async () => {
    db = openDatabase(':memory:');
    const writer = new SqliteEventLog(db, clock);
    await writer.append([{ streamId: streams.device('d1'), events: [registered], expectedVersion: 'no_stream' }]);
    await writer.append([{ streamId: streams.telemetry('d1'), events: [currentShape], expectedVersion: 'no_stream' }]);
    writer.close();
    const row = insertRaw(streams.telemetry('d1'), 2, 'readings.recorded', oldData, at(61_500));
    oldPosition = row.position;
    oldHash = row.hash;
  });
  afterEach(() => db.close());

  const expectedUpcast = {
    device_id: 'd1',
    device_status: null,
    readings: [
      { sensor_type: 'temperature', value: 21.5, timestamp: at(60_000), unit: null, quality_score: 100, quality_reasons: [] },
      { sensor_type: 'temperature', value: 22, timestamp: at(61_000), unit: null, quality_score: 100, quality_reasons: [] },
    ],
  };

  it('the raw row really is the old shape and chains: verify() is ok up to it', async () => {
    const stored = db.prepare<[number], { data: string }>('SELECT data FROM events WHERE position = ?').get(oldPosition)!;
    expect(JSON.parse(stored.data)).toEqual(oldData);
    expect(eventSchemas['readings.recorded'].safeParse(oldData).success).toBe(false);
    const log = new SqliteEventLog(db, clock);
    expect(await log.verify()).toEqual({ ok: true, checked: 3, head_hash: oldHash });
    expect(log.headPosition()).toBe(3);
  });

  it('readStream answers the current shape (quality_score 100, quality_reasons [], unit null, device_status null)', async () => {
    const log = new SqliteEventLog(db, clock);
    const events = await log.readStream(streams.telemetry('d1'));
    expect(events.map((e) => e.type)).toEqual(['readings.recorded', 'readings.recorded']);
    expect(events[0]!.data).toEqual(currentShape.data);
    expect(events[1]!.data).toEqual(expectedUpcast);
    expect(events[1]).toMatchObject({ position: oldPosition, version: 2, recorded_at: at(61_500), hash: oldHash });
    // The upcast data is valid under today's schema.
    expect(eventSchemas['readings.recorded'].parse(events[1]!.data)).toEqual(expectedUpcast);
  });

  it('readAll answers the current shape too, with or without filters; asStored keeps the bytes as written', async () => {
    const log = new SqliteEventLog(db, clock);
    const all = await log.readAll({ afterPosition: 0, limit: 10 });
    expect(all.map((e) => e.position)).toEqual([1, 2, 3]);
    expect(all[2]!.data).toEqual(expectedUpcast);
    const filtered = await log.readAll({ afterPosition: 2, limit: 10, types: ['readings.recorded'], streamIds: [streams.telemetry('d1')] });
    expect(filtered.map((e) => e.data)).toEqual([expectedUpcast]);
    const raw = await log.readAll({ afterPosition: 2, limit: 10, asStored: true });
    expect(raw[0]!.data).toEqual(oldData);
  });

  it('new appends chain on after the old row, and the whole log still verifies', async () => {
    const log = new SqliteEventLog(db, clock);
    clock.set(at(120_000));
    await log.append([{ streamId: streams.telemetry('d1'), events: [currentShape], expectedVersion: 2 }]);
    const verdict = await log.verify();
    expect(verdict.ok).toBe(true);
    expect(verdict.checked).toBe(4);
    expect((await log.readStream(streams.telemetry('d1'))).map((e) => e.version)).toEqual([1, 2, 3]);
  });

  it('a rebuild of the read models applies the old event: its readings land with quality 100 and no unit', async () => {
    const log = new SqliteEventLog(db, clock);
    const runner = new ProjectionRunner(db, log, createProjections({ retentionDays: 30 }), pino({ level: 'silent' }));
    runner.start();
    await runner.waitFor(log.headPosition());
    await runner.stop();
    const readings = [...iterateReadings(new Sql(db), { deviceIds: ['d1'] })].flat().map(({ seq: _, ...reading }) => reading);
    expect(readings).toEqual([
      { sensor_type: 'humidity', ts: at(0), value: 40, unit: '%', quality_score: 90, quality_reasons: ['stale'] },
      { sensor_type: 'temperature', ts: at(60_000), value: 21.5, unit: null, quality_score: 100, quality_reasons: [] },
      { sensor_type: 'temperature', ts: at(61_000), value: 22, unit: null, quality_score: 100, quality_reasons: [] },
    ]);
    const hour = db.prepare<[], { count: number; sum: number }>("SELECT count, sum FROM rollups WHERE sensor_type = 'temperature' AND bucket = 'hour'").get();
    expect(hour).toEqual({ count: 2, sum: 43.5 });
  });
});

describe('upcast()', () => {
  it('fills only what is missing: values present in an old row are kept', () => {
    const partial = { device_id: 'd1', device_status: { battery: 5 }, readings: [{ sensor_type: 't', value: 1, timestamp: T0, unit: 'C' }] };
    expect(upcast('readings.recorded', partial)).toEqual({
      device_id: 'd1',
      device_status: { battery: 5 },
      readings: [{ sensor_type: 't', value: 1, timestamp: T0, unit: 'C', quality_score: 100, quality_reasons: [] }],
    });
  });

  it('reads the current shape as stored, without a copy', () => {
    expect(upcast('readings.recorded', currentShape.data)).toBe(currentShape.data);
  });

  it('leaves other types, unknown types and non-objects alone', () => {
    expect(upcast('device.registered', registered.data)).toBe(registered.data);
    expect(upcast('something.else', { a: 1 })).toEqual({ a: 1 });
    expect(upcast('readings.recorded', null)).toBeNull();
    expect(upcast('readings.recorded', 'text')).toBe('text');
  });
});
