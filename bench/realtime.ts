/**
 * The live event stream on the real server (startServer on port 0, temp DATA_DIR, LOG_LEVEL
 * silent, BCRYPT_ROUNDS 4; user and devices registered over HTTP), against a bare `ws` server
 * doing the same socket work, measured in the same run.
 *
 *   realtime-fanout   100 subscribers on /ws (session token, subscribed with no filter) while
 *                     readings.recorded events are appended through services.log.append in
 *                     batches; events delivered per second to all subscribers combined, versus a
 *                     bare WebSocketServer broadcasting the same messages (same strings, built
 *                     with the server's own liveMessage, same count, same batches) to 100
 *                     clients. Every subscriber must receive every position, strictly increasing.
 *   realtime-latency  1,000 readings per second, paced by a timer, for a few seconds, one
 *                     reading per submission over 10 devices; from the submission to the arrival
 *                     of its event (matched by position) at a subscriber: p50, p99, max against
 *                     the 50 ms limit, for two ways in:
 *                       - log.append -> subscriber: services.log.append per reading, on the
 *                         server's thread (the live path alone: commit, projections, fan-out);
 *                       - HTTP POST -> subscriber: POST /api/devices/:id/data with the device
 *                         token (what a device does: the whole ingestion path besides);
 *                     beside them a bare ws round-trip (device socket -> server -> subscriber
 *                     socket, a message of the same size) at the same rate.
 *
 * The clients (subscribers, HTTP submitters) run in a worker thread of this process, so the
 * server under test has the main thread to itself, as it would with remote clients; both sides
 * use the very same clients. Times are performance.timeOrigin + performance.now(), one clock.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import WebSocket, { WebSocketServer } from 'ws';
import { loadConfig } from '../src/config.js';
import { streams, type EventOfType, type RecordedEvent } from '../src/domain/events.js';
import { liveMessage } from '../src/realtime/visibility.js';
import { startServer, type RunningServer } from '../src/server.js';
import { envInt, percent, tempDir, timeInterleaved, type Benchmark, type Reporter, type Result, type Side } from './lib.js';

const WORKER_ROLE = 'bench-realtime-clients';

const SUBSCRIBERS = envInt('BENCH_SUBSCRIBERS', 100);
/** Events per timed fan-out round. */
const FANOUT_EVENTS = Math.max(100, envInt('BENCH_FANOUT_EVENTS', 1_000));
/** Events per append call (one request, the device's telemetry stream), and per bare burst. */
const FANOUT_BATCH = 100;
/** At most this many events appended but not yet received by every subscriber (~450 KB each, under the 1 MiB bound). */
const FANOUT_WINDOW = 1_000;
const PROGRESS_EVERY = 100;
const STALL_MS = 15_000;
const FANOUT_TARGET = { minRatio: 0.5 };

const LATENCY_RATE = Math.max(1, envInt('BENCH_LATENCY_RATE', 1_000));
const LATENCY_DEVICES = 10;
const LATENCY_WARMUP_MS = 1_000;
const LATENCY_MS = envInt('BENCH_LATENCY_S', 5) * 1_000;
const LATENCY_LIMIT_MS = 50;
/** Requests waiting for an answer beyond this are not sent (counted as skipped): bounds the run when the server cannot keep up. */
const MAX_IN_FLIGHT = 256;

/** Every live event message starts so: the position is read off the bytes without parsing the rest. */
const EVENT_PREFIX = Buffer.from('{"type":"event","position":');

function positionOf(data: Buffer): number {
  if (data.length <= EVENT_PREFIX.length || data.compare(EVENT_PREFIX, 0, EVENT_PREFIX.length, 0, EVENT_PREFIX.length) !== 0) return -1;
  let n = 0;
  for (let i = EVENT_PREFIX.length; i < data.length; i++) {
    const c = data[i]!;
    if (c < 48 || c > 57) break;
    n = n * 10 + (c - 48);
  }
  return n;
}

const now = () => performance.timeOrigin + performance.now();

// =============================================================================================
// Worker side: the clients.

interface ExpectMessage {
  op: 'expect';
  group: string;
  from: number;
  to: number;
}

type Request =
  | { op: 'connect'; group: string; url: string; count: number; subscribe: boolean }
  | ExpectMessage
  | { op: 'report'; group: string }
  | { op: 'close'; group: string }
  | { op: 'latency-http'; baseUrl: string; wsUrl: string; devices: Array<{ id: string; token: string }>; rate: number; warmupMs: number; durationMs: number }
  | { op: 'latency-bare'; devUrl: string; subUrl: string; rate: number; warmupMs: number; durationMs: number }
  | { op: 'record'; name: string; wsUrl: string }
  | { op: 'arrivals'; name: string; upTo: number }
  | { op: 'clock' };

