import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.js';
import type { RecordedEvent } from '../../src/domain/events.js';
import { SqliteEventLog, openDatabase, type SqliteDatabase } from '../../src/eventlog/index.js';
import { digestReadModels } from '../../src/projections/digest.js';
import { ProjectionRunner, Sql } from '../../src/projections/index.js';
import { aggregatedReadings, iterateReadings, rawReadings } from '../../src/projections/telemetry-queries.js';
import { telemetryProjection } from '../../src/projections/telemetry.js';
import { chunksWithin, decodeChunk, encodeChunk, type ChunkReading, type StoredChunk } from '../../src/projections/reading-chunks.js';

const at = (minute: number) => new Date(Date.parse('2026-03-01T10:00:00.000Z') + minute * 60_000).toISOString();

const submission = (position: number, values: number[], recordedAt = at(position)): RecordedEvent => ({
  type: 'readings.recorded',
  position,
  stream_id: 'telemetry-d1',
  version: position,
  metadata: { actor_type: 'device', actor_id: 'd1' },
  recorded_at: recordedAt,
  hash: '',
  data: {
    device_id: 'd1',
    device_status: null,
    readings: values.map((value, i) => ({ sensor_type: i % 2 ? 'humidity' : 'temperature', value, unit: null, timestamp: new Date(Date.parse(recordedAt) - i * 60_000).toISOString(), quality_score: 100, quality_reasons: [] })),
  },
});

/** The telemetry read model of the events, applied in batches as given. */
function storeIn(batches: RecordedEvent[][], retentionDays = 30): SqliteDatabase {
  const db = openDatabase(':memory:');
  const projection = telemetryProjection(retentionDays);
  db.exec(projection.ddl);
  const sql = new Sql(db);
  for (const batch of batches) {
    for (const event of batch) projection.apply(sql, event);
    projection.afterBatch?.(sql);
  }
  return db;
}

const digestOf = (db: SqliteDatabase) => digestReadModels(db, [telemetryProjection(30)]).telemetry;

/** A fresh telemetry read model and a way to apply a batch to it, as the runner does inside its transaction. */
function batchRunner(retentionDays: number) {
  const db = openDatabase(':memory:');
  const projection = telemetryProjection(retentionDays);
  db.exec(projection.ddl);
  const sql = new Sql(db);
  const runBatch = (events: RecordedEvent[]) => {
    for (const event of events) projection.apply(sql, event);
    projection.afterBatch?.(sql);
  };
  /** As the runner does after a failed batch. */
  const forget = () => projection.forget?.();
  return { db, runBatch, forget };
}

describe('the telemetry digest reads the readings, not how batches cut them into chunks', () => {
  const events = [submission(1, [20, 40]), submission(2, [21.5, 41]), submission(3, [22.25]), submission(4, [23, 43, 19])];

  it('given the same events applied in one batch or in several, then the chunks differ and the digests are equal', () => {
    const whole = storeIn([events]);
    const cut = storeIn([[events[0]!], [events[1]!, events[2]!], [events[3]!]]);
    const chunks = (db: SqliteDatabase) => db.prepare<[], { n: number }>('SELECT count(*) AS n FROM reading_chunks').get()!.n;
    expect(chunks(cut)).toBeGreaterThan(chunks(whole));
    expect(digestOf(cut)).toBe(digestOf(whole));
  });

  it('given one stored reading changed, then the digest differs', () => {
    const original = storeIn([events]);
    const edited = storeIn([events]);
    const row = edited.prepare<[], StoredChunk>("SELECT hour, seq, sensor_type, readings FROM reading_chunks WHERE sensor_type = 'humidity' LIMIT 1").get()!;
    const changed = decodeChunk(row).map((r): ChunkReading => [r.ts, r.seq, r.value === 40 ? 40.5 : r.value, r.unit, r.quality_score, r.quality_reasons]);
    expect(changed.map((r) => r[2])).toContain(40.5);
    edited.prepare('UPDATE reading_chunks SET readings = ? WHERE sensor_type = ? AND seq = ?').run(encodeChunk(row.seq, changed), row.sensor_type, row.seq);
    expect(digestOf(edited)).not.toBe(digestOf(original));
  });
});

