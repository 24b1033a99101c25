/**
 * MQTT ingestion, the server in its own process (as `npm start` runs it, with its node flags, MQTT on a free port):
 *
 *   mqtt-ingest   QoS 1 single-reading publishes from 100 connected devices, each waiting for
 *                 its PUBACK before the next, vs single-reading HTTP POSTs from 100 devices on
 *                 keep-alive connections, each waiting for its 201: the same work, rounds
 *                 interleaved; then p99 from publish to PUBACK at 1,000 readings/s; then the
 *                 resident memory of a server of its own holding 10,000 idle MQTT connections.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import mqtt, { type MqttClient } from 'mqtt';
import { collectGarbage, defaultRounds, envInt, freePort, spawnServer, summarise, tempDir, type Benchmark, type Reporter, type ServerProcess as SpawnedServer } from './lib.js';
import { recordLimit } from './telemetry.js';

const DEVICES = 100;
const ROUND_MS = envInt('BENCH_MQTT_ROUND_MS', 2_000);
const RATE_PER_S = 1_000;
const RATE_SECONDS = envInt('BENCH_MQTT_RATE_SECONDS', 5);
const IDLE_CONNECTIONS = envInt('BENCH_MQTT_IDLE', 10_000);
/** Idle connections are opened this many at a time, as a fleet coming back after an outage would be. */
const CONNECT_BATCH = 200;
const KEEPALIVE_S = 60;
/**
 * How long the idle connections are held before their RSS is read: two keepalive periods and
 * more, so that their pings are in the figure, and so is what V8 does on its own once the
 * server idles (its memory reducer collects the garbage of the connects about 100 s after the
 * last full GC; nothing forces a GC).
 */
const HOLD_S = envInt('BENCH_MQTT_HOLD_S', 150);
/** RSS has settled when the last this many one-second samples are within 1% of each other. */
const SETTLE_SAMPLES = 10;
const BODY = JSON.stringify({ sensor_readings: { temperature: 21.5 } });

interface Device {
  id: string;
  token: string;
}

interface MqttServer extends SpawnedServer {
  mqttUrl: string;
}

interface ServerProcess extends MqttServer {
  userToken: string;
}

interface IdleFigure {
  /** Resident bytes of the fresh server before any device connected. */
  none: number;
  /** At the end of the hold, every connection open. */
  rss: number;
  /** The highest while held (the garbage of the connects not yet collected). */
  peak: number;
  settled: boolean;
  connected: number;
}


async function call<T>(url: string, path: string, body: unknown, token?: string): Promise<T> {
  const response = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) });
  if (response.status >= 300) throw new Error(`${path} answered ${response.status}: ${await response.text()}`);
  return (await response.json()) as T;
}


/** The server with MQTT on a free port; on `dataDir`, when given, which it leaves in place. */
async function spawnMqttServer(dataDir?: string): Promise<MqttServer> {
  const mqttPort = await freePort();
  const server = await spawnServer('bench-mqtt', { MQTT_PORT: String(mqttPort), DEFAULT_DEVICE_QUOTA: String(IDLE_CONNECTIONS + DEVICES + 10) }, dataDir);
  return { ...server, mqttUrl: `mqtt://127.0.0.1:${mqttPort}` };
}

/** A server with the bench user registered. */
async function startServerProcess(dataDir?: string): Promise<ServerProcess> {
  const server = await spawnMqttServer(dataDir);
  try {
    const registered = await call<{ data: { token: string } }>(server.url, '/api/auth/register', { username: 'bench', email: 'bench@example.com', password: 'correct horse battery' });
    return { ...server, userToken: registered.data.token };
  } catch (error) {
    await server.close();
    throw error;
  }
}

