/**
 * Telemetry speed (issue 3, "Speed"), each figure beside this machine's own limit measured in the
 * same run:
 *
 *   telemetry-http-ingest    single-reading POSTs with a device token through the real server vs a
 *                            bare express 5 route answering the same JSON without work (autocannon);
 *   telemetry-batched        100-reading submissions stored and projected vs plain better-sqlite3
 *                            inserts of the same rows, one transaction per 100 rows;
 *   telemetry-month          an hourly aggregate over one device's month with 1,000,000 readings
 *                            stored vs with 10,000;
 *   telemetry-memory         the resident memory of the server, alone in its own process (as
 *                            npm start runs it), after ingesting 1,000,000 readings.
 *
 * The load generator (autocannon) runs in a worker thread, so it does not share the server's event
 * loop; both sides of a comparison are loaded by the same worker with the same settings.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import express from 'express';
import { loadConfig } from '../src/config.js';
import { openDatabase, type SqliteDatabase } from '../src/eventlog/index.js';
import { aggregatedReadings } from '../src/projections/telemetry-queries.js';
import { startServer, type RunningServer } from '../src/server.js';
import {
  ROW_PER_READING_DDL,
  defaultRounds,
  collectGarbage,
  envInt,
  percent,
  spawnServer,
  summarise,
  tempDir,
  timeInterleaved,
  type Benchmark,
  type Reporter,
  type Result,
  type Samples,
  type Side,
  type Verdict,
} from './lib.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

// ---------------------------------------------------------------------------------------------
// Readings, generated identically in the load worker (from this function's source) and here

interface Sensor {
  type: string;
  unit: string;
  base: number;
  amplitude: number;
}

interface ReadingsSpec {
  /** Submissions in the whole timeline; submission k covers timestamps k*per .. (k+1)*per - 1. */
  submissions: number;
  perSubmission: number;
  sensors: Sensor[];
  startMs: number;
  stepMs: number;
}

interface ReadingIn {
  sensor_type: string;
  value: number;
  unit: string;
  timestamp: string;
}

/**
 * Submission k of a timeline: perSubmission / sensors timestamps, one reading per sensor each,
 * values on a smooth daily cycle (no anomaly alerts, no threshold alerts). Self-contained: its
 * source is evaluated in the load worker.
 */
function readingsOf(spec: ReadingsSpec, k: number): ReadingIn[] {
  const perTimestamp = spec.sensors.length;
  const timestamps = Math.floor(spec.perSubmission / perTimestamp);
  const out: ReadingIn[] = [];
  for (let j = 0; j < timestamps; j++) {
    const t = spec.startMs + (k * timestamps + j) * spec.stepMs;
    const phase = ((t % 86_400_000) / 86_400_000) * 2 * Math.PI;
    const timestamp = new Date(t).toISOString();
    for (const sensor of spec.sensors) {
      out.push({ sensor_type: sensor.type, value: Math.round((sensor.base + sensor.amplitude * Math.sin(phase)) * 100) / 100, unit: sensor.unit, timestamp });
    }
  }
  return out;
}

const SENSORS: Sensor[] = [
  { type: 'temperature', unit: 'C', base: 21, amplitude: 4 },
  { type: 'humidity', unit: '%', base: 50, amplitude: 10 },
];

// ---------------------------------------------------------------------------------------------
// Load generator: autocannon in a worker thread

interface LoadTarget {
  path: string;
  token: string;
}

interface LoadSpec {
  url: string;
  connections: number;
  /** Seconds of load (ignored when amount is given). */
  durationS?: number;
  /** Requests in all, split over the connections as autocannon splits them. */
  amount?: number;
  /** Connection i posts to targets[i % targets.length] with that device's token. */
  targets: LoadTarget[];
  /** A fixed JSON body, or submission k = i + C * n of a timeline (connection i, its n-th request). */
  body: { kind: 'fixed'; json: string } | { kind: 'readings'; spec: ReadingsSpec };
}

