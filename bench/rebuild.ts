/**
 * Rebuilding every read model from the log (ProjectionRunner from position 0 to the head, on a
 * fresh copy of a database holding only the log, createProjections({retentionDays: 30})) versus
 * a plain read of the same rows (SELECT * in position order, pages of the runner's batch size,
 * JSON.parse of data and metadata), interleaved in one run.
 *
 * The log is generated once, not timed: rows inserted straight into the real events table (data in
 * the form the log stores it, storedForm) with
 * correct hash-chain values (chainHash), stream versions and timestamps, so `verify` would pass
 * and the runner cannot tell it from a log written through append. The mix is what a fleet
 * produces: users and their sessions, devices registered and coming online, then mostly
 * readings.recorded (2-4 readings each, one submission per device per minute), with heartbeats,
 * a few commands (queued, sent, executed) and devices going offline and back.
 */
import { copyFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { ManualClock } from '../src/domain/clock.js';
import { parseEvent, storedForm, streams, type DomainEvent, type EventMetadata } from '../src/domain/events.js';
import { GENESIS_HASH, SqliteEventLog, chainHash, openDatabase, startCheckpointer, type Checkpointer, type SqliteDatabase } from '../src/eventlog/index.js';
import { migrateEventLog } from '../src/eventlog/schema.js';
import { ProjectionRunner, createProjections } from '../src/projections/index.js';
import { CATCH_UP_BATCH_SIZE } from '../src/projections/runner.js';
import { bucketSizes, bucketStart } from '../src/projections/telemetry.js';
import { ROW_PER_READING_DDL, defaultRounds, envInt, percent, tempDir, timeInterleaved, timeRounds, type Benchmark, type Reporter, type Side } from './lib.js';

/**
 * The target's 1,000,000 events: about a minute to rebuild on this machine, half a minute to
 * generate (untimed). BENCH_REBUILD_EVENTS for another size, BENCH_REBUILD_ROUNDS for more than
 * one timed round each.
 */
const TOTAL = Math.max(10_000, envInt('BENCH_REBUILD_EVENTS', 1_000_000));
const USERS = 20;
const DEVICES = 1_000;
/** The runner's batch: the baseline reads in the same pages. */
const PAGE = 500;
const TARGET = { minRatio: 0.3 };
const START_MS = Date.parse('2026-01-01T00:00:00.000Z');
/** One submission per device per minute: 1,000 devices make one event every 60 ms. */
const STEP_MS = 60;
const SENSORS = [
  { sensor_type: 'temperature', unit: 'C', base: 21, spread: 4 },
  { sensor_type: 'humidity', unit: '%', base: 45, spread: 15 },
  { sensor_type: 'pressure', unit: 'hPa', base: 1013, spread: 8 },
  { sensor_type: 'battery', unit: 'V', base: 3.7, spread: 0.4 },
] as const;

const silent = pino({ level: 'silent' });

/** A UUID-shaped id, deterministic, as long as the real ones. */
const uuid = (kind: number, n: number) => `${kind.toString(16).padStart(8, '0')}-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
const hex64 = (n: number) => n.toString(16).padStart(64, 'a');

type Row = [number, string, number, string, string, string, string, string];

interface Generated {
  file: string;
  dir: { remove: () => void };
  events: number;
  readings: number;
  counts: Record<string, number>;
  bytes: number;
  ms: number;
}

/** Writes the log; returns the file, closed and checkpointed, so a byte copy is a complete database. */
function generate(): Generated {
  const started = performance.now();
  const dir = tempDir('bench-rebuild');
  const file = join(dir.dir, 'source.db');
  const db = openDatabase(file);
  db.pragma('synchronous = OFF');
  db.pragma('cache_size = -524288'); // 512 MiB: the (stream_id, version) index stays in memory while it grows
  migrateEventLog(db);
  const insert = db.prepare<Row>(`INSERT INTO events (position, stream_id, version, type, data, metadata, recorded_at, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
  const insertMany = db.transaction((rows: Row[]) => {
    for (const row of rows) insert.run(...row);
  });

  const versions = new Map<string, number>();
  const counts: Record<string, number> = {};
  const checked = new Set<string>();
  let position = 0;
  let previous = GENESIS_HASH;
  let readings = 0;
  let pending: Row[] = [];
  const add = (streamId: string, event: DomainEvent, metadata: EventMetadata) => {
    if (!checked.has(event.type)) {
      parseEvent(event.type, event.data); // every type in the mix is a valid catalogue event
      checked.add(event.type);
    }
    position += 1;
    const version = (versions.get(streamId) ?? 0) + 1;
    versions.set(streamId, version);
    counts[event.type] = (counts[event.type] ?? 0) + 1;
    const fields = {
      position,
      stream_id: streamId,
      version,
      type: event.type,
      data: JSON.stringify(storedForm(event)),
      metadata: JSON.stringify(metadata),
      recorded_at: new Date(START_MS + position * STEP_MS).toISOString(),
    };
    previous = chainHash(previous, fields);
    pending.push([position, streamId, version, event.type, fields.data, fields.metadata, fields.recorded_at, previous]);
    if (pending.length >= 20_000) {
      insertMany(pending);
      pending = [];
    }
  };

  const users = Array.from({ length: USERS }, (_, u) => uuid(1, u));
  for (const [u, userId] of users.entries()) {
    add(streams.user(userId), {
      type: 'user.registered',
      data: { user_id: userId, username: `operator_${u}`, email: `operator_${u}@example.com`, role: u === 0 ? 'admin' : 'user', password_hash: `$2a$12$${'x'.repeat(53)}`, api_key_hash: hex64(u), device_quota: 100 },
    }, { actor_type: 'user', actor_id: userId, request_id: uuid(9, position) });
    add(streams.user(userId), {
      type: 'session.started',
      data: { session_id: uuid(2, u), user_id: userId, expires_at: new Date(START_MS + 7 * 86_400_000).toISOString() },
    }, { actor_type: 'user', actor_id: userId, request_id: uuid(9, position) });
  }
  const devices = Array.from({ length: DEVICES }, (_, d) => ({ id: uuid(3, d), userId: users[d % USERS]!, sensors: 2 + (d % 3), online: false }));
  for (const [d, device] of devices.entries()) {
    add(streams.device(device.id), {
      type: 'device.registered',
      data: {
        device_id: device.id,
        user_id: device.userId,
        token_hash: hex64(1_000_000 + d),
        name: `sensor-${d}`,
        device_type: d % 4 === 0 ? 'gateway' : 'sensor',
        description: null,
        ip_address: `10.0.${d >> 8}.${d & 255}`,
        mac_address: `02:00:00:00:${(d >> 8).toString(16).padStart(2, '0')}:${(d & 255).toString(16).padStart(2, '0')}`,
        group_id: null,
        configuration: { interval_s: 60 },
        firmware_version: '1.4.2',
      },
    }, { actor_type: 'user', actor_id: device.userId, request_id: uuid(9, position) });
  }

  let commands = 0;
  for (let n = 0; position < TOTAL; n++) {
    const device = devices[n % DEVICES]!;
    const deviceMeta: EventMetadata = { actor_type: 'device', actor_id: device.id, request_id: uuid(9, position + 1) };
    const at = new Date(START_MS + (position + 1) * STEP_MS - 150).toISOString();
    if (!device.online || n % 49_999 === DEVICES) {
      // Offline now and then; back with its next submission.
      if (device.online) add(streams.device(device.id), { type: 'device.went_offline', data: { device_id: device.id, last_seen: at } }, { actor_type: 'system' });
      add(streams.device(device.id), { type: 'device.came_online', data: { device_id: device.id } }, deviceMeta);
      device.online = true;
    }
    if (n % 50 === 17) {
      add(streams.telemetry(device.id), {
        type: 'device.heartbeat',
        data: { device_id: device.id, device_status: { status: 'ok', rssi: -60 - (n % 20) }, firmware_version: null, metrics: { uptime_s: n, free_heap: 20_000 + (n % 1_000) } },
      }, deviceMeta);
    } else if (n % 200 === 101) {
      const commandId = uuid(4, commands++);
      const userMeta: EventMetadata = { actor_type: 'user', actor_id: device.userId, request_id: uuid(9, position + 1) };
      add(streams.command(commandId), {
        type: 'command.queued',
        data: { command_id: commandId, device_id: device.id, user_id: device.userId, command_type: 'set_interval', parameters: { interval_s: 30 + (n % 60) }, priority: 'normal', expires_at: null, timeout_seconds: 60, retries: 0, batch_id: null },
      }, userMeta);
      add(streams.command(commandId), { type: 'command.sent', data: { command_id: commandId, device_id: device.id, attempt: 1, sent_at: at } }, deviceMeta);
      add(streams.command(commandId), { type: 'command.executed', data: { command_id: commandId, device_id: device.id, response: { ok: true } } }, deviceMeta);
    }
    const values = SENSORS.slice(0, device.sensors).map((sensor, s) => {
      const wave = Math.sin((n / DEVICES + s) / 30) * sensor.spread;
      const value = Math.round((sensor.base + wave + ((n * 7 + s) % 10) / 100) * 100) / 100;
      const jump = (n + s) % 997 === 0;
      return { sensor_type: sensor.sensor_type, value, unit: sensor.unit, timestamp: at, quality_score: jump ? 70 : 100, quality_reasons: jump ? ['jump'] : [] };
    });
    readings += values.length;
    add(streams.telemetry(device.id), {
      type: 'readings.recorded',
      data: { device_id: device.id, readings: values, device_status: n % 10 === 0 ? { battery: 'ok', signal: -65 } : null },
    }, deviceMeta);
  }
  if (pending.length > 0) insertMany(pending);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return { file, dir, events: position, readings, counts, bytes: statSync(file).size, ms: performance.now() - started };
}

interface Fresh {
  file: string;
  db: SqliteDatabase;
  log: SqliteEventLog;
  checkpointer: Checkpointer;
}

/** The rebuild: a new runner over a byte copy of the log, from position 0 to the head. */
function rebuildSide(source: Generated): Side<Fresh> {
  return {
    setup: (round) => {
      const file = join(source.file, '..', `rebuild-${round}.db`);
      copyFileSync(source.file, file);
      const db = openDatabase(file);
      // As the server and npm run replay run it: checkpoints in a worker thread.
      return { file, db, log: new SqliteEventLog(db, new ManualClock()), checkpointer: startCheckpointer(db) };
    },
    run: async ({ db, log, checkpointer }) => {
      const runner = new ProjectionRunner(db, log, createProjections({ retentionDays: 30 }), silent);
      runner.start();
      await runner.waitFor(log.headPosition());
      await runner.stop();
      await checkpointer.stop();
    },
    teardown: ({ file, db, log }) => {
      const checkpoints = db.prepare<[], { position: number }>(`SELECT position FROM projection_checkpoints`).all();
      const readings = db.prepare<[], { n: number }>(`SELECT sum(count) AS n FROM reading_chunks`).get()?.n;
      const devices = db.prepare<[], { n: number }>(`SELECT count(*) AS n FROM devices`).get()?.n;
      log.close();
      db.close();
      for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true });
      if (checkpoints.length === 0 || checkpoints.some((c) => c.position !== source.events)) {
        throw new Error(`checkpoints ${JSON.stringify(checkpoints)}, expected all at ${source.events}`);
      }
      if (readings !== source.readings || devices !== DEVICES) throw new Error(`rebuilt ${readings} readings and ${devices} devices, expected ${source.readings} and ${DEVICES}`);
    },
  };
}

