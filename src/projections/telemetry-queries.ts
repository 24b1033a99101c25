import { sql as raw, type ExpressionBuilder } from 'kysely';
import type { SensorStats } from '../domain/quality.js';
import { blockStartOf, lastMinuteOf, minutesOf } from './minute-blocks.js';
import { byTimeThenSeq, decodeChunk, hourOf, type RawRow, type StoredChunk } from './reading-chunks.js';
import { bucketStart, type BucketSize } from './telemetry.js';
import { prepared, queryBuilder as q, type Sql } from './sql.js';
import type { BucketTotals, ReadModels } from './schema.js';

export interface RangeFilter {
  deviceIds: readonly string[];
  sensorType?: string;
  start?: string;
  end?: string;
}

/** Where a raw page resumes: just before this reading, in the newest-first order pages walk. */
export interface RawCursor {
  ts: string;
  seq: number;
}

/** One device's range: raw readings are only ever read per device; `before` narrows it to readings older than a cursor. */
export type DeviceRange = RangeFilter & { deviceIds: [string]; before?: RawCursor };

const chunksIn = (filter: DeviceRange) => {
  let query = q.selectFrom('reading_chunks').where('device_id', '=', filter.deviceIds[0]);
  if (filter.sensorType) query = query.where('sensor_type', '=', filter.sensorType);
  if (filter.start) query = query.where('hour', '>=', hourOf(filter.start));
  if (filter.end) query = query.where('hour', '<=', filter.end);
  return query;
};

const inRange = (ts: string, filter: RangeFilter) => (!filter.start || ts >= filter.start) && (!filter.end || ts <= filter.end);

const isBefore = (row: RawRow, cursor: RawCursor | undefined) => !cursor || row.ts < cursor.ts || (row.ts === cursor.ts && row.seq < cursor.seq);

/** The range narrowed to the readings older than the cursor: its end moves to the cursor's time, so later hours are never read. */
const olderThan = (filter: DeviceRange, cursor: RawCursor): DeviceRange => ({ ...filter, end: filter.end && filter.end < cursor.ts ? filter.end : cursor.ts, before: cursor });

/** A chunk cut by the range's ends: its readings must be decoded to know which are in. */
const cutByRange = (filter: RangeFilter) => (eb: ExpressionBuilder<ReadModels, 'reading_chunks'>) =>
  eb.or([...(filter.start ? [eb('first_ts', '<', filter.start)] : []), ...(filter.end ? [eb('last_ts', '>', filter.end)] : [])]);

interface HourOfReadings {
  hour: string;
  /** Readings the hour stores, which sets how it is read. */
  stored: number;
  /** Of those, the readings in the range. */
  count: number;
}

/**
 * The hours of a device's range that hold readings, oldest first: what each stores, and how many
 * of its readings fall in the range, from the chunks' counts, decoding only the chunks the range's
 * ends cut through (a start inside a busy hour decodes a chunk or two, not the hour).
 */
function hoursIn(sql: Sql, filter: DeviceRange): HourOfReadings[] {
  const stored = sql.all(chunksIn(filter).select(['hour', (eb) => eb.fn.sum<number>('count').as('stored')]).groupBy('hour').orderBy('hour'));
  const cut = filter.start || filter.end ? sql.all(chunksIn(filter).where(cutByRange(filter)).select(['sensor_type', 'hour', 'seq', 'readings', 'count'])) : [];
  const outside = new Map<string, number>();
  for (const chunk of cut) {
    const readingsOut = chunk.count - decodeChunk(chunk).filter((reading) => inRange(reading.ts, filter)).length;
    outside.set(chunk.hour, (outside.get(chunk.hour) ?? 0) + readingsOut);
  }
  return stored.map(({ hour, stored }) => ({ hour, stored, count: stored - (outside.get(hour) ?? 0) })).filter(({ count }) => count > 0);
}

/** Beyond this many readings an hour is read a minute at a time: a busy device's hour can hold hundreds of thousands. */
const WHOLE_HOUR_READINGS = 10_000;

type Piece = () => RawRow[];

const chunksOfHour = (filter: DeviceRange, hour: string) => chunksIn({ ...filter, start: hour, end: hour }).select(['sensor_type', 'hour', 'seq', 'readings']);

