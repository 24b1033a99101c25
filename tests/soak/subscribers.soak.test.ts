/**
 * Soak (slow tier, `npm run test:soak`): the server as `npm start` runs it, alone in its
 * process so its memory is its own, under sustained ingestion with three /ws subscribers to
 * readings.recorded: one that keeps up, one that stalls (never reads while the load lasts) and
 * one that reads at 256 KB/s and resumes from its last position each time it is closed.
 * Resident memory stays under RSS_LIMIT_MB, and each subscriber, once the load stops and it
 * resumes, has received every event, in order, with no gap and no duplicate.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';

const SOAK_SECONDS = Number(process.env.SOAK_SECONDS ?? 30);
/** The bound this test holds the server to, for this load on a 2-core machine. */
const RSS_LIMIT_MB = 600;
const LOADERS = 8;
const DEVICES = 32;
const READINGS_PER_BATCH = 200;
const SLOW_BYTES_PER_SECOND = 256 * 1024;
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The node process of `npm start`: npm's one child, the start script's shell exec'ed into node. */
async function nodeUnder(npmPid: number): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const children = readFileSync(`/proc/${npmPid}/task/${npmPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    const node = children.find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('main.js'));
    if (node !== undefined) return node;
    await sleep(50);
  }
  throw new Error('npm start did not start node');
}

function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(line?.split(/\s+/)[1] ?? 0) / 1024;
}

async function call<T>(url: string, path: string, body?: unknown, token?: string): Promise<T> {
  const response = await fetch(`${url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token ? { authorization: `Bearer ${token}` } : {}) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const parsed = (await response.json()) as T;
  if (!response.ok) throw new Error(`${path} answered ${response.status}: ${JSON.stringify(parsed).slice(0, 300)}`);
  return parsed;
}

type Pace = 'fast' | 'stalled' | 'slow';

/**
 * A subscriber that keeps only the positions it receives, reconnecting from the last one each
 * time it is closed, at the pace asked for until `finish()` lets it read at full speed.
 */
class Subscriber {
  readonly positions: number[] = [];
  readonly closeCodes: number[] = [];
  private ws: WebSocket | undefined;
  private finishing = false;
  private windowStart = Date.now();
  private windowBytes = 0;

  constructor(
    private readonly url: string,
    private readonly token: string,
    private readonly from: number,
    private readonly pace: Pace,
  ) {}

  start(): void {
    const ws = new WebSocket(`${this.url.replace(/^http/, 'ws')}/ws?token=${encodeURIComponent(this.token)}`);
    this.ws = ws;
    ws.on('message', (raw: Buffer) => this.onMessage(ws, raw));
    ws.on('close', (code) => {
      this.closeCodes.push(code);
      if (this.ws === ws) setTimeout(() => this.start(), this.pace === 'stalled' && !this.finishing ? 1_000 : 50);
    });
    ws.on('error', () => undefined);
  }

  private onMessage(ws: WebSocket, raw: Buffer): void {
    const message = JSON.parse(raw.toString('utf8')) as { type: string; position?: number };
    if (message.type === 'welcome') {
      ws.send(JSON.stringify({ type: 'subscribe', event_types: ['readings.recorded'], from_position: this.positions.at(-1) ?? this.from }));
      if (this.pace === 'stalled' && !this.finishing) ws.pause();
      return;
    }
    if (message.type === 'event') this.positions.push(message.position!);
    if (this.pace === 'slow' && !this.finishing) this.throttle(ws, raw.length);
  }

  /** Reads at SLOW_BYTES_PER_SECOND: pauses the socket for the rest of each 100 ms window once its share is read. */
  private throttle(ws: WebSocket, bytes: number): void {
    const now = Date.now();
    if (now - this.windowStart >= 100) {
      this.windowStart = now;
      this.windowBytes = 0;
    }
    this.windowBytes += bytes;
    if (this.windowBytes < SLOW_BYTES_PER_SECOND / 10) return;
    ws.pause();
    setTimeout(() => ws.resume(), 100 - (now - this.windowStart));
  }

  /** The load is over: read at full speed from now on, resuming if closed. */
  finish(): void {
    this.finishing = true;
    this.ws?.resume();
  }

  stop(): void {
    const ws = this.ws;
    this.ws = undefined;
    ws?.terminate();
  }
}