interface LoadResult {
  /** From the start of the autocannon run to its last answer, measured in the worker. */
  ms: number;
  /** Completed requests (any status) and their split. */
  completed: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  latencyP50: number;
  latencyP99: number;
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const autocannon = require(workerData.autocannon);
${readingsOf.toString()}
parentPort.on('message', (spec) => {
  let next = 0;
  const C = spec.connections;
  const options = {
    url: spec.url,
    connections: C,
    pipelining: 1,
    timeout: 60,
    ...(spec.amount ? { amount: spec.amount } : { duration: spec.durationS }),
    setupClient(client) {
      const i = next++;
      const target = spec.targets[i % spec.targets.length];
      const headers = { 'content-type': 'application/json', 'x-device-token': target.token };
      if (spec.body.kind === 'fixed') {
        client.setRequests([{ method: 'POST', path: target.path, headers, body: spec.body.json }]);
        return;
      }
      let made = 0;
      const timeline = spec.body.spec;
      client.setRequests([{
        method: 'POST', path: target.path, headers,
        setupRequest(request) {
          const k = (i + C * made++) % timeline.submissions;
          return { ...request, body: JSON.stringify({ sensor_readings: readingsOf(timeline, k) }) };
        },
      }]);
    },
  };
  const started = performance.now();
  // autocannon calls back on its one-second reporting tick, up to a second after the last
  // answer: the work ends with the last answer, so that is what is timed.
  let lastAnswer = started;
  const instance = autocannon(options, (error, raw) => {
    const ms = lastAnswer - started;
    if (error) { parentPort.postMessage({ error: String(error && error.stack || error) }); return; }
    // Outside the main thread autocannon leaves its result unaggregated.
    const result = raw.latency ? raw : autocannon.aggregateResult([raw], options);
    const statusCodes = {};
    for (const [code, stats] of Object.entries(result.statusCodeStats || {})) statusCodes[code] = Number(stats.count);
    const ok = result['2xx'];
    parentPort.postMessage({ result: {
      ms, completed: ok + result.non2xx, ok, non2xx: result.non2xx, errors: result.errors, timeouts: result.timeouts,
      statusCodes, latencyP50: result.latency.p50, latencyP99: result.latency.p99,
    } });
  });
  instance.on('response', () => { lastAnswer = performance.now(); });
});
parentPort.postMessage('ready');
`;

class LoadGenerator {
  private readonly worker: Worker;
  private readonly ready: Promise<void>;
  private pending: { resolve: (r: LoadResult) => void; reject: (e: unknown) => void } | undefined;

  constructor() {
    const require = createRequire(import.meta.url);
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { autocannon: require.resolve('autocannon') } });
    this.ready = new Promise((resolve, reject) => {
      this.worker.once('error', reject);
      this.worker.once('message', () => resolve());
    });
    this.worker.on('error', (error) => this.fail(error));
    this.worker.on('exit', (code) => this.fail(new Error(`load generator exited (${code})`)));
    this.worker.on('message', (message: 'ready' | { error: string } | { result: LoadResult }) => {
      if (message === 'ready' || !this.pending) return;
      const { resolve, reject } = this.pending;
      this.pending = undefined;
      if ('error' in message) reject(new Error(`load generator: ${message.error}`));
      else resolve(message.result);
    });
  }

  private fail(error: unknown): void {
    const pending = this.pending;
    this.pending = undefined;
    pending?.reject(error);
  }

  started(): Promise<void> {
    return this.ready;
  }

  async run(spec: LoadSpec): Promise<LoadResult> {
    await this.ready;
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.worker.postMessage(spec);
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

// ---------------------------------------------------------------------------------------------
// The server, its users and devices

interface Ours {
  server: RunningServer;
  remove: () => void;
  userToken: string;
  devices: Array<{ id: string; token: string }>;
  close(): Promise<void>;
}

async function call<T>(url: string, method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: T }> {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token ? { authorization: `Bearer ${token}` } : {}) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as T };
}

/** The real server on port 0 in a temp DATA_DIR, one user registered and `deviceCount` devices, all over HTTP. */
async function startOurs(prefix: string, deviceCount: number, env: Record<string, string> = {}): Promise<Ours> {
  const { dir, remove } = tempDir(prefix);
  const config = loadConfig({ PORT: '0', MQTT_PORT: '0', HOST: '127.0.0.1', DATA_DIR: dir, LOG_LEVEL: 'silent', BCRYPT_ROUNDS: '4', DEFAULT_DEVICE_QUOTA: '1000', ...env });
  const server = await startServer(config);
  const close = async () => {
    await server.close();
    remove();
  };
  try {
    return { server, remove, close, ...(await registerFleet(server.url, deviceCount)) };
  } catch (error) {
    await close();
    throw error;
  }
}

/** One user and `deviceCount` devices, over HTTP. */
export async function registerFleet(url: string, deviceCount: number): Promise<Pick<Ours, 'userToken' | 'devices'>> {
  const registered = await call<{ data: { token: string } }>(url, 'POST', '/api/auth/register', { username: 'bench', email: 'bench@example.com', password: 'correct horse battery' });
  if (registered.status !== 201) throw new Error(`register answered ${registered.status}: ${JSON.stringify(registered.body)}`);
  const userToken = registered.body.data.token;
  const devices: Ours['devices'] = [];
  for (let i = 0; i < deviceCount; i++) {
    const created = await call<{ data: { id: string; credentials: { auth_token: string } } }>(url, 'POST', '/api/devices', { name: `bench-${i}`, device_type: 'sensor' }, userToken);
    if (created.status !== 201) throw new Error(`device registration answered ${created.status}: ${JSON.stringify(created.body)}`);
    devices.push({ id: created.body.data.id, token: created.body.data.credentials.auth_token });
  }
  return { userToken, devices };
}

/** The server as `npm start` runs it, alone in its own process, so its memory is its own. */
interface OursProcess extends Pick<Ours, 'userToken' | 'devices'> {
  url: string;
  pid: number;
  close(): Promise<void>;
}

async function startOursProcess(prefix: string, env: Record<string, string>): Promise<OursProcess> {
  const server = await spawnServer(prefix, env);
  try {
    return { ...server, ...(await registerFleet(server.url, 1)) };
  } catch (error) {
    await server.close();
    throw error;
  }
}

/** Resident and peak resident memory of a process, from Linux's /proc. */
function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kib('VmRSS'), peak: kib('VmHWM') };
}

const dataPath = (deviceId: string) => `/api/devices/${deviceId}/data`;

async function caughtUp(server: RunningServer): Promise<void> {
  await server.services.runner.waitFor(server.services.log.headPosition());
}

function scalar(db: SqliteDatabase, sql: string): number {
  return Number(db.prepare<[], { n: number | null }>(sql).get()?.n ?? 0);
}

/** Raw readings the server holds, over its chunks. */
const storedReadings = (db: SqliteDatabase) => scalar(db, `SELECT sum(count) AS n FROM reading_chunks`);

// ---------------------------------------------------------------------------------------------
// Reporting helpers for figures the Reporter's throughput row does not fit


const MB = 2 ** 20;
const mb = (bytes: number) => `${(bytes / MB).toFixed(0)} MB`;
export const int = (value: number) => Math.round(value).toLocaleString('en-US');

/** Same columns as Reporter's table. */
function printRow(cells: readonly string[]): void {
  const widths = [44, 30, 30, 6, 7, 5];
  console.log(cells.map((cell, index) => cell.padEnd(widths[index] ?? 0)).join(' | ').trimEnd());
}

/**
 * A row whose baseline is a fixed limit rather than a measured side. ratio is "higher is better"
 * (ours / floor, or ceiling / ours) so that the summary reads like the other rows.
 */
export function recordLimit(
  reporter: Reporter,
  benchmark: string,
  row: { name: string; unit: string; ours: number; oursText: string; limit: number; limitText: string; ratio: number; minRatio: number; targetText: string; note?: string },
): void {
  const verdict: Verdict = row.ratio >= row.minRatio ? 'PASS' : 'FAIL';
  const result: Result = {
    benchmark,
    name: row.name,
    unit: row.unit,
    ours: row.ours,
    baseline: row.limit,
    ratio: row.ratio,
    target: { minRatio: row.minRatio },
    verdict,
    ...(row.note ? { note: row.note } : {}),
  };
  reporter.results.push(result);
  printRow([row.name, row.oursText, row.limitText, percent(row.ratio), row.targetText, verdict]);
  if (row.note) console.log(`    ${row.note}`);
}

function describeCodes(result: { statusCodes: Record<string, number>; errors: number; timeouts: number }): string {
  const codes = Object.entries(result.statusCodes)
    .map(([code, count]) => `${code}x${int(count)}`)
    .join(' ');
  return `${codes || 'none'}${result.errors ? `, ${result.errors} connection errors` : ''}${result.timeouts ? `, ${result.timeouts} timeouts` : ''}`;
}

function addCodes(total: LoadResult | undefined, result: LoadResult): LoadResult {
  if (!total) return { ...result, statusCodes: { ...result.statusCodes } };
  const statusCodes = { ...total.statusCodes };
  for (const [code, count] of Object.entries(result.statusCodes)) statusCodes[code] = (statusCodes[code] ?? 0) + count;
  return {
    ...total,
    completed: total.completed + result.completed,
    ok: total.ok + result.ok,
    non2xx: total.non2xx + result.non2xx,
    errors: total.errors + result.errors,
    timeouts: total.timeouts + result.timeouts,
    statusCodes,
  };
}

// ---------------------------------------------------------------------------------------------
// 1. HTTP ingestion of single-reading submissions

const HTTP_CONNECTIONS = 50;
const HTTP_DEVICES = envInt('BENCH_HTTP_DEVICES', 50);
const HTTP_SECONDS = envInt('BENCH_HTTP_SECONDS', 2);
const SINGLE_BODY = JSON.stringify({ sensor_readings: { temperature: 21.5 } });

async function startBare(): Promise<{ url: string; close: () => Promise<void> }> {
  const app = express();
  app.use(express.json());
  app.post('/api/devices/:id/data', (_req, res) => {
    res.status(201).json({ data: { accepted: 1, position: 1 } });
  });
  const http: Server = await new Promise((resolve, reject) => {
    const listening = app.listen(0, '127.0.0.1', (error?: Error) => (error ? reject(error) : resolve(listening)));
  });
  const { port } = http.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      }),
  };
}

const httpIngest: Benchmark = {
  name: 'telemetry-http-ingest',
  description: `single-reading POST /api/devices/:id/data with x-device-token, autocannon in a worker thread (${HTTP_CONNECTIONS} connections, each bound to one of ${HTTP_DEVICES} devices, ${HTTP_SECONDS} s per round) vs a bare express 5 route (express.json(), 201 with the same JSON, no work)`,
  async run(reporter) {
    const ours = await startOurs('bench-telemetry-http', HTTP_DEVICES);
    const bare = await startBare();
    const load = new LoadGenerator();
    try {
      await load.started();
      const spec = (url: string, targets: LoadTarget[]): LoadSpec => ({ url, connections: HTTP_CONNECTIONS, durationS: HTTP_SECONDS, targets, body: { kind: 'fixed', json: SINGLE_BODY } });
      const oursSpec = spec(ours.server.url, ours.devices.map((device) => ({ path: dataPath(device.id), token: device.token })));
      const bareSpec = spec(bare.url, ours.devices.map((device) => ({ path: dataPath(device.id), token: device.token })));
      const { warmup, minRounds } = defaultRounds();
      // ms per 1,000 answered-2xx requests, so the Reporter's work / time reads as requests per second.
      const per1000 = (result: LoadResult) => (result.ms / Math.max(1, result.ok)) * 1000;
      const oursMs: number[] = [];
      const bareMs: number[] = [];
      let oursTotal: LoadResult | undefined;
      let bareTotal: LoadResult | undefined;
      const oursLatency: number[] = [];
      const bareLatency: number[] = [];
      const rowsBefore = storedReadings(ours.server.db);
      for (let round = 0; round < warmup + minRounds; round++) {
        const order = round % 2 === 0 ? (['ours', 'bare'] as const) : (['bare', 'ours'] as const);
        for (const side of order) {
          collectGarbage();
          const result = await load.run(side === 'ours' ? oursSpec : bareSpec);
          if (side === 'ours') {
            await caughtUp(ours.server);
            oursTotal = addCodes(oursTotal, result);
          } else {
            bareTotal = addCodes(bareTotal, result);
          }
          if (round < warmup) continue;
          (side === 'ours' ? oursMs : bareMs).push(per1000(result));
          (side === 'ours' ? oursLatency : bareLatency).push(result.latencyP99);
        }
      }
      const stored = storedReadings(ours.server.db) - rowsBefore;
      const samples = { ours: summarise(oursMs), baseline: summarise(bareMs) };
      reporter.throughput(
        `1 reading/POST, ${HTTP_CONNECTIONS} conns, ${HTTP_DEVICES} devices`,
        1000,
        'req/s',
        samples,
        { minRatio: 0.4 },
        `req/s counts 2xx answers only; answers over all rounds (warm-up included): ours ${describeCodes(oursTotal!)}; bare ${describeCodes(bareTotal!)}; ` +
          `p99 latency ours ${summarise(oursLatency).median} ms, bare ${summarise(bareLatency).median} ms; readings stored by ours over all rounds ${int(stored)}`,
      );
      if (oursTotal!.non2xx > 0 || oursTotal!.errors > 0) {
        recordLimit(reporter, httpIngest.name, {
          name: 'non-2xx answers from ours (must be 0)',
          unit: 'answers',
          ours: oursTotal!.non2xx + oursTotal!.errors,
          oursText: `${int(oursTotal!.non2xx)} non-2xx, ${oursTotal!.errors} errors`,
          limit: 0,
          limitText: '0',
          ratio: 0,
          minRatio: 1,
          targetText: '=0',
        });
      }
    } finally {
      await load.close();
      await bare.close();
      await ours.close();
    }
  },
};

// ---------------------------------------------------------------------------------------------
// 2. Batched submissions of 100 readings

const BATCH_READINGS = 100;
const BATCH_SUBMISSIONS = Math.max(16, envInt('BENCH_BATCH_SUBMISSIONS', 3_000));
const BATCH_CONNECTIONS = 16;
const BATCH_DEVICES = 16;
const BATCH_TOTAL = BATCH_SUBMISSIONS * BATCH_READINGS;
const ABSOLUTE_TARGET = 100_000;

function batchTimeline(): ReadingsSpec {
  const timestamps = BATCH_TOTAL / SENSORS.length;
  // One reading per sensor per second, ending about an hour ago: past, within retention.
  return { submissions: BATCH_SUBMISSIONS, perSubmission: BATCH_READINGS, sensors: SENSORS, startMs: Date.now() - HOUR_MS - timestamps * 1000, stepMs: 1000 };
}

interface OursBatchState {
  ours: Ours;
  load: LoadGenerator;
  result?: LoadResult;
}

/** `open` holds the rounds set up and not yet torn down, so a round that throws still gets closed. */
function oursBatchSide(totals: { load?: LoadResult }, open: Set<OursBatchState>): Side<OursBatchState> {
  return {
    setup: async () => {
      const ours = await startOurs('bench-telemetry-batch', BATCH_DEVICES);
      const state: OursBatchState = { ours, load: new LoadGenerator() };
      open.add(state);
      await state.load.started();
      return state;
    },
    run: async (state) => {
      state.result = await state.load.run({
        url: state.ours.server.url,
        connections: BATCH_CONNECTIONS,
        amount: BATCH_SUBMISSIONS,
        targets: state.ours.devices.map((device) => ({ path: dataPath(device.id), token: device.token })),
        body: { kind: 'readings', spec: batchTimeline() },
      });
      await caughtUp(state.ours.server);
      // A 201 is answered only once its readings are projected: the last answer ends the work.
      return state.result.ms;
    },
    teardown: async (state) => {
      const { ours, load, result } = state;
      open.delete(state);
      await load.close();
      const db = ours.server.db;
      const rows = storedReadings(db);
      const rolled = scalar(db, `SELECT sum(count) AS n FROM rollups WHERE bucket = 'hour'`);
      await ours.close();
      totals.load = addCodes(totals.load, result!);
      const expected = result!.ok * BATCH_READINGS;
      if (rows !== expected || rolled !== expected) {
        throw new Error(`${int(result!.ok)} submissions answered 2xx (${int(expected)} readings) but ${int(rows)} readings stored and ${int(rolled)} in the hourly rollups`);
      }
    },
  };
}

type Row = [string, string, string, number, number, string, number, string];

/** The rows the readings projection stores for the same submissions, built ahead of time. */
function batchRows(deviceIds: readonly string[]): Row[][] {
  const spec = batchTimeline();
  const batches: Row[][] = [];
  for (let k = 0; k < BATCH_SUBMISSIONS; k++) {
    const device = deviceIds[(k % BATCH_CONNECTIONS) % deviceIds.length]!;
    batches.push(readingsOf(spec, k).map((r, index): Row => [device, r.sensor_type, r.timestamp, (k + 1) * 1000 + index, r.value, r.unit, 100, '[]']));
  }
  return batches;
}

function plainBatchSide(rows: Row[][]): Side<{ db: SqliteDatabase; remove: () => void; insertBatch: (batch: Row[]) => void }> {
  return {
    setup: () => {
      const { dir, remove } = tempDir('bench-telemetry-plain');
      const db = openDatabase(`${dir}/plain.db`);
      db.exec(ROW_PER_READING_DDL); // a row per reading, as telemetry stored them before chunks
      const insert = db.prepare<Row>(
        `INSERT OR IGNORE INTO readings (device_id, sensor_type, ts, seq, value, unit, quality_score, quality_reasons) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      );
      const insertBatch = db.transaction((batch: Row[]) => {
        for (const row of batch) insert.run(...row);
      });
      return { db, remove, insertBatch };
    },
    run: ({ insertBatch }) => {
      for (const batch of rows) insertBatch(batch);
    },
    teardown: ({ db, remove }) => {
      const n = scalar(db, `SELECT count(*) AS n FROM readings`);
      db.close();
      remove();
      if (n !== BATCH_TOTAL) throw new Error(`plain inserts stored ${n} rows, expected ${BATCH_TOTAL}`);
    },
  };
}

