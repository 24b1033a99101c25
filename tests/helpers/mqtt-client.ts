import { createServer } from 'node:net';
import mqtt, { type IClientOptions, type IClientPublishOptions, type MqttClient, type Packet } from 'mqtt';

/** A message the client received: topic and JSON payload (or the raw text when not JSON). */
export interface Received {
  topic: string;
  body: Record<string, any>;
  retain: boolean;
  qos: number;
}

export interface DeviceMqtt {
  client: MqttClient;
  received: Received[];
  /** Takes the first unconsumed message matching `predicate`. */
  next(predicate?: (message: Received) => boolean, timeoutMs?: number): Promise<Received>;
  /** Publishes and resolves on PUBACK (QoS 1) or once written (QoS 0); rejects if the connection closes first. */
  publish(topic: string, payload: unknown, options?: IClientPublishOptions): Promise<void>;
  /** Subscribes; resolves with the granted QoS of each filter (128: refused). */
  subscribe(filters: string | string[], qos?: 0 | 1 | 2): Promise<number[]>;
  /** Resolves once the server has closed the connection. */
  closed(timeoutMs?: number): Promise<void>;
  end(): Promise<void>;
}

/** A TCP port free right now (for MQTT_PORT in tests: never 1883). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Connects without reconnecting; rejects with the CONNACK's refusal. */
export async function connectMqtt(url: string, options: IClientOptions): Promise<DeviceMqtt> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5_000, protocolVersion: 4, ...options });
  await new Promise<void>((resolve, reject) => {
    const fail = (error?: Error) => {
      client.end(true);
      reject(error ?? new Error('closed before CONNACK'));
    };
    client.once('error', fail);
    client.once('close', fail);
    client.once('connect', () => {
      client.removeListener('error', fail);
      client.removeListener('close', fail);
      resolve();
    });
  });
  const received: Received[] = [];
  const queue: Received[] = [];
  const waiters = new Set<() => void>();
  let isClosed = false;
  client.on('message', (topic, payload, packet) => {
    let body: Record<string, any>;
    try {
      body = JSON.parse(payload.toString('utf8')) as Record<string, any>;
    } catch {
      body = { __text__: payload.toString('utf8') };
    }
    const message = { topic, body, retain: packet.retain, qos: packet.qos };
    received.push(message);
    queue.push(message);
    for (const wake of [...waiters]) wake();
  });
  client.on('close', () => {
    isClosed = true;
    for (const wake of [...waiters]) wake();
  });
  client.on('error', () => undefined);
  const waitFor = <T>(check: () => T | undefined, timeoutMs: number, what: () => string): Promise<T> =>
    new Promise((resolve, reject) => {
      const wake = () => {
        const value = check();
        if (value === undefined) return;
        clearTimeout(timer);
        waiters.delete(wake);
        resolve(value);
      };
      const timer = setTimeout(() => {
        waiters.delete(wake);
        reject(new Error(what()));
      }, timeoutMs);
      waiters.add(wake);
      wake();
    });
  return {
    client,
    received,
    next(predicate = () => true, timeoutMs = 5_000) {
      return waitFor(() => {
        const index = queue.findIndex(predicate);
        return index >= 0 ? queue.splice(index, 1)[0] : undefined;
      }, timeoutMs, () => `no matching message within ${timeoutMs} ms; closed: ${isClosed}; queue: ${JSON.stringify(queue).slice(0, 500)}`);
    },
    publish(topic, payload, options = { qos: 1 }) {
      const bytes = Buffer.isBuffer(payload) ? payload : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload));
      return new Promise((resolve, reject) => {
        const onClose = () => reject(new Error('connection closed before the acknowledgement'));
        client.once('close', onClose);
        client.publish(topic, bytes, options, (error) => {
          client.removeListener('close', onClose);
          if (error) reject(error);
          else resolve();
        });
      });
    },
    subscribe(filters, qos = 1) {
      // From the SUBACK itself: mqtt.js reports a refused filter (128) only as an error.
      return new Promise((resolve, reject) => {
        const onPacket = (packet: Packet) => {
          if (packet.cmd !== 'suback') return;
          client.removeListener('packetreceive', onPacket);
          resolve((packet.granted as number[]).map((g) => (typeof g === 'number' ? g : 128)));
        };
        client.on('packetreceive', onPacket);
        client.subscribe(filters, { qos }, (error) => {
          if (error && !/Unspecified error|Subscribe error/i.test(error.message)) {
            client.removeListener('packetreceive', onPacket);
            reject(error);
          }
        });
      });
    },
    closed(timeoutMs = 5_000) {
      return waitFor(() => (isClosed ? true : undefined), timeoutMs, () => `still connected after ${timeoutMs} ms`).then(() => undefined);
    },
    end: () => client.endAsync(true).catch(() => undefined),
  };
}

/** A device's connection: client id = device id, password = its token. */
export function connectDevice(url: string, device: { id: string; token: string }, options: IClientOptions = {}): Promise<DeviceMqtt> {
  return connectMqtt(url, { clientId: device.id, username: device.id, password: device.token, ...options });
}

/** The reply a device gets for its next message (ack or error). */
export const isReply = (deviceId: string) => (message: Received): boolean => message.topic === `devices/${deviceId}/replies`;