interface GroupReport {
  clients: number;
  open: number;
  /** In-order deliveries of expected positions, every round so far. */
  delivered: number;
  expected: number;
  problems: string[];
}

export interface LatencyStats {
  sent: number;
  /** Due but not sent: MAX_IN_FLIGHT requests were already waiting for an answer (the server is saturated). */
  skipped: number;
  measured: number;
  missing: number;
  errors: number;
  errorSample: string | null;
  p50: number;
  p99: number;
  max: number;
  /** HTTP answer times (ours only). */
  answerP99: number | null;
  achievedRate: number;
}

interface ClientGroup {
  sockets: WebSocket[];
  next: number[];
  round: { from: number; to: number; reached: Map<number, number> } | null;
  report: GroupReport;
}

function clientMain(): void {
  const port = parentPort!;
  const groups = new Map<string, ClientGroup>();
  const recorders = new Map<string, { ws: WebSocket; arrivals: Map<number, number> }>();
  const post = (message: unknown) => port.postMessage(message);
  const problem = (group: ClientGroup, text: string) => {
    if (group.report.problems.length < 20) group.report.problems.push(text);
    else if (group.report.problems.length === 20) group.report.problems.push('... (more)');
  };

  const onEvent = (name: string, group: ClientGroup, index: number, position: number) => {
    const round = group.round;
    if (!round) return problem(group, `client ${index}: position ${position} outside a round`);
    const want = group.next[index]!;
    if (position !== want) problem(group, `client ${index}: got position ${position}, expected ${want}`);
    group.next[index] = position + 1;
    if (position < round.from || position > round.to) return;
    if (position === want) group.report.delivered += 1;
    if ((position - round.from + 1) % PROGRESS_EVERY === 0 || position === round.to) {
      const reached = (round.reached.get(position) ?? 0) + 1;
      round.reached.set(position, reached);
      if (reached === group.sockets.length) {
        round.reached.delete(position);
        post({ progress: name, upTo: position });
      }
    }
  };

  const connect = async (name: string, url: string, count: number, subscribe: boolean): Promise<void> => {
    const group: ClientGroup = { sockets: [], next: [], round: null, report: { clients: count, open: 0, delivered: 0, expected: 0, problems: [] } };
    groups.set(name, group);
    const opened = Array.from({ length: count }, (_, index) =>
      new Promise<void>((resolve, reject) => {
        const ws = new WebSocket(url);
        group.sockets[index] = ws;
        group.next[index] = 0;
        let handshake = subscribe ? 'welcome' : 'done';
        ws.on('message', (raw) => {
          const data = raw as Buffer;
          const position = positionOf(data);
          if (position >= 0) return onEvent(name, group, index, position);
          const message = JSON.parse(data.toString('utf8')) as { type?: string; message?: string };
          if (handshake === 'welcome' && message.type === 'welcome') {
            handshake = 'subscribed';
            ws.send(JSON.stringify({ type: 'subscribe' }));
          } else if (handshake === 'subscribed' && message.type === 'subscribed') {
            handshake = 'done';
            resolve();
          } else if (message.type === 'error') problem(group, `client ${index}: server error ${message.message}`);
        });
        ws.on('open', () => {
          group.report.open += 1;
          if (!subscribe) resolve();
        });
        ws.on('close', (code, reason) => {
          group.report.open -= 1;
          if (group.round) problem(group, `client ${index}: closed ${code} ${reason.toString()}`);
        });
        ws.on('error', (error) => reject(error));
        ws.on('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      }),
    );
    await Promise.all(opened);
  };

  const handle = async (request: Request): Promise<unknown> => {
    switch (request.op) {
      case 'connect':
        return connect(request.group, request.url, request.count, request.subscribe);
      case 'expect': {
        const group = groups.get(request.group)!;
        group.next.fill(request.from);
        group.round = { from: request.from, to: request.to, reached: new Map() };
        group.report.expected += (request.to - request.from + 1) * group.sockets.length;
        return undefined;
      }
      case 'report':
        return groups.get(request.group)!.report;
      case 'close': {
        const group = groups.get(request.group);
        if (!group) return undefined;
        group.round = null;
        await Promise.all(
          group.sockets.map(
            (ws) =>
              new Promise<void>((resolve) => {
                if (ws.readyState === WebSocket.CLOSED) return resolve();
                ws.once('close', () => resolve());
                ws.close(1000);
                setTimeout(() => {
                  ws.terminate();
                  resolve();
                }, 2_000).unref();
              }),
          ),
        );
        groups.delete(request.group);
        return undefined;
      }
      case 'latency-http':
        return latencyHttp(request);
      case 'latency-bare':
        return latencyBare(request);
      case 'record':
        recorders.set(request.name, await subscribeRecording(request.wsUrl));
        return undefined;
      case 'arrivals': {
        const recorder = recorders.get(request.name)!;
        await waitFor(() => recorder.arrivals.has(request.upTo), 5_000);
        recorders.delete(request.name);
        recorder.ws.close(1000);
        return [...recorder.arrivals];
      }
      case 'clock':
        return now();
    }
  };

  port.on('message', (message: { id: number; request: Request }) => {
    handle(message.request).then(
      (result) => post({ id: message.id, ok: true, result }),
      (error: unknown) => post({ id: message.id, ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
    );
  });
}

/** Calls send(seq) at `rate` per second for durationMs, driven by a 1 ms timer catching up with the schedule. */
function pace(rate: number, durationMs: number, send: (seq: number) => void): Promise<{ sent: number; ms: number }> {
  return new Promise((resolve) => {
    const start = performance.now();
    const total = Math.round((rate * durationMs) / 1000);
    let sent = 0;
    const tick = () => {
      const elapsed = performance.now() - start;
      const due = Math.min(total, Math.floor((elapsed * rate) / 1000) + 1);
      while (sent < due) send(sent++);
      if (sent >= total) {
        clearInterval(timer);
        resolve({ sent, ms: performance.now() - start });
      }
    };
    const timer = setInterval(tick, 1);
    tick();
  });
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Opens a client socket; onMessage gets the socket too (a welcome can arrive with the upgrade, before this resolves). */
function openSocket(url: string, onMessage: (data: Buffer, ws: WebSocket) => void): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on('message', (raw) => onMessage(raw as Buffer, ws));
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
}

async function waitFor(done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!done() && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
}

/** Latencies of the submissions sent after the warm-up; arriveAt answers null for one that failed (counted apart). */
function latencyFigures(sendAt: readonly number[], arriveAt: (seq: number) => number | undefined | null, warmupMs: number, start: number) {
  const latencies: number[] = [];
  let missing = 0;
  for (let seq = 0; seq < sendAt.length; seq++) {
    if (sendAt[seq] === undefined || sendAt[seq]! - start < warmupMs) continue;
    const arrived = arriveAt(seq);
    if (arrived === null) continue;
    if (arrived === undefined) missing += 1;
    else latencies.push(arrived - sendAt[seq]!);
  }
  latencies.sort((a, b) => a - b);
  return { latencies, missing };
}

/** A subscriber (no filter) noting when each event position arrives. */
async function subscribeRecording(wsUrl: string): Promise<{ ws: WebSocket; arrivals: Map<number, number> }> {
  const arrivals = new Map<number, number>();
  let subscribed: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (subscribed = resolve));
  const ws = await openSocket(wsUrl, (data, socket) => {
    const position = positionOf(data);
    if (position >= 0) {
      arrivals.set(position, now());
      return;
    }
    const message = JSON.parse(data.toString('utf8')) as { type: string };
    if (message.type === 'welcome') socket.send(JSON.stringify({ type: 'subscribe' }));
    if (message.type === 'subscribed') subscribed();
  });
  await ready;
  return { ws, arrivals };
}

function postJson(agent: http.Agent, base: URL, path: string, token: string, body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        host: base.hostname,
        port: base.port,
        path,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: `Bearer ${token}` },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** One subscriber; readings POSTed round-robin over the devices; POST time to arrival, matched by the answered position. */
async function latencyHttp(request: Extract<Request, { op: 'latency-http' }>): Promise<LatencyStats> {
  const { ws, arrivals } = await subscribeRecording(request.wsUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const base = new URL(request.baseUrl);
  const sendAt: number[] = [];
  const answeredAt: number[] = [];
  const positions: number[] = [];
  const inflight = new Set<Promise<void>>();
  let errors = 0;
  let skipped = 0;
  let errorSample: string | null = null;
  const start = now();
  const paced = await pace(request.rate, request.warmupMs + request.durationMs, (seq) => {
    if (inflight.size >= MAX_IN_FLIGHT) {
      skipped += 1;
      return;
    }
    const device = request.devices[seq % request.devices.length]!;
    const body = JSON.stringify({ sensor_readings: [{ sensor_type: 'temperature', value: Math.round((21 + Math.sin(seq / 200)) * 100) / 100, unit: 'C' }] });
    sendAt[seq] = now();
    const done: Promise<void> = postJson(agent, base, `/api/devices/${device.id}/data`, device.token, body)
      .then(({ status, text }) => {
        answeredAt[seq] = now();
        if (status === 201) positions[seq] = (JSON.parse(text) as { data: { position: number } }).data.position;
        else {
          errors += 1;
          errorSample ??= `${status} ${text.slice(0, 200)}`;
        }
      })
      .catch((error: unknown) => {
        errors += 1;
        errorSample ??= String(error);
      })
      .finally(() => inflight.delete(done));
    inflight.add(done);
  });
  await Promise.all([...inflight]);
  agent.destroy();
  await waitFor(() => positions.every((position) => position === undefined || arrivals.has(position)), 5_000);
  ws.close(1000);

  const { latencies, missing } = latencyFigures(sendAt, (seq) => (positions[seq] === undefined ? null : arrivals.get(positions[seq]!)), request.warmupMs, start);
  const answers = sendAt
    .map((sent, seq) => (sent - start >= request.warmupMs && answeredAt[seq] !== undefined ? answeredAt[seq]! - sent : NaN))
    .filter((value) => !Number.isNaN(value))
    .sort((a, b) => a - b);
  return {
    sent: paced.sent - skipped,
    skipped,
    measured: latencies.length,
    missing,
    errors,
    errorSample,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    max: latencies[latencies.length - 1] ?? NaN,
    answerP99: quantile(answers, 0.99),
    achievedRate: ((paced.sent - skipped) / paced.ms) * 1000,
  };
}

/** A device socket sends {seq}; the bare server broadcasts a live-sized message to the subscriber socket. */
async function latencyBare(request: Extract<Request, { op: 'latency-bare' }>): Promise<LatencyStats> {
  const arrivals: number[] = [];
  const sub = await openSocket(request.subUrl, (data) => {
    const position = positionOf(data);
    if (position >= 0) arrivals[position] = now();
  });
  const dev = await openSocket(request.devUrl, () => undefined);
  const sendAt: number[] = [];
  const start = now();
  const paced = await pace(request.rate, request.warmupMs + request.durationMs, (seq) => {
    sendAt[seq] = now();
    dev.send(JSON.stringify({ seq, sensor_readings: [{ sensor_type: 'temperature', value: 21, unit: 'C' }] }));
  });
  await waitFor(() => arrivals.length >= paced.sent && !arrivals.includes(undefined as unknown as number), 5_000);
  sub.close(1000);
  dev.close(1000);
  const { latencies, missing } = latencyFigures(sendAt, (seq) => arrivals[seq], request.warmupMs, start);
  return {
    sent: paced.sent,
    skipped: 0,
    measured: latencies.length,
    missing,
    errors: 0,
    errorSample: null,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    max: latencies[latencies.length - 1] ?? NaN,
    answerP99: null,
    achievedRate: (paced.sent / paced.ms) * 1000,
  };
}

if (!isMainThread && (workerData as { role?: string } | null)?.role === WORKER_ROLE) clientMain();

// =============================================================================================
// Main side.

/** The worker with its clients, spoken to by request/answer; progress of rounds arrives as it happens. */
class Clients {
  private nextId = 0;
  private readonly calls = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  private readonly acked = new Map<string, number>();
  private readonly wakers = new Set<() => void>();

  private constructor(private readonly worker: Worker) {
    worker.on('message', (message: { id?: number; ok?: boolean; result?: unknown; error?: string; progress?: string; upTo?: number }) => {
      if (message.progress !== undefined) {
        this.acked.set(message.progress, Math.max(this.acked.get(message.progress) ?? 0, message.upTo!));
        for (const wake of [...this.wakers]) wake();
        return;
      }
      const call = this.calls.get(message.id!);
      this.calls.delete(message.id!);
      if (message.ok) call?.resolve(message.result);
      else call?.reject(new Error(`client worker: ${message.error}`));
    });
    worker.on('error', (error) => {
      for (const call of this.calls.values()) call.reject(error);
      this.calls.clear();
    });
  }

  static start(): Clients {
    return new Clients(new Worker(new URL(import.meta.url), { workerData: { role: WORKER_ROLE } }));
  }

  call<T>(request: Request): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.calls.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.worker.postMessage({ id, request });
    });
  }

  ackedUpTo(group: string): number {
    return this.acked.get(group) ?? 0;
  }

  /** Resolves once every client of the group has received up to `position`; false after STALL_MS without. */
  waitAcked(group: string, position: number): Promise<boolean> {
    if (this.ackedUpTo(group) >= position) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wakers.delete(wake);
        resolve(false);
      }, STALL_MS);
      const wake = () => {
        if (this.ackedUpTo(group) < position) return;
        clearTimeout(timer);
        this.wakers.delete(wake);
        resolve(true);
      };
      this.wakers.add(wake);
    });
  }

  async stop(): Promise<void> {
    await this.worker.terminate();
  }
}

