import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import type { Data } from '../helpers/fixtures.js';
import { startMosquitto, type Mosquitto } from '../helpers/mosquitto.js';
import { connectMqtt, isReply, type DeviceMqtt } from '../helpers/mqtt-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { allRawReadings, deviceOf, type Owner } from '../helpers/telemetry-fixtures.js';
import { eventually } from '../helpers/ws-client.js';

interface Health {
  mqtt: { broker?: { url: string; state: string }; tcp?: unknown };
}

describe('MQTT_BROKER_URL: the server as a client of a real Mosquitto', () => {
  let mosquitto: Mosquitto;
  let server: TestServer;
  const api = client(() => server.url);
  let owner: Owner;
  const open: DeviceMqtt[] = [];

  const connected = async () => eventually(async () => (await api.get<Data<Health>>('/api/health')).body.data.mqtt.broker?.state === 'connected');

  beforeAll(async () => {
    mosquitto = await startMosquitto();
    server = await startTestServer({ MQTT_BROKER_URL: mosquitto.url, MQTT_CLIENT_ID: `iot-test-${Date.now()}` });
    await registerUser(api, 'bridgeadmin');
    owner = await registerUser(api, 'bridgeowner');
    await connected();
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.end()));
    await server.close();
    await mosquitto.stop();
  });

  /** A device on the broker (which, here, authenticates nobody: that is the broker's job). */
  const deviceOnBroker = async (id: string) => {
    const c = await connectMqtt(mosquitto.url, { clientId: id, clean: false });
    open.push(c);
    expect(await c.subscribe([`devices/${id}/replies`, `devices/${id}/commands/+`, `devices/${id}/config`])).toEqual([1, 1, 1]);
    return c;
  };

  it('turns the embedded broker off and reports the broker (without credentials) in /api/health', async () => {
    const health = (await api.get<Data<Health>>('/api/health')).body.data;
    expect(health.mqtt).toEqual({ broker: { url: mosquitto.url, state: 'connected' } });
  });

  it('stores what a device publishes through the broker and answers it on replies', async () => {
    const d = await deviceOf(api, owner);
    const c = await deviceOnBroker(d.id);
    await c.publish(`devices/${d.id}/telemetry`, { id: 'b1', sensor_readings: { temperature: 20.5 } });
    expect((await c.next(isReply(d.id))).body).toMatchObject({ type: 'ack', id: 'b1', accepted: 1 });
    expect((await allRawReadings(api, d.id, owner.token)).map((r) => r.value)).toEqual([20.5]);
    await c.publish(`devices/${d.id}/telemetry`, { id: 'b2', sensor_readings: { temperature: 'warm' } });
    expect((await c.next(isReply(d.id))).body).toMatchObject({ type: 'error', id: 'b2', code: 'validation_failed' });
  });

  it('publishes queued commands (QoS 1) and the retained configuration through the broker; results come back', async () => {
    const d = await deviceOf(api, owner, { configuration: { interval: 5 } });
    const c = await deviceOnBroker(d.id);
    const queued = (await api.post<Data<{ id: string }>>(`/api/devices/${d.id}/commands`, { command_type: 'reboot' }, { token: owner.token })).body.data;
    expect((await c.next((m) => m.topic === `devices/${d.id}/commands/${queued.id}`)).body).toMatchObject({ id: queued.id, status: 'sent' });
    await c.publish(`devices/${d.id}/commands/${queued.id}/result`, { status: 'executed' });
    expect((await c.next(isReply(d.id))).body).toMatchObject({ type: 'ack', command_id: queued.id, status: 'executed' });

    expect((await api.put(`/api/devices/${d.id}`, { configuration: { interval: 15 } }, { token: owner.token })).status).toBe(200);
    expect((await c.next((m) => m.topic === `devices/${d.id}/config`)).body).toEqual({ interval: 15 });

    // Deleted, the device has no desired configuration left on the broker.
    expect((await api.del(`/api/devices/${d.id}`, { token: owner.token })).status).toBe(200);
    await c.next((m) => m.topic === `devices/${d.id}/config` && m.body.__text__ === '');
    const late = await connectMqtt(mosquitto.url, { clientId: `late-${d.id}` });
    open.push(late);
    await late.subscribe([`devices/${d.id}/config`, `marker/${d.id}`]);
    // The broker sends retained messages on SUBACK, before anything published after it.
    await late.publish(`marker/${d.id}`, 'after');
    await late.next((m) => m.topic === `marker/${d.id}`);
    expect(late.received.filter((m) => m.topic === `devices/${d.id}/config`)).toEqual([]);
  });

  it('keeps a persistent session: what devices publish while the server is down is stored once it is back', async () => {
    const d = await deviceOf(api, owner);
    const c = await deviceOnBroker(d.id);
    await server.server.close();
    await c.publish(`devices/${d.id}/telemetry`, { idempotency_key: 'while-down', sensor_readings: { temperature: 7 } });
    await server.restart();
    await connected();
    await eventually(async () => (await allRawReadings(api, d.id, owner.token)).length === 1);
  });
});

