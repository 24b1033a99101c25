/**
 * Appending through SqliteEventLog.append (validation, version checks, hash chain, savepoints)
 * versus plain better-sqlite3 prepared INSERTs of the same rows into the same table shape, in the
 * same batches of 1,000 per transaction, on fresh temp files with WAL and synchronous=NORMAL.
 *
 * Two stream layouts, because the layout moves the plain insert rate
 * about fourfold through the UNIQUE (stream_id, version) index:
 *   - one stream per batch: batch i appends 1,000 events to device i's telemetry stream
 *     (100 streams x 1,000 events);
 *   - spread: every batch appends one event to each of 1,000 devices' telemetry streams
 *     (1,000 streams x 100 events), i.e. 1,000 AppendRequests in one append call.
 */
import { systemClock } from '../src/domain/clock.js';
import { parseEvent, streams, type EventMetadata, type EventOfType } from '../src/domain/events.js';
import { GENESIS_HASH, SqliteEventLog, chainHash, openDatabase, type AppendRequest, type SqliteDatabase } from '../src/eventlog/index.js';
import type { HashedFields } from '../src/eventlog/hash.js';
import { migrateEventLog } from '../src/eventlog/schema.js';
import { defaultRounds, envInt, tempDir, timeInterleaved, timeRounds, type Benchmark, type Reporter, type Side } from './lib.js';

const BATCH = 1_000;
/** A whole number of batches (BENCH_EVENTS only to try the harness quickly; figures are for 100,000). */
const TOTAL = Math.max(1, Math.round(envInt('BENCH_EVENTS', 100_000) / BATCH)) * BATCH;
const SPREAD_STREAMS = 1_000;
const TARGET = { minRatio: 0.5 };

type Layout = 'one-stream' | 'spread';

interface PlannedEvent {
  streamId: string;
  version: number;
  event: EventOfType<'readings.recorded'>;
  metadata: EventMetadata;
}

/**
 * The same logical events for both sides, laid out in batches of BATCH: readings.recorded in
 * the device's telemetry stream, one small submission (two readings) per event, as telemetry
 * ingestion writes them.
 */
function plan(layout: Layout): PlannedEvent[][] {
  const start = Date.parse('2026-01-01T00:00:00.000Z');
  const batches: PlannedEvent[][] = [];
  for (let b = 0; b < TOTAL / BATCH; b++) {
    const batch: PlannedEvent[] = [];
    for (let i = 0; i < BATCH; i++) {
      const device = layout === 'one-stream' ? b : i;
      const version = layout === 'one-stream' ? i + 1 : b + 1;
      const deviceId = `dev-${String(device).padStart(5, '0')}`;
      const n = b * BATCH + i;
      const timestamp = new Date(start + n * 1_000).toISOString();
      batch.push({
        streamId: streams.telemetry(deviceId),
        version,
        event: {
          type: 'readings.recorded',
          data: {
            device_id: deviceId,
            readings: [
              { sensor_type: 'temperature', value: 20 + (n % 50) / 10, unit: 'C', timestamp, quality_score: 100, quality_reasons: [] },
              { sensor_type: 'humidity', value: 40 + (n % 30), unit: '%', timestamp, quality_score: n % 17 === 0 ? 70 : 100, quality_reasons: n % 17 === 0 ? ['jump'] : [] },
            ],
            device_status: null,
          },
        },
        // Metadata belongs to the append request: the same on every event of one stream in one call.
        metadata: { actor_type: 'device', actor_id: deviceId, request_id: `req-${b}-${device}` },
      });
    }
    batches.push(batch);
  }
  return batches;
}

/** One append call per batch: one AppendRequest per stream, expecting the version it knows. */
function toAppendCalls(batches: PlannedEvent[][]): AppendRequest[][] {
  return batches.map((batch) => {
    const byStream = new Map<string, AppendRequest & { events: EventOfType<'readings.recorded'>[] }>();
    for (const planned of batch) {
      let request = byStream.get(planned.streamId);
      if (!request) {
        const before = planned.version - 1;
        request = { streamId: planned.streamId, expectedVersion: before === 0 ? 'no_stream' : before, metadata: planned.metadata, events: [] };
        byStream.set(planned.streamId, request);
      }
      request.events.push(planned.event);
    }
    return [...byStream.values()];
  });
}

type Row = [number, string, number, string, string, string, string, string];

/** The rows the log would store, serialised ahead of time: the baseline only inserts. */
function toRows(batches: PlannedEvent[][]): Row[][] {
  let position = 0;
  const recordedAt = new Date().toISOString();
  return batches.map((batch) =>
    batch.map((planned): Row => {
      position += 1;
      return [
        position,
        planned.streamId,
        planned.version,
        planned.event.type,
        JSON.stringify(planned.event.data),
        JSON.stringify(planned.metadata),
        recordedAt,
        position.toString(16).padStart(64, '0'), // same width as a SHA-256 hex digest
      ];
    }),
  );
}

interface Opened {
  db: SqliteDatabase;
  remove: () => void;
}

function openFresh(prefix: string): Opened {
  const { dir, remove } = tempDir(prefix);
  const db = openDatabase(`${dir}/bench.db`);
  return { db, remove };
}

function closeAndCheck({ db, remove }: Opened, expectedMaxVersion: number): void {
  const check = db.prepare<[], { n: number; v: number }>(`SELECT count(*) AS n, max(version) AS v FROM events`).get();
  db.close();
  remove();
  if (check?.n !== TOTAL || check.v !== expectedMaxVersion) {
    throw new Error(`expected ${TOTAL} rows up to version ${expectedMaxVersion}, found ${check?.n} up to ${check?.v}`);
  }
}

