/**
 * Bytes on disk per stored reading, beside the goal: a fleet of 200 devices with 5 sensors each,
 * a reading per sensor every second, values on a random walk with two decimals, each device
 * sending its last 10 seconds in one submission (10 timestamps x 5 sensors = 50 readings) at its
 * own phase of the 10 seconds, through HTTP into the real server on a hand-moved clock.
 *
 * Fleet time starts 5 minutes before an hour: the closed hour's raw chunks have been merged as a
 * long-running server's are, the open hour's are as the projection batches left them.
 *
 * Measured after the server closed (its last connection checkpoints the WAL into the file): the
 * file's size, split with SQLite's dbstat into the log (events, its indexes, idempotency keys)
 * and the read models (every other table and index); free pages and the schema as "other".
 *
 *   npm run bench -- storage        this benchmark alone
 *
 * BENCH_STORAGE_MINUTES (default 10) and BENCH_STORAGE_DEVICES (default 200) change the workload.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { ManualClock, systemClock } from '../src/domain/clock.js';
import { SqliteEventLog, archiveBefore, archiveDirOf, openDatabase } from '../src/eventlog/index.js';
import { DATABASE_FILE, startServer } from '../src/server.js';
import { envInt, tempDir, type Benchmark, type Reporter } from './lib.js';
import { int, recordLimit, registerFleet } from './telemetry.js';

const DEVICES = Math.max(1, envInt('BENCH_STORAGE_DEVICES', 200));
const MINUTES = Math.max(1, envInt('BENCH_STORAGE_MINUTES', 10));
const SEND_EVERY_S = 10;
const IN_FLIGHT = 16;
const START = '2026-03-01T11:55:00.000Z';
const SENSORS = [
  { sensor_type: 'temperature', unit: 'C', start: 21, step: 0.05 },
  { sensor_type: 'humidity', unit: '%', start: 45, step: 0.2 },
  { sensor_type: 'pressure', unit: 'hPa', start: 1013, step: 0.1 },
  { sensor_type: 'co2', unit: 'ppm', start: 600, step: 2 },
  { sensor_type: 'battery', unit: 'V', start: 3.7, step: 0.01 },
] as const;

/** The goals, in bytes per reading. */
const GOAL_TOTAL = 40;
const GOAL_ARCHIVE = 8;

/** Tables and indexes of the event log; everything else but the schema and free pages is a read model. */
const LOG_OBJECTS = new Set(['events', 'events_type', 'sqlite_autoindex_events_1', 'idempotency_keys', 'sqlite_autoindex_idempotency_keys_1']);

interface Reading {
  sensor_type: string;
  value: number;
  unit: string;
  timestamp: string;
}

/** A deterministic random walk per device and sensor (a small LCG), two decimals as a sensor reports. */
class Walk {
  private seed: number;
  private readonly values: number[];
  constructor(device: number) {
    this.seed = (device + 1) * 2_654_435_761;
    this.values = SENSORS.map((sensor) => sensor.start);
  }
  private random(): number {
    this.seed = (Math.imul(this.seed, 1_103_515_245) + 12_345) >>> 0;
    return this.seed / 2 ** 32;
  }
  next(at: string): Reading[] {
    return SENSORS.map((sensor, i) => {
      const value = Math.round((this.values[i]! + (this.random() - 0.5) * 2 * sensor.step) * 100) / 100;
      this.values[i] = value;
      return { sensor_type: sensor.sensor_type, value, unit: sensor.unit, timestamp: at };
    });
  }
}

/** Bytes of the database file by part, from dbstat. */
function measure(file: string, readings: number): { file: number; log: number; readModels: number; other: number; byObject: Array<{ name: string; bytes: number }> } {
  const db = openDatabase(file);
  try {
    const raw = db.prepare<[], { n: number }>(`SELECT sum(count) AS n FROM reading_chunks`).get()?.n ?? 0;
    if (raw !== readings) throw new Error(`${int(readings)} readings submitted, ${int(raw)} in the raw chunks`);
    const byObject = db.prepare<[], { name: string; bytes: number }>(`SELECT name, sum(pgsize) AS bytes FROM dbstat GROUP BY name ORDER BY bytes DESC`).all();
    const sum = (keep: (name: string) => boolean) => byObject.filter((o) => keep(o.name)).reduce((total, o) => total + o.bytes, 0);
    const log = sum((name) => LOG_OBJECTS.has(name));
    const readModels = sum((name) => !LOG_OBJECTS.has(name) && name !== 'sqlite_schema' && name !== 'schema_migrations' && !name.startsWith('sqlite_autoindex_schema'));
    const size = statSync(file).size;
    return { file: size, log, readModels, other: size - log - readModels, byObject };
  } finally {
    db.close();
  }
}

/** Posts submissions IN_FLIGHT at a time; any answer but 201 stops the run. */
async function postAll(url: string, submissions: Array<{ id: string; token: string; readings: Reading[] }>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < submissions.length) {
      const { id, token, readings } = submissions[next++]!;
      const response = await fetch(`${url}/api/devices/${id}/data`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-device-token': token },
        body: JSON.stringify({ sensor_readings: readings }),
      });
      if (response.status !== 201) throw new Error(`submission answered ${response.status}: ${await response.text()}`);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
}