/** The plain read: the same rows, in the same pages, each data and metadata JSON.parse'd. */
function plainReadSide(source: Generated): Side<{ db: SqliteDatabase; sink: { n: number } }> {
  return {
    setup: () => ({ db: openDatabase(source.file), sink: { n: 0 } }),
    run: ({ db, sink }) => {
      const page = db.prepare<[number, number], { position: number; data: string; metadata: string }>(`SELECT * FROM events WHERE position > ? ORDER BY position LIMIT ?`);
      let after = 0;
      for (;;) {
        const rows = page.all(after, PAGE);
        if (rows.length === 0) break;
        for (const row of rows) {
          const data = JSON.parse(row.data) as object;
          const metadata = JSON.parse(row.metadata) as object;
          if (data && metadata) sink.n += 1;
        }
        after = rows[rows.length - 1]!.position;
      }
    },
    teardown: ({ db, sink }) => {
      db.close();
      if (sink.n !== source.events) throw new Error(`plain read saw ${sink.n} rows, expected ${source.events}`);
    },
  };
}

type ReadingRow = [string, string, string, number, number, string, number, string];
type RollupRow = [string, string, string, string, number, number, number, number, number];

/** The rows the telemetry read model must hold, per catch-up batch: raw readings and each batch's rollup deltas. */
function telemetryRowsOf(source: Generated): Array<{ readings: ReadingRow[]; rollups: RollupRow[] }> {
  const db = openDatabase(source.file);
  const page = db.prepare<[number, number], { position: number; type: string; data: string }>(`SELECT position, type, data FROM events WHERE position > ? ORDER BY position LIMIT ?`);
  const batches: Array<{ readings: ReadingRow[]; rollups: RollupRow[] }> = [];
  for (let after = 0; ; ) {
    const rows = page.all(after, CATCH_UP_BATCH_SIZE);
    if (rows.length === 0) break;
    const readings: ReadingRow[] = [];
    const rollups = new Map<string, RollupRow>();
    for (const row of rows.filter((r) => r.type === 'readings.recorded')) {
      const data = JSON.parse(row.data) as { device_id: string; readings: Array<{ sensor_type: string; value: number; unit: string; timestamp: string }> };
      data.readings.forEach((r, index) => {
        readings.push([data.device_id, r.sensor_type, r.timestamp, row.position * 1000 + index, r.value, r.unit, 100, '[]']);
        for (const bucket of bucketSizes) {
          const start = bucketStart[bucket](r.timestamp);
          const key = [data.device_id, r.sensor_type, bucket, start].join('|');
          const known = rollups.get(key);
          if (known) rollups.set(key, [known[0], known[1], known[2], known[3], known[4] + 1, known[5] + r.value, Math.min(known[6], r.value), Math.max(known[7], r.value), known[8] + r.value * r.value]);
          else rollups.set(key, [data.device_id, r.sensor_type, bucket, start, 1, r.value, r.value, r.value, r.value * r.value]);
        }
      });
    }
    batches.push({ readings, rollups: [...rollups.values()] });
    after = rows[rows.length - 1]!.position;
  }
  db.close();
  return batches;
}

