import mqtt from 'mqtt';
import WebSocket from 'ws';
import type { Counters } from './counters.js';
import { call, type SimDevice } from './fleet.js';
import type { SimReading } from './sensors.js';

/** One device's connection: sends its readings and answers its commands, counting both. */
export interface DeviceLink {
  send(readings: SimReading[], seq: number): void;
  close(): Promise<void>;
}

export interface LinkContext {
  url: string;
  mqttUrl: string;
  counters: Counters;
  /** A distinct value per run, so idempotency keys of a new run never repeat an old one's. */
  runId: string;
  /** Carries out a command and answers its response. */
  obey(device: SimDevice, commandType: string, parameters: Record<string, unknown>): Record<string, unknown>;
}

export const protocols = ['http', 'ws', 'mqtt'] as const;
export type Protocol = (typeof protocols)[number];

export function connectDevice(protocol: Protocol, device: SimDevice, context: LinkContext): Promise<DeviceLink> {
  switch (protocol) {
    case 'http':
      return Promise.resolve(httpLink(device, context));
    case 'ws':
      return wsLink(device, context);
    case 'mqtt':
      return mqttLink(device, context);
  }
}

interface CommandMessage {
  id: string;
  command_type: string;
  parameters?: Record<string, unknown>;
}

const errorText = (body: { error?: { code: string; message: string } }, status: number): string => (body.error ? `${status} ${body.error.code}: ${body.error.message}` : String(status));

/** HTTP: a POST per message (one at a time per device), and the pending commands fetched every 2 s. */
function httpLink(device: SimDevice, { url, counters, runId, obey }: LinkContext): DeviceLink {
  let inFlight: Promise<void> | null = null;
  const auth = { deviceToken: device.token };
  const answerCommands = async () => {
    const pending = await call(url, `/api/devices/${device.id}/commands/pending`, auth);
    for (const command of (pending.body.data ?? []) as CommandMessage[]) {
      const response = obey(device, command.command_type, command.parameters ?? {});
      const result = await call(url, `/api/devices/${device.id}/commands/${command.id}/result`, { ...auth, body: { status: 'executed', response } });
      if (result.status === 200) counters.commandsAnswered += 1;
    }
  };
  let polling = false;
  const poller = setInterval(() => {
    if (polling) return;
    polling = true;
    answerCommands()
      .catch(() => undefined)
      .finally(() => (polling = false));
  }, 2_000);
  counters.connected += 1;
  return {
    send(readings, seq) {
      if (inFlight) {
        counters.skipped += 1;
        return;
      }
      counters.sent += 1;
      inFlight = fetch(`${url}/api/devices/${device.id}/data`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-device-token': device.token, 'idempotency-key': `${runId}-${seq}` },
        body: JSON.stringify({ sensor_readings: readings }),
      })
        .then(async (response) => {
          if (response.status === 201) counters.acknowledged += 1;
          else counters.refuse(errorText((await response.json().catch(() => ({}))) as { error?: { code: string; message: string } }, response.status));
          // The body is read either way, so the connection goes back to the pool.
          if (response.status === 201) await response.arrayBuffer();
        })
        .catch(() => void (counters.failed += 1))
        .finally(() => (inFlight = null));
    },
    async close() {
      clearInterval(poller);
      await inFlight;
      counters.connected -= 1;
    },
  };
}

