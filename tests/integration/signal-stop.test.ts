import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, buildWhenStale } from '../helpers/built-server.js';
import { client, registerUser } from '../helpers/client.js';
import { createDevice } from '../helpers/fixtures.js';
import { keptAliveConnection, settle } from '../helpers/raw-http.js';
import { storedReadingValues } from '../helpers/stored-readings.js';
import { connect, wsUrl } from '../helpers/ws-client.js';

/** The server's own default: the stop must end within it. */
const GRACE_MS = 10_000;
const CLIENTS = 4;
/** Ways a connection closes on a request it refuses, or a refused new connection. */
const REFUSALS = ['ECONNRESET', 'ECONNREFUSED', 'EPIPE'];

interface Started {
  child: ChildProcess;
  port: number;
  /** Node's own process (npm's child, the start script's shell exec'ed into node). */
  nodePid: number;
  logs: Array<{ msg?: string }>;
  exited: Promise<{ code: number | null; at: number }>;
}

/**
 * `npm start` as the README runs it, as the leader of a process group of its own: npm, then the
 * shell of the start script, exec'ed into node. The build of `prestart` is done beforehand.
 */
async function npmStart(dataDir: string): Promise<Started> {
  const child = spawn('npm', ['start', '--ignore-scripts'], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, PORT: '0', MQTT_PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, BCRYPT_ROUNDS: '4', LOG_LEVEL: 'info' },
  });
  const logs: Array<{ msg?: string; port?: number; pid?: number }> = [];
  const exited = new Promise<{ code: number | null; at: number }>((resolve) => child.once('exit', (code) => resolve({ code, at: Date.now() })));
  const listening = await new Promise<{ port: number; pid: number }>((resolve, reject) => {
    let pending = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines.filter((l) => l.startsWith('{'))) {
        const entry = JSON.parse(line) as { msg?: string; port?: number; pid?: number };
        logs.push(entry);
        if (entry.msg === 'listening' && entry.port && entry.pid) resolve({ port: entry.port, pid: entry.pid });
      }
    });
    void exited.then(({ code }) => reject(new Error(`npm start exited (${code}) before listening`)));
  });
  return { child, port: listening.port, nodePid: listening.pid, logs, exited };
}

type Outcome = { value: number; answered: true; status: number; at: number } | { value: number; answered: false; code: string };

function submit(agent: Agent, port: number, deviceId: string, token: string, value: number): Promise<Outcome> {
  const body = JSON.stringify({ sensor_readings: [{ sensor_type: 'seq', value }] });
  return new Promise((resolve) => {
    const req = request(
      { agent, host: '127.0.0.1', port, method: 'POST', path: `/api/devices/${deviceId}/data`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } },
      (res) => {
        res.resume();
        res.once('end', () => resolve({ value, answered: true, status: res.statusCode ?? 0, at: Date.now() }));
      },
    );
    req.once('error', (error: NodeJS.ErrnoException) => resolve({ value, answered: false, code: error.code ?? error.message }));
    req.end(body);
  });
}

/** One device sending without pause on one kept-alive connection (reopened when closed) until a request is refused. */
async function ingest(port: number, deviceId: string, token: string, first: number): Promise<Outcome[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const outcomes: Outcome[] = [];
  for (let value = first; ; value++) {
    const outcome = await submit(agent, port, deviceId, token, value);
    outcomes.push(outcome);
    if (!outcome.answered) break;
  }
  agent.destroy();
  return outcomes;
}

describe('SIGTERM to the process group of npm start', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'iot-signal-'));
  let started: Started | undefined;
  beforeAll(buildWhenStale, 180_000);
  afterAll(() => {
    // Only when an assertion failed before the stop: the group this test started.
    if (started?.child.exitCode === null && started.child.signalCode === null && started.child.pid) process.kill(-started.child.pid, 'SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('stops once, within the grace, answering or cleanly refusing every request and storing each answered one once', { timeout: 30_000 }, async () => {
    started = await npmStart(dataDir);
    const { child, port, nodePid, logs, exited } = started;
    const base = `http://127.0.0.1:${port}`;
    const api = client(() => base);
    const user = await registerUser(api);
    const devices = await Promise.all(Array.from({ length: CLIENTS }, () => createDevice(api, user.token)));
    const deviceSocket = await connect(wsUrl(base, `/ws/device?token=${encodeURIComponent(devices[0]!.credentials.auth_token)}`));

    const clients = devices.map((device, index) => ingest(port, device.id, device.credentials.auth_token, (index + 1) * 1_000_000));
    // A request whose headers and part of its body are in when the signal comes.
    const partial = await keptAliveConnection(port);
    const partialBody = JSON.stringify({ sensor_readings: [{ sensor_type: 'seq', value: 7 }] });
    const target = devices[0]!;
    partial.write(
      `POST /api/devices/${target.id}/data HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${target.credentials.auth_token}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${partialBody.length}\r\n\r\n${partialBody.slice(0, 12)}`,
    );
    // Ingestion under way on every client, and the partial request read, before the signal.
    await settle(base);

    const signalledAt = Date.now();
    process.kill(-child.pid!, 'SIGTERM');
    // And Ctrl-C pressed on top, to node alone: it joins the stop under way.
    process.kill(nodePid, 'SIGINT');
    partial.write(partialBody.slice(12));
    const outcomes = (await Promise.all(clients)).flat();
    const partialAnswer = await partial.ended;
    const { code, at: exitedAt } = await exited;

    expect(code).toBe(0);
    expect(exitedAt - signalledAt).toBeLessThan(GRACE_MS);
    expect(logs.filter((entry) => entry.msg === 'shutting down')).toHaveLength(1);
    expect(logs.filter((entry) => entry.msg === 'already stopping').length).toBeGreaterThanOrEqual(1);
    expect(logs.some((entry) => entry.msg === 'stopped')).toBe(true);
    expect((await deviceSocket.waitForClose()).code).toBe(1001);

    expect(partialAnswer).toMatch(/^HTTP\/1\.1 201 /);
    expect(partialAnswer).toMatch(/\r\nconnection: close\r\n/i);

    const answered = outcomes.filter((o) => o.answered);
    const refused = outcomes.filter((o) => !o.answered);
    expect(answered.length).toBeGreaterThan(CLIENTS);
    for (const outcome of answered) expect(outcome.status).toBe(201);
    for (const outcome of refused) expect(REFUSALS).toContain(outcome.code);
    expect(refused).toHaveLength(CLIENTS);
    // Kept-alive connections are not served on through the grace: what was in flight, and at most what the socket held when node read the signal.
    for (let index = 0; index < CLIENTS; index++) {
      const late = answered.filter((o) => Math.floor(o.value / 1_000_000) === index + 1 && o.at > signalledAt);
      expect(late.length).toBeLessThanOrEqual(2);
    }
    expect(Math.max(...answered.map((o) => o.at))).toBeLessThan(signalledAt + GRACE_MS);

    // Read from the log once node has gone: each answered reading exactly once, no refused one.
    const stored = storedReadingValues(dataDir).sort((a, b) => a - b);
    expect(stored).toEqual([7, ...answered.map((o) => o.value)].sort((a, b) => a - b));
  });
});