describe('retention prunes chunks still pending in a batch', () => {
  it('given a reading and, in the same batch, an event recorded after its retention, then the reading is gone as if the batches were apart', () => {
    const old = submission(1, [20]);
    const dayLater = submission(2, [21], new Date(Date.parse(at(2)) + 26 * 3_600_000).toISOString());
    const rawValues = (db: SqliteDatabase) => [...iterateReadings(new Sql(db), { deviceIds: ['d1'] })].flat().map((r) => r.value);

    const together = storeIn([[old, dayLater]], 1);
    const apart = storeIn([[old], [dayLater]], 1);

    expect(rawValues(apart)).toEqual([21]);
    expect(rawValues(together)).toEqual([21]);
    expect(digestOf(together)).toBe(digestOf(apart));
  });
});

describe("a sensor's stored buckets are found again after it left memory", () => {
  it('given a reading exactly at the start of a quarter, hour and day bucket, and a batch without the sensor, when a later reading falls in the same buckets, then each bucket counts both', () => {
    const day = '2026-03-01T00:00:00.000Z';
    const db = storeIn([[submission(1, [20], day)], [], [submission(3, [22], new Date(Date.parse(day) + 5 * 60_000).toISOString())]]);
    const counts = db.prepare<[], { bucket: string; count: number }>("SELECT bucket, count FROM rollups WHERE sensor_type = 'temperature' ORDER BY bucket").all();
    expect(counts).toEqual([
      { bucket: 'day', count: 2 },
      { bucket: 'hour', count: 2 },
    ]);
    const minutes = aggregatedReadings(new Sql(db), { deviceIds: ['d1'] }, 'minute', 10, 0);
    expect(minutes).toMatchObject({ total: 2, rows: [{ bucket_start: day }, { bucket_start: '2026-03-01T00:05:00.000Z' }] });
  });
});

describe('an hour a sensor has moved past is compacted', () => {
  const HOUR = '2026-03-01T10:00:00.000Z';
  /** One temperature reading per event, each `stepMs` after 10:00, then one at 11:00. */
  const oneAtATime = (readings: number, stepMs: number): RecordedEvent[] => {
    const times = Array.from({ length: readings }, (_, i) => new Date(Date.parse(HOUR) + i * stepMs).toISOString());
    return [...times, '2026-03-01T11:00:00.000Z'].map((ts, i) => submission(i + 1, [i % 7], ts));
  };
  const rowsOfHour = (db: SqliteDatabase) => db.prepare<[string], { count: number }>('SELECT count FROM reading_chunks WHERE hour = ? ORDER BY seq').all(HOUR).map((r) => r.count);
  const everyReading = (db: SqliteDatabase) => [...iterateReadings(new Sql(db), { deviceIds: ['d1'] })].flat();
  /** Each event its own batch, as live single readings arrive. */
  const live = (events: RecordedEvent[]) => storeIn(events.map((event) => [event]));

  it('given a reading a minute, one batch each, when the next hour begins, then the hour is one chunk, read and digested as before', () => {
    const events = oneAtATime(60, 60_000);
    const db = live(events);
    expect(rowsOfHour(db)).toHaveLength(1);
    expect(rowsOfHour(db).reduce((a, b) => a + b)).toBe(60);
    const whole = storeIn([events]);
    expect(everyReading(db)).toEqual(everyReading(whole));
    expect(digestOf(db)).toBe(digestOf(whole));
    expect(minutePage(db, 'minute')).toEqual(minutePage(whole, 'minute'));
  });

  it('given the hour still current, then its chunks wait', () => {
    const db = live(oneAtATime(60, 60_000).slice(0, 60));
    expect(rowsOfHour(db)).toHaveLength(60);
  });

  it('given a reading a second, then the hour is chunks of at most 800 bytes of readings, in log order', () => {
    const db = live(oneAtATime(3_600, 1_000));
    const sizes = db.prepare<[string], { count: number; bytes: number }>('SELECT count, length(readings) AS bytes FROM reading_chunks WHERE hour = ?').all(HOUR);
    expect(sizes.length).toBeLessThan(3_600 / 20);
    expect(Math.max(...sizes.map((c) => c.bytes))).toBeLessThanOrEqual(800);
    const readings = everyReading(db);
    expect(readings).toHaveLength(3_601);
    expect(readings.map((r) => r.seq)).toEqual([...readings.map((r) => r.seq)].sort((a, b) => a - b));
  });

  it('given fewer than 8 chunks, or more than 4,000 readings, then the hour stays as it was', () => {
    expect(rowsOfHour(live(oneAtATime(7, 60_000)))).toEqual([1, 1, 1, 1, 1, 1, 1]);
    const busy = oneAtATime(4_001, 800);
    const db = storeIn([busy.slice(0, 500), busy.slice(500, 1_000), ...Array.from({ length: 6 }, (_, i) => busy.slice(1_000 + i * 500, 1_500 + i * 500)), busy.slice(4_000)]);
    expect(rowsOfHour(db)).toEqual([500, 500, 500, 500, 500, 500, 500, 500, 1]);
  });

  const minutePage = (db: SqliteDatabase, interval: 'minute') => aggregatedReadings(new Sql(db), { deviceIds: ['d1'] }, interval, 100, 0);
});

