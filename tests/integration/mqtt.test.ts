import { createServer, type Server } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import type { Data, Device } from '../helpers/fixtures.js';
import { connectDevice, connectMqtt, freePort, isReply, type DeviceMqtt } from '../helpers/mqtt-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { allRawReadings, deviceOf, type Owner } from '../helpers/telemetry-fixtures.js';
import { eventually, wsUrl } from '../helpers/ws-client.js';

interface Command {
  id: string;
  status: string;
  command_type: string;
}

/** Every log line the server wrote, to check what it says (and never says). */
function capturedLogger() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines };
}

describe('MQTT (embedded broker)', () => {
  let server: TestServer;
  let mqttUrl: string;
  const api = client(() => server.url);
  let owner: Owner;
  const logs = capturedLogger();
  const open: DeviceMqtt[] = [];

  beforeAll(async () => {
    const port = await freePort();
    server = await startTestServer({ MQTT_PORT: String(port), OFFLINE_AFTER_SECONDS: '60' }, undefined, { logger: logs.logger });
    mqttUrl = `mqtt://127.0.0.1:${port}`;
    await registerUser(api, 'mqttadmin');
    owner = await registerUser(api, 'mqttowner');
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.end()));
    await server.close();
  });

  const device = async (body: Record<string, unknown> = {}) => deviceOf(api, owner, body);
  const connect = async (d: { id: string; token: string }, options = {}) => {
    const c = await connectDevice(mqttUrl, d, options);
    open.push(c);
    return c;
  };
  const status = async (id: string) => (await api.get<Data<Device>>(`/api/devices/${id}`, { token: owner.token })).body.data.status;
  const command = async (id: string) => (await api.get<Data<Command>>(`/api/commands/${id}`, { token: owner.token })).body.data;

  it('reports the listener in /api/health', async () => {
    const health = await api.get<Data<{ mqtt: { tcp: { state: string; port: number }; websocket: string } }>>('/api/health');
    expect(health.body.data.mqtt).toMatchObject({ tcp: { state: 'listening', port: Number(new URL(mqttUrl).port) }, websocket: '/mqtt' });
  });

  it('authenticates at CONNECT: client id = device id, the token as password, or as username alone', async () => {
    const d = await device();
    const byPassword = await connect(d);
    expect(byPassword.client.connected).toBe(true);
    await byPassword.end();
    const byUsername = await connect(d, { username: d.token, password: undefined });
    expect(byUsername.client.connected).toBe(true);
    await byUsername.end();
  });

  it('answers CONNACK not authorized for a bad token or a client id that is not the device, and never logs the secret', async () => {
    const d = await device();
    const wrong = `${d.token}x`;
    await expect(connectDevice(mqttUrl, { id: d.id, token: wrong })).rejects.toMatchObject({ code: 5 });
    const other = await device();
    await expect(connectMqtt(mqttUrl, { clientId: other.id, username: other.id, password: d.token })).rejects.toMatchObject({ code: 5 });
    await expect(connectMqtt(mqttUrl, { clientId: d.id, username: d.id })).rejects.toMatchObject({ code: 5 });
    await eventually(() => logs.lines.some((line) => line.includes('mqtt connection refused')));
    expect(logs.lines.join('\n')).not.toContain(wrong);
    expect(logs.lines.join('\n')).not.toContain(d.token);
  });

  it('acknowledges telemetry only once stored: a read right after the PUBACK sees it, and replies carry the correlation', async () => {
    const d = await device();
    const c = await connect(d);
    await c.subscribe(`devices/${d.id}/replies`);
    await c.publish(`devices/${d.id}/telemetry`, { id: 'm1', sensor_readings: { temperature: 21.5, humidity: 40 } });
    const stored = await allRawReadings(api, d.id, owner.token);
    expect(stored.map((r) => r.sensor_type).sort()).toEqual(['humidity', 'temperature']);
    expect((await c.next(isReply(d.id))).body).toMatchObject({ type: 'ack', id: 'm1', ref: 'm1', accepted: 2, topic: `devices/${d.id}/telemetry` });
    expect(await status(d.id)).toBe('online');
  });

  it('acknowledges an invalid message and answers the error on replies; nothing is stored', async () => {
    const d = await device();
    const c = await connect(d);
    await c.publish(`devices/${d.id}/telemetry`, { ref: 'bad', sensor_readings: { temperature: 'hot' } });
    expect((await c.next(isReply(d.id))).body).toMatchObject({ type: 'error', code: 'validation_failed', ref: 'bad' });
    await c.publish(`devices/${d.id}/telemetry`, '{"sensor_readings":{"t":1},"device_status":{"__proto__":{"x":1}}}');
    expect((await c.next(isReply(d.id))).body).toMatchObject({ type: 'error', code: 'validation_failed', details: [{ path: '__proto__' }] });
    await c.publish(`devices/${d.id}/telemetry`, 'not json');
    expect((await c.next(isReply(d.id))).body).toMatchObject({ type: 'error', code: 'invalid_json' });
    expect(await allRawReadings(api, d.id, owner.token)).toEqual([]);
    expect(c.client.connected).toBe(true);
  });

  it('delivers pending commands at connect and queued ones as they come (QoS 1); results go back on .../result', async () => {
    const d = await device();
    const early = (await api.post<Data<Command>>(`/api/devices/${d.id}/commands`, { command_type: 'reboot' }, { token: owner.token })).body.data;
    const c = await connect(d);
    const first = await c.next((m) => m.topic === `devices/${d.id}/commands/${early.id}`);
    expect(first).toMatchObject({ qos: 1, body: { id: early.id, command_type: 'reboot', status: 'sent' } });
    const later = (await api.post<Data<Command>>(`/api/devices/${d.id}/commands`, { command_type: 'blink' }, { token: owner.token })).body.data;
    await c.next((m) => m.topic === `devices/${d.id}/commands/${later.id}`);
    expect((await command(later.id)).status).toBe('sent');

    await c.publish(`devices/${d.id}/commands/${early.id}/result`, { id: 'r1', status: 'executed', response: { ok: true } });
    expect((await command(early.id)).status).toBe('executed');
    expect((await c.next(isReply(d.id))).body).toMatchObject({ type: 'ack', id: 'r1', command_id: early.id, status: 'executed' });
    await c.publish(`devices/${d.id}/commands/${early.id}/result`, { id: 'r2', status: 'failed' });
    expect((await c.next(isReply(d.id))).body).toMatchObject({ type: 'error', code: 'conflict', id: 'r2' });
  });

  it('retains the desired configuration on devices/{id}/config and follows every change', async () => {
    const d = await device({ configuration: { interval: 10 } });
    const c = await connect(d);
    await c.subscribe(`devices/${d.id}/config`);
    expect((await c.next((m) => m.topic === `devices/${d.id}/config`)).body).toEqual({ interval: 10 });
    const put = await api.put(`/api/devices/${d.id}`, { configuration: { interval: 30 } }, { token: owner.token });
    expect(put.status).toBe(200);
    expect((await c.next((m) => m.topic === `devices/${d.id}/config`)).body).toEqual({ interval: 30 });
    await c.end();
    const again = await connect(d);
    await again.subscribe(`devices/${d.id}/config`);
    expect(await again.next((m) => m.topic === `devices/${d.id}/config`)).toMatchObject({ retain: true, body: { interval: 30 } });
  });

  it('takes heartbeats and firmware progress; never echoes a device its own publishes', async () => {
    const d = await device();
    const c = await connect(d);
    expect(await c.subscribe(`devices/${d.id}/#`)).toEqual([1]);
    await c.publish(`devices/${d.id}/heartbeat`, { firmware_version: '1.4.0' });
    await c.publish(`devices/${d.id}/firmware/progress`, { version: '1.5.0', status: 'downloading' });
    const replies = [await c.next(isReply(d.id)), await c.next(isReply(d.id))].map((m) => m.body);
    expect(replies).toMatchObject([{ type: 'ack', device_id: d.id }, { type: 'ack', version: '1.5.0', status: 'downloading' }]);
    expect((await api.get<Data<Device>>(`/api/devices/${d.id}`, { token: owner.token })).body.data.firmware_version).toBe('1.4.0');
    expect(c.received.filter((m) => !m.topic.endsWith('/replies') && !m.topic.endsWith('/config'))).toEqual([]);
  });

  it('grants a QoS 2 subscription as QoS 1, refuses a wildcard outside its prefix, disconnects on another device topic', async () => {
    const d = await device();
    const other = await device();
    const c = await connect(d);
    expect(await c.subscribe(`devices/${d.id}/commands/+`, 2)).toEqual([1]);
    expect(await c.subscribe('devices/+/telemetry')).toEqual([128]);
    expect(await c.subscribe('#')).toEqual([128]);
    expect(c.client.connected).toBe(true);
    void c.subscribe(`devices/${other.id}/config`).catch(() => undefined);
    await c.closed();

    const p = await connect(d);
    await expect(p.publish(`devices/${other.id}/telemetry`, { sensor_readings: { t: 1 } })).rejects.toThrow();
    await p.closed();
    expect(await allRawReadings(api, other.id, owner.token)).toEqual([]);
  });

  it('stores a DUP redelivery once: by idempotency_key, else by content within the window; a repeat without DUP is a new reading', async () => {
    const d = await device();
    const c = await connect(d);
    const topic = `devices/${d.id}/telemetry`;
    await c.publish(topic, { sensor_readings: { temperature: 1 } });
    await c.publish(topic, { idempotency_key: 'k-1', sensor_readings: { temperature: 2 } });
    await c.end();
    // The redelivery comes on the next connection.
    const again = await connect(d);
    await again.publish(topic, { sensor_readings: { temperature: 1 } }, { qos: 1, dup: true });
    await again.publish(topic, { idempotency_key: 'k-1', sensor_readings: { temperature: 2 } }, { qos: 1, dup: true });
    expect((await allRawReadings(api, d.id, owner.token)).length).toBe(2);
    await again.subscribe(`devices/${d.id}/replies`);
    await again.publish(topic, { sensor_readings: { temperature: 1 } });
    expect((await allRawReadings(api, d.id, owner.token)).length).toBe(3);
    server.clock.advance(11 * 60_000);
    await again.publish(topic, { sensor_readings: { temperature: 1 } }, { qos: 1, dup: true });
    expect((await allRawReadings(api, d.id, owner.token)).length).toBe(4);
  });

  it('keeps the device online while connected; a dropped connection starts the offline deadline', async () => {
    const d = await device();
    const c = await connect(d);
    await eventually(async () => (await status(d.id)) === 'online');
    server.clock.advance(120_000);
    await server.server.timers.runAll();
    expect(await status(d.id)).toBe('online');
    c.client.stream.destroy();
    await c.closed();
    await eventually(async () => {
      server.clock.advance(61_000);
      await server.server.timers.runAll();
      return (await status(d.id)) === 'offline';
    });
  });

  it('takes a last will on its own heartbeat topic as the state report it is, when the connection drops', async () => {
    const d = await device();
    const c = await connect(d, { will: { topic: `devices/${d.id}/heartbeat`, payload: Buffer.from('{"device_status":{"status":"error","reason":"connection lost"}}'), qos: 1, retain: false } });
    await eventually(async () => (await status(d.id)) === 'online');
    c.client.stream.destroy();
    await c.closed();
    await eventually(async () => (await status(d.id)) === 'error');
  });

  it('disconnects a deleted device at once; its token is refused afterwards', async () => {
    const d = await device();
    const c = await connect(d);
    expect((await api.del(`/api/devices/${d.id}`, { token: owner.token })).status).toBe(200);
    await c.closed();
    await expect(connectDevice(mqttUrl, d)).rejects.toMatchObject({ code: 5 });
  });

  it('speaks MQTT over WebSocket at /mqtt on the HTTP port', async () => {
    const d = await device();
    const c = await connectDevice(wsUrl(server.url, '/mqtt'), d);
    open.push(c);
    await c.publish(`devices/${d.id}/telemetry`, { sensor_readings: { temperature: 3 } });
    expect((await allRawReadings(api, d.id, owner.token)).length).toBe(1);
  });
});