/** /ws/device: readings as messages with an id, answered by acks; pushed commands answered by results. */
async function wsLink(device: SimDevice, { url, counters, runId, obey }: LinkContext): Promise<DeviceLink> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/ws/device?token=${encodeURIComponent(device.token)}`);
  let unanswered = 0;
  ws.on('message', (raw) => {
    const message = JSON.parse(raw.toString()) as { type: string; ref?: unknown; code?: string; message?: string; command?: CommandMessage };
    const isReading = typeof message.ref === 'string' && message.ref.startsWith('r');
    if (message.type === 'command' && message.command) {
      const response = obey(device, message.command.command_type, message.command.parameters ?? {});
      ws.send(JSON.stringify({ type: 'command_result', id: `c${message.command.id}`, command_id: message.command.id, status: 'executed', response }));
    } else if (message.type === 'ack') {
      if (isReading) counters.acknowledged += 1;
      else counters.commandsAnswered += 1;
    } else if (message.type === 'error') {
      counters.refuse(`${message.code}: ${message.message}`);
    }
    if (isReading) unanswered -= 1;
  });
  // Listening before the socket opens: the server pushes pending commands at once, maybe in the same packet as its 101.
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`/ws/device answered ${res.statusCode}`)));
  });
  counters.connected += 1;
  ws.on('close', () => {
    counters.connected -= 1;
    counters.failed += Math.max(0, unanswered);
    unanswered = 0;
  });
  ws.on('error', () => undefined);
  return {
    send(readings, seq) {
      if (ws.readyState !== ws.OPEN) {
        counters.failed += 1;
        return;
      }
      counters.sent += 1;
      unanswered += 1;
      ws.send(JSON.stringify({ type: 'readings', id: `r${seq}`, idempotency_key: `${runId}-${seq}`, sensor_readings: readings }));
    },
    async close() {
      if (ws.readyState === ws.CLOSED) return;
      // Messages sent are answered in order: wait for their answers (a while at most) before saying goodbye.
      for (let waited = 0; unanswered > 0 && waited < 5_000 && ws.readyState === ws.OPEN; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
      const closed = new Promise((resolve) => ws.once('close', resolve));
      ws.close(1000, 'simulation over');
      await closed;
    },
  };
}

/**
 * MQTT: client id = device id, password = device token; readings published QoS 1 on
 * devices/{id}/telemetry (a PUBACK is the acknowledgement), commands taken from
 * devices/{id}/commands/{command_id} and answered on .../result.
 */
async function mqttLink(device: SimDevice, { mqttUrl, counters, runId, obey }: LinkContext): Promise<DeviceLink> {
  const prefix = `devices/${device.id}`;
  const client = mqtt.connect(mqttUrl, { clientId: device.id, username: device.id, password: device.token, reconnectPeriod: 1_000, connectTimeout: 10_000 });
  // Listening before the connection is up: the server sends pending commands right after CONNACK, subscribed or not.
  client.on('message', (topic, payload) => {
    const parsed = parseJson(payload.toString('utf8'));
    if (topic === `${prefix}/replies`) {
      if (parsed?.type === 'error') {
        counters.refuse(`${String(parsed.code)}: ${String(parsed.message)}`);
        counters.refusedAfterAck += 1;
      }
      return;
    }
    if (!topic.startsWith(`${prefix}/commands/`)) return;
    // The server sends the command itself, or wrapped as over /ws/device.
    const command = (parsed?.command ?? parsed ?? {}) as Partial<CommandMessage>;
    const response = obey(device, command.command_type ?? 'unknown', command.parameters ?? {});
    client.publish(`${topic}/result`, JSON.stringify({ status: 'executed', response }), { qos: 1 }, (error) => {
      if (!error) counters.commandsAnswered += 1;
    });
  });
  let up = false;
  client.on('connect', () => {
    up = true;
    counters.connected += 1;
  });
  client.on('close', () => {
    if (up) counters.connected -= 1;
    up = false;
  });
  await new Promise<void>((resolve, reject) => {
    const fail = (error: Error) => {
      clearTimeout(timer);
      client.end(true);
      reject(error);
    };
    const timer = setTimeout(() => fail(new Error(`no CONNACK from ${mqttUrl} within 10 s`)), 10_000);
    client.once('connect', () => {
      clearTimeout(timer);
      client.off('error', fail);
      resolve();
    });
    client.once('error', fail);
  });
  // Later errors (a refused reconnection) close the connection; mqtt.js reconnects, the counters show it.
  client.on('error', () => undefined);
  await client.subscribeAsync([`${prefix}/commands/+`, `${prefix}/replies`], { qos: 1 });
  return {
    send(readings, seq) {
      counters.sent += 1;
      const body = JSON.stringify({ sensor_readings: readings, idempotency_key: `${runId}-${seq}` });
      client.publish(`${prefix}/telemetry`, body, { qos: 1 }, (error) => {
        if (error) counters.failed += 1;
        else counters.acknowledged += 1;
      });
    },
    async close() {
      await client.endAsync();
    },
  };
}

function parseJson(text: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