const batched: Benchmark = {
  name: 'telemetry-batched',
  description: `${int(BATCH_SUBMISSIONS)} submissions of ${BATCH_READINGS} readings (${int(BATCH_TOTAL)} readings) POSTed by autocannon in a worker thread over ${BATCH_CONNECTIONS} connections to ${BATCH_DEVICES} devices, timed until every one is answered 201 and projected, fresh server per round, vs plain better-sqlite3 INSERTs of the same rows into the same readings table, one transaction per ${BATCH_READINGS}`,
  async run(reporter) {
    const deviceIds = Array.from({ length: BATCH_DEVICES }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
    const rows = batchRows(deviceIds);
    const totals: { load?: LoadResult } = {};
    const open = new Set<OursBatchState>();
    let samples: { ours: Samples; baseline: Samples };
    try {
      samples = await timeInterleaved(oursBatchSide(totals, open), plainBatchSide(rows));
    } finally {
      for (const state of open) {
        await state.load.close();
        await state.ours.close();
      }
    }
    const load = totals.load!;
    reporter.throughput(
      `${BATCH_READINGS}-reading submissions, stored + projected`,
      BATCH_TOTAL,
      'readings/s',
      samples,
      { minRatio: 0.25 },
      `ours: answers over the timed and warm-up rounds ${describeCodes(load)}; each round's rows counted in readings and hourly rollups`,
    );
    const oursRate = BATCH_TOTAL / (samples.ours.median / 1000);
    recordLimit(reporter, batched.name, {
      name: 'stored + projected, absolute',
      unit: 'readings/s',
      ours: oursRate,
      oursText: `${int(oursRate)} readings/s`,
      limit: ABSOLUTE_TARGET,
      limitText: `${int(ABSOLUTE_TARGET)} readings/s (target)`,
      ratio: oursRate / ABSOLUTE_TARGET,
      minRatio: 1,
      targetText: '>=100%',
    });
    if (load.non2xx > 0 || load.errors > 0) {
      recordLimit(reporter, batched.name, {
        name: 'non-2xx answers from ours (must be 0)',
        unit: 'answers',
        ours: load.non2xx + load.errors,
        oursText: `${int(load.non2xx)} non-2xx, ${load.errors} errors`,
        limit: 0,
        limitText: '0',
        ratio: 0,
        minRatio: 1,
        targetText: '=0',
      });
    }
  },
};

// ---------------------------------------------------------------------------------------------
// 3 + 4. An hourly aggregate over one device's month, 1,000,000 readings vs 10,000; memory

const MONTH_BIG = Math.max(10_000, Math.round(envInt('BENCH_MONTH_READINGS', 1_000_000) / 1000) * 1000);
const MONTH_SMALL = 10_000;
const MONTH_PER_SUBMISSION = 1_000;
const MONTH_QUERIES = envInt('BENCH_MONTH_QUERIES', 300);
const QUERY_GROUP = 10;
const RSS_LIMIT = 300 * MB;

function timeline(total: number, start: number, spanMs: number): ReadingsSpec {
  const timestamps = total / SENSORS.length;
  return { submissions: total / MONTH_PER_SUBMISSION, perSubmission: MONTH_PER_SUBMISSION, sensors: SENSORS, startMs: start, stepMs: spanMs / timestamps };
}

/**
 * Loads `total` readings into the server's only device through HTTP, 1,000 per submission, and
 * checks them in the daily rollups (every 201 is answered once its readings are projected).
 */
async function loadMonth(load: LoadGenerator, ours: { url: string; userToken: string; devices: Ours['devices'] }, total: number, monthStart: number, connections: number, spanMs = 30 * DAY_MS): Promise<LoadResult> {
  const device = ours.devices[0]!;
  const result = await load.run({
    url: ours.url,
    connections,
    amount: total / MONTH_PER_SUBMISSION,
    targets: [{ path: dataPath(device.id), token: device.token }],
    body: { kind: 'readings', spec: timeline(total, monthStart, spanMs) },
  });
  const days = await call<{ data: Array<{ count: number }> }>(ours.url, 'GET', `${dataPath(device.id)}?interval=day&limit=500`, undefined, ours.userToken);
  const stored = days.body.data.reduce((sum, day) => sum + day.count, 0);
  if (result.non2xx > 0 || result.errors > 0 || stored !== total) {
    throw new Error(`loading ${int(total)} readings: answers ${describeCodes(result)}, ${int(stored)} readings in the hourly rollups`);
  }
  return result;
}

interface MonthQuery {
  path: string;
  token: string;
  expectedTotal: number;
}

async function timeQueryGroup(url: string, query: MonthQuery): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < QUERY_GROUP; i++) {
    const response = await fetch(`${url}${query.path}`, { headers: { authorization: `Bearer ${query.token}` } });
    const body = (await response.json()) as { data: unknown[]; meta: { total: number } };
    if (response.status !== 200 || body.data.length !== 500 || body.meta.total !== query.expectedTotal) {
      throw new Error(`hourly query answered ${response.status} with ${body.data?.length} rows of ${body.meta?.total}, expected 500 of ${query.expectedTotal}`);
    }
  }
  return performance.now() - started;
}

