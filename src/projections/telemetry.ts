import type { Statement } from 'better-sqlite3';
import type { SqliteDatabase } from '../eventlog/index.js';
import type { StoredReading } from '../domain/events.js';
import { emptyStats, updateStats, type SensorStats } from '../domain/quality.js';
import { addToBlock, blockStartOf, decodeBlock, emptyBlock, encodeBlock, minutesUsed, type MinuteBlock } from './minute-blocks.js';
import type { Projection } from './projection.js';
import { compacted, encodeChunk, hourOf, inLogOrder, type ChunkReading, type StoredChunk } from './reading-chunks.js';
import type { BucketTotals } from './schema.js';
import type { Sql } from './sql.js';

export const bucketSizes = ['minute', 'hour', 'day'] as const;
export type BucketSize = (typeof bucketSizes)[number];

/** Bucket starts by slicing the normalised ISO time: cheap, and exact in UTC. */
export const bucketStart: Record<BucketSize, (ts: string) => string> = {
  minute: (ts) => `${ts.slice(0, 16)}:00.000Z`,
  hour: hourOf,
  day: (ts) => `${ts.slice(0, 10)}T00:00:00.000Z`,
};

/** The buckets kept one row each in `rollups`; minutes are packed in `minute_rollups` (see minute-blocks.ts). */
const rowBuckets = ['hour', 'day'] as const;
type RowBucket = (typeof rowBuckets)[number];

/** One bucket's running aggregate; its device, sensor and bucket size are those of the entry holding it. */
type Aggregate = BucketTotals & Touched;

/** The number of the batch that last changed it: only what the current batch changed is written. */
interface Touched {
  batch: number;
}

const HOUR_MS = 3_600_000;
/** Fewer chunks than this in an hour are not worth merging: a rebuild leaves about three. */
const COMPACT_FROM_CHUNKS = 8;
/**
 * An hour of more readings stays as it is: a device reporting each second fills one with 3,600,
 * and hours of over 10,000 are read a minute at a time, which merged chunks spanning the hour defeat.
 */
const COMPACT_UP_TO_READINGS = 4_000;

/** The buckets a reading's time falls in: all of them follow from its minute. */
interface BucketKeys extends Record<RowBucket, string> {
  minute: string;
  block: string;
}

interface Pending extends Touched {
  device_id: string;
  sensor_type: string;
  stats: SensorStats;
  /**
   * The newest reading time folded for this sensor, stored or not: a bucket starting after it has
   * no row yet, so it is not looked up (in a rebuild, every new quarter hour and hour of every sensor).
   * Stored, it is latest_readings.ts: that row must only ever go together with the sensor's
   * rollups (forgetDevice), or a bucket it no longer covers would be overwritten instead of added to.
   */
  newest: string | null;
  /** The hour of `newest` when this batch first touched the sensor: once the sensor moves past it, that hour is compacted. */
  hourBefore: string | null;
  /** This batch's newest reading (newest timestamp, then latest position), kept as the reading itself. */
  latest: StoredReading | null;
  latestSeq: number;
  buckets: Record<RowBucket, Map<string, Aggregate>>;
  minuteBlocks: Map<string, { block: MinuteBlock } & Touched>;
  /** Raw readings by hour, in log order: one chunk row each at the batch's end. */
  chunks: Map<string, ChunkReading[]>;
}

/**
 * Raw readings (kept RETENTION_DAYS) and per-minute/hour/day rollups (minutes packed by the
 * quarter hour, see minute-blocks.ts). Rollup totals and sensor statistics are folded in memory
 * and written once at a batch's end (and kept for the next batch, see `pending`), so a batch of
 * 100-reading submissions costs one write per bucket, not per reading. Pruning depends only on
 * the events (each event's hour), so replay prunes identically.
 *
 * Raw readings are kept in chunks, one row per batch, device, sensor and hour (see
 * reading-chunks.ts). Keys lead with the device and then time: a batch appends to one hot page
 * per device, and the queries (a device's range, one sensor filtered in it) need no second index.
 */