/** A chunk whose readings all fall in one minute (a live submission, mostly). */
const withinOneMinute = raw<boolean>`substr(first_ts, 1, 16) = substr(last_ts, 1, 16)`;

const decodedInRange = (chunks: StoredChunk[], filter: DeviceRange): RawRow[] =>
  chunks.flatMap(decodeChunk).filter((reading) => inRange(reading.ts, filter) && isBefore(reading, filter.before));

/**
 * An hour's readings of the range in time order, as pieces each read when called: the whole
 * hour, or, when it is busy, minute by minute. Then the chunks within one minute are read with
 * their minute, and the chunks spanning minutes (backfilled submissions) once for the hour, so
 * no chunk is decoded twice and memory holds a minute plus those. Minutes outside the range
 * are not read at all, so a page resuming inside a busy hour costs what it returns.
 */
function piecesOfHour(sql: Sql, filter: DeviceRange, hour: string, stored: number): Piece[] {
  if (stored <= WHOLE_HOUR_READINGS) return [() => decodedInRange(sql.all(chunksOfHour(filter, hour)), filter).sort(byTimeThenSeq)];
  let spanning: RawRow[] | undefined;
  const spanningReadings = () => (spanning ??= decodedInRange(sql.all(chunksOfHour(filter, hour).where(raw<boolean>`not ${withinOneMinute}`)), filter).sort(byTimeThenSeq));
  return Array.from({ length: 60 }, (_, minute) => () => {
    const from = `${hour.slice(0, 14)}${String(minute).padStart(2, '0')}:00.000Z`;
    const to = `${from.slice(0, 17)}59.999Z`;
    if ((filter.start && to < filter.start) || (filter.end && from > filter.end)) return [];
    const within = sql.all(chunksOfHour(filter, hour).where(withinOneMinute).where('first_ts', '>=', from).where('first_ts', '<=', to));
    return [...decodedInRange(within, filter), ...between(spanningReadings(), from, to)].sort(byTimeThenSeq);
  });
}

/** The readings of a time-ordered list from `from` to `to`, found by bisection. */
function between(sorted: readonly RawRow[], from: string, to: string): RawRow[] {
  const firstAtOrAfter = (ts: string, after: boolean) => {
    let low = 0;
    let high = sorted.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (sorted[mid]!.ts < ts || (after && sorted[mid]!.ts === ts)) low = mid + 1;
      else high = mid;
    }
    return low;
  };
  return sorted.slice(firstAtOrAfter(from, false), firstAtOrAfter(to, true));
}

/** An hour as groups of rows, newest first, each decoded only when a page reaches it. */
const hourNewestFirst = (sql: Sql, filter: DeviceRange, hour: string, stored: number): Array<Group<RawRow>> =>
  piecesOfHour(sql, filter, hour, stored)
    .reverse()
    .map((piece) => ({ rows: () => piece().reverse() }));

const rollupsIn = (filter: RangeFilter, bucket: 'hour' | 'day') => {
  let query = q.selectFrom('rollups').where('bucket', '=', bucket).where('device_id', 'in', filter.deviceIds.length ? filter.deviceIds : ['']);
  if (filter.sensorType) query = query.where('sensor_type', '=', filter.sensorType);
  if (filter.start) query = query.where('bucket_start', '>=', filter.start);
  if (filter.end) query = query.where('bucket_start', '<=', filter.end);
  return query;
};

const minuteBlocksIn = (filter: DeviceRange) => {
  let query = q.selectFrom('minute_rollups').where('device_id', '=', filter.deviceIds[0]);
  if (filter.sensorType) query = query.where('sensor_type', '=', filter.sensorType);
  if (filter.start) query = query.where('block_start', '>=', blockStartOf(filter.start));
  if (filter.end) query = query.where('block_start', '<=', filter.end);
  return query;
};

type SensorMinute = BucketTotals & { sensor_type: string };

const byMinuteThenSensor = (a: SensorMinute, b: SensorMinute) =>
  a.bucket_start === b.bucket_start ? (a.sensor_type < b.sensor_type ? -1 : 1) : a.bucket_start < b.bucket_start ? -1 : 1;