/** Devices registered 100 at a time through the bulk route. */
async function registerDevices(server: ServerProcess, count: number, prefix: string): Promise<Device[]> {
  const devices: Device[] = [];
  for (let start = 0; start < count; start += 100) {
    const operations = Array.from({ length: Math.min(100, count - start) }, (_, i) => ({ action: 'register', device: { name: `${prefix}-${start + i}`, device_type: 'sensor' } }));
    const answer = await call<{ data: Array<{ status: number; data?: { id: string; credentials: { auth_token: string } } }> }>(server.url, '/api/devices/bulk', { operations }, server.userToken);
    for (const item of answer.data) {
      if (!item.data) throw new Error(`bulk registration answered ${item.status}`);
      devices.push({ id: item.data.id, token: item.data.credentials.auth_token });
    }
  }
  return devices;
}

function connectDevice(url: string, device: Device): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { clientId: device.id, username: device.id, password: device.token, reconnectPeriod: 0, keepalive: KEEPALIVE_S, protocolVersion: 4 });
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}

const publishAcked = (client: MqttClient, topic: string): Promise<void> =>
  new Promise((resolve, reject) => client.publish(topic, BODY, { qos: 1 }, (error) => (error ? reject(error) : resolve())));

/** Each device sends one reading, waits for its acknowledgement, and sends the next, for `ms`; answers how many were acknowledged. */
async function closedLoop(devices: readonly Device[], ms: number, send: (device: Device, index: number) => Promise<void>): Promise<number> {
  const until = performance.now() + ms;
  let acked = 0;
  await Promise.all(
    devices.map(async (device, index) => {
      while (performance.now() < until) {
        await send(device, index);
        acked += 1;
      }
    }),
  );
  return acked;
}

function memoryOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) * 1024;
}

const MB = 1024 * 1024;

export const mqttIngest: Benchmark = {
  name: 'mqtt-ingest',
  description: `QoS 1 single-reading publishes from ${DEVICES} connected devices vs single-reading HTTP POSTs from ${DEVICES} devices (fetch, keep-alive), each waiting for its acknowledgement, ${ROUND_MS / 1000} s rounds interleaved; p99 publish→PUBACK at ${RATE_PER_S}/s; RSS with ${IDLE_CONNECTIONS.toLocaleString('en-US')} idle MQTT connections`,
  async run(reporter: Reporter) {
    const server = await startServerProcess();
    const clients: MqttClient[] = [];
    try {
      const devices = await registerDevices(server, DEVICES, 'load');
      for (const device of devices) clients.push(await connectDevice(server.mqttUrl, device));
      const topics = devices.map((device) => `devices/${device.id}/telemetry`);
      const postReading = async (device: Device) => {
        const response = await fetch(`${server.url}/api/devices/${device.id}/data`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-device-token': device.token }, body: BODY });
        await response.arrayBuffer();
        if (response.status !== 201) throw new Error(`POST answered ${response.status}`);
      };
      const { warmup, minRounds } = defaultRounds();
      const per1000 = { mqtt: [] as number[], http: [] as number[] };
      for (let round = 0; round < warmup + minRounds; round++) {
        for (const side of round % 2 === 0 ? (['mqtt', 'http'] as const) : (['http', 'mqtt'] as const)) {
          collectGarbage();
          const started = performance.now();
          const acked = await closedLoop(devices, ROUND_MS, side === 'mqtt' ? (_device, index) => publishAcked(clients[index]!, topics[index]!) : postReading);
          if (round >= warmup) per1000[side].push(((performance.now() - started) / acked) * 1000);
        }
      }
      reporter.throughput(`1 reading, QoS 1 vs HTTP POST, ${DEVICES} devices`, 1000, 'msg/s', { ours: summarise(per1000.mqtt), baseline: summarise(per1000.http) }, { minRatio: 1 }, 'ours = MQTT (PUBACK once stored and projected); baseline = this server over HTTP (201), in the same run');

      const latencies = await pacedLatencies(clients, topics);
      const sorted = [...latencies].sort((a, b) => a - b);
      const p99 = sorted[Math.floor(sorted.length * 0.99)] ?? NaN;
      recordLimit(reporter, mqttIngest.name, {
        name: `p99 publish→PUBACK at ${RATE_PER_S}/s`,
        unit: 'ms',
        ours: p99,
        oursText: `${p99.toFixed(1)} ms (p50 ${sorted[Math.floor(sorted.length / 2)]?.toFixed(1)} ms, n=${sorted.length})`,
        limit: 50,
        limitText: '50 ms',
        ratio: 50 / p99,
        minRatio: 1,
        targetText: '<=50ms',
      });

    } finally {
      await Promise.all(clients.map((client) => client.endAsync(true)));
      await server.close();
    }

    const idle = await idleConnections();
    recordLimit(reporter, mqttIngest.name, {
      name: `RSS, ${IDLE_CONNECTIONS.toLocaleString('en-US')} idle MQTT connections`,
      unit: 'MB',
      ours: idle.rss / MB,
      oursText: `${(idle.rss / MB).toFixed(0)} MB after ${HOLD_S} s (peak ${(idle.peak / MB).toFixed(0)}, ${(idle.none / MB).toFixed(0)} with none; ${idle.connected} connected${idle.settled ? '' : '; still moving'})`,
      limit: 300,
      limitText: '300 MB',
      ratio: 300 / (idle.rss / MB),
      minRatio: 1,
      targetText: '<=300MB',
      note: `a server of its own, restarted on the registered devices before they connect, so nothing but the connections is in the figure; keepalive ${KEEPALIVE_S} s; peak = the highest RSS while held`,
    });
  },
};

/** Publishes spread evenly over the devices at RATE_PER_S for RATE_SECONDS (open loop); each one's time to PUBACK. */
async function pacedLatencies(clients: readonly MqttClient[], topics: readonly string[]): Promise<number[]> {
  const latencies: number[] = [];
  const total = RATE_PER_S * RATE_SECONDS;
  const start = performance.now();
  const pending: Array<Promise<void>> = [];
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / RATE_PER_S;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    const sent = performance.now();
    const index = i % clients.length;
    pending.push(publishAcked(clients[index]!, topics[index]!).then(() => void latencies.push(performance.now() - sent)));
  }
  await Promise.all(pending);
  return latencies;
}