describe('MQTT_PORT already taken', () => {
  let blocker: Server;
  let server: TestServer;
  const logs = capturedLogger();
  afterAll(async () => {
    await server?.close();
    await new Promise((resolve) => blocker.close(resolve));
  });

  it('starts anyway, logs one error naming MQTT_PORT, and /api/health reports the listener failed', async () => {
    blocker = createServer();
    const port = await new Promise<number>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve((blocker.address() as { port: number }).port)));
    server = await startTestServer({ MQTT_PORT: String(port) }, undefined, { logger: logs.logger });
    const health = await client(() => server.url).get<Data<{ status: string; mqtt: { tcp: { state: string; error: string } } }>>('/api/health');
    expect(health.status).toBe(200);
    expect(health.body.data).toMatchObject({ status: 'ok', mqtt: { tcp: { state: 'failed', error: expect.stringContaining(String(port)) } } });
    const errors = logs.lines.filter((line) => line.includes('MQTT_PORT'));
    expect(errors).toHaveLength(1);
    expect(JSON.parse(errors[0]!)).toMatchObject({ level: 50 });
  });
});

describe('provisioning over MQTT (provision/request → provision/response/{client_id})', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let owner: Owner;
  let url: string;
  const open: DeviceMqtt[] = [];

  beforeAll(async () => {
    server = await startTestServer();
    url = wsUrl(server.url, '/mqtt');
    await registerUser(api, 'provadmin');
    owner = await registerUser(api, 'provowner');
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.end()));
    await server.close();
  });

  const provisioner = async (clientId: string, key = owner.apiKey) => {
    const c = await connectMqtt(url, { clientId, username: 'provision', password: key });
    open.push(c);
    expect(await c.subscribe(`provision/response/${clientId}`)).toEqual([1]);
    return c;
  };
  const request = async (c: DeviceMqtt, clientId: string, body: unknown) => {
    await c.publish('provision/request', body);
    return (await c.next((m) => m.topic === `provision/response/${clientId}`)).body;
  };

  it('registers the first time and hands out a token the device connects with; a second time needs the current token', async () => {
    const mac = '02:00:5e:10:01:01';
    const c = await provisioner('factory-1');
    const first = await request(c, 'factory-1', { id: 'p1', mac_address: mac, name: 'boiler' });
    expect(first).toMatchObject({ type: 'ack', id: 'p1', status: 201, data: { mac_address: mac, name: 'boiler', credentials: { auth_token: expect.any(String) } } });
    const device = { id: first.data.id as string, token: first.data.credentials.auth_token as string };
    const connected = await connectDevice(url, device);
    open.push(connected);

    const evict = await request(c, 'factory-1', { id: 'p2', mac_address: mac });
    expect(evict).toMatchObject({ type: 'error', id: 'p2', code: 'already_exists', message: expect.stringMatching(/current token/) });
    expect(connected.client.connected).toBe(true);

    const renewed = await request(c, 'factory-1', { ref: 'p3', mac_address: mac, current_token: device.token });
    expect(renewed).toMatchObject({ type: 'ack', ref: 'p3', status: 200, data: { id: device.id } });
    await connected.closed();
    await expect(connectDevice(url, device)).rejects.toMatchObject({ code: 5 });
    open.push(await connectDevice(url, { id: device.id, token: renewed.data.credentials.auth_token as string }));
  });

  it('answers invalid requests with validation_failed, refuses a bad key at CONNECT, and keeps provisioners to their own topics', async () => {
    const c = await provisioner('factory-2');
    expect(await request(c, 'factory-2', { mac_address: 'not a mac' })).toMatchObject({ type: 'error', code: 'validation_failed' });
    expect(await c.subscribe('provision/response/+')).toEqual([128]);
    void c.subscribe('provision/response/factory-1').catch(() => undefined);
    await c.closed();
    await expect(connectMqtt(url, { clientId: 'factory-3', username: 'provision', password: `${owner.apiKey}x` })).rejects.toMatchObject({ code: 5 });
    const d = await provisioner('factory-4');
    await expect(d.publish('devices/anything/telemetry', { sensor_readings: { t: 1 } })).rejects.toThrow();
    await d.closed();
  });
});