const month: Benchmark = {
  name: 'telemetry-month',
  description: `GET /api/devices/:id/data?interval=hour over one device's 30-day month (limit 500; 2 sensors x 720 hours = 1,440 buckets) with ${int(MONTH_BIG)} readings stored vs ${int(MONTH_SMALL)}, both loaded through HTTP (autocannon, 1,000 readings per submission, past timestamps, RETENTION_DAYS 45 so every raw row is kept); median of ${MONTH_QUERIES} sequential queries each, alternating servers in groups of ${QUERY_GROUP}`,
  async run(reporter) {
    const monthStart = Math.floor(Date.now() / HOUR_MS) * HOUR_MS - 30 * DAY_MS;
    const env = { RETENTION_DAYS: '45' };
    const small = await startOurs('bench-telemetry-month-small', 1, env);
    let big: Ours | undefined;
    let load: LoadGenerator | undefined;
    try {
      big = await startOurs('bench-telemetry-month-big', 1, env);
      load = new LoadGenerator();
      await loadMonth(load, { url: small.server.url, ...small }, MONTH_SMALL, monthStart, 2);
      await loadMonth(load, { url: big.server.url, ...big }, MONTH_BIG, monthStart, 4);
      await load.close();
      load = undefined;

      // The hourly query: HTTP, interleaved between the two servers.
      const range = `start_date=${new Date(monthStart).toISOString()}&end_date=${new Date(monthStart + 30 * DAY_MS - 1).toISOString()}`;
      const query = (ours: Ours): MonthQuery => ({ path: `${dataPath(ours.devices[0]!.id)}?interval=hour&${range}&limit=500`, token: ours.userToken, expectedTotal: 720 * SENSORS.length });
      const bigQuery = query(big);
      const smallQuery = query(small);
      for (let i = 0; i < 3; i++) {
        await timeQueryGroup(big.server.url, bigQuery);
        await timeQueryGroup(small.server.url, smallQuery);
      }
      const bigMs: number[] = [];
      const smallMs: number[] = [];
      for (let group = 0; group < Math.max(3, Math.round(MONTH_QUERIES / QUERY_GROUP)); group++) {
        if (group % 2 === 0) {
          bigMs.push(await timeQueryGroup(big.server.url, bigQuery));
          smallMs.push(await timeQueryGroup(small.server.url, smallQuery));
        } else {
          smallMs.push(await timeQueryGroup(small.server.url, smallQuery));
          bigMs.push(await timeQueryGroup(big.server.url, bigQuery));
        }
      }
      const http = { ours: summarise(bigMs), baseline: summarise(smallMs) };
      reporter.throughput(
        `hourly month over HTTP, ${int(MONTH_BIG / 1000)}k vs ${int(MONTH_SMALL / 1000)}k`,
        QUERY_GROUP,
        'queries/s',
        http,
        { minRatio: 1 / 3 },
        `median answer ${(http.ours.median / QUERY_GROUP).toFixed(2)} ms with ${int(MONTH_BIG)} readings vs ${(http.baseline.median / QUERY_GROUP).toFixed(2)} ms with ${int(MONTH_SMALL)}: ` +
          `${(http.ours.median / http.baseline.median).toFixed(2)}x the time (limit 3x)`,
      );

      // The same query function called in-process, without HTTP's constant cost diluting the ratio.
      const filter = { deviceIds: [big.devices[0]!.id] as [string], start: new Date(monthStart).toISOString(), end: new Date(monthStart + 30 * DAY_MS - 1).toISOString() };
      const smallFilter = { ...filter, deviceIds: [small.devices[0]!.id] as [string] };
      const direct = (ours: Ours, f: typeof filter) => () => {
        const started = performance.now();
        for (let i = 0; i < QUERY_GROUP; i++) {
          if (aggregatedReadings(ours.server.services.sql, f, 'hour', 500, 0).rows.length !== 500) throw new Error('aggregatedReadings: expected 500 rows');
        }
        return performance.now() - started;
      };
      const directBig = direct(big, filter);
      const directSmall = direct(small, smallFilter);
      directBig();
      directSmall();
      const dBig: number[] = [];
      const dSmall: number[] = [];
      for (let group = 0; group < 30; group++) {
        if (group % 2 === 0) {
          dBig.push(directBig());
          dSmall.push(directSmall());
        } else {
          dSmall.push(directSmall());
          dBig.push(directBig());
        }
      }
      const inProcess = { ours: summarise(dBig), baseline: summarise(dSmall) };
      reporter.throughput(
        `  same, aggregatedReadings() in-process`,
        QUERY_GROUP,
        'queries/s',
        inProcess,
        undefined,
        `median ${(inProcess.ours.median / QUERY_GROUP).toFixed(2)} ms vs ${(inProcess.baseline.median / QUERY_GROUP).toFixed(2)} ms per query`,
      );

    } finally {
      await load?.close();
      await big?.close();
      await small.close();
    }
  },
};

