import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import type { Data, List, RegisteredDevice } from '../helpers/fixtures.js';
import type { Accepted, BucketRow } from '../helpers/telemetry-fixtures.js';
import { storedRecordings } from '../helpers/stored-readings.js';

/**
 * kill -9 while a load generator submits readings, restart on the same DATA_DIR: every
 * submission answered 201 is in the log and in the read models exactly once, and nothing
 * is there twice.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MAIN = join(ROOT, 'dist', 'src', 'main.js');
const READINGS_PER_SUBMISSION = 40;
const DEVICES = 4;
const WORKERS = 24;
/** Kill once this many submissions were acknowledged (or after KILL_AFTER_MS, whichever first). */
const KILL_AFTER_ACKS = 150;
const KILL_AFTER_MS = 4_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function newestSourceMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSourceMtime(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/** Builds dist/ when it is missing or older than the sources (tsc emits even over type errors elsewhere). */
function ensureBuilt(): void {
  if (existsSync(MAIN) && statSync(MAIN).mtimeMs >= newestSourceMtime(join(ROOT, 'src'))) return;
  const result = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, encoding: 'utf8' });
  if (!existsSync(MAIN)) throw new Error(`build failed (${result.status}): ${result.stdout}${result.stderr}`);
  if (result.status !== 0) console.warn(`tsc reported errors, running the emitted build anyway:\n${result.stdout.slice(0, 2000)}`);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