describe('pages and totals of a range that cuts through stored groups', () => {
  /** Readings of one sensor at the given minutes past 10:00, one submission each. */
  const atMinutes = (minutes: number[]) => storeIn([minutes.map((minute, index) => submission(index + 1, [minute], at(minute)))]);
  const minutePage = (db: SqliteDatabase, range: { start?: string; end?: string }, limit: number, offset: number) =>
    aggregatedReadings(new Sql(db), { deviceIds: ['d1'], ...range }, 'minute', limit, offset);

  it('given minutes 1 and 10 of one quarter, when the range ends at minute 5, then the total counts only minute 1', () => {
    const db = atMinutes([1, 10]);
    expect(minutePage(db, { end: at(5) }, 10, 0)).toMatchObject({ total: 1, rows: [{ bucket_start: at(1) }] });
    expect(minutePage(db, { start: at(5) }, 10, 0)).toMatchObject({ total: 1, rows: [{ bucket_start: at(10) }] });
  });

  it('given minutes across three quarters, then every offset and limit pages the oldest-first list exactly', () => {
    const minutes = [1, 2, 3, 16, 31, 32];
    const db = atMinutes(minutes);
    for (let offset = 0; offset <= minutes.length + 1; offset++) {
      for (let limit = 1; limit <= 3; limit++) {
        const page = minutePage(db, {}, limit, offset);
        expect(page.total).toBe(minutes.length);
        expect(page.rows.map((r) => r.bucket_start), `offset ${offset} limit ${limit}`).toEqual(minutes.slice(offset, offset + limit).map(at));
      }
    }
  });
});

describe('what the packed storage must not leave behind', () => {
  it('given a database of telemetry v3, when the runner starts, then its row-per-reading table is gone with the readings of deleted devices in it', async () => {
    const db = openDatabase(':memory:');
    const log = new SqliteEventLog(db, new ManualClock());
    db.exec(`CREATE TABLE IF NOT EXISTS projection_checkpoints (name TEXT PRIMARY KEY, version INTEGER NOT NULL, position INTEGER NOT NULL)`);
    db.exec(`INSERT INTO projection_checkpoints VALUES ('telemetry', 3, 0)`);
    db.exec(`CREATE TABLE readings (device_id TEXT NOT NULL, ts TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (device_id, ts, seq)) WITHOUT ROWID`);
    db.exec(`INSERT INTO readings VALUES ('deleted-device', '2026-01-01T00:00:00.000Z', 1000)`);

    const runner = new ProjectionRunner(db, log, [telemetryProjection(30)], pino({ level: 'silent' }));
    runner.start();
    await runner.stop();

    expect(db.prepare(`SELECT name FROM sqlite_master WHERE name = 'readings'`).all()).toEqual([]);
    log.close();
    db.close();
  });

  it("given a chunk whose count no longer matches its readings, then the digest differs (queries trust the counts)", () => {
    const original = storeIn([[submission(1, [1, 2, 3])]]);
    const edited = storeIn([[submission(1, [1, 2, 3])]]);
    edited.exec(`UPDATE reading_chunks SET count = count + 1 WHERE sensor_type = 'temperature'`);
    expect(digestOf(edited)).not.toBe(digestOf(original));
  });

  it('given a batch rolled back after the projection folded it, when the batch runs again, then it counts once', () => {
    const { db, runBatch, forget } = batchRunner(30);
    db.transaction(() => runBatch([submission(1, [1])]))();
    expect(() =>
      db.transaction(() => {
        runBatch([submission(2, [2])]);
        throw new Error('a later projection failed');
      })(),
    ).toThrow();
    forget();

    db.transaction(() => runBatch([submission(2, [2])]))();

    expect(db.prepare(`SELECT count, sum FROM rollups WHERE bucket = 'hour'`).get()).toEqual({ count: 2, sum: 3 });
    db.close();
  });

  it('given a rolled-back batch that pruned, when it runs again, then it prunes again', () => {
    const { db, runBatch, forget } = batchRunner(1);
    const dayLater = submission(2, [21], new Date(Date.parse(at(2)) + 26 * 3_600_000).toISOString());
    db.transaction(() => runBatch([submission(1, [20])]))();
    expect(() =>
      db.transaction(() => {
        runBatch([dayLater]);
        throw new Error('a later projection failed');
      })(),
    ).toThrow();
    forget();

    db.transaction(() => runBatch([dayLater]))();

    expect([...iterateReadings(new Sql(db), { deviceIds: ['d1'] })].flat().map((r) => r.value)).toEqual([21]);
    db.close();
  });
});