const memory: Benchmark = {
  name: 'telemetry-memory',
  description: `resident memory of the server process alone (node dist/src/main.js, as npm start runs it) after ${int(MONTH_BIG)} readings of one month loaded through HTTP (autocannon in this process, 1,000 readings per submission, 4 connections, one device, RETENTION_DAYS 45 so every raw row is kept)`,
  async run(reporter) {
    const monthStart = Math.floor(Date.now() / HOUR_MS) * HOUR_MS - 30 * DAY_MS;
    const ours = await startOursProcess('bench-telemetry-memory', { RETENTION_DAYS: '45' });
    const load = new LoadGenerator();
    try {
      await load.started();
      const atStart = memoryOf(ours.pid);
      const loaded = await loadMonth(load, ours, MONTH_BIG, monthStart, 4);
      const after = memoryOf(ours.pid);
      recordLimit(reporter, memory.name, {
        name: `rss after ${int(MONTH_BIG)} readings (limit/rss)`,
        unit: 'MB',
        ours: after.rss / MB,
        oursText: `${mb(after.rss)} (at start ${mb(atStart.rss)})`,
        limit: RSS_LIMIT / MB,
        limitText: `${mb(RSS_LIMIT)} limit`,
        ratio: RSS_LIMIT / after.rss,
        minRatio: 1,
        targetText: '>=100%',
        note:
          `the server process alone, read from /proc without forcing a GC; its peak during the load ${mb(after.peak)}; ` +
          `loaded in ${(loaded.ms / 1000).toFixed(1)} s = ${int(MONTH_BIG / (loaded.ms / 1000))} readings/s (${describeCodes(loaded)})`,
      });
    } finally {
      await load.close();
      await ours.close();
    }
  },
};