interface Child {
  process: ChildProcess;
  url: string;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function startChild(dataDir: string): Promise<Child> {
  const port = await freePort();
  const child = spawn(process.execPath, [MAIN], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', DATA_DIR: dataDir, PORT: String(port), MQTT_PORT: '0', HOST: '127.0.0.1', BCRYPT_ROUNDS: '4', LOG_LEVEL: 'silent' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let gone = false;
  void exited.then(() => (gone = true));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (gone) throw new Error(`server exited while starting: ${output}`);
    try {
      const answer = await fetch(`${url}/api/health`);
      if (answer.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server did not answer /api/health within 30 s: ${output}`);
    }
    await sleep(50);
  }
  return { process: child, url, output: () => output, exited };
}

/** Every value of every readings.recorded event of the devices, read straight from the log. */
function valuesInLog(dataDir: string): { values: number[]; byDevice: Map<string, number[]>; byPosition: Map<number, { device_id: string; values: number[] }>; head: number } {
  const db = new Database(join(dataDir, 'iot.db'), { readonly: true, fileMustExist: true });
  try {
    const byPosition = new Map<number, { device_id: string; values: number[] }>();
    const byDevice = new Map<string, number[]>();
    for (const { position, device_id, values } of storedRecordings(dataDir)) {
      byPosition.set(position, { device_id, values });
      byDevice.set(device_id, [...(byDevice.get(device_id) ?? []), ...values]);
    }
    const head = db.prepare<[], { p: number | null }>(`SELECT max(position) AS p FROM events`).get()?.p ?? 0;
    return { values: [...byDevice.values()].flat(), byDevice, byPosition, head };
  } finally {
    db.close();
  }
}

const tally = (values: readonly number[]): Map<number, number> => {
  const counts = new Map<number, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return counts;
};

const valuesOf = (n: number): number[] => Array.from({ length: READINGS_PER_SUBMISSION }, (_, i) => n * 100 + i);
const submissionOf = (value: number): number => Math.floor(value / 100);
const bodyOf = (n: number) => ({ sensor_readings: valuesOf(n).map((value, i) => ({ sensor_type: `s${i % 3}`, value })) });

describe('crash: kill -9 under load, then restart', () => {
  let dataDir: string;
  let child: Child | undefined;
  const api = client(() => child!.url);
  let ownerToken: string;
  const devices: RegisteredDevice[] = [];
  const deviceOfSubmission = (n: number): RegisteredDevice => devices[n % DEVICES]!;
  /** Submission number → the 201 answer. */
  const acked = new Map<number, Accepted>();
  let attempted = 0;
  let failedAfterKill = 0;
  let inFlightAtKill = 0;
  const otherStatuses: number[] = [];

  beforeAll(async () => {
    ensureBuilt();
    dataDir = mkdtempSync(join(tmpdir(), 'iot-crash-'));
    child = await startChild(dataDir);
    const owner = await registerUser(api, 'crash_owner');
    ownerToken = owner.token;
    for (let i = 0; i < DEVICES; i++) {
      const created = await api.post<Data<RegisteredDevice>>('/api/devices', { name: `load target ${i}`, device_type: 'sensor' }, { token: ownerToken });
      expect(created.status).toBe(201);
      devices.push(created.body.data);
    }

    // The load: WORKERS concurrent loops, each submission with a unique Idempotency-Key and unique values.
    const target = child;
    let killed = false;
    let inFlight = 0;
    let next = 0;
    // Each loop submits until the server is gone: an answer already on its way at the kill still
    // arrives, so a loop stops only when a request of its own failed against the dead server.
    const worker = async () => {
      for (;;) {
        const n = next++;
        attempted++;
        inFlight++;
        const device = deviceOfSubmission(n);
        try {
          const response = await fetch(`${target.url}/api/devices/${device.id}/data`, {
            method: 'POST',
            headers: { authorization: `Bearer ${device.credentials.auth_token}`, 'content-type': 'application/json', 'idempotency-key': `load-${n}` },
            body: JSON.stringify(bodyOf(n)),
          });
          const text = await response.text();
          if (response.status === 201) acked.set(n, (JSON.parse(text) as Data<Accepted>).data);
          else if (response.status === 503) await sleep(Number(response.headers.get('retry-after') ?? 1) * 100);
          else otherStatuses.push(response.status);
        } catch {
          if (!killed) throw new Error('a request failed before the kill');
          failedAfterKill++;
          return;
        } finally {
          inFlight--;
        }
      }
    };
    const workers = Array.from({ length: WORKERS }, () => worker());
    const started = Date.now();
    while (acked.size < KILL_AFTER_ACKS && Date.now() - started < KILL_AFTER_MS) await sleep(5);
    inFlightAtKill = inFlight;
    killed = true;
    target.process.kill('SIGKILL');
    const exit = await target.exited;
    expect(exit.signal).toBe('SIGKILL');
    await Promise.all(workers);

    child = await startChild(dataDir);
  }, 240_000);

  afterAll(async () => {
    if (child && child.process.exitCode === null && child.process.signalCode === null) {
      child.process.kill('SIGKILL');
      await child.exited;
    }
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('was killed mid-load', () => {
    expect(acked.size).toBeGreaterThan(0);
    expect(inFlightAtKill).toBeGreaterThan(0);
    expect(failedAfterKill).toBe(WORKERS); // every loop ran into the dead server
    expect(otherStatuses).toEqual([]);
    expect(attempted).toBeGreaterThan(acked.size);
  });

  it('has every acknowledged submission in the log exactly once, whole, at the position answered', () => {
    const { values, byPosition } = valuesInLog(dataDir);
    const counts = tally(values);
    const missing: number[] = [];
    const misplaced: number[] = [];
    for (const [n, answer] of acked) {
      for (const value of valuesOf(n)) if (counts.get(value) !== 1) missing.push(value);
      expect(answer.accepted).toBe(READINGS_PER_SUBMISSION);
      const event = byPosition.get(answer.position);
      if (event?.device_id !== deviceOfSubmission(n).id || JSON.stringify(event.values) !== JSON.stringify(valuesOf(n))) misplaced.push(n);
    }
    expect(missing).toEqual([]);
    expect(misplaced).toEqual([]);
    // Nothing at all twice, acknowledged or not; never half a submission; never on the wrong device.
    expect([...counts].filter(([, c]) => c > 1)).toEqual([]);
    const broken = [...new Set(values.map(submissionOf))].filter((n) => valuesOf(n).some((value) => counts.get(value) !== 1));
    expect(broken).toEqual([]);
    for (const event of byPosition.values()) {
      const n = submissionOf(event.values[0]!);
      expect(event.device_id).toBe(deviceOfSubmission(n).id);
    }
  });

  it('rebuilt read models that agree with the log: raw readings, export, rollups, health position', async () => {
    const { byDevice, head } = valuesInLog(dataDir);
    expect((await api.get<Data<{ position: number }>>('/api/health')).body.data.position).toBe(head);

    for (const device of devices) {
      const values = byDevice.get(device.id) ?? [];
      const exported = await api.get<string>(`/api/devices/${device.id}/data/export?format=ndjson`, { token: ownerToken });
      expect(exported.status).toBe(200);
      const exportedValues = String(exported.body ?? '')
        .split('\n')
        .filter((line) => line.length > 0)
        .map((line) => (JSON.parse(line) as { value: number }).value);
      expect([...exportedValues].sort((a, b) => a - b)).toEqual([...values].sort((a, b) => a - b));

      const raw = await api.get<List<unknown>>(`/api/devices/${device.id}/data?limit=1`, { token: ownerToken });
      expect(raw.body.meta.total).toBe(values.length);

      const days = await api.get<List<BucketRow>>(`/api/devices/${device.id}/data?interval=day&limit=500`, { token: ownerToken });
      expect(days.status).toBe(200);
      const perSensor = new Map<string, { count: number; sum: number }>();
      for (const row of days.body.data) {
        const s = perSensor.get(row.sensor_type) ?? { count: 0, sum: 0 };
        perSensor.set(row.sensor_type, { count: s.count + row.count, sum: s.sum + row.sum });
      }
      for (let i = 0; i < 3; i++) {
        const mine = values.filter((v) => (v % 100) % 3 === i);
        expect(perSensor.get(`s${i}`) ?? { count: 0, sum: 0 }, `rollups of s${i}`).toEqual({ count: mine.length, sum: mine.reduce((a, b) => a + b, 0) });
      }
    }
  });

  it('still honours the Idempotency-Keys answered before the crash: same answer, nothing stored twice', async () => {
    const before = valuesInLog(dataDir).values.length;
    const sample = [...acked].slice(-20);
    for (const [n, answer] of sample) {
      const device = deviceOfSubmission(n);
      const again = await api.post<Data<Accepted>>(`/api/devices/${device.id}/data`, bodyOf(n), {
        token: device.credentials.auth_token,
        headers: { 'idempotency-key': `load-${n}` },
      });
      expect(again.status).toBe(201);
      expect(again.body.data).toEqual(answer);
    }
    expect(valuesInLog(dataDir).values.length).toBe(before);
  });

  it('stops cleanly on SIGTERM after the restart', async () => {
    const running = child!;
    running.process.kill('SIGTERM');
    const exit = await running.exited;
    expect(exit.code, running.output()).toBe(0);
  });
});
