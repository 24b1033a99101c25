import { connect as tcpConnect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import type { Data } from '../helpers/fixtures.js';
import { connectDevice, freePort, isReply, type DeviceMqtt } from '../helpers/mqtt-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { allRawReadings, deviceOf, type Owner } from '../helpers/telemetry-fixtures.js';
import { eventually } from '../helpers/ws-client.js';

/** A raw TCP connection to the broker: resolves once the server has closed it, with what it answered. */
function rawExchange(port: number, chunks: Buffer[], timeoutMs = 5_000): Promise<{ closed: boolean; received: Buffer }> {
  return new Promise((resolve) => {
    const socket: Socket = tcpConnect(port, '127.0.0.1');
    const received: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ closed: false, received: Buffer.concat(received) });
    }, timeoutMs);
    // Each chunk after the first waits for an answer to the one before (a CONNACK), as a client would.
    let next = 1;
    socket.on('data', (data) => {
      received.push(data);
      if (next < chunks.length) socket.write(chunks[next++]!);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ closed: true, received: Buffer.concat(received) });
    });
    socket.on('connect', () => socket.write(chunks[0]!));
  });
}

/** A CONNECT packet (MQTT 3.1.1) with a client id, username and password. */
function connectPacket(clientId: string, username: string, password: string): Buffer {
  const str = (s: string) => {
    const bytes = Buffer.from(s, 'utf8');
    return Buffer.concat([Buffer.from([bytes.length >> 8, bytes.length & 0xff]), bytes]);
  };
  const variable = Buffer.concat([str('MQTT'), Buffer.from([4, 0xc2, 0, 60])]);
  const payload = Buffer.concat([str(clientId), str(username), str(password)]);
  return Buffer.concat([Buffer.from([0x10, ...remainingLength(variable.length + payload.length)]), variable, payload]);
}

/** MQTT's variable-length encoding of a packet's remaining length. */
function remainingLength(n: number): number[] {
  const bytes: number[] = [];
  do {
    const digit = n % 128;
    n = Math.floor(n / 128);
    bytes.push(n > 0 ? digit | 0x80 : digit);
  } while (n > 0);
  return bytes;
}

