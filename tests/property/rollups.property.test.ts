import { rmSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.js';
import type { StoredReading } from '../../src/domain/events.js';
import { SqliteEventLog, openDatabase, type SqliteDatabase } from '../../src/eventlog/index.js';
import { ProjectionRunner, Sql, createProjections } from '../../src/projections/index.js';
import { rebuildAndCompare } from '../../src/projections/rebuild.js';
import { minutesOf } from '../../src/projections/minute-blocks.js';
import { aggregatedReadings, iterateReadings, rawReadings } from '../../src/projections/telemetry-queries.js';
import { telemetryProjection } from '../../src/projections/telemetry.js';
import { client, registerUser } from '../helpers/client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import {
  DAY,
  HOUR,
  MINUTE,
  chunk,
  deviceOf,
  expectSumClose,
  iso,
  naiveBucketStart,
  naiveRollups,
  readData,
  submitOk,
  type AggregatedReading,
  type BucketRow,
  type BucketSize,
  type NaiveAggregate,
} from '../helpers/telemetry-fixtures.js';

const silent = pino({ level: 'silent' });
const NOW = Date.parse('2026-03-01T12:00:00.000Z');
/** Readings spread over the three days before NOW. */
const SPAN = 3 * DAY;
const SENSORS = ['temperature', 'humidity', 'co2', 'vibration'] as const;
const DEVICES = ['dev-a', 'dev-b'] as const;

interface RollupRow {
  device_id: string;
  sensor_type: string;
  bucket: string;
  bucket_start: string;
  count: number;
  sum: number;
  min: number;
  max: number;
  sum_sq: number;
}

/** Every stored rollup as a row of one bucket: hour and day rows as stored, minutes unpacked from their blocks. */
function storedRollups(db: SqliteDatabase): RollupRow[] {
  const blocks = db.prepare<[], { device_id: string; block_start: string; sensor_type: string; minutes: Buffer }>(`SELECT * FROM minute_rollups`).all();
  const minutes = blocks.flatMap(({ device_id, block_start, sensor_type, minutes }) => minutesOf(block_start, minutes).map((m) => ({ device_id, sensor_type, bucket: 'minute', ...m })));
  return [...db.prepare<[], RollupRow>(`SELECT * FROM rollups`).all(), ...minutes];
}

/** Offsets before NOW: spread over the days, or crowded into a few minutes so buckets collide. */
const offset = fc.oneof(
  fc.integer({ min: 0, max: SPAN }),
  fc.integer({ min: 0, max: 3 * MINUTE }).map((ms) => DAY + 2 * HOUR + ms),
  // Straddling a day boundary (midnight of NOW - 1 day), milliseconds apart.
  fc.integer({ min: -90_000, max: 90_000 }).map((ms) => 12 * HOUR + ms),
);
const value = fc.oneof(fc.integer({ min: -1000, max: 1000 }), fc.double({ min: -1e4, max: 1e4, noNaN: true, noDefaultInfinity: true })).map((v) => (v === 0 ? 0 : v));

const readingArb = fc.record({
  device_id: fc.constantFrom(...DEVICES),
  sensor_type: fc.constantFrom(...SENSORS),
  value,
  timestamp: offset.map((ms) => iso(NOW - ms)),
});

/** The readings, one arrival order of them, cut points into submissions, and what happens between submissions. */
const scenario = fc
  .array(readingArb, { minLength: 1, maxLength: 120 })
  .chain((readings) =>
    fc.record({
      readings: fc.constant(readings),
      arrival: fc.shuffledSubarray(readings, { minLength: readings.length, maxLength: readings.length }),
      cuts: fc.array(fc.nat({ max: 200 }), { maxLength: 15 }),
      /** Per submission: 0 append and go on, 1 wait for the projection, 2 restart the runner (a new process). */
      pauses: fc.array(fc.constantFrom(0, 0, 1, 2), { minLength: 16, maxLength: 16 }),
      range: fc.record({
        startHour: fc.integer({ min: -2, max: Math.ceil(SPAN / HOUR) + 1 }),
        hours: fc.integer({ min: 1, max: 80 }),
        sensor: fc.option(fc.constantFrom(...SENSORS), { nil: undefined }),
        device: fc.constantFrom(...DEVICES),
        /** Unaligned ends for the minute query: they cut through quarter-hour blocks. */
        minuteStartBeforeNow: offset,
        minuteSpanMs: fc.oneof(fc.integer({ min: 0, max: 6 * HOUR }), fc.integer({ min: 0, max: 5 * MINUTE })),
        /** A page of the raw query over the same range. */
        limit: fc.integer({ min: 1, max: 20 }),
        offset: fc.oneof(fc.integer({ min: 0, max: 30 }), fc.integer({ min: 0, max: 4 })),
      }),
    }),
  );