describe('a busy hour is read a minute at a time', () => {
  const HOUR_START = Date.parse('2026-03-01T10:00:00.000Z');
  const READINGS = 12_000;
  // Times spread over the hour, dealt round-robin into 12 submissions, so every chunk spans the whole hour.
  const times = Array.from({ length: READINGS }, (_, i) => new Date(HOUR_START + Math.floor((i * 3_600_000) / READINGS)).toISOString());
  const events = Array.from({ length: 12 }, (_, s): RecordedEvent => ({
    type: 'readings.recorded',
    position: s + 1,
    stream_id: 'telemetry-d1',
    version: s + 1,
    metadata: {},
    hash: '',
    recorded_at: '2026-03-01T11:00:00.000Z',
    data: {
      device_id: 'd1',
      device_status: null,
      readings: times.filter((_, i) => i % 12 === s).map((timestamp, i) => ({ sensor_type: 'temperature', value: i, unit: null, timestamp, quality_score: 100, quality_reasons: [] })),
    },
  }));
  // And live single readings between them: chunks within one minute, read with their minute.
  const singles = Array.from({ length: 500 }, (_, i): RecordedEvent => ({
    ...events[0]!,
    position: 13 + i,
    version: 13 + i,
    data: { device_id: 'd1', device_status: null, readings: [{ sensor_type: 'humidity', value: i, unit: null, timestamp: new Date(HOUR_START + ((i * 7_919) % 3_600_000)).toISOString(), quality_score: 100, quality_reasons: [] }] },
  }) as RecordedEvent);
  // Readings on minute boundaries, in a chunk spanning minutes and in chunks within one.
  const edges = ['10:05:59.999', '10:06:00.000', '10:45:59.999', '10:30:59.999', '10:31:00.000'].map((time) => `2026-03-01T${time}Z`);
  const edgeEvents = [edges.slice(0, 3), [edges[3]!], [edges[4]!]].map((stamps, i): RecordedEvent => ({
    ...events[0]!,
    position: 513 + i,
    version: 513 + i,
    data: { device_id: 'd1', device_status: null, readings: stamps.map((timestamp) => ({ sensor_type: 'co2', value: i, unit: null, timestamp, quality_score: 100, quality_reasons: [] })) },
  }) as RecordedEvent);
  events.push(...singles, ...edgeEvents);
  const db = storeIn([events.slice(0, 12), ...singles.map((single) => [single]), ...edgeEvents.map((edge) => [edge])]);
  const naive = events
    .flatMap((event) => event.type === 'readings.recorded' ? event.data.readings.map((r, index) => ({ ts: r.timestamp, seq: event.position * 1000 + index })) : [])
    .sort((a, b) => (a.ts === b.ts ? a.seq - b.seq : a.ts < b.ts ? -1 : 1));
  const key = (r: { ts?: string; timestamp?: string }) => r.ts ?? r.timestamp;

  it('given 12,505 readings in one hour, then export and pages at any offset answer the time order', () => {
    const sql = new Sql(db);
    expect([...iterateReadings(sql, { deviceIds: ['d1'] })].flat().map(key)).toEqual(naive.map((r) => r.ts));
    const newestFirst = naive.map((r) => r.ts).reverse();
    for (const [offset, limit] of [[0, 100], [150, 100], [5_999, 3], [12_490, 50], [12_505, 10]] as const) {
      const page = rawReadings(sql, { deviceIds: ['d1'] }, limit, { offset });
      expect(page.total).toBe(naive.length);
      expect(page.rows.map(key), `offset ${offset}`).toEqual(newestFirst.slice(offset, offset + limit).reverse());
    }
  });

  it('given 12,505 readings in one hour, when paged by cursor, then every reading comes once, newest page first', () => {
    const sql = new Sql(db);
    const seen: string[] = [];
    let page = rawReadings(sql, { deviceIds: ['d1'] }, 500, { offset: 0 });
    for (;;) {
      seen.push(...page.rows.map(key).reverse() as string[]);
      if (!page.nextCursor) break;
      page = rawReadings(sql, { deviceIds: ['d1'] }, 500, { cursor: page.nextCursor });
    }
    expect(seen).toEqual(naive.map((r) => r.ts).reverse());
  });

  it('given a cursor at readings sharing one timestamp, then the next page resumes at the next reading of that instant', () => {
    const sql = new Sql(db);
    const shared = naive.findIndex((r, i) => i >= 3 && naive[i - 1]!.ts === r.ts);
    const cursor = naive[shared]!;
    const page = rawReadings(sql, { deviceIds: ['d1'] }, 3, { cursor });
    expect(page.rows.map(key)).toEqual(naive.slice(shared - 3, shared).map((r) => r.ts));
  });

  it('given a range cutting the busy hour, then the total and pages count only the readings inside it', () => {
    const range = { start: '2026-03-01T10:20:30.000Z', end: '2026-03-01T10:40:00.000Z' };
    const inside = naive.map((r) => r.ts).filter((ts) => ts >= range.start && ts <= range.end);
    const page = rawReadings(new Sql(db), { deviceIds: ['d1'], ...range }, 20, { offset: 7 });
    expect(page.total).toBe(inside.length);
    expect(page.rows.map(key)).toEqual([...inside].reverse().slice(7, 27).reverse());
  });
});