describe('MQTT under hostile input', () => {
  let server: TestServer;
  let port: number;
  let mqttUrl: string;
  const api = client(() => server.url);
  let owner: Owner;
  const open: DeviceMqtt[] = [];

  beforeAll(async () => {
    port = await freePort();
    server = await startTestServer({ MQTT_PORT: String(port) });
    mqttUrl = `mqtt://127.0.0.1:${port}`;
    await registerUser(api, 'hostileadmin');
    owner = await registerUser(api, 'hostileowner');
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.end()));
    await server.close();
  });

  const connect = async (d: { id: string; token: string }) => {
    const c = await connectDevice(mqttUrl, d);
    open.push(c);
    return c;
  };
  /** The seq values of a device's readings.recorded events, in log order. */
  const readingsInLogOrder = async (deviceId: string): Promise<number[]> => {
    const values: number[] = [];
    for (let after = 0; ; ) {
      const page = await api.get<{ data: Array<{ data: { readings: Array<{ value: number }> } }>; meta: { next_position: number | null } }>(`/api/events?device_id=${deviceId}&type=readings.recorded&limit=500&after_position=${after}`, { token: owner.token });
      values.push(...page.body.data.flatMap((e) => e.data.readings.map((r) => r.value)));
      if (page.body.data.length < 500 || page.body.meta.next_position === null) return values;
      after = page.body.meta.next_position;
    }
  };
  const healthy = async () => expect((await api.get('/api/health')).status).toBe(200);

  it('closes on malformed packets: garbage, a PUBLISH before CONNECT, a remaining length of five bytes', async () => {
    for (const bytes of [Buffer.from('GET / HTTP/1.1\r\n\r\n'), Buffer.from([0x30, 0x05, 0x00, 0x01, 0x61, 0x7b, 0x7d]), Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f])]) {
      const { closed, received } = await rawExchange(port, [bytes]);
      expect(closed, bytes.toString('hex')).toBe(true);
      expect(received.length).toBe(0);
    }
    await healthy();
    const d = await deviceOf(api, owner);
    const c = await connect(d);
    await c.publish(`devices/${d.id}/telemetry`, { sensor_readings: { t: 1 } });
  });

  it('closes a connection announcing a 10 MB packet from its header, before the payload is sent', async () => {
    const d = await deviceOf(api, owner);
    const { closed, received } = await rawExchange(port, [connectPacket(d.id, d.id, d.token), Buffer.from([0x32, ...remainingLength(10 * 1024 * 1024)])]);
    expect(closed).toBe(true);
    expect(received.subarray(0, 4)).toEqual(Buffer.from([0x20, 0x02, 0x00, 0x00])); // CONNACK accepted, then cut off
    await healthy();
  });

  it('refuses a 10 MB publish unacknowledged (connection closed), and answers payload_too_large for 1.5 MB', async () => {
    const d = await deviceOf(api, owner);
    const huge = await connect(d);
    const payload = JSON.stringify({ sensor_readings: { t: 1 }, device_status: { pad: 'x'.repeat(10 * 1024 * 1024) } });
    await expect(huge.publish(`devices/${d.id}/telemetry`, payload)).rejects.toThrow();
    await huge.closed();
    const large = await connect(d);
    await large.publish(`devices/${d.id}/telemetry`, JSON.stringify({ sensor_readings: { t: 1 }, device_status: { pad: 'x'.repeat(1.5 * 1024 * 1024) } }));
    expect((await large.next(isReply(d.id))).body).toMatchObject({ type: 'error', code: 'payload_too_large' });
    expect(await allRawReadings(api, d.id, owner.token)).toEqual([]);
    await healthy();
  });

  it('closes a device that stops reading while commands pile up for it: what waits for one client is bounded', async () => {
    const d = await deviceOf(api, owner);
    const socket: Socket = tcpConnect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(connectPacket(d.id, d.id, d.token));
    await new Promise<void>((resolve) => socket.once('data', () => resolve()));
    socket.pause(); // it never reads again
    const connected = async () => (await api.get<Data<{ operational_state: { connected: boolean } }>>(`/api/devices/${d.id}/status`, { token: owner.token })).body.data.operational_state.connected;
    expect(await connected()).toBe(true);
    // Commands carry at most 16 KiB of parameters: enough of them fill the kernel's buffers, then ours.
    const big = 'x'.repeat(15 * 1024);
    for (let i = 0; i < 2_000 && (await connected()); i++) {
      expect((await api.post(`/api/devices/${d.id}/commands`, { command_type: 'load', parameters: { big } }, { token: owner.token })).status).toBe(202);
    }
    await eventually(async () => !(await connected()));
    socket.destroy();
    await healthy();
  }, 120_000);

  it('takes a flood of 10,000 QoS 1 messages from one client in order, with bounded memory, answering others meanwhile', async () => {
    const d = await deviceOf(api, owner);
    const c = await connect(d);
    const rssBefore = process.memoryUsage().rss;
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const flood = Promise.all(Array.from({ length: 10_000 }, (_, i) => c.publish(`devices/${d.id}/telemetry`, { sensor_readings: { seq: i } })));
    const started = Date.now();
    await healthy();
    const healthMs = Date.now() - started;
    await flood;
    clearInterval(sampler);
    const stored = await allRawReadings(api, d.id, owner.token);
    expect(stored).toHaveLength(10_000);
    expect(await readingsInLogOrder(d.id)).toEqual(Array.from({ length: 10_000 }, (_, i) => i));
    expect(healthMs).toBeLessThan(2_000);
    // The test process holds the client's 10,000 messages too: the bound is generous, the point is no runaway.
    expect(peak - rssBefore).toBeLessThan(300 * 1024 * 1024);
    const health = await api.get<Data<{ position: number }>>('/api/health');
    expect(health.status).toBe(200);
  }, 120_000);
});