const stored = (r: AggregatedReading): StoredReading => ({ sensor_type: r.sensor_type, value: r.value, unit: null, timestamp: r.timestamp, quality_score: 100, quality_reasons: [] });

function expectRollupsEqual(actual: ReadonlyArray<Pick<RollupRow, 'device_id' | 'sensor_type' | 'bucket_start' | 'count' | 'sum' | 'min' | 'max'> & { sum_sq?: number }>, expected: Map<string, NaiveAggregate>, label: string): void {
  const keys = actual.map((r) => `${r.device_id}|${r.sensor_type}|${r.bucket_start}`);
  expect(new Set(keys).size, `${label}: one row per bucket`).toBe(keys.length);
  expect([...keys].sort(), `${label}: the buckets`).toEqual([...expected.keys()].sort());
  for (const row of actual) {
    const key = `${row.device_id}|${row.sensor_type}|${row.bucket_start}`;
    const want = expected.get(key)!;
    expect(row.count, `${label} ${key} count`).toBe(want.count);
    expect(row.min, `${label} ${key} min`).toBe(want.min);
    expect(row.max, `${label} ${key} max`).toBe(want.max);
    expectSumClose(row.sum, want.sum, want.abs_sum, `${label} ${key} sum`);
    if (row.sum_sq !== undefined) expectSumClose(row.sum_sq, want.sum_sq, want.sum_sq, `${label} ${key} sum_sq`);
  }
}

/** The projection alone, on a fresh in-memory database with its own log and runner. */
class Harness {
  readonly db: SqliteDatabase = openDatabase(':memory:');
  readonly log = new SqliteEventLog(this.db, new ManualClock(iso(NOW)));
  runner = this.newRunner();
  readonly sql = new Sql(this.db);

  private newRunner(): ProjectionRunner {
    const runner = new ProjectionRunner(this.db, this.log, [telemetryProjection(3650)], silent);
    runner.start();
    return runner;
  }

  async append(readings: readonly AggregatedReading[]): Promise<void> {
    const byDevice = new Map<string, AggregatedReading[]>();
    for (const r of readings) byDevice.set(r.device_id, [...(byDevice.get(r.device_id) ?? []), r]);
    await this.log.append(
      [...byDevice].map(([device_id, rs]) => ({
        streamId: `telemetry-${device_id}`,
        expectedVersion: 'any' as const,
        events: [{ type: 'readings.recorded' as const, data: { device_id, readings: rs.map(stored), device_status: null } }],
      })),
    );
  }

  caughtUp = (): Promise<void> => this.runner.waitFor(this.log.headPosition());

  /** Like a process restart: the old runner stops (flushing), a new one resumes from the checkpoint. */
  async restartRunner(): Promise<void> {
    await this.runner.stop();
    this.runner = this.newRunner();
  }

  async close(): Promise<void> {
    await this.runner.stop();
    this.log.close();
    this.db.close();
  }
}