/** The minutes of the stored blocks that start in the range (unordered). */
const minutesIn = (blocks: ReadonlyArray<{ sensor_type: string; block_start: string; minutes: Buffer }>, filter: RangeFilter): SensorMinute[] =>
  blocks.flatMap(({ sensor_type, block_start, minutes }) =>
    minutesOf(block_start, minutes)
      .filter((minute) => inRange(minute.bucket_start, filter))
      .map((minute) => ({ sensor_type, ...minute })),
  );

/** The minutes of one quarter hour of the range, in order. */
function minutesOfQuarter(sql: Sql, filter: DeviceRange, blockStart: string): SensorMinute[] {
  const blocks = sql.all(minuteBlocksIn({ ...filter, start: blockStart, end: blockStart }).select(['sensor_type', 'block_start', 'minutes']));
  return minutesIn(blocks, filter).sort(byMinuteThenSensor);
}

/**
 * The quarter hours of a device's range that hold minutes, oldest first, each with how many
 * of its minutes fall in the range: counted off the blocks' minute counts where the quarter
 * lies inside the range, decoded only where the range's ends cut it.
 */
function quartersIn(sql: Sql, filter: DeviceRange) {
  const quarters = sql.all(
    minuteBlocksIn(filter)
      .select(['block_start', (eb) => eb.fn.sum<number>('minute_count').as('minutes')])
      .groupBy('block_start')
      .orderBy('block_start'),
  );
  return quarters.map(({ block_start, minutes }) => ({
    key: block_start,
    count: inRange(block_start, filter) && inRange(lastMinuteOf(block_start), filter) ? minutes : minutesOfQuarter(sql, filter, block_start).length,
  }));
}

/** Rows kept in order in groups: a group's count, when known, lets a page skip it without decoding it. */
type Group<T> = { count?: number } & ({ rows: () => T[] } | { parts: () => Array<Group<T>> });

/**
 * One page of rows kept in ordered groups (hours of raw readings and their minutes, quarter
 * hours of minute rollups): the groups an offset skips whole are counted, never decoded.
 */
function pageOfGroups<T>(groups: ReadonlyArray<Group<T>>, limit: number, offset: number): T[] {
  const page: T[] = [];
  let skip = offset;
  const visit = (list: ReadonlyArray<Group<T>>) => {
    for (const group of list) {
      if (page.length >= limit) return;
      if (group.count !== undefined && skip >= group.count) {
        skip -= group.count;
        continue;
      }
      if ('parts' in group) {
        visit(group.parts());
        continue;
      }
      const rows = group.rows();
      if (skip >= rows.length) {
        skip -= rows.length;
        continue;
      }
      page.push(...rows.slice(skip, skip + limit - page.length));
      skip = 0;
    }
  };
  visit(groups);
  return page;
}

const totalOf = (groups: ReadonlyArray<{ count: number }>) => groups.reduce((n, group) => n + group.count, 0);

/** Rollups of several devices merged per sensor and bucket. */
const summed = (grouped: ReturnType<typeof rollupsIn>) =>
  grouped.select([
    'sensor_type',
    'bucket_start',
    (eb) => eb.fn.sum<number>('count').as('count'),
    (eb) => eb.fn.sum<number>('sum').as('sum'),
    (eb) => eb.fn.min<number>('min').as('min'),
    (eb) => eb.fn.max<number>('max').as('max'),
    (eb) => eb.fn.sum<number>('sum_sq').as('sum_sq'),
  ]);

/** A raw page is found by how many newer readings it skips, or resumed from the cursor the page before returned. */
export type RawPage = { offset: number } | { cursor: RawCursor };

/**
 * The newest `limit` raw readings of the range (after `offset`, or older than `cursor`), answered
 * oldest first, with the cursor that resumes after them when older readings remain. Hours an
 * offset skips whole are counted, never decoded; a cursor starts in its own hour and minute.
 */
export function rawReadings(sql: Sql, filter: DeviceRange, limit: number, page: RawPage) {
  const hours = hoursIn(sql, filter);
  const walked = 'cursor' in page ? hoursIn(sql, olderThan(filter, page.cursor)) : hours;
  const range = 'cursor' in page ? olderThan(filter, page.cursor) : filter;
  const groups = walked.toReversed().map(({ hour, stored, count }) => ({ count, parts: () => hourNewestFirst(sql, range, hour, stored) }));
  // One more than asked tells whether a next page exists without counting what lies past it.
  const newest = pageOfGroups(groups, limit + 1, 'cursor' in page ? 0 : page.offset);
  const returned = newest.slice(0, limit);
  const oldest = returned.at(-1);
  const nextCursor: RawCursor | null = newest.length > limit && oldest ? { ts: oldest.ts, seq: oldest.seq } : null;
  const rows = returned.reverse().map(({ sensor_type, value, unit, ts, quality_score, quality_reasons }) => ({ sensor_type, value, unit, timestamp: ts, quality_score, quality_reasons }));
  return { total: totalOf(hours), rows, nextCursor };
}