function oursSide(calls: AppendRequest[][], maxVersion: number): Side<Opened & { log: SqliteEventLog }> {
  return {
    setup: () => {
      const opened = openFresh('bench-eventlog-ours');
      return { ...opened, log: new SqliteEventLog(opened.db, systemClock) };
    },
    run: async ({ log }) => {
      for (const call of calls) await log.append(call);
    },
    teardown: (state) => {
      const head = state.log.headPosition();
      state.log.close();
      closeAndCheck(state, maxVersion);
      if (head !== TOTAL) throw new Error(`log head at ${head}, expected ${TOTAL}`);
    },
  };
}

function plainSide(rows: Row[][], maxVersion: number): Side<Opened & { insertBatch: (batch: Row[]) => void }> {
  return {
    setup: () => {
      const opened = openFresh('bench-eventlog-plain');
      migrateEventLog(opened.db); // the very same table, unique (stream_id, version) and indexes included
      const insert = opened.db.prepare<Row>(
        `INSERT INTO events (position, stream_id, version, type, data, metadata, recorded_at, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      );
      const insertBatch = opened.db.transaction((batch: Row[]) => {
        for (const row of batch) insert.run(...row);
      });
      return { ...opened, insertBatch };
    },
    run: ({ insertBatch }) => {
      for (const batch of rows) insertBatch(batch);
    },
    teardown: (state) => closeAndCheck(state, maxVersion),
  };
}

/**
 * The parts of an append that src exposes, each timed alone over the same events, so the
 * breakdown says how much of ours' time they explain; the rest is what append does in between.
 */
async function componentCosts(calls: AppendRequest[][], rows: Row[][], maxVersion: number): Promise<Array<{ name: string; ms: number }>> {
  const rounds = Math.min(defaultRounds().rounds, 3);
  const median = async (run: () => void) => (await timeRounds({ setup: () => undefined, run }, { rounds, minRounds: rounds })).median;
  let sink = 0;

  const zod = await median(() => {
    for (const call of calls) for (const request of call) for (const event of request.events) sink += parseEvent(event.type, event.data) ? 1 : 0;
  });
  const json = await median(() => {
    for (const call of calls) {
      for (const request of call) {
        sink += JSON.stringify(request.metadata).length;
        for (const event of request.events) sink += JSON.stringify(event.data).length;
      }
    }
  });
  const fields: HashedFields[] = rows.flat().map(([position, stream_id, version, type, data, metadata, recorded_at]) => ({
    position, stream_id, version, type, data, metadata, recorded_at,
  }));
  const hashing = await median(() => {
    let previous = GENESIS_HASH;
    for (const row of fields) previous = chainHash(previous, row);
    sink += previous.length;
  });

  // The version lookup append does per stream per call, against the log once it holds every row.
  const plain = plainSide(rows, maxVersion);
  const filled = await plain.setup(0);
  await plain.run(filled);
  const streamVersion = filled.db.prepare<[string], { version: number | null }>(`SELECT max(version) AS version FROM events WHERE stream_id = ?`);
  const lookups = await median(() => {
    for (const call of calls) for (const request of call) sink += streamVersion.get(request.streamId)?.version ?? 0;
  });
  await plain.teardown!(filled);

  if (sink === 42) console.log(''); // keep the work observable
  const lookupCount = calls.reduce((sum, call) => sum + call.length, 0).toLocaleString('en-US');
  return [
    { name: 'zod parseEvent, every event', ms: zod },
    { name: 'JSON.stringify of data (every event) and metadata (every request)', ms: json },
    { name: 'chainHash (SHA-256), every event', ms: hashing },
    { name: `SELECT max(version) per stream per call (${lookupCount} lookups)`, ms: lookups },
  ];
}

export const eventlogAppend: Benchmark = {
  name: 'eventlog-append',
  description: `${TOTAL.toLocaleString('en-US')} readings.recorded events via SqliteEventLog.append vs plain prepared INSERTs, batches of ${BATCH.toLocaleString('en-US')} per transaction`,
  async run(reporter: Reporter) {
    const layouts: Array<{ layout: Layout; label: string; maxVersion: number }> = [
      { layout: 'one-stream', label: `one stream per batch (${TOTAL / BATCH} x ${BATCH})`, maxVersion: BATCH },
      { layout: 'spread', label: `spread over ${SPREAD_STREAMS} streams (${SPREAD_STREAMS} x ${TOTAL / SPREAD_STREAMS})`, maxVersion: TOTAL / SPREAD_STREAMS },
    ];
    for (const { layout, label, maxVersion } of layouts) {
      const batches = plan(layout);
      const calls = toAppendCalls(batches);
      const rows = toRows(batches);
      const samples = await timeInterleaved(oursSide(calls, maxVersion), plainSide(rows, maxVersion));
      reporter.throughput(label, TOTAL, 'rows/s', samples, TARGET);
      if (process.env.BENCH_BREAKDOWN !== '0') {
        reporter.breakdown(
          `${TOTAL.toLocaleString('en-US')} events`,
          samples.ours.median,
          samples.baseline.median,
          await componentCosts(calls, rows, maxVersion),
          'rest: savepoints, a tick + promise per call, objects built per event',
        );
      }
    }
  },
};