describe('soak: ingestion under load with a slow, a stalled and a resuming subscriber', () => {
  let child: ChildProcess;
  let serverPid: number;
  let url: string;
  let dataDir: string;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'iot-soak-'));
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    // As the README starts it (the build is done), with the runtime flags of the start script.
    child = spawn('npm', ['start', '--ignore-scripts'], {
      cwd: ROOT,
      detached: true,
      env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'silent', BCRYPT_ROUNDS: '4', MQTT_PORT: '0', DEFAULT_DEVICE_QUOTA: '1000' },
      stdio: 'ignore',
    });
    serverPid = await nodeUnder(child.pid!);
    for (let i = 0; i < 200; i++) {
      const healthy = await fetch(`${url}/api/health`).then((r) => r.ok, () => false);
      if (healthy) return;
      await sleep(50);
    }
    throw new Error('the server did not start');
  });

  afterAll(async () => {
    if (child?.pid) process.kill(-child.pid, 'SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it(`keeps RSS under ${RSS_LIMIT_MB} MB for ${SOAK_SECONDS} s and every subscriber's events complete, in order`, async () => {
    const { data: user } = await call<{ data: { token: string } }>(url, '/api/auth/register', { username: 'soak', email: 'soak@example.com', password: 'correct horse battery' });
    const devices: Array<{ id: string; token: string }> = [];
    for (let i = 0; i < DEVICES; i++) {
      const { data } = await call<{ data: { id: string; credentials: { auth_token: string } } }>(url, '/api/devices', { name: `soak-${i}`, device_type: 'sensor' }, user.token);
      devices.push({ id: data.id, token: data.credentials.auth_token });
    }
    const { data: health } = await call<{ data: { position: number } }>(url, '/api/health');
    const subscribers = (['fast', 'stalled', 'slow'] as const).map((pace) => new Subscriber(url, user.token, health.position, pace));
    for (const subscriber of subscribers) subscriber.start();

    let peakRss = rssMb(serverPid);
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssMb(serverPid))), 250);
    const until = Date.now() + SOAK_SECONDS * 1000;
    let stored = 0;
    const loader = async (index: number) => {
      for (let round = 0; Date.now() < until; round++) {
        const device = devices[(index + round * LOADERS) % DEVICES]!;
        const base = Date.now() - READINGS_PER_BATCH * 1000;
        const readings = Array.from({ length: READINGS_PER_BATCH }, (_, i) => ({ sensor_type: `s${i % 5}`, value: 20 + Math.sin(round + i), unit: 'C', timestamp: new Date(base + i * 1000).toISOString() }));
        const response = await fetch(`${url}/api/devices/${device.id}/data`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-device-token': device.token }, body: JSON.stringify({ sensor_readings: readings }) });
        await response.arrayBuffer();
        // Shedding under load (503) is allowed: the stream covers what was stored.
        if (response.status === 201) stored += READINGS_PER_BATCH;
        else if (response.status !== 503) throw new Error(`ingestion answered ${response.status}`);
      }
    };
    try {
      await Promise.all(Array.from({ length: LOADERS }, (_, i) => loader(i)));
      for (const subscriber of subscribers) subscriber.finish();

      // Small pages: a page of 500 batches of 200 readings is 20 MB of JSON, which would measure
      // this test's own reads rather than the subscribers.
      const expected: number[] = [];
      for (let after = health.position; ; ) {
        const page = await call<{ data: Array<{ position: number }>; meta: { next_position: number } }>(url, `/api/events?type=readings.recorded&after_position=${after}&limit=100`, undefined, user.token);
        expected.push(...page.data.map((e) => e.position));
        if (page.data.length < 100) break;
        after = page.meta.next_position;
      }
      const last = expected.at(-1)!;
      for (let waited = 0; subscribers.some((s) => s.positions.at(-1) !== last) && waited < 120_000; waited += 100) await sleep(100);
      peakRss = Math.max(peakRss, rssMb(serverPid));

      console.log(
        `soak: ${stored} readings stored in ${SOAK_SECONDS} s (${Math.round(stored / SOAK_SECONDS)}/s), ${expected.length} events; peak RSS ${peakRss.toFixed(0)} MB; ` +
          subscribers.map((s, i) => `${['fast', 'stalled', 'slow'][i]} closed ${JSON.stringify(s.closeCodes)}`).join(', '),
      );
      expect(stored).toBeGreaterThan(0);
      for (const subscriber of subscribers) expect(subscriber.positions).toEqual(expected);
      // The stalled one cannot have held the whole load: it was closed, and resumed.
      expect(subscribers[1]!.closeCodes.length).toBeGreaterThan(0);
      expect(peakRss).toBeLessThan(RSS_LIMIT_MB);
    } finally {
      clearInterval(sampler);
      for (const subscriber of subscribers) subscriber.stop();
    }
  }, (SOAK_SECONDS + 180) * 1000);
});