/**
 * Aggregates per sensor and bucket, read from the rollups (never from raw rows), oldest first.
 * Every bucket the range touches counts whole: a range from 21:25 holds the 21:00 hour.
 */
export function aggregatedReadings(sql: Sql, filter: DeviceRange, bucket: BucketSize, limit: number, offset: number) {
  const touched = filter.start ? { ...filter, start: bucketStart[bucket](filter.start) } : filter;
  const { total, rows } = bucket === 'minute' ? minuteRollups(sql, touched, limit, offset) : rowRollups(sql, touched, bucket, limit, offset);
  return { total, rows: rows.map((r) => ({ sensor_type: r.sensor_type, bucket_start: r.bucket_start, count: r.count, avg: r.sum / r.count, min: r.min, max: r.max, sum: r.sum })) };
}

function minuteRollups(sql: Sql, filter: DeviceRange, limit: number, offset: number) {
  const quarters = quartersIn(sql, filter);
  const groups = quarters.map(({ key, count }) => ({ count, rows: () => minutesOfQuarter(sql, filter, key) }));
  return { total: totalOf(quarters), rows: pageOfGroups(groups, limit, offset) };
}

function rowRollups(sql: Sql, filter: DeviceRange, bucket: 'hour' | 'day', limit: number, offset: number) {
  const grouped = rollupsIn(filter, bucket).groupBy(['sensor_type', 'bucket_start']);
  const total = sql.first(q.selectFrom(grouped.select(['sensor_type', 'bucket_start']).as('g')).select((eb) => eb.fn.countAll<number>().as('n')))?.n ?? 0;
  const rows = sql.all(summed(grouped).orderBy('bucket_start').orderBy('sensor_type').limit(limit).offset(offset));
  return { total, rows };
}

/** Hourly rollups summed over devices, per sensor and hour, for analytics. */
export const hourlyBySensor = (sql: Sql, filter: RangeFilter) =>
  sql.all(
    summed(rollupsIn(filter, 'hour').groupBy(['sensor_type', 'bucket_start'])).orderBy('bucket_start'),
  );

/** The latest reading of each sensor of a device (newest timestamp; kept after its raw row is pruned). */
const latestOfDevice = prepared((deviceId: string) =>
  q.selectFrom('latest_readings').select(['sensor_type', 'value', 'unit', 'ts as timestamp', 'quality_score']).where('device_id', '=', deviceId).orderBy('sensor_type'),
);
export const latestReadings = (sql: Sql, deviceId: string) => latestOfDevice.all(sql, deviceId);

/** Readings of the minutes starting at or after `since`. */
export function countReadingsSince(sql: Sql, deviceId: string, since: string): number {
  const filter: DeviceRange = { deviceIds: [deviceId], start: since };
  return minutesIn(sql.all(minuteBlocksIn(filter).select(['sensor_type', 'block_start', 'minutes'])), filter).reduce((n, minute) => n + minute.count, 0);
}

const statsOfDevice = prepared((deviceId: string) => q.selectFrom('sensor_stats').selectAll().where('device_id', '=', deviceId));

export function sensorStatsOf(sql: Sql, deviceId: string): Map<string, SensorStats> {
  const rows = statsOfDevice.all(sql, deviceId);
  return new Map(rows.map(({ sensor_type, count, mean, variance, last_timestamp }) => [sensor_type, { count, mean, variance, last_timestamp }]));
}

/** Every reading of a range in time order, an hour (or a minute of a busy hour) at a time, for streaming exports. */
export function* iterateReadings(sql: Sql, filter: DeviceRange) {
  for (const { hour, stored } of hoursIn(sql, filter)) {
    for (const piece of piecesOfHour(sql, filter, hour, stored)) yield piece();
  }
}
