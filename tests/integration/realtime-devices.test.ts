import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import { uniqueName, type Data, type Device } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { allRawReadings, deviceOf, type Owner } from '../helpers/telemetry-fixtures.js';
import { captureServerSockets, connect, eventually, refusedStatus, serverSawClose, wsUrl, type Message, type WsClient } from '../helpers/ws-client.js';

/** OFFLINE_AFTER_SECONDS for this file. */
const OFFLINE_AFTER = 60;
const SECOND = 1000;

interface Command {
  id: string;
  device_id: string;
  command_type: string;
  parameters: Record<string, unknown>;
  priority: string;
  status: string;
  sent_at: string | null;
  executed_at: string | null;
  response: Record<string, unknown> | null;
}

type DeviceWithToken = Awaited<ReturnType<typeof deviceOf>>;

describe('device channel (/ws/device)', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let owner: Owner;
  let capture: ReturnType<typeof captureServerSockets>;
  const open: WsClient[] = [];
  let tags = 0;

  beforeAll(async () => {
    server = await startTestServer({ OFFLINE_AFTER_SECONDS: String(OFFLINE_AFTER) });
    capture = captureServerSockets(server.server.http);
    await registerUser(api, uniqueName('dadmin'));
    owner = await registerUser(api, uniqueName('downer'));
  });
  afterAll(async () => {
    await Promise.all(open.map((ws) => ws.close().catch(() => undefined)));
    capture.stop();
    await server.close();
  });

  /** Connects a device by ?token= (tagged so the test can see the server's side of the socket). */
  const connectDevice = async (device: DeviceWithToken, tag = `dev${++tags}`): Promise<WsClient> => {
    const ws = await connect(wsUrl(server.url, `/ws/device?token=${encodeURIComponent(device.token)}&tag=${tag}`));
    open.push(ws);
    return ws;
  };
  const deviceStatus = async (id: string): Promise<string> => {
    const answer = await api.get<Data<Device>>(`/api/devices/${id}`, { token: owner.token });
    expect(answer.status).toBe(200);
    return answer.body.data.status;
  };
  const command = async (id: string): Promise<Command> => {
    const answer = await api.get<Data<Command>>(`/api/commands/${id}`, { token: owner.token });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    return answer.body.data;
  };
  const queue = async (deviceId: string, body: Record<string, unknown>): Promise<Command> => {
    const answer = await api.post<Data<Command>>(`/api/devices/${deviceId}/commands`, body, { token: owner.token });
    expect(answer.status, JSON.stringify(answer.body)).toBe(202);
    expect(answer.body.data.status).toBe('pending');
    return answer.body.data;
  };
  const isCommand = (m: Message): boolean => m.type === 'command';

  it('accepts the device token in ?token=, Authorization: Bearer or X-Device-Token', async () => {
    const device = await deviceOf(api, owner);
    const url = wsUrl(server.url, '/ws/device');
    const viaQuery = await connect(`${url}?token=${encodeURIComponent(device.token)}`);
    const viaBearer = await connect(url, { headers: { authorization: `Bearer ${device.token}` } });
    const viaHeader = await connect(url, { headers: { 'x-device-token': device.token } });
    open.push(viaQuery, viaBearer, viaHeader);
    for (const ws of [viaQuery, viaBearer, viaHeader]) expect(ws.isOpen()).toBe(true);
    // Each is a working channel: a heartbeat is acknowledged.
    for (const [i, ws] of [viaQuery, viaBearer, viaHeader].entries()) {
      ws.send({ type: 'heartbeat', id: `hb${i}` });
      expect(await ws.next((m) => m.type === 'ack')).toMatchObject({ type: 'ack', ref: `hb${i}` });
    }
    expect(await refusedStatus(`${url}?token=${encodeURIComponent(`${device.token}x`)}`)).toBe(401);
    await Promise.all([viaQuery.close(), viaBearer.close(), viaHeader.close()]);
  });

  it('marks the device online on connect, heard from then (last_seen), now and as of now', async () => {
    const device = await deviceOf(api, owner);
    expect(await deviceStatus(device.id)).toBe('offline');
    const connectedAt = server.clock.now().toISOString();
    await connectDevice(device);
    await eventually(async () => (await deviceStatus(device.id)) === 'online');
    const live = await api.get<Data<{ last_seen: string | null }>>(`/api/devices/${device.id}`, { token: owner.token });
    expect(live.body.data.last_seen).toBe(connectedAt);
    const asOf = await api.get<Data<{ last_seen: string | null }>>(`/api/devices/${device.id}?as_of=${encodeURIComponent(connectedAt)}`, { token: owner.token });
    expect(asOf.body.data.last_seen).toBe(connectedAt);
  });

  it('pushes a command queued while the device is connected; it becomes sent', async () => {
    const device = await deviceOf(api, owner);
    const ws = await connectDevice(device);
    await eventually(async () => (await deviceStatus(device.id)) === 'online');
    const queued = await queue(device.id, { command_type: 'set_led', parameters: { on: true }, priority: 'high' });

    const pushed = await ws.next(isCommand);
    expect(pushed.command).toMatchObject({ id: queued.id, device_id: device.id, command_type: 'set_led', parameters: { on: true }, priority: 'high', status: 'sent' });
    expect(pushed.command.sent_at).toEqual(expect.any(String));
    expect((await command(queued.id)).status).toBe('sent');
    // Pushed once only.
    await queue(device.id, { command_type: 'second' });
    const second = await ws.next(isCommand);
    expect(second.command.command_type).toBe('second');
    expect(ws.received.filter(isCommand).map((m) => m.command.id as string)).toEqual([queued.id, second.command.id]);
  });

  it('pushes to the newest of two connections of one device: after a reconnect, the old one is most likely dead', async () => {
    const device = await deviceOf(api, owner);
    const old = await connectDevice(device);
    await eventually(async () => (await deviceStatus(device.id)) === 'online');
    const fresh = await connectDevice(device);
    const queued = await queue(device.id, { command_type: 'after_reconnect' });
    expect((await fresh.next(isCommand)).command.id).toBe(queued.id);
    expect(old.received.filter(isCommand)).toEqual([]);
  });

  it('pushes commands queued while it was away on connect, highest priority first, then oldest', async () => {
    const device = await deviceOf(api, owner);
    const low = await queue(device.id, { command_type: 'c_low', priority: 'low' });
    const normal1 = await queue(device.id, { command_type: 'c_normal1' });
    const critical = await queue(device.id, { command_type: 'c_critical', priority: 'critical' });
    const high = await queue(device.id, { command_type: 'c_high', priority: 'high' });
    const normal2 = await queue(device.id, { command_type: 'c_normal2', priority: 'normal' });

    const ws = await connectDevice(device);
    await ws.until((received) => received.filter(isCommand).length === 5);
    const pushed = ws.received.filter(isCommand).map((m) => m.command as Command);
    expect(pushed.map((c) => c.id)).toEqual([critical.id, high.id, normal1.id, normal2.id, low.id]);
    for (const c of pushed) expect(c.status).toBe('sent');
    for (const c of [low, normal1, critical, high, normal2]) expect((await command(c.id)).status).toBe('sent');
  });

  it('acknowledges readings with ref, accepted and position, and stores them', async () => {
    const device = await deviceOf(api, owner);
    const ws = await connectDevice(device);
    ws.send({ type: 'readings', id: 'x', sensor_readings: { temperature: 21.5, humidity: 40 } });
    const ack = await ws.next((m) => m.type === 'ack' || m.type === 'error');
    expect(ack).toMatchObject({ type: 'ack', ref: 'x', accepted: 2, position: expect.any(Number) });

    const at = new Date(server.clock.now().getTime() - 1000).toISOString();
    ws.send({ type: 'readings', id: 7, sensor_readings: [{ sensor_type: 'pressure', value: 1013, unit: 'hPa', timestamp: at }] });
    expect(await ws.next((m) => m.type === 'ack' || m.type === 'error')).toMatchObject({ type: 'ack', ref: 7, accepted: 1 });

    const stored = await allRawReadings(api, device.id, owner.token);
    expect(stored.map((r) => [r.sensor_type, r.value]).sort()).toEqual([
      ['humidity', 40],
      ['pressure', 1013],
      ['temperature', 21.5],
    ]);
    expect(stored.find((r) => r.sensor_type === 'pressure')).toMatchObject({ unit: 'hPa', timestamp: at });
    const logged = server.server.db.prepare<[number], { type: string }>('SELECT type FROM events WHERE position = ?').get(ack.position as number);
    expect(logged?.type).toBe('readings.recorded');
  });

  it('refuses invalid readings with validation_failed and stores nothing', async () => {
    const device = await deviceOf(api, owner);
    const ws = await connectDevice(device);
    const invalid: unknown[] = [
      { type: 'readings', id: 'bad1', sensor_readings: { temperature: 'hot' } },
      { type: 'readings', id: 'bad2', sensor_readings: [{ sensor_type: 'temperature', value: 1 }, { sensor_type: 'temperature', value: 'x' }] },
      { type: 'readings', id: 'bad3', sensor_readings: [] },
      { type: 'readings', id: 'bad4' },
    ];
    for (const message of invalid) {
      ws.send(message);
      const answer = await ws.next((m) => m.type === 'ack' || m.type === 'error');
      expect(answer, JSON.stringify(message)).toMatchObject({ type: 'error', code: 'validation_failed', message: expect.any(String) });
    }
    expect(await allRawReadings(api, device.id, owner.token)).toEqual([]);
    // Still usable afterwards.
    ws.send({ type: 'readings', id: 'good', sensor_readings: { temperature: 5 } });
    expect(await ws.next((m) => m.type === 'ack' || m.type === 'error')).toMatchObject({ type: 'ack', ref: 'good', accepted: 1 });
    expect(await allRawReadings(api, device.id, owner.token)).toHaveLength(1);
  });

  it('answers non-JSON and unknown message types with an error', async () => {
    const device = await deviceOf(api, owner);
    const ws = await connectDevice(device);
    ws.sendRaw('not json');
    expect(await ws.next((m) => m.type === 'error')).toMatchObject({ type: 'error', code: 'invalid_json' });
    ws.send({ type: 'teleport', id: 'q' });
    expect(await ws.next((m) => m.type === 'error')).toMatchObject({ type: 'error', code: 'validation_failed' });
    expect(ws.isOpen()).toBe(true);
  });

  it('closes with 1008 after five invalid messages in a row; a valid message resets the count', async () => {
    const device = await deviceOf(api, owner);
    const ws = await connectDevice(device);
    const reply = (): Promise<Message> => ws.next((m) => m.type === 'ack' || m.type === 'error');
    for (let i = 0; i < 4; i++) {
      ws.sendRaw('garbage');
      expect(await reply()).toMatchObject({ type: 'error' });
    }
    ws.send({ type: 'heartbeat', id: 'ok' });
    expect(await reply()).toMatchObject({ type: 'ack', ref: 'ok' });
    for (let i = 0; i < 4; i++) {
      ws.send({ type: 'readings', sensor_readings: {} });
      expect(await reply()).toMatchObject({ type: 'error', code: 'validation_failed' });
    }
    expect(ws.isOpen()).toBe(true);
    ws.sendRaw('{');
    expect((await ws.waitForClose()).code).toBe(1008);
  });

  it('refuses a "__proto__" key with validation_failed, as HTTP does, and stores nothing', async () => {
    const device = await deviceOf(api, owner);
    const ws = await connectDevice(device);
    ws.sendRaw('{"type":"readings","id":"p1","sensor_readings":{"temperature":1},"device_status":{"__proto__":{"admin":true}}}');
    expect(await ws.next((m) => m.type === 'ack' || m.type === 'error')).toMatchObject({ type: 'error', code: 'validation_failed', ref: 'p1', details: [{ path: '__proto__' }] });
    ws.sendRaw('{"type":"heartbeat","ref":"p2","metrics":{"\\u005f_proto__":1}}');
    expect(await ws.next((m) => m.type === 'ack' || m.type === 'error')).toMatchObject({ type: 'error', code: 'validation_failed', ref: 'p2' });
    const http = await api.post(`/api/devices/${device.id}/data`, JSON.parse('{"sensor_readings":{"temperature":1},"device_status":{"__proto__":{"admin":true}}}'), { token: device.token });
    expect(http.status).toBe(400);
    expect(await allRawReadings(api, device.id, owner.token)).toEqual([]);
  });

  it('answers with the correlation field the device used: id (also as ref) or ref', async () => {
    const device = await deviceOf(api, owner);
    const ws = await connectDevice(device);
    const reply = (): Promise<Message> => ws.next((m) => m.type === 'ack' || m.type === 'error');
    ws.send({ type: 'heartbeat', id: 'by-id' });
    expect(await reply()).toMatchObject({ type: 'ack', id: 'by-id', ref: 'by-id' });
    ws.send({ type: 'heartbeat', ref: 'by-ref' });
    const byRef = await reply();
    expect(byRef).toMatchObject({ type: 'ack', ref: 'by-ref' });
    expect(byRef).not.toHaveProperty('id');
    ws.send({ type: 'readings', ref: 42, sensor_readings: { temperature: 'hot' } });
    expect(await reply()).toMatchObject({ type: 'error', code: 'validation_failed', ref: 42 });
  });

  it('takes firmware progress as HTTP does', async () => {
    const device = await deviceOf(api, owner);
    const ws = await connectDevice(device);
    ws.send({ type: 'firmware_progress', id: 'f1', version: '2.0.0', status: 'downloading' });
    expect(await ws.next((m) => m.type === 'ack' || m.type === 'error')).toMatchObject({ type: 'ack', ref: 'f1', version: '2.0.0', status: 'downloading' });
    ws.send({ type: 'firmware_progress', id: 'f2', version: '2.0.0', status: 'teleporting' });
    expect(await ws.next((m) => m.type === 'ack' || m.type === 'error')).toMatchObject({ type: 'error', code: 'validation_failed', ref: 'f2' });
  });

  it('acknowledges a heartbeat', async () => {
    const device = await deviceOf(api, owner);
    const ws = await connectDevice(device);
    ws.send({ type: 'heartbeat', id: 'hb', firmware_version: '1.2.3', metrics: { cpu: 0.5 } });
    expect(await ws.next((m) => m.type === 'ack' || m.type === 'error')).toMatchObject({ type: 'ack', ref: 'hb' });
    await eventually(async () => (await api.get<Data<Device>>(`/api/devices/${device.id}`, { token: owner.token })).body.data.firmware_version === '1.2.3');
  });

  it('acknowledges a command_result; the command becomes executed', async () => {
    const device = await deviceOf(api, owner);
    const ws = await connectDevice(device);
    const queued = await queue(device.id, { command_type: 'reboot' });
    const pushed = await ws.next(isCommand);
    expect(pushed.command.id).toBe(queued.id);

    ws.send({ type: 'command_result', id: 'r1', command_id: queued.id, status: 'executed', response: { ok: true } });
    expect(await ws.next((m) => m.type === 'ack' || m.type === 'error')).toMatchObject({ type: 'ack', ref: 'r1' });
    const done = await command(queued.id);
    expect(done).toMatchObject({ status: 'executed', response: { ok: true } });
    expect(done.executed_at).toEqual(expect.any(String));

    // Same rules as HTTP: a second result is a conflict.
    ws.send({ type: 'command_result', id: 'r2', command_id: queued.id, status: 'failed' });
    expect(await ws.next((m) => m.type === 'ack' || m.type === 'error')).toMatchObject({ type: 'error', code: 'conflict', ref: 'r2' });
    expect((await command(queued.id)).status).toBe('executed');
  });

  it('stores what a device sent just before hanging up itself', async () => {
    const device = await deviceOf(api, owner);
    const ws = await connectDevice(device);
    for (let i = 0; i < 5; i++) ws.send({ type: 'readings', id: `r${i}`, sensor_readings: { temperature: 20 + i } });
    await ws.close();
    await eventually(async () => (await allRawReadings(api, device.id, owner.token)).length === 5);
    expect((await allRawReadings(api, device.id, owner.token)).map((r) => r.value).sort()).toEqual([20, 21, 22, 23, 24]);
  });

  it('answers messages in the order they came: a result sent twice at once is acked, then refused', async () => {
    const device = await deviceOf(api, owner);
    const ws = await connectDevice(device);
    const queued = await queue(device.id, { command_type: 'reboot' });
    await ws.next(isCommand);
    ws.send({ type: 'command_result', id: 'first', command_id: queued.id, status: 'executed' });
    ws.send({ type: 'command_result', id: 'again', command_id: queued.id, status: 'executed' });
    expect(await ws.next((m) => m.type === 'ack' || m.type === 'error')).toMatchObject({ type: 'ack', ref: 'first' });
    expect(await ws.next((m) => m.type === 'ack' || m.type === 'error')).toMatchObject({ type: 'error', code: 'conflict', ref: 'again' });
  });

  it('stays online while connected however far the clock moves; disconnecting starts the offline deadline', async () => {
    const device = await deviceOf(api, owner);
    const tag = `offline${++tags}`;
    const ws = await connectDevice(device, tag);
    await eventually(async () => (await deviceStatus(device.id)) === 'online');

    for (let i = 0; i < 3; i++) {
      server.clock.advance(10 * OFFLINE_AFTER * SECOND);
      await server.server.timers.runAll();
    }
    expect(await deviceStatus(device.id)).toBe('online');

    const serverSide = await capture.socket(tag);
    await ws.close();
    await serverSawClose(serverSide);

    server.clock.advance((OFFLINE_AFTER - 1) * SECOND);
    await server.server.timers.runAll();
    expect(await deviceStatus(device.id)).toBe('online');

    server.clock.advance(2 * SECOND);
    await server.server.timers.runAll();
    expect(await deviceStatus(device.id)).toBe('offline');
  });

  it('closes a socket opened with a token that provisioning replaced; the new token connects', async () => {
    const mac = '02:00:5e:10:00:7b';
    const device = await deviceOf(api, owner, { mac_address: mac });
    const ws = await connectDevice(device);
    const provisioned = await api.post<Data<{ id: string; credentials: { auth_token: string } }>>('/api/devices/provision', { mac_address: mac, current_token: device.token }, { headers: { 'x-api-key': owner.apiKey } });
    expect(provisioned.status, JSON.stringify(provisioned.body)).toBeLessThan(300);
    expect(provisioned.body.data.id).toBe(device.id);
    const closed = await ws.waitForClose();
    expect(closed.code).toBe(4401);
    expect(await refusedStatus(wsUrl(server.url, `/ws/device?token=${encodeURIComponent(device.token)}`))).toBe(401);
    const renewed = await connectDevice({ ...device, token: provisioned.body.data.credentials.auth_token });
    expect(renewed.isOpen()).toBe(true);
    await renewed.close();
  });

  it("closes a deleted device's socket; its token is refused afterwards", async () => {
    const device = await deviceOf(api, owner);
    const ws = await connectDevice(device);
    await eventually(async () => (await deviceStatus(device.id)) === 'online');
    const deleted = await api.del(`/api/devices/${device.id}`, { token: owner.token });
    expect(deleted.status).toBe(200);
    const closed = await ws.waitForClose();
    expect(closed.code).toBe(4401);
    expect(await refusedStatus(wsUrl(server.url, `/ws/device?token=${encodeURIComponent(device.token)}`))).toBe(401);
  });
});