interface Registered {
  server: RunningServer;
  remove: () => void;
  userToken: string;
  devices: Array<{ id: string; token: string }>;
}

async function post<T>(url: string, body: unknown, token?: string): Promise<T> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (response.status !== 201) throw new Error(`POST ${url} answered ${response.status}: ${text.slice(0, 300)}`);
  return (JSON.parse(text) as { data: T }).data;
}

/** The real server, an admin registered first (unused), then a plain user owning `devices` devices, all over HTTP. */
async function startRegistered(deviceCount: number): Promise<Registered> {
  const { dir, remove } = tempDir('bench-realtime');
  const config = loadConfig({ PORT: '0', MQTT_PORT: '0', HOST: '127.0.0.1', DATA_DIR: dir, BCRYPT_ROUNDS: '4', LOG_LEVEL: 'silent' });
  const server = await startServer(config, { logger: pino({ level: 'silent' }) });
  try {
    const password = 'bench-password-1';
    await post(`${server.url}/api/auth/register`, { username: 'bench_admin', email: 'admin@bench.example', password });
    const user = await post<{ token: string }>(`${server.url}/api/auth/register`, { username: 'bench_watcher', email: 'watcher@bench.example', password });
    const devices: Registered['devices'] = [];
    for (let d = 0; d < deviceCount; d++) {
      const device = await post<{ id: string; credentials: { auth_token: string } }>(`${server.url}/api/devices`, { name: `bench-device-${d}`, device_type: 'sensor' }, user.token);
      devices.push({ id: device.id, token: device.credentials.auth_token });
    }
    return { server, remove, userToken: user.token, devices };
  } catch (error) {
    await server.close();
    remove();
    throw error;
  }
}

