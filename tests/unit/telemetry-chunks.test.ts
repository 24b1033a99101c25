import { describe, expect, it } from 'vitest';
import type { RecordedEvent } from '../../src/domain/events.js';
import { openDatabase, type SqliteDatabase } from '../../src/eventlog/index.js';
import { digestReadModels } from '../../src/projections/digest.js';
import { Sql } from '../../src/projections/index.js';
import { iterateReadings } from '../../src/projections/telemetry-queries.js';
import { telemetryProjection } from '../../src/projections/telemetry.js';

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
    const row = edited.prepare<[], { seq: number; sensor_type: string; readings: string }>("SELECT seq, sensor_type, readings FROM reading_chunks WHERE sensor_type = 'humidity' LIMIT 1").get()!;
    edited.prepare('UPDATE reading_chunks SET readings = ? WHERE sensor_type = ? AND seq = ?').run(row.readings.replace('40', '40.5'), row.sensor_type, row.seq);
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