describe('rollups equal a naive aggregate, whatever the arrival order (projection)', () => {
  it('minute, hour and day rollups: count, sum, min, max, sum of squares; raw rows kept once; hour query over a range', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async ({ readings, arrival, cuts, pauses, range }) => {
        const h = new Harness();
        try {
          const submissions = chunk(arrival, cuts);
          for (const [index, submission] of submissions.entries()) {
            await h.append(submission);
            const pause = pauses[index % pauses.length];
            if (pause === 1) await h.caughtUp();
            if (pause === 2) await h.restartRunner();
          }
          await h.caughtUp();

          const rows = storedRollups(h.db);
          for (const bucket of ['minute', 'hour', 'day'] as const) {
            expectRollupsEqual(
              rows.filter((r) => r.bucket === bucket),
              naiveRollups(readings, bucket),
              bucket,
            );
          }
          expect(rows.every((r) => ['minute', 'hour', 'day'].includes(r.bucket))).toBe(true);
          expect(h.db.prepare<[], { n: number }>(`SELECT sum(count) AS n FROM reading_chunks`).get()!.n).toBe(readings.length);

          // The hour query over an hour-aligned range [start, end): the buckets of the readings inside it.
          const start = Math.floor((NOW - SPAN) / HOUR) * HOUR + range.startHour * HOUR;
          const end = start + range.hours * HOUR - 1;
          const inRange = readings.filter(
            (r) => r.device_id === range.device && (range.sensor === undefined || r.sensor_type === range.sensor) && Date.parse(r.timestamp) >= start && Date.parse(r.timestamp) <= end,
          );
          const answer = aggregatedReadings(h.sql, { deviceIds: [range.device], ...(range.sensor ? { sensorType: range.sensor } : {}), start: iso(start), end: iso(end) }, 'hour', 100_000, 0);
          const expected = naiveRollups(inRange, 'hour');
          expect(answer.total).toBe(expected.size);
          expectRollupsEqual(
            answer.rows.map((r) => ({ ...r, device_id: range.device })),
            expected,
            'hour query',
          );
          for (const row of answer.rows) expect(row.avg).toBeCloseTo(row.sum / row.count, 9);
          const order = answer.rows.map((r) => `${r.bucket_start}|${r.sensor_type}`);
          expect(order, 'oldest first').toEqual([...order].sort());

          // The minute query over any range: every minute that starts from the start's minute to the end.
          const minuteFrom = NOW - range.minuteStartBeforeNow;
          const minuteTo = minuteFrom + range.minuteSpanMs;
          const inMinutes = readings.filter(
            (r) =>
              r.device_id === range.device &&
              (range.sensor === undefined || r.sensor_type === range.sensor) &&
              Date.parse(r.timestamp) >= Math.floor(minuteFrom / MINUTE) * MINUTE &&
              Date.parse(naiveBucketStart('minute', r.timestamp)) <= minuteTo,
          );
          const minutes = aggregatedReadings(h.sql, { deviceIds: [range.device], ...(range.sensor ? { sensorType: range.sensor } : {}), start: iso(minuteFrom), end: iso(minuteTo) }, 'minute', 100_000, 0);
          expect(minutes.total).toBe(naiveRollups(inMinutes, 'minute').size);
          expectRollupsEqual(
            minutes.rows.map((r) => ({ ...r, device_id: range.device })),
            naiveRollups(inMinutes, 'minute'),
            'minute query',
          );
          const minuteOrder = minutes.rows.map((r) => `${r.bucket_start}|${r.sensor_type}`);
          expect(minuteOrder, 'oldest first').toEqual([...minuteOrder].sort());
          const minutePage = aggregatedReadings(h.sql, { deviceIds: [range.device], ...(range.sensor ? { sensorType: range.sensor } : {}), start: iso(minuteFrom), end: iso(minuteTo) }, 'minute', range.limit, range.offset);
          expect(minutePage.total).toBe(minutes.total);
          expect(minutePage.rows, 'a page of minutes').toEqual(minutes.rows.slice(range.offset, range.offset + range.limit));

          // Raw readings of the same range: in time order, then log (arrival) order; pages count from the newest.
          const rawFilter = { deviceIds: [range.device] as [string], ...(range.sensor ? { sensorType: range.sensor } : {}), start: iso(minuteFrom), end: iso(minuteTo) };
          const shape = (r: { sensor_type: string; value: number }, timestamp: string) => `${timestamp}|${r.sensor_type}|${r.value}`;
          const inTimeOrder = arrival
            .map((r, logIndex) => ({ r, logIndex }))
            .filter(({ r }) => r.device_id === range.device && (range.sensor === undefined || r.sensor_type === range.sensor) && Date.parse(r.timestamp) >= minuteFrom && Date.parse(r.timestamp) <= minuteTo)
            .sort((a, b) => Date.parse(a.r.timestamp) - Date.parse(b.r.timestamp) || a.logIndex - b.logIndex)
            .map(({ r }) => shape(r, r.timestamp));
          const page = rawReadings(h.sql, rawFilter, range.limit, { offset: range.offset });
          expect(page.total).toBe(inTimeOrder.length);
          const newestFirst = [...inTimeOrder].reverse();
          expect(page.rows.map((r) => shape(r, r.timestamp)), 'raw page').toEqual(newestFirst.slice(range.offset, range.offset + range.limit).reverse());
          // Walking by cursor from the first page reaches every reading once, in the same order as offsets.
          const walked: string[] = [];
          for (let cursorPage = rawReadings(h.sql, rawFilter, range.limit, { offset: 0 }); ; ) {
            walked.push(...cursorPage.rows.map((r) => shape(r, r.timestamp)).reverse());
            expect(cursorPage.total, 'a cursor page counts the whole range').toBe(inTimeOrder.length);
            if (!cursorPage.nextCursor) break;
            cursorPage = rawReadings(h.sql, rawFilter, range.limit, { cursor: cursorPage.nextCursor });
          }
          expect(walked, 'pages by cursor').toEqual(newestFirst);
          expect([...iterateReadings(h.sql, rawFilter)].flat().map((r) => shape(r, r.ts)), 'export').toEqual(inTimeOrder);
        } finally {
          await h.close();
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('rollups equal a naive aggregate, whatever the arrival order (HTTP)', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let owner: Awaited<ReturnType<typeof registerUser>>;

  beforeAll(async () => {
    server = await startTestServer({}, new ManualClock(iso(NOW)));
    await registerUser(api); // the first user is an admin; the owner below is an ordinary user
    owner = await registerUser(api);
  });
  afterAll(() => server.close());

  const httpScenario = fc
    .array(fc.record({ sensor_type: fc.constantFrom(...SENSORS), value, timestamp: offset.map((ms) => iso(NOW - ms)) }), { minLength: 1, maxLength: 60 })
    .chain((readings) =>
      fc.record({
        readings: fc.constant(readings),
        arrival: fc.shuffledSubarray(readings, { minLength: readings.length, maxLength: readings.length }),
        cuts: fc.array(fc.nat({ max: 100 }), { maxLength: 6 }),
        startHour: fc.integer({ min: 0, max: Math.ceil(SPAN / HOUR) }),
        hours: fc.integer({ min: 1, max: 72 }),
      }),
    );

  it('GET /api/devices/:id/data?interval=minute|hour|day and the rollups table agree with the readings sent', async () => {
    await fc.assert(
      fc.asyncProperty(httpScenario, async ({ readings, arrival, cuts, startHour, hours }) => {
        const device = await deviceOf(api, owner);
        for (const submission of chunk(arrival, cuts)) {
          await submitOk(api, device.id, device.token, { sensor_readings: submission });
        }
        const sent: AggregatedReading[] = readings.map((r) => ({ ...r, device_id: device.id }));

        for (const bucket of ['minute', 'hour', 'day'] as const satisfies readonly BucketSize[]) {
          const answer = await readData<BucketRow>(api, device.id, owner.token, `interval=${bucket}&limit=500`);
          const expected = naiveRollups(sent, bucket);
          expect(answer.meta.total).toBe(expected.size);
          expectRollupsEqual(
            answer.data.map((r) => ({ ...r, device_id: device.id })),
            expected,
            `GET interval=${bucket}`,
          );
          for (const row of answer.data) expect(row.bucket_start).toBe(naiveBucketStart(bucket, row.bucket_start));
          const stored = storedRollups(server.server.db).filter((r) => r.device_id === device.id && r.bucket === bucket);
          expectRollupsEqual(stored, expected, `rollups table ${bucket}`);
        }

        const start = Math.floor((NOW - SPAN) / HOUR) * HOUR + startHour * HOUR;
        const end = start + hours * HOUR - 1;
        const inRange = sent.filter((r) => Date.parse(r.timestamp) >= start && Date.parse(r.timestamp) <= end);
        const ranged = await readData<BucketRow>(api, device.id, owner.token, `interval=hour&limit=500&start_date=${iso(start)}&end_date=${iso(end)}`);
        expectRollupsEqual(
          ranged.data.map((r) => ({ ...r, device_id: device.id })),
          naiveRollups(inRange, 'hour'),
          'GET hour range',
        );
      }),
      { numRuns: 8 },
    );
  });
});

describe('a replay reproduces the rollups to the last digit, however submissions were batched', () => {
  let server: TestServer;
  const api = client(() => server.url);

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  /** Values as devices send them (21.37): their sums in doubles depend on grouping, unlike integers. */
  const decimal = fc.integer({ min: -100_000, max: 100_000 }).map((n) => n / 100);

  it('decimal readings sent in submissions of several per bucket: the rebuilt telemetry read model has the same digest', async () => {
    const owner = await registerUser(api, 'replayer');
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(decimal, { minLength: 1, maxLength: 5 }), { minLength: 2, maxLength: 8 }), async (submissions) => {
        const device = await deviceOf(api, owner);
        // One bucket of each size for all of them: totals are built across submissions. The log
        // keeps every run's devices, so a counterexample is the run that exposed a difference.
        for (const values of submissions) await submitOk(api, device.id, device.token, { sensor_readings: values.map((value) => ({ sensor_type: 'temperature', value })) });
        const { db, services } = server.server;
        const file = join(server.dataDir, `replay-rollups-${device.id}.db`);
        try {
          const result = await rebuildAndCompare({ db, log: services.log }, file, createProjections(services.config), silent);
          expect(result.differing).toEqual([]);
        } finally {
          for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true });
        }
      }),
      { numRuns: 15 },
    );
  });
});