/**
 * The resident memory of a server holding IDLE_CONNECTIONS idle MQTT connections (keepalive
 * only) and having done nothing else: one server registers the devices and is stopped, and a
 * fresh one started on its data directory takes the connections, CONNECT_BATCH at a time, and
 * is left alone for HOLD_S. No GC is forced: the server does not force one in service.
 */
async function idleConnections(): Promise<IdleFigure> {
  const { dir, remove } = tempDir('bench-mqtt-idle');
  try {
    const registrar = await startServerProcess(dir);
    const devices = await registerDevices(registrar, IDLE_CONNECTIONS, 'idle').finally(() => registrar.close());
    const server = await spawnMqttServer(dir);
    const idle: MqttClient[] = [];
    try {
      const none = memoryOf(server.pid);
      for (let start = 0; start < devices.length; start += CONNECT_BATCH) {
        idle.push(...(await Promise.all(devices.slice(start, start + CONNECT_BATCH).map((device) => connectDevice(server.mqttUrl, device)))));
      }
      const held = await heldMemory(server.pid);
      return { none, ...held, connected: idle.filter((client) => client.connected).length };
    } finally {
      for (let start = 0; start < idle.length; start += 500) await Promise.all(idle.slice(start, start + 500).map((client) => client.endAsync(true)));
      await server.close();
    }
  } finally {
    remove();
  }
}

/** RSS sampled every second for HOLD_S: the last sample, the highest, and whether the last SETTLE_SAMPLES are within 1% of each other. */
async function heldMemory(pid: number): Promise<Pick<IdleFigure, 'rss' | 'peak' | 'settled'>> {
  const samples: number[] = [];
  while (samples.length < Math.max(HOLD_S, 1)) {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    samples.push(memoryOf(pid));
  }
  const recent = samples.slice(-SETTLE_SAMPLES);
  return { rss: samples[samples.length - 1]!, peak: Math.max(...samples), settled: Math.max(...recent) - Math.min(...recent) <= Math.max(...recent) / 100 };
}