describe('stopping with MQTT devices connected', () => {
  it('closes their connections and stops promptly', async () => {
    const port = await freePort();
    const server = await startTestServer({ MQTT_PORT: String(port) });
    const api = client(() => server.url);
    await registerUser(api, 'stopadmin');
    const stopOwner = await registerUser(api, 'stopowner');
    const [one, two] = [await deviceOf(api, stopOwner), await deviceOf(api, stopOwner)];
    const tcp = await connectDevice(`mqtt://127.0.0.1:${port}`, one);
    const ws = await connectDevice(wsUrl(server.url, '/mqtt'), two);
    const started = Date.now();
    await server.close();
    expect(Date.now() - started).toBeLessThan(5_000);
    await tcp.closed();
    await ws.closed();
  });
});

describe('one rate budget per device, whatever the transport', () => {
  it('counts HTTP and MQTT together; past the limit an MQTT message is not acknowledged and the connection closes', async () => {
    const port = await freePort();
    const server = await startTestServer({ MQTT_PORT: String(port), RATE_LIMIT_PER_MINUTE: '3' });
    try {
      const api = client(() => server.url);
      await registerUser(api, 'rateadmin');
      const d = await deviceOf(api, await registerUser(api, 'rateowner'));
      expect((await api.post(`/api/devices/${d.id}/data`, { sensor_readings: { t: 1 } }, { token: d.token })).status).toBe(201);
      expect((await api.post(`/api/devices/${d.id}/data`, { sensor_readings: { t: 2 } }, { token: d.token })).status).toBe(201);
      const c = await connectDevice(`mqtt://127.0.0.1:${port}`, d);
      await c.publish(`devices/${d.id}/telemetry`, { sensor_readings: { t: 3 } });
      await expect(c.publish(`devices/${d.id}/telemetry`, { sensor_readings: { t: 4 } })).rejects.toThrow();
      await c.closed();
      expect((await api.post(`/api/devices/${d.id}/data`, { sensor_readings: { t: 5 } }, { token: d.token })).status).toBe(429);
    } finally {
      await server.close();
    }
  });
});