async function stopRegistered(registered: Registered | undefined): Promise<void> {
  if (!registered) return;
  await registered.server.close();
  registered.remove();
}

/** A bare ws server on an ephemeral port; `onMessage` sees what clients send. */
async function startBare(onConnection?: (ws: WebSocket, path: string) => void): Promise<{ wss: WebSocketServer; url: string; close: () => Promise<void> }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  if (onConnection) wss.on('connection', (ws, req) => onConnection(ws, req.url ?? '/'));
  const { port } = wss.address() as AddressInfo;
  return {
    wss,
    url: `ws://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const ws of wss.clients) ws.terminate();
        wss.close(() => resolve());
      }),
  };
}

/** A submission as the telemetry command stores it: three readings of one device. */
function readingsEvent(deviceId: string, n: number, at: string, sensors = 3): EventOfType<'readings.recorded'> {
  const reading = (sensor_type: string, unit: string, value: number) => ({ sensor_type, value, unit, timestamp: at, quality_score: 100, quality_reasons: [] as string[] });
  return {
    type: 'readings.recorded',
    data: {
      device_id: deviceId,
      readings: [reading('temperature', 'C', 21 + (n % 50) / 10), reading('humidity', '%', 40 + (n % 30)), reading('battery', 'V', 3.7 - (n % 10) / 100)].slice(0, sensors),
      device_status: null,
    },
  };
}

function batchesOf<T>(items: readonly T[], size: number): T[][] {
  const batches: T[][] = [];
  for (let i = 0; i < items.length; i += size) batches.push(items.slice(i, i + size));
  return batches;
}

const COLUMNS = [44, 30, 30, 6, 7, 5] as const;
const tableRow = (cells: readonly string[]) => cells.map((cell, index) => cell.padEnd(COLUMNS[index] ?? 0)).join(' | ').trimEnd();
const ms = (value: number) => (Number.isFinite(value) ? `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ms` : 'n/a');

// ---------------------------------------------------------------------------------------------
// Fan-out

interface FanoutRound {
  from: number;
  to: number;
  batches: Array<EventOfType<'readings.recorded'>[]> | string[][];
}

async function fanout(reporter: Reporter): Promise<void> {
  const clients = Clients.start();
  let registered: Registered | undefined;
  let bare: Awaited<ReturnType<typeof startBare>> | undefined;
  try {
    registered = await startRegistered(1);
    const { server } = registered;
    const device = registered.devices[0]!;
    bare = await startBare();
    const wsUrl = `${server.url.replace(/^http/, 'ws')}/ws?token=${encodeURIComponent(registered.userToken)}`;
    await clients.call({ op: 'connect', group: 'ours', url: wsUrl, count: SUBSCRIBERS, subscribe: true });
    await clients.call({ op: 'connect', group: 'bare', url: bare.url, count: SUBSCRIBERS, subscribe: false });
    const bareSockets = [...bare.wss.clients];
    if (bareSockets.length !== SUBSCRIBERS) throw new Error(`bare server has ${bareSockets.length} clients`);

    let sample = '';
    const stalls: string[] = [];
    let barePosition = 0;
    const streamId = streams.telemetry(device.id);

    /** Appends (or broadcasts) batch after batch, never more than the window ahead of the slowest client. */
    const drive = async (group: string, round: FanoutRound, emit: (batch: number) => Promise<void>) => {
      for (let b = 0; b < round.batches.length; b++) {
        const appendedUpTo = round.from + b * FANOUT_BATCH - 1;
        if (!(await clients.waitAcked(group, appendedUpTo - FANOUT_WINDOW))) {
          stalls.push(`${group}: stalled at ${clients.ackedUpTo(group)} of ${round.from}..${round.to}`);
          return;
        }
        await emit(b);
      }
      if (!(await clients.waitAcked(group, round.to))) stalls.push(`${group}: stalled at ${clients.ackedUpTo(group)} of ${round.from}..${round.to}`);
    };

    const ours: Side<FanoutRound & { batches: Array<EventOfType<'readings.recorded'>[]> }> = {
      setup: async (roundNo) => {
        const from = server.services.log.headPosition() + 1;
        const to = from + FANOUT_EVENTS - 1;
        await clients.call({ op: 'expect', group: 'ours', from, to });
        const at = new Date().toISOString();
        const events = Array.from({ length: FANOUT_EVENTS }, (_, i) => readingsEvent(device.id, roundNo * FANOUT_EVENTS + i, at));
        return { from, to, batches: batchesOf(events, FANOUT_BATCH) };
      },
      run: (round) =>
        drive('ours', round, async (b) => {
          const result = await server.services.log.append([
            { streamId, expectedVersion: 'any', events: round.batches[b]!, metadata: { actor_type: 'device', actor_id: device.id, request_id: randomUUID() } },
          ]);
          const expected = round.from + b * FANOUT_BATCH;
          if (result.firstPosition !== expected) throw new Error(`append landed at ${result.firstPosition}, expected ${expected}: another writer?`);
        }),
    };

    const baseline: Side<FanoutRound & { batches: string[][] }> = {
      setup: async () => {
        const from = barePosition + 1;
        const to = from + FANOUT_EVENTS - 1;
        barePosition = to;
        await clients.call({ op: 'expect', group: 'bare', from, to });
        const at = new Date().toISOString();
        const messages = Array.from({ length: FANOUT_EVENTS }, (_, i) => {
          const event = readingsEvent(device.id, i, at);
          return liveMessage({ ...event, position: from + i, stream_id: streamId, version: from + i, metadata: {}, recorded_at: at, hash: '' } as RecordedEvent);
        });
        sample ||= messages[0]!;
        return { from, to, batches: batchesOf(messages, FANOUT_BATCH) };
      },
      run: (round) =>
        drive('bare', round, async (b) => {
          for (const message of round.batches[b]!) for (const ws of bareSockets) ws.send(message);
          await new Promise((resolve) => setImmediate(resolve));
        }),
    };

    const samples = await timeInterleaved(ours, baseline);
    const work = FANOUT_EVENTS * SUBSCRIBERS;
    reporter.throughput(
      `${SUBSCRIBERS} subscribers, ${FANOUT_EVENTS.toLocaleString('en-US')} events/round`,
      work,
      'events/s',
      samples,
      FANOUT_TARGET,
      `delivered = events x subscribers; ours appends readings.recorded (3 readings) via log.append in batches of ${FANOUT_BATCH}, at most ${FANOUT_WINDOW} events ahead of the slowest client; bare broadcasts the same ${Buffer.byteLength(sample)}-byte messages`,
    );

    const oursReport = await clients.call<GroupReport>({ op: 'report', group: 'ours' });
    const bareReport = await clients.call<GroupReport>({ op: 'report', group: 'bare' });
    const ratio = oursReport.expected === 0 ? 0 : oursReport.delivered / oursReport.expected;
    const complete = oursReport.problems.length === 0 && stalls.length === 0 && oursReport.delivered === oursReport.expected;
    const result: Result = {
      benchmark: 'realtime-fanout',
      name: 'no subscriber misses an event',
      unit: 'deliveries',
      ours: oursReport.delivered,
      baseline: oursReport.expected,
      ratio,
      target: { minRatio: 1 },
      verdict: complete ? 'PASS' : 'FAIL',
    };
    reporter.results.push(result);
    const count = (report: GroupReport) => `${report.delivered.toLocaleString('en-US')}/${report.expected.toLocaleString('en-US')} in order`;
    console.log(tableRow([result.name, count(oursReport), `${count(bareReport)} (bare)`, percent(ratio), '=100%', result.verdict]));
    console.log(`    every subscriber checked for every position of every round (warm-up included), strictly increasing; ${oursReport.open}/${SUBSCRIBERS} still open`);
    for (const text of [...stalls, ...oursReport.problems.map((p) => `ours: ${p}`), ...bareReport.problems.map((p) => `bare: ${p}`)]) console.log(`    !! ${text}`);
  } finally {
    await clients.call({ op: 'close', group: 'ours' }).catch(() => undefined);
    await clients.call({ op: 'close', group: 'bare' }).catch(() => undefined);
    await clients.stop();
    await bare?.close();
    await stopRegistered(registered);
  }
}

// ---------------------------------------------------------------------------------------------
// Latency

/** The worker's clock minus ours (one clock in principle; measured anyway), from the quickest of 30 ping-pongs. */
async function clockOffset(clients: Clients): Promise<{ offset: number; uncertainty: number }> {
  let best = { offset: 0, uncertainty: Infinity };
  for (let i = 0; i < 30; i++) {
    const t0 = now();
    const worker = await clients.call<number>({ op: 'clock' });
    const t1 = now();
    if ((t1 - t0) / 2 < best.uncertainty) best = { offset: worker - (t0 + t1) / 2, uncertainty: (t1 - t0) / 2 };
  }
  return best;
}

interface LatencySettings {
  rate: number;
  warmupMs: number;
  durationMs: number;
}

/** Readings appended one per call through services.log.append, paced by a timer on the server's own thread; append call to arrival. */
async function latencyAppend(registered: Registered, clients: Clients, wsUrl: string, settings: LatencySettings): Promise<LatencyStats & { clock: { offset: number; uncertainty: number } }> {
  const { log, runner } = registered.server.services;
  await clients.call({ op: 'record', name: 'append', wsUrl });
  const clock = await clockOffset(clients);
  const appendedAt = new Map<number, number>();
  const pending = new Set<Promise<void>>();
  let errors = 0;
  let errorSample: string | null = null;
  const start = now();
  const paced = await pace(settings.rate, settings.warmupMs + settings.durationMs, (seq) => {
    const device = registered.devices[seq % registered.devices.length]!;
    const at = now();
    const event = readingsEvent(device.id, seq, new Date().toISOString(), 1);
    const done: Promise<void> = log
      .append([{ streamId: streams.telemetry(device.id), expectedVersion: 'any', events: [event], metadata: { actor_type: 'device', actor_id: device.id, request_id: randomUUID() } }])
      .then((result) => {
        if (at - start >= settings.warmupMs) appendedAt.set(result.firstPosition, at);
      })
      .catch((error: unknown) => {
        errors += 1;
        errorSample ??= String(error);
      })
      .finally(() => pending.delete(done));
    pending.add(done);
  });
  await Promise.all([...pending]);
  const head = log.headPosition();
  await runner.waitFor(head);
  const arrivals = new Map(await clients.call<Array<[number, number]>>({ op: 'arrivals', name: 'append', upTo: head }));
  const latencies: number[] = [];
  let missing = 0;
  for (const [position, at] of appendedAt) {
    const arrived = arrivals.get(position);
    if (arrived === undefined) missing += 1;
    else latencies.push(arrived - clock.offset - at);
  }
  latencies.sort((a, b) => a - b);
  return {
    sent: paced.sent,
    skipped: 0,
    measured: latencies.length,
    missing,
    errors,
    errorSample,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    max: latencies[latencies.length - 1] ?? NaN,
    answerP99: null,
    achievedRate: (paced.sent / paced.ms) * 1000,
    clock,
  };
}

async function latency(reporter: Reporter): Promise<void> {
  const clients = Clients.start();
  let registered: Registered | undefined;
  let bare: Awaited<ReturnType<typeof startBare>> | undefined;
  try {
    registered = await startRegistered(LATENCY_DEVICES);
    const { server } = registered;
    const wsUrl = `${server.url.replace(/^http/, 'ws')}/ws?token=${encodeURIComponent(registered.userToken)}`;
    const at = new Date().toISOString();
    const deviceId = registered.devices[0]!.id;
    const streamId = streams.telemetry(deviceId);
    const subscribers = new Set<WebSocket>();
    bare = await startBare((ws, path) => {
      if (path === '/sub') {
        subscribers.add(ws);
        ws.on('close', () => subscribers.delete(ws));
        return;
      }
      ws.on('message', (raw) => {
        const { seq, sensor_readings } = JSON.parse((raw as Buffer).toString('utf8')) as { seq: number; sensor_readings: Array<{ sensor_type: string; value: number; unit: string }> };
        const readings = sensor_readings.map((r) => ({ ...r, timestamp: at, quality_score: 100, quality_reasons: [] }));
        const message = liveMessage({ type: 'readings.recorded', data: { device_id: deviceId, readings, device_status: null }, position: seq, stream_id: streamId, version: seq, metadata: {}, recorded_at: at, hash: '' } as RecordedEvent);
        for (const sub of subscribers) sub.send(message);
      });
    });

    const settings: LatencySettings = { rate: LATENCY_RATE, warmupMs: LATENCY_WARMUP_MS, durationMs: LATENCY_MS };
    const bareStats = await clients.call<LatencyStats>({ op: 'latency-bare', devUrl: `${bare.url}/dev`, subUrl: `${bare.url}/sub`, ...settings });
    const appended = await latencyAppend(registered, clients, wsUrl, settings);
    const posted = await clients.call<LatencyStats>({ op: 'latency-http', baseUrl: server.url, wsUrl, devices: registered.devices, ...settings });

    const judge = (name: string, stats: LatencyStats) => {
      const complete = stats.errors === 0 && stats.missing === 0 && stats.skipped === 0 && stats.measured > 0 && stats.achievedRate >= settings.rate * 0.95;
      const ratio = LATENCY_LIMIT_MS / stats.p99;
      const result: Result = {
        benchmark: 'realtime-latency',
        name,
        unit: 'ms',
        ours: stats.p99,
        baseline: LATENCY_LIMIT_MS,
        ratio,
        target: { minRatio: 1 },
        verdict: complete && stats.p99 < LATENCY_LIMIT_MS ? 'PASS' : 'FAIL',
      };
      reporter.results.push(result);
      console.log(tableRow([name, spreadOf(stats), `limit ${LATENCY_LIMIT_MS} ms (p99)`, percent(ratio), '>=100%', result.verdict]));
      const problems = [
        stats.achievedRate < settings.rate * 0.95 ? `sent only ${Math.round(stats.achievedRate).toLocaleString('en-US')}/s` : '',
        stats.skipped > 0 ? `${stats.skipped.toLocaleString('en-US')} not sent (already ${MAX_IN_FLIGHT} waiting for an answer: saturated)` : '',
        stats.errors > 0 ? `${stats.errors.toLocaleString('en-US')} errors (${stats.errorSample})` : '',
        stats.missing > 0 ? `${stats.missing.toLocaleString('en-US')} never arrived` : '',
      ].filter(Boolean);
      const answer = stats.answerP99 === null ? '' : `, HTTP answer p99 ${ms(stats.answerP99)}`;
      console.log(`    ${stats.measured.toLocaleString('en-US')} measured after the warm-up, ${stats.sent.toLocaleString('en-US')} sent in all at ${Math.round(stats.achievedRate).toLocaleString('en-US')}/s${answer}${problems.length ? `; ${problems.join('; ')}` : ''}`);
    };
    judge(`log.append -> subscriber @${LATENCY_RATE.toLocaleString('en-US')}/s`, appended);
    console.log(`    one reading per append call, ${LATENCY_DEVICES} devices, timer on the server's thread; worker clock offset ${appended.clock.offset.toFixed(3)} ms ±${appended.clock.uncertainty.toFixed(3)} (corrected)`);
    judge(`HTTP POST -> subscriber @${LATENCY_RATE.toLocaleString('en-US')}/s`, posted);
    console.log(`    POST /api/devices/:id/data with the device token, one reading each, ${LATENCY_DEVICES} devices round-robin, keep-alive, at most ${MAX_IN_FLIGHT} in flight`);
    console.log(tableRow([`bare ws round-trip @${LATENCY_RATE.toLocaleString('en-US')}/s (comparison)`, spreadOf(bareStats), '-', '', '', 'info']));
    console.log(
      `    device socket -> bare server -> subscriber socket, the same message size; ${bareStats.measured.toLocaleString('en-US')} measured, ${bareStats.missing} never arrived; ` +
        `p99: append path ${(appended.p99 / bareStats.p99).toFixed(1)}x, HTTP path ${(posted.p99 / bareStats.p99).toFixed(1)}x the bare p99`,
    );
    console.log(`    (${(settings.durationMs / 1000).toFixed(0)} s measured after ${settings.warmupMs / 1000} s warm-up each; subscribers, HTTP and bare clients in a worker thread)`);
  } finally {
    await clients.stop();
    await bare?.close();
    await stopRegistered(registered);
  }
}

const spreadOf = (stats: LatencyStats) => `p50 ${ms(stats.p50)} p99 ${ms(stats.p99)} max ${ms(stats.max)}`;

export const realtimeBenchmarks: readonly Benchmark[] = [
  {
    name: 'realtime-fanout',
    description: `${SUBSCRIBERS} /ws subscribers on the real server while readings are appended, vs a bare ws server broadcasting the same messages to ${SUBSCRIBERS} clients`,
    run: fanout,
  },
  {
    name: 'realtime-latency',
    description: `a reading appended (log.append; HTTP POST) -> its event at a subscriber, ${LATENCY_RATE.toLocaleString('en-US')} readings/s for ${LATENCY_MS / 1000} s; p99 under ${LATENCY_LIMIT_MS} ms (bare ws round-trip beside it)`,
    run: latency,
  },
];