describe('the HTTP endpoint an existing broker calls to authenticate devices and check topics', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let owner: Owner;
  let device: { id: string; token: string };
  let other: { id: string; token: string };

  beforeAll(async () => {
    server = await startTestServer();
    await registerUser(api, 'authadmin');
    owner = await registerUser(api, 'authowner');
    device = await deviceOf(api, owner);
    other = await deviceOf(api, owner);
  });
  afterAll(async () => server.close());

  const post = async (path: string, body: unknown) => {
    const answer = await api.post<Data<{ result: string }>>(path, body);
    return { status: answer.status, result: answer.body.data?.result };
  };

  it('EMQX authentication: allow a device with its token (as password or username), deny a wrong one, ignore other clients', async () => {
    expect(await post('/api/mqtt/auth', { clientid: device.id, username: device.id, password: device.token, peerhost: '10.0.0.1' })).toEqual({ status: 200, result: 'allow' });
    expect(await post('/api/mqtt/auth', { clientid: device.id, username: device.token })).toEqual({ status: 200, result: 'allow' });
    expect(await post('/api/mqtt/auth', { clientid: device.id, password: `${device.token}x` })).toEqual({ status: 200, result: 'deny' });
    expect(await post('/api/mqtt/auth', { clientid: other.id, password: device.token })).toEqual({ status: 200, result: 'deny' });
    expect(await post('/api/mqtt/auth', { clientid: 'iot-controller', username: 'server', password: 'whatever' })).toEqual({ status: 200, result: 'ignore' });
  });

  it('EMQX authorization: a device publishes its device → server topics and subscribes under its own prefix only', async () => {
    expect(await post('/api/mqtt/authz', { clientid: device.id, topic: `devices/${device.id}/telemetry`, action: 'publish' })).toEqual({ status: 200, result: 'allow' });
    expect(await post('/api/mqtt/authz', { clientid: device.id, topic: `devices/${device.id}/config`, action: 'publish' })).toEqual({ status: 200, result: 'deny' });
    expect(await post('/api/mqtt/authz', { clientid: device.id, topic: `devices/${other.id}/telemetry`, action: 'publish' })).toEqual({ status: 200, result: 'deny' });
    expect(await post('/api/mqtt/authz', { clientid: device.id, topic: `devices/${device.id}/#`, action: 'subscribe' })).toEqual({ status: 200, result: 'allow' });
    expect(await post('/api/mqtt/authz', { clientid: device.id, topic: 'devices/#', action: 'subscribe' })).toEqual({ status: 200, result: 'deny' });
  });

  it('mosquitto-go-auth HTTP backend: the status is the verdict', async () => {
    expect((await post('/api/mqtt/user', { clientid: device.id, username: device.id, password: device.token })).status).toBe(200);
    expect((await post('/api/mqtt/user', { clientid: device.id, username: device.id, password: 'nope-nope-nope' })).status).toBe(403);
    expect((await post('/api/mqtt/superuser', { username: device.id })).status).toBe(403);
    expect((await post('/api/mqtt/acl', { clientid: device.id, username: device.id, topic: `devices/${device.id}/heartbeat`, acc: 2 })).status).toBe(200);
    expect((await post('/api/mqtt/acl', { clientid: device.id, username: device.id, topic: `devices/${device.id}/replies`, acc: 4 })).status).toBe(200);
    expect((await post('/api/mqtt/acl', { clientid: device.id, username: device.id, topic: `devices/${other.id}/replies`, acc: 4 })).status).toBe(403);
    expect((await post('/api/mqtt/acl', { clientid: device.id, username: device.id, topic: `devices/${device.id}/replies`, acc: 2 })).status).toBe(403);
  });

  it('refuses malformed requests with 400', async () => {
    expect((await post('/api/mqtt/authz', { clientid: device.id, topic: 'x', action: 'delete' })).status).toBe(400);
    expect((await post('/api/mqtt/auth', { username: 'no client id' })).status).toBe(400);
  });
});