const RAW_DAY = 100_000;
const RAW_PAGE = 500;
const PAGE_REPEATS = 5;

/** One page's answer time: the median of a few fetches, so one slow moment of a shared machine does not decide it. */
async function timePage(url: string, path: string, token: string): Promise<{ ms: number; next: string | null; rows: number }> {
  const times: number[] = [];
  let answer: { data: unknown[]; meta: { next_cursor: string | null } } | undefined;
  for (let i = 0; i < PAGE_REPEATS; i++) {
    const started = performance.now();
    const response = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${token}` } });
    answer = (await response.json()) as typeof answer;
    times.push(performance.now() - started);
    if (response.status !== 200) throw new Error(`raw page answered ${response.status}: ${JSON.stringify(answer)}`);
  }
  return { ms: summarise(times).median, next: answer!.meta.next_cursor, rows: answer!.data.length };
}

const rawPages: Benchmark = {
  name: 'telemetry-raw-pages',
  description: `GET /api/devices/:id/data?interval=raw&limit=${RAW_PAGE} through one device with ${int(RAW_DAY)} readings in one day (loaded through HTTP, 1,000 a submission), by cursor from the newest page to the oldest; each page the median of ${PAGE_REPEATS} fetches, the slowest page against twice the first; the same pages by offset beside it`,
  async run(reporter) {
    const dayStart = Math.floor(Date.now() / DAY_MS) * DAY_MS - DAY_MS;
    const ours = await startOurs('bench-telemetry-raw-pages', 1);
    const load = new LoadGenerator();
    try {
      await loadMonth(load, { url: ours.server.url, ...ours }, RAW_DAY, dayStart, 4, DAY_MS);
      const base = `${dataPath(ours.devices[0]!.id)}?interval=raw&limit=${RAW_PAGE}`;
      const byCursor: number[] = [];
      let read = 0;
      for (let path: string | null = base; path !== null; ) {
        const page = await timePage(ours.server.url, path, ours.userToken);
        byCursor.push(page.ms);
        read += page.rows;
        path = page.next === null ? null : `${base}&cursor=${encodeURIComponent(page.next)}`;
      }
      if (read !== RAW_DAY) throw new Error(`paging by cursor read ${int(read)} readings of ${int(RAW_DAY)}`);
      const byOffset: number[] = [];
      for (let offset = 0; offset < RAW_DAY; offset += RAW_PAGE * 10) byOffset.push((await timePage(ours.server.url, `${base}&offset=${offset}`, ours.userToken)).ms);
      const first = byCursor[0]!;
      const slowest = Math.max(...byCursor);
      recordLimit(reporter, rawPages.name, {
        name: `raw pages by cursor, slowest of ${byCursor.length} (2x first/slowest)`,
        unit: 'ms',
        ours: slowest,
        oursText: `${slowest.toFixed(2)} ms slowest, ${summarise(byCursor).median.toFixed(2)} ms median`,
        limit: 2 * first,
        limitText: `2 x ${first.toFixed(2)} ms (first page)`,
        ratio: (2 * first) / slowest,
        minRatio: 1,
        targetText: '>=100%',
        note: `by offset (every 10th page): first ${byOffset[0]!.toFixed(2)} ms, last ${byOffset.at(-1)!.toFixed(2)} ms, slowest ${Math.max(...byOffset).toFixed(2)} ms`,
      });
    } finally {
      await load.close();
      await ours.close();
    }
  },
};

export const telemetryBenchmarks: readonly Benchmark[] = [httpIngest, batched, month, memory, rawPages];