/** Runs the fleet for MINUTES of its time; answers the readings stored. */
async function runFleet(dir: string): Promise<number> {
  const clock = new ManualClock(START);
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dir, LOG_LEVEL: 'silent', BCRYPT_ROUNDS: '4', DEFAULT_DEVICE_QUOTA: String(DEVICES) });
  const server = await startServer(config, { clock, logger: pino({ level: 'silent' }) });
  try {
    const { devices } = await registerFleet(server.url, DEVICES);
    const walks = devices.map((_, i) => new Walk(i));
    const buffered: Reading[][] = devices.map(() => []);
    let readings = 0;
    const startMs = Date.parse(START);
    for (let second = 0; second < MINUTES * 60; second++) {
      const at = new Date(startMs + second * 1000).toISOString();
      clock.set(new Date(startMs + second * 1000 + 500));
      const due: Array<{ id: string; token: string; readings: Reading[] }> = [];
      devices.forEach((device, i) => {
        buffered[i]!.push(...walks[i]!.next(at));
        if ((second + i) % SEND_EVERY_S === SEND_EVERY_S - 1) {
          due.push({ ...device, readings: buffered[i]! });
          readings += buffered[i]!.length;
          buffered[i] = [];
        }
      });
      await postAll(server.url, due);
    }
    await server.services.runner.waitFor(server.services.log.headPosition());
    return readings;
  } finally {
    await server.close();
  }
}

/**
 * The server's own archive cut (LOG_ARCHIVE_AFTER_DAYS) applied to the whole workload: every
 * reading moves into sealed segments. Answers the segments' bytes per reading, how long the cut
 * took, and the log left live.
 */
async function measureArchive(dir: string, readings: number): Promise<{ perReading: number; segments: number; ms: number }> {
  const db = openDatabase(join(dir, DATABASE_FILE));
  const log = new SqliteEventLog(db, systemClock, archiveDirOf(dir));
  try {
    const started = performance.now();
    const cut = await archiveBefore(log, '9999-01-01T00:00:00.000Z');
    const ms = performance.now() - started;
    return { perReading: cut.bytes / readings, segments: cut.segments, ms };
  } finally {
    log.close();
    db.close();
  }
}

function printStorage(reporter: Reporter, benchmark: string, readings: number, sizes: ReturnType<typeof measure>): void {
  const per = (bytes: number) => bytes / readings;
  const text = (bytes: number) => `${per(bytes).toFixed(1)} B/reading`;
  recordLimit(reporter, benchmark, {
    name: 'on disk after a checkpoint, total (goal/ours)',
    unit: 'B/reading',
    ours: per(sizes.file),
    oursText: `${text(sizes.file)} (${int(sizes.file / 1024)} KiB)`,
    limit: GOAL_TOTAL,
    limitText: `<= ${GOAL_TOTAL} B/reading (goal)`,
    ratio: GOAL_TOTAL / per(sizes.file),
    minRatio: 1,
    targetText: '>=100%',
    note:
      `${int(readings)} readings: log ${text(sizes.log)}, read models ${text(sizes.readModels)}, free pages and schema ${text(sizes.other)}; ` +
      `largest: ${sizes.byObject.slice(0, 6).map((o) => `${o.name} ${per(o.bytes).toFixed(1)}`).join(', ')}`,
  });
  for (const [name, bytes] of [['  the log', sizes.log], ['  the read models', sizes.readModels], ['  free pages and schema', sizes.other]] as const) {
    console.log(`${name.padEnd(44)} | ${text(bytes)}`);
  }
}

const storage: Benchmark = {
  name: 'storage',
  description: `bytes on disk per reading: ${DEVICES} devices x ${SENSORS.length} sensors, a reading each second on a random walk, each device sending every ${SEND_EVERY_S} s (${SEND_EVERY_S * SENSORS.length} readings a submission), ${MINUTES} minutes of fleet time over HTTP on a hand-moved clock; measured after the server closed (WAL checkpointed into the file)`,
  async run(reporter) {
    const { dir, remove } = tempDir('bench-storage');
    try {
      const readings = await runFleet(dir);
      printStorage(reporter, storage.name, readings, measure(join(dir, DATABASE_FILE), readings));
      const archive = await measureArchive(dir, readings);
      const after = measure(join(dir, DATABASE_FILE), readings);
      recordLimit(reporter, storage.name, {
        name: 'archived log segments (goal/ours)',
        unit: 'B/reading',
        ours: archive.perReading,
        oursText: `${archive.perReading.toFixed(1)} B/reading`,
        limit: GOAL_ARCHIVE,
        limitText: `<= ${GOAL_ARCHIVE} B/reading (goal)`,
        ratio: GOAL_ARCHIVE / archive.perReading,
        minRatio: 1,
        targetText: '>=100%',
        note: `the server's cut (LOG_ARCHIVE_AFTER_DAYS) of every reading: ${archive.segments} segments in ${int(archive.ms)} ms; the live log's events table after it holds ${(after.log / readings).toFixed(1)} B/reading (its freed pages stay in the file until SQLite reuses them)`,
      });
    } finally {
      remove();
    }
  },
};

export const storageBenchmarks: readonly Benchmark[] = [storage];