export function telemetryProjection(retentionDays: number): Projection {
  const retentionMs = retentionDays * 24 * HOUR_MS;
  /**
   * What the current batch gathers, and what the previous one wrote: a batch finds the totals the
   * last one left in memory instead of reading them back, which was a rebuild's largest cost.
   */
  const pending = new Map<string, Map<string, Pending>>();
  let batch = 0;
  /** Each event-hour's retention cutoff, computed once per hour instead of per event. */
  let cutoffOf = { hour: '', cutoff: '' };
  const tables = ['reading_chunks', 'rollups', 'minute_rollups', 'sensor_stats', 'latest_readings'];
  let prunedHour = '';
  /**
   * The bucket keys of the last minute seen: a submission's sensors share their times, a fleet's
   * submissions their minutes, and a key built once is hashed once by the maps it is looked up in.
   */
  let lastKeys: BucketKeys = { minute: '\u0000', block: '', hour: '', day: '' };
  const keysOf = (ts: string): BucketKeys =>
    ts.startsWith(lastKeys.minute) ? lastKeys : (lastKeys = { minute: ts.slice(0, 16), block: blockStartOf(ts), hour: hourOf(ts), day: bucketStart.day(ts) });
  let statements: ReturnType<typeof prepare> | undefined;
  // Statements belong to one database: a rebuild into a fresh file must not write to the live one.
  const statementsFor = (sql: Sql) => {
    if (statements?.db === sql.db) return statements;
    pending.clear();
    return (statements = prepare(sql));
  };

  const prepare = (sql: Sql) => ({
    db: sql.db,
    insertChunk: sql.db.prepare(
      `INSERT OR IGNORE INTO reading_chunks (device_id, hour, sensor_type, seq, count, first_ts, last_ts, readings) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ) as Statement<[string, string, string, number, number, string, string, Buffer]>,
    readRollup: sql.db.prepare(`SELECT bucket_start, count, sum, min, max, sum_sq FROM rollups WHERE device_id = ? AND bucket = ? AND bucket_start = ? AND sensor_type = ?`) as Statement<
      [string, RowBucket, string, string],
      Aggregate
    >,
    readMinuteBlock: sql.db.prepare(`SELECT minutes FROM minute_rollups WHERE device_id = ? AND block_start = ? AND sensor_type = ?`).pluck() as Statement<[string, string, string], Buffer>,
    writeMinuteBlock: sql.db.prepare(`INSERT OR REPLACE INTO minute_rollups (device_id, block_start, sensor_type, minute_count, minutes) VALUES (?, ?, ?, ?, ?)`) as Statement<
      [string, string, string, number, Buffer]
    >,
    writeRollup: sql.db.prepare(
      `INSERT OR REPLACE INTO rollups (device_id, sensor_type, bucket, bucket_start, count, sum, min, max, sum_sq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ) as Statement<[string, string, string, string, number, number, number, number, number]>,
    readStats: sql.db.prepare(
      `SELECT s.count, s.mean, s.variance, s.last_timestamp, l.ts AS newest FROM sensor_stats s
         LEFT JOIN latest_readings l ON l.device_id = s.device_id AND l.sensor_type = s.sensor_type WHERE s.device_id = ? AND s.sensor_type = ?`,
    ) as Statement<[string, string], SensorStats & { newest: string | null }>,
    writeStats: sql.db.prepare(
      `INSERT OR REPLACE INTO sensor_stats (device_id, sensor_type, count, mean, variance, last_timestamp) VALUES (?, ?, ?, ?, ?, ?)`,
    ) as Statement<[string, string, number, number, number, string | null]>,
    writeLatest: sql.db.prepare(
      `INSERT INTO latest_readings (device_id, sensor_type, ts, seq, value, unit, quality_score) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (device_id, sensor_type) DO UPDATE SET ts = excluded.ts, seq = excluded.seq, value = excluded.value, unit = excluded.unit,
         quality_score = excluded.quality_score WHERE (excluded.ts, excluded.seq) > (ts, seq)`,
    ) as Statement<[string, string, string, number, number, string | null, number]>,
    devicesWithReadings: sql.db.prepare(`SELECT DISTINCT device_id FROM sensor_stats`).pluck() as Statement<[], string>,
    sizeOfHour: sql.db.prepare(
      `SELECT count(*) AS chunks, coalesce(sum(count), 0) AS readings FROM reading_chunks WHERE device_id = ? AND hour = ? AND sensor_type = ?`,
    ) as Statement<[string, string, string], { chunks: number; readings: number }>,
    chunksOfHour: sql.db.prepare(`SELECT sensor_type, hour, seq, readings FROM reading_chunks WHERE device_id = ? AND hour = ? AND sensor_type = ?`) as Statement<
      [string, string, string],
      StoredChunk
    >,
    deleteChunksOfHour: sql.db.prepare(`DELETE FROM reading_chunks WHERE device_id = ? AND hour = ? AND sensor_type = ?`) as Statement<[string, string, string]>,
    pruneDevice: sql.db.prepare(`DELETE FROM reading_chunks WHERE device_id = ? AND hour < ?`) as Statement<[string, string]>,
  });

  /** What a batch gathers per device and sensor, written once at its end. */
  const pendingOf = (s: ReturnType<typeof prepare>, deviceId: string, sensorType: string): Pending => {
    let sensors = pending.get(deviceId);
    if (!sensors) pending.set(deviceId, (sensors = new Map()));
    let entry = sensors.get(sensorType);
    if (!entry) {
      const { newest, ...stats } = s.readStats.get(deviceId, sensorType) ?? { ...emptyStats, newest: null };
      entry = {
        device_id: deviceId,
        sensor_type: sensorType,
        stats,
        newest,
        hourBefore: null,
        latest: null,
        latestSeq: 0,
        buckets: { hour: new Map(), day: new Map() },
        minuteBlocks: new Map(),
        chunks: new Map(),
        batch,
      };
      sensors.set(sensorType, entry);
    } else if (entry.batch === batch) {
      return entry;
    }
    entry.hourBefore = entry.newest === null ? null : hourOf(entry.newest);
    entry.batch = batch;
    return entry;
  };

  /**
   * Each reading is added to its bucket's running totals in log order, starting from the stored
   * row: sums of doubles depend on grouping, so adding a batch's subtotal to the stored total would
   * make the last digits depend on where batches happened to end, and a replay would differ.
   */
  const addToRollups = (s: ReturnType<typeof prepare>, entry: Pending, reading: StoredReading, keys: BucketKeys) => {
    const v = reading.value;
    const blockStart = keys.block;
    let minutes = entry.minuteBlocks.get(blockStart);
    if (!minutes) {
      const stored = mayBeStored(entry, blockStart) ? s.readMinuteBlock.get(entry.device_id, blockStart, entry.sensor_type) : undefined;
      minutes = { block: stored ? decodeBlock(stored) : emptyBlock(), batch };
      entry.minuteBlocks.set(blockStart, minutes);
    }
    minutes.batch = batch;
    addToBlock(minutes.block, reading.timestamp, v);
    for (const bucket of rowBuckets) {
      const start = keys[bucket];
      let rollup = entry.buckets[bucket].get(start);
      if (!rollup) {
        const stored = mayBeStored(entry, start) ? s.readRollup.get(entry.device_id, bucket, start, entry.sensor_type) : undefined;
        rollup = stored ? { ...stored, batch } : { bucket_start: start, count: 0, sum: 0, min: v, max: v, sum_sq: 0, batch };
        entry.buckets[bucket].set(start, rollup);
      }
      rollup.batch = batch;
      rollup.count += 1;
      rollup.sum += v;
      rollup.min = Math.min(rollup.min, v);
      rollup.max = Math.max(rollup.max, v);
      rollup.sum_sq += v * v;
    }
  };

  const addToChunk = (entry: Pending, reading: StoredReading, seq: number, hour: string) => {
    const readings = entry.chunks.get(hour);
    const row: ChunkReading = [reading.timestamp, seq, reading.value, reading.unit, reading.quality_score, reading.quality_reasons];
    if (readings) readings.push(row);
    else entry.chunks.set(hour, [row]);
  };

  const mayBeStored = (entry: Pending, bucketStart: string) => entry.newest !== null && bucketStart <= entry.newest;

  const addToLatest = (entry: Pending, reading: StoredReading, seq: number) => {
    if (entry.newest === null || reading.timestamp > entry.newest) entry.newest = reading.timestamp;
    const known = entry.latest;
    if (known && (known.timestamp > reading.timestamp || (known.timestamp === reading.timestamp && entry.latestSeq > seq))) return;
    entry.latest = reading;
    entry.latestSeq = seq;
  };

  /** Writes what this batch changed, and forgets what it did not touch: memory stays one batch deep. */
  const write = (s: ReturnType<typeof prepare>, entry: Pending) => {
    const { device_id, sensor_type, stats, latest, latestSeq } = entry;
    for (const bucket of rowBuckets) {
      for (const [start, r] of entry.buckets[bucket]) {
        if (r.batch === batch) s.writeRollup.run(device_id, sensor_type, bucket, r.bucket_start, r.count, r.sum, r.min, r.max, r.sum_sq);
        else entry.buckets[bucket].delete(start);
      }
    }
    for (const [blockStart, minutes] of entry.minuteBlocks) {
      if (minutes.batch === batch) s.writeMinuteBlock.run(device_id, blockStart, sensor_type, minutesUsed(minutes.block), encodeBlock(minutes.block));
      else entry.minuteBlocks.delete(blockStart);
    }
    for (const [hour, readings] of entry.chunks) insertChunk(s, device_id, hour, sensor_type, readings);
    if (entry.hourBefore !== null && hourOf(entry.newest!) > entry.hourBefore) compactHour(s, device_id, entry.hourBefore, sensor_type);
    s.writeStats.run(device_id, sensor_type, stats.count, stats.mean, stats.variance, stats.last_timestamp);
    if (latest) s.writeLatest.run(device_id, sensor_type, latest.timestamp, latestSeq, latest.value, latest.unit, latest.quality_score);
    entry.chunks.clear();
    entry.latest = null;
  };

  const insertChunk = (s: ReturnType<typeof prepare>, deviceId: string, hour: string, sensorType: string, readings: readonly ChunkReading[], encoded?: Buffer) => {
    let first = readings[0]![0];
    let last = first;
    for (const [ts] of readings) {
      if (ts < first) first = ts;
      if (ts > last) last = ts;
    }
    const firstSeq = readings[0]![1];
    s.insertChunk.run(deviceId, hour, sensorType, firstSeq, readings.length, first, last, encoded ?? encodeChunk(firstSeq, readings));
  };

  /**
   * A device sending a reading at a time leaves a chunk per reading in each hour, a row and a key
   * per reading as before chunks: the hour a sensor has moved past is merged (see `compacted`),
   * three rows for a device reporting each minute. Sized up first, from the columns before the
   * readings, so a busy hour is not read just to be left alone.
   */
  const compactHour = (s: ReturnType<typeof prepare>, deviceId: string, hour: string, sensorType: string) => {
    const size = s.sizeOfHour.get(deviceId, hour, sensorType)!;
    if (size.chunks < COMPACT_FROM_CHUNKS || size.readings > COMPACT_UP_TO_READINGS) return;
    const merged = compacted(s.chunksOfHour.all(deviceId, hour, sensorType));
    s.deleteChunksOfHour.run(deviceId, hour, sensorType);
    for (const chunk of merged) insertChunk(s, deviceId, hour, sensorType, chunk.readings, chunk.bytes);
  };

  /**
   * Per device through the key, not one scan of every row: the devices with readings are those
   * with statistics. The cutoff falls on an hour, so whole hours of chunks go, stored or pending.
   */
  const prune = (s: ReturnType<typeof prepare>, cutoff: string) => {
    for (const deviceId of s.devicesWithReadings.all()) s.pruneDevice.run(deviceId, cutoff);
    for (const entry of pendingEntries()) for (const hour of entry.chunks.keys()) if (hour < cutoff) entry.chunks.delete(hour);
  };

  /** A deleted device leaves every count: its rows go, and so do its pending deltas. */
  const forgetDevice = (sql: Sql, deviceId: string) => {
    for (const table of tables) sql.db.prepare(`DELETE FROM ${table} WHERE device_id = ?`).run(deviceId);
    pending.delete(deviceId);
  };

  function* pendingEntries() {
    for (const sensors of pending.values()) yield* sensors.values();
  }

  return {
    name: 'telemetry',
    // 3: rollup totals folded reading by reading in log order, so a rebuild reproduces them to the last digit.
    // 4: minute rollups packed a quarter of an hour to a row; 5: raw readings in chunks; 6: shorter chunks;
    // 7: a minute of one reading stored as its value, with the minutes counted in a column;
    // 8: raw chunks encoded as columns of varints (chunk-codec.ts) instead of JSON.
    version: 8,
    tables,
    // Versions 1-3 kept a row per reading in a table "readings": a rebuild drops only the tables listed above.
    ddl: `
      DROP TABLE IF EXISTS readings;
      CREATE TABLE IF NOT EXISTS reading_chunks (
        device_id TEXT NOT NULL, hour TEXT NOT NULL, sensor_type TEXT NOT NULL, seq INTEGER NOT NULL,
        count INTEGER NOT NULL, first_ts TEXT NOT NULL, last_ts TEXT NOT NULL, readings BLOB NOT NULL,
        PRIMARY KEY (device_id, hour, sensor_type, seq)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS rollups (
        device_id TEXT NOT NULL, sensor_type TEXT NOT NULL, bucket TEXT NOT NULL, bucket_start TEXT NOT NULL,
        count INTEGER NOT NULL, sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL, sum_sq REAL NOT NULL,
        PRIMARY KEY (device_id, bucket, bucket_start, sensor_type)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS minute_rollups (
        device_id TEXT NOT NULL, block_start TEXT NOT NULL, sensor_type TEXT NOT NULL, minute_count INTEGER NOT NULL, minutes BLOB NOT NULL,
        PRIMARY KEY (device_id, block_start, sensor_type)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS sensor_stats (
        device_id TEXT NOT NULL, sensor_type TEXT NOT NULL, count INTEGER NOT NULL, mean REAL NOT NULL, variance REAL NOT NULL,
        last_timestamp TEXT, PRIMARY KEY (device_id, sensor_type)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS latest_readings (
        device_id TEXT NOT NULL, sensor_type TEXT NOT NULL, ts TEXT NOT NULL, seq INTEGER NOT NULL, value REAL NOT NULL,
        unit TEXT, quality_score INTEGER NOT NULL, PRIMARY KEY (device_id, sensor_type)) WITHOUT ROWID;`,

    // Chunks end where batches ended; the readings they hold, in log order per device and hour, do not.
    canonicalRows: { reading_chunks: readingsInLogOrder },

    apply(sql, event) {
      if (event.type === 'device.decommissioned') {
        forgetDevice(sql, event.data.device_id);
        return;
      }
      if (event.type !== 'readings.recorded') return;
      const s = statementsFor(sql);
      const eventHour = event.recorded_at.slice(0, 13);
      if (cutoffOf.hour !== eventHour) cutoffOf = { hour: eventHour, cutoff: new Date(Date.parse(`${eventHour}:00:00.000Z`) - retentionMs).toISOString() };
      const { cutoff } = cutoffOf;
      if (eventHour > prunedHour) {
        prune(s, cutoff);
        prunedHour = eventHour;
      }
      const deviceId = event.data.device_id;
      event.data.readings.forEach((reading, index) => {
        const seq = event.position * 1000 + index;
        const entry = pendingOf(s, deviceId, reading.sensor_type);
        const keys = keysOf(reading.timestamp);
        if (reading.timestamp >= cutoff) addToChunk(entry, reading, seq, keys.hour);
        addToRollups(s, entry, reading, keys);
        entry.stats = updateStats(entry.stats, reading.value, reading.timestamp);
        addToLatest(entry, reading, seq);
      });
    },

    afterBatch(sql) {
      const s = statementsFor(sql);
      for (const [deviceId, sensors] of pending) {
        for (const [sensorType, entry] of sensors) {
          if (entry.batch === batch) write(s, entry);
          else sensors.delete(sensorType);
        }
        if (sensors.size === 0) pending.delete(deviceId);
      }
      batch += 1;
    },

    // What a rolled-back batch folded in memory never reached the tables, and its pruning neither.
    forget() {
      pending.clear();
      prunedHour = '';
    },
  };
}

/**
 * Every stored raw reading, per device and hour, in log order: what the chunks hold, however
 * they were cut. With each hour's counts and first and last times per sensor, which queries
 * trust without decoding.
 */
function* readingsInLogOrder(db: SqliteDatabase): Iterable<unknown> {
  const hours = db.prepare<[], { device_id: string; hour: string }>(`SELECT DISTINCT device_id, hour FROM reading_chunks ORDER BY device_id, hour`).all();
  const chunksOf = db.prepare<[string, string], StoredChunk>(`SELECT sensor_type, hour, seq, readings FROM reading_chunks WHERE device_id = ? AND hour = ?`);
  const summaryOf = db
    .prepare(`SELECT sensor_type, sum(count), min(first_ts), max(last_ts) FROM reading_chunks WHERE device_id = ? AND hour = ? GROUP BY sensor_type ORDER BY sensor_type`)
    .raw();
  for (const { device_id, hour } of hours) {
    yield [device_id, hour, summaryOf.all(device_id, hour)];
    for (const r of inLogOrder(chunksOf.all(device_id, hour))) yield [device_id, r.sensor_type, r.ts, r.seq, r.value, r.unit, r.quality_score, r.quality_reasons];
  }
}