describe('chunksWithin', () => {
  const reading = (seq: number, reasons: string[] = []): ChunkReading => ['2026-03-01T10:00:01.000Z', seq, 21.5, 'C', 100, reasons];
  const readings = Array.from({ length: 100 }, (_, i) => reading(5_000 + i, i % 9 === 0 ? ['jump'] : []));

  it('given readings, then the chunks keep them in order and each encodes within the bound', () => {
    const chunks = chunksWithin(300, readings);
    expect(chunks.flat()).toEqual(readings);
    for (const chunk of chunks) expect(encodeChunk(chunk[0]![1], chunk).length).toBeLessThanOrEqual(300);
    // Not cut wastefully short: every chunk but the last fills over half the bound.
    for (const chunk of chunks.slice(0, -1)) expect(encodeChunk(chunk[0]![1], chunk).length).toBeGreaterThan(150);
  });

  it('given units of several bytes a character, then the bound holds in bytes', () => {
    const micrograms = readings.map((r): ChunkReading => [r[0], r[1], r[2], 'µg/m³', r[4], r[5]]);
    const chunks = chunksWithin(300, micrograms);
    expect(chunks.flat()).toEqual(micrograms);
    for (const chunk of chunks) expect(encodeChunk(chunk[0]![1], chunk).length).toBeLessThanOrEqual(300);
  });

  it('given a reading longer than the bound, then it is a chunk of its own', () => {
    const long = reading(7_000, ['x'.repeat(400)]);
    expect(chunksWithin(300, [reading(6_999), long, reading(7_001)])).toEqual([[reading(6_999)], [long], [reading(7_001)]]);
    expect(chunksWithin(300, [long, reading(7_001)])).toEqual([[long], [reading(7_001)]]);
  });
});