/**
 * What storing a row per reading costs by itself, the reason telemetry packs its rows: the raw
 * reading rows and minute/hour/day rollup rows of the old layout, computed beforehand (untimed)
 * and written with plain better-sqlite3 in the runner's catch-up transactions. No decoding, no
 * other projection, no statistics. Any rebuild storing that layout takes at least this long.
 */
function rowsAloneSide(source: Generated): Side<{ db: SqliteDatabase; remove: () => void; batches: ReturnType<typeof telemetryRowsOf> }> {
  return {
    setup: () => {
      const { dir, remove } = tempDir('bench-rebuild-rows');
      const db = openDatabase(join(dir, 'rows.db'));
      db.exec(ROW_PER_READING_DDL);
      return { db, remove, batches: telemetryRowsOf(source) };
    },
    run: ({ db, batches }) => {
      const insertReading = db.prepare<ReadingRow>(`INSERT INTO readings (device_id, sensor_type, ts, seq, value, unit, quality_score, quality_reasons) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
      const upsertRollup = db.prepare<RollupRow>(
        `INSERT INTO rollups (device_id, sensor_type, bucket, bucket_start, count, sum, min, max, sum_sq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT DO UPDATE SET count = count + excluded.count, sum = sum + excluded.sum, min = min(min, excluded.min), max = max(max, excluded.max), sum_sq = sum_sq + excluded.sum_sq`,
      );
      const write = db.transaction((batch: (typeof batches)[number]) => {
        for (const row of batch.readings) insertReading.run(...row);
        for (const row of batch.rollups) upsertRollup.run(...row);
      });
      for (const batch of batches) write(batch);
    },
    teardown: ({ db, remove }) => {
      const n = db.prepare<[], { n: number }>(`SELECT count(*) AS n FROM readings`).get()?.n;
      db.close();
      remove();
      if (n !== source.readings) throw new Error(`wrote ${n} reading rows, expected ${source.readings}`);
    },
  };
}

export const rebuildBenchmarks: readonly Benchmark[] = [
  {
    name: 'rebuild',
    description: `every projection rebuilt from ${TOTAL.toLocaleString('en-US')} events (ProjectionRunner, fresh copy) vs a plain paged read with JSON.parse of the same rows`,
    async run(reporter: Reporter) {
      const source = generate();
      const mix = Object.entries(source.counts)
        .sort(([, a], [, b]) => b - a)
        .map(([type, n]) => `${type} ${n.toLocaleString('en-US')}`)
        .join(', ');
      console.log(
        `    generated ${source.events.toLocaleString('en-US')} events (${source.readings.toLocaleString('en-US')} readings; ${(source.bytes / 2 ** 20).toFixed(0)} MiB) in ${(source.ms / 1000).toFixed(1)} s (not timed): ${mix}`,
      );
      try {
        // A round is long (a minute or more): no warm-up, one timed round each unless asked.
        const rounds = Math.min(defaultRounds().rounds, Math.max(1, envInt('BENCH_REBUILD_ROUNDS', 1)));
        const samples = await timeInterleaved(rebuildSide(source), plainReadSide(source), { warmup: 0, rounds, minRounds: rounds, budgetMs: 0 });
        reporter.throughput(`rebuild all projections, ${source.events.toLocaleString('en-US')} events`, source.events, 'events/s', samples, TARGET);
        const rowsAlone = await timeRounds(rowsAloneSide(source), { warmup: 0, rounds, minRounds: rounds, budgetMs: 0 });
        const rowsRatio = (rowsAlone.median / samples.baseline.median).toFixed(1);
        console.log(
          `    for comparison, a row per reading and rollup (the layout before chunks) written alone with plain better-sqlite3: ${rowsAlone.median.toFixed(0)} ms, ${rowsRatio}x the plain read; ` +
            `any rebuild storing that layout stays under plain / (plain + those rows) = ${percent(samples.baseline.median / (samples.baseline.median + rowsAlone.median))}`,
        );
      } finally {
        source.dir.remove();
      }
    },
  },
];
