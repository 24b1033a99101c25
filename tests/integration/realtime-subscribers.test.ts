import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect as connectTcp } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { ManualClock } from '../../src/domain/clock.js';
import { streams } from '../../src/domain/events.js';
import { startServer } from '../../src/server.js';
import { client, registerUser, type Client } from '../helpers/client.js';
import { uniqueName, type Data, type List, type StoredEvent } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { deviceOf, submitOk, type Owner } from '../helpers/telemetry-fixtures.js';
import { captureServerSockets, connect, eventually, refusedStatus, wsUrl, type Message, type WsClient } from '../helpers/ws-client.js';

interface LiveEvent {
  type: 'event';
  position: number;
  event_type: string;
  stream_id: string;
  data: Record<string, unknown>;
  recorded_at: string;
}

const isEvent = (m: Message): boolean => m.type === 'event';
const firstOf = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value[0] : value);
const eventsOf = (ws: WsClient): LiveEvent[] => ws.received.filter(isEvent) as LiveEvent[];
const positionsOf = (ws: WsClient): number[] => eventsOf(ws).map((e) => e.position);
const SECRET_KEY = /(_hash|password|token|api_key)$/i;

/** Every event after `after` the caller may read, through GET /api/events (every page). */
async function logEvents(api: Client, token: string, after: number, query = ''): Promise<StoredEvent[]> {
  const all: StoredEvent[] = [];
  for (let cursor = after; ; ) {
    const answer = await api.get<List<StoredEvent> & { meta: { next_position: number } }>(`/api/events?after_position=${cursor}&limit=500${query ? `&${query}` : ''}`, { token });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    all.push(...answer.body.data);
    if (answer.body.data.length < 500) return all;
    cursor = answer.body.meta.next_position;
  }
}

/** Every key of a JSON value, at any depth. */
function keysDeep(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(keysDeep);
  if (value !== null && typeof value === 'object') return Object.entries(value).flatMap(([key, inner]) => [key, ...keysDeep(inner)]);
  return [];
}

/** Strictly increasing, hence no duplicate. */
function expectStrictlyIncreasing(positions: readonly number[]): void {
  for (let i = 1; i < positions.length; i++) expect(positions[i]!, `positions ${positions.join(',')}`).toBeGreaterThan(positions[i - 1]!);
}

/**
 * Once the read models have applied the whole log, a ping answered by pong proves every
 * live message that was going to this socket has arrived (one socket delivers in order).
 */
async function settle(server: TestServer, ...sockets: WsClient[]): Promise<void> {
  const { log, runner } = server.server.services;
  await runner.waitFor(log.headPosition());
  await Promise.all(
    sockets.map(async (ws) => {
      ws.send({ type: 'ping' });
      await ws.next((m) => m.type === 'pong');
    }),
  );
}

describe('realtime subscribers (/ws)', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let admin: Owner;
  let owner: Owner;
  const open: WsClient[] = [];

  /** Connects to /ws with the query string given and waits for the welcome. */
  const subscriber = async (query: string, headers: Record<string, string> = {}): Promise<{ ws: WsClient; welcome: Message }> => {
    const ws = await connect(wsUrl(server.url, `/ws${query}`), { headers });
    open.push(ws);
    const welcome = await ws.next((m) => m.type === 'welcome');
    return { ws, welcome };
  };
  /** Connects with a token and subscribes; resolves after {type:'subscribed'}. */
  const subscribed = async (token: string, subscribe: Record<string, unknown> = {}): Promise<WsClient> => {
    const { ws } = await subscriber(`?token=${encodeURIComponent(token)}`);
    ws.send({ type: 'subscribe', ...subscribe });
    await ws.next((m) => m.type === 'subscribed');
    return ws;
  };

  beforeAll(async () => {
    server = await startTestServer();
    admin = await registerUser(api, uniqueName('rtadmin'));
    owner = await registerUser(api, uniqueName('rtowner'));
  });
  afterAll(async () => {
    await Promise.all(open.map((ws) => ws.close().catch(() => undefined)));
    await server.close();
  });

  describe('authentication before the upgrade', () => {
    it('refuses /ws with no token, a bad token or a device token: 401 before any upgrade', async () => {
      const device = await deviceOf(api, owner);
      expect(await refusedStatus(wsUrl(server.url, '/ws'))).toBe(401);
      expect(await refusedStatus(wsUrl(server.url, '/ws?token=not-a-token'))).toBe(401);
      expect(await refusedStatus(wsUrl(server.url, '/ws'), { headers: { authorization: 'Bearer not-a-token' } })).toBe(401);
      expect(await refusedStatus(wsUrl(server.url, '/ws'), { headers: { cookie: 'session=not-a-token' } })).toBe(401);
      expect(await refusedStatus(wsUrl(server.url, `/ws?token=${encodeURIComponent(device.token)}`))).toBe(401);
      expect(await refusedStatus(wsUrl(server.url, '/ws'), { headers: { 'x-device-token': device.token } })).toBe(401);
      // The contract: ?token= or the session cookie, "anything else is refused": a valid token in a header too.
      expect(await refusedStatus(wsUrl(server.url, '/ws'), { headers: { authorization: `Bearer ${owner.token}` } })).toBe(401);
      expect(await refusedStatus(wsUrl(server.url, '/ws'), { headers: { 'x-api-key': owner.apiKey } })).toBe(401);
    });

    it('answers X-Request-Id on a refused upgrade (the id of its error body, or the caller\'s) and on the 101 of an accepted one', async () => {
      const upgradeAnswer = (path: string, headers: Record<string, string> = {}) =>
        new Promise<{ status: number; requestId: string | undefined; body: string }>((resolve, reject) => {
          const request = httpRequest(`${server.url}${path}`, {
            headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers },
          });
          request.on('response', (res) => {
            let body = '';
            res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, requestId: firstOf(res.headers['x-request-id']), body }));
          });
          request.on('upgrade', (res, socket) => {
            socket.destroy();
            resolve({ status: res.statusCode ?? 0, requestId: firstOf(res.headers['x-request-id']), body: '' });
          });
          request.on('error', reject);
          request.end();
        });

      for (const path of ['/ws?token=not-a-token', '/ws/nope']) {
        const refused = await upgradeAnswer(path);
        expect(refused.status).toBeGreaterThanOrEqual(401);
        expect(refused.requestId).toMatch(/^[0-9a-f-]{36}$/);
        expect((JSON.parse(refused.body) as { error: { request_id: string } }).error.request_id).toBe(refused.requestId);
      }
      expect((await upgradeAnswer('/ws?token=not-a-token', { 'x-request-id': 'trace-42' })).requestId).toBe('trace-42');
      const accepted = await upgradeAnswer(`/ws?token=${encodeURIComponent(owner.token)}`, { 'x-request-id': 'trace-43' });
      expect(accepted).toMatchObject({ status: 101, requestId: 'trace-43' });
    });

    it('answers an upgrade whose URL does not parse with 400, not an open socket left unanswered', async () => {
      const { port } = new URL(server.url);
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = connectTcp(Number(port), '127.0.0.1', () => {
          socket.write('GET http://[ HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
        });
        let received = '';
        socket.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
        socket.on('close', () => resolve(received));
        socket.on('error', reject);
        socket.setTimeout(5_000, () => reject(new Error(`no answer, only: ${received}`)));
      });
      expect(answer).toMatch(/^HTTP\/1\.1 400 /);
      expect(answer).toMatch(/X-Request-Id: [0-9a-f-]{36}/);
      expect(answer).toContain('"code":"validation_failed"');
    });

    it('refuses /ws/device with a user session token or API key (401), and an unknown path with 404', async () => {
      expect(await refusedStatus(wsUrl(server.url, `/ws/device?token=${encodeURIComponent(owner.token)}`))).toBe(401);
      expect(await refusedStatus(wsUrl(server.url, `/ws/device?token=${encodeURIComponent(owner.apiKey)}`))).toBe(401);
      expect(await refusedStatus(wsUrl(server.url, '/ws/device'), { headers: { authorization: `Bearer ${owner.token}` } })).toBe(401);
      expect(await refusedStatus(wsUrl(server.url, '/ws/device'))).toBe(401);
      expect(await refusedStatus(wsUrl(server.url, `/ws/nope?token=${encodeURIComponent(owner.token)}`))).toBe(404);
      expect(await refusedStatus(wsUrl(server.url, '/ws/nope'))).toBe(404);
    });

    it("refuses the session cookie from the opaque origin \"null\" (403), as CORS does; a token in ?token= from anywhere", async () => {
      const cookie = `session=${encodeURIComponent(owner.token)}`;
      expect(await refusedStatus(wsUrl(server.url, '/ws'), { headers: { cookie, origin: 'null' } })).toBe(403);
      expect(await refusedStatus(wsUrl(server.url, '/ws?token='), { headers: { cookie, origin: 'null' } })).toBe(403);
      expect((await subscriber('', { cookie, origin: 'https://dashboard.example' })).ws.isOpen()).toBe(true);
      expect((await subscriber(`?token=${encodeURIComponent(owner.token)}`, { origin: 'null' })).ws.isOpen()).toBe(true);
      expect(await refusedStatus(wsUrl(server.url, '/ws'), { headers: { origin: 'null' } })).toBe(401);
    });

    it('accepts a session token or an API key in ?token=, or the session cookie, and welcomes with the position', async () => {
      const head = server.server.services.log.headPosition();
      const viaSession = await subscriber(`?token=${encodeURIComponent(owner.token)}`);
      const viaApiKey = await subscriber(`?token=${encodeURIComponent(owner.apiKey)}`);
      const viaCookie = await subscriber('', { cookie: `theme=dark; session=${encodeURIComponent(owner.token)}` });
      for (const { welcome } of [viaSession, viaApiKey, viaCookie]) {
        expect(welcome).toEqual({ type: 'welcome', position: expect.any(Number) });
        expect(welcome.position).toBe(head);
      }
      for (const { ws } of [viaSession, viaApiKey, viaCookie]) expect(ws.isOpen()).toBe(true);
    });
  });

  describe('subscribing', () => {
    it('answers subscribed, then sends live events as {type, position, event_type, stream_id, data, recorded_at}', async () => {
      const device = await deviceOf(api, owner);
      const ws = await subscribed(owner.token);
      const accepted = await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 21.5 } });

      const message = (await ws.next((m) => isEvent(m) && m.event_type === 'readings.recorded' && m.data.device_id === device.id)) as LiveEvent;
      expect(Object.keys(message).sort()).toEqual(['data', 'event_type', 'position', 'recorded_at', 'stream_id', 'type']);
      expect(message.position).toBe(accepted.position);
      expect(message.stream_id).toBe(`telemetry-${device.id}`);
      expect(message.recorded_at).toBe(server.clock.now().toISOString());

      // The same event as the log holds it.
      const stored = (await logEvents(api, owner.token, message.position - 1, `stream_id=${message.stream_id}`)).find((e) => e.position === message.position);
      expect(stored).toMatchObject({ position: message.position, type: message.event_type, stream_id: message.stream_id, recorded_at: message.recorded_at });
      expect(message.data).toEqual(stored!.data);
      const readings = message.data.readings as Array<{ sensor_type: string; value: number }>;
      expect(readings).toEqual([expect.objectContaining({ sensor_type: 'temperature', value: 21.5 })]);
    });

    it('sends only the event types asked for', async () => {
      const device = await deviceOf(api, owner);
      const ws = await subscribed(owner.token, { event_types: ['device.updated'] });
      await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 1 } });
      const update = await api.put(`/api/devices/${device.id}`, { description: 'renamed' }, { token: owner.token });
      expect(update.status).toBe(200);
      await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 2 } });

      const updated = await ws.next((m) => isEvent(m) && m.event_type === 'device.updated');
      expect(updated.data.device_id).toBe(device.id);
      await settle(server, ws);
      expect(eventsOf(ws).map((e) => e.event_type)).toEqual(['device.updated']);
    });

    it('sends only events about the devices asked for', async () => {
      const mine = await deviceOf(api, owner);
      const other = await deviceOf(api, owner);
      const ws = await subscribed(owner.token, { device_ids: [mine.id] });
      await submitOk(api, other.id, other.token, { sensor_readings: { temperature: 1 } });
      await submitOk(api, mine.id, mine.token, { sensor_readings: { temperature: 2 } });
      await api.put(`/api/devices/${other.id}`, { description: 'other' }, { token: owner.token });
      await api.put(`/api/devices/${mine.id}`, { description: 'mine' }, { token: owner.token });
      await settle(server, ws);

      const received = eventsOf(ws);
      expect(received.length).toBeGreaterThanOrEqual(2);
      for (const event of received) expect(event.data.device_id, JSON.stringify(event)).toBe(mine.id);
      expect(received.map((e) => e.event_type)).toEqual(expect.arrayContaining(['readings.recorded', 'device.updated']));
      // Exactly what the log holds about that device since the subscription.
      const expected = await logEvents(api, owner.token, received[0]!.position - 1, `device_id=${mine.id}`);
      expect(received.map((e) => e.position)).toEqual(expected.map((e) => e.position));
    });

    it('combines event_types and device_ids', async () => {
      const mine = await deviceOf(api, owner);
      const other = await deviceOf(api, owner);
      // An id in capitals names the same device.
      const ws = await subscribed(owner.token, { device_ids: [mine.id.toUpperCase()], event_types: ['readings.recorded'] });
      await submitOk(api, other.id, other.token, { sensor_readings: { temperature: 1 } });
      await submitOk(api, mine.id, mine.token, { sensor_readings: { temperature: 2 } });
      await api.put(`/api/devices/${mine.id}`, { description: 'mine' }, { token: owner.token });
      await settle(server, ws);
      const received = eventsOf(ws);
      expect(received.map((e) => [e.event_type, e.data.device_id])).toEqual([['readings.recorded', mine.id]]);
    });

    it('never sends a secret: no *_hash, password or token field, and no secret value', async () => {
      const from = server.server.services.log.headPosition();
      const ws = await subscribed(admin.token, { from_position: 0 });
      // Secrets appear in events recorded now (registration, login, a device with a chosen token) and before.
      const fresh = await registerUser(api, uniqueName('secret'));
      const login = await api.post<Data<{ token: string }>>('/api/auth/login', { username: fresh.username, password: 'correct horse' });
      expect(login.status).toBe(200);
      const deviceToken = `dev-token-${'x'.repeat(24)}`;
      const device = await deviceOf(api, fresh, { auth_token: deviceToken });
      await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 3 } });
      await settle(server, ws);

      const received = eventsOf(ws);
      const log = await logEvents(api, admin.token, 0);
      expect(received.map((e) => e.position)).toEqual(log.map((e) => e.position));
      expect(received.some((e) => e.position > from && e.event_type === 'user.registered')).toBe(true);
      expect(received.some((e) => e.event_type === 'session.started')).toBe(true);
      // The log keeps hashes; the live stream leaves them out.
      expect(log.some((e) => keysDeep(e.data).some((k) => k.endsWith('_hash')))).toBe(true);
      for (const event of received) {
        for (const key of keysDeep(event.data)) expect(key, `${event.event_type} at ${event.position}`).not.toMatch(SECRET_KEY);
      }
      const text = JSON.stringify(ws.received);
      for (const secret of [fresh.token, fresh.apiKey, login.body.data.token, deviceToken, 'correct horse', admin.token, owner.token]) expect(text).not.toContain(secret);
    });

    it('keeps users apart: a user receives only events of their own resources, an admin everything', async () => {
      const alice = await registerUser(api, uniqueName('alice'));
      const bob = await registerUser(api, uniqueName('bob'));
      const aliceDevice = await deviceOf(api, alice);
      const bobDevice = await deviceOf(api, bob);
      const start = server.server.services.log.headPosition();
      const a = await subscribed(alice.token, { from_position: start });
      const b = await subscribed(bob.token, { from_position: start });
      const all = await subscribed(admin.token, { from_position: start });

      for (let i = 0; i < 5; i++) {
        await Promise.all([
          submitOk(api, aliceDevice.id, aliceDevice.token, { sensor_readings: { temperature: i } }),
          submitOk(api, bobDevice.id, bobDevice.token, { sensor_readings: { humidity: i } }),
        ]);
      }
      await api.put(`/api/devices/${aliceDevice.id}`, { configuration: { rate: 5 } }, { token: alice.token });
      await api.post(`/api/devices/${bobDevice.id}/commands`, { command_type: 'reboot' }, { token: bob.token });
      await settle(server, a, b, all);

      const aliceLog = (await logEvents(api, alice.token, start)).map((e) => e.position);
      const bobLog = (await logEvents(api, bob.token, start)).map((e) => e.position);
      const adminLog = (await logEvents(api, admin.token, start)).map((e) => e.position);
      expect(aliceLog.length).toBeGreaterThanOrEqual(6);
      expect(bobLog.length).toBeGreaterThanOrEqual(6);
      expect(positionsOf(a)).toEqual(aliceLog);
      expect(positionsOf(b)).toEqual(bobLog);
      expect(positionsOf(all)).toEqual(adminLog);
      expect(positionsOf(a).filter((p) => positionsOf(b).includes(p))).toEqual([]);
      for (const event of eventsOf(a)) expect(event.stream_id).not.toContain(bobDevice.id);
      for (const event of eventsOf(b)) expect(event.stream_id).not.toContain(aliceDevice.id);
      expect(positionsOf(all)).toEqual(expect.arrayContaining([...aliceLog, ...bobLog]));
    });

    it('catches up from from_position, then follows live, with no gap and no duplicate', async () => {
      const device = await deviceOf(api, owner);
      const before = server.server.services.log.headPosition();
      for (let i = 0; i < 3; i++) await submitOk(api, device.id, device.token, { sensor_readings: { temperature: i } });
      const ws = await subscribed(owner.token, { from_position: before, device_ids: [device.id] });
      for (let i = 3; i < 6; i++) await submitOk(api, device.id, device.token, { sensor_readings: { temperature: i } });
      await settle(server, ws);
      const expected = (await logEvents(api, owner.token, before, `device_id=${device.id}`)).map((e) => e.position);
      expect(expected.length).toBeGreaterThanOrEqual(6);
      expect(positionsOf(ws)).toEqual(expected);
    });
  });

  describe('invalid messages', () => {
    it('answers non-JSON and unknown types with an error and keeps the socket usable', async () => {
      const { ws } = await subscriber(`?token=${encodeURIComponent(owner.token)}`);
      ws.sendRaw('{not json');
      expect(await ws.next((m) => m.type === 'error')).toMatchObject({ type: 'error', code: expect.any(String), message: expect.any(String) });
      ws.send({ type: 'frobnicate' });
      expect(await ws.next((m) => m.type === 'error')).toMatchObject({ type: 'error', code: expect.any(String) });
      ws.send({ type: 'subscribe', event_types: ['no.such.type'] });
      expect(await ws.next((m) => m.type === 'error')).toMatchObject({ type: 'error' });
      ws.send({ type: 'ping' });
      expect(await ws.next((m) => m.type === 'pong')).toMatchObject({ type: 'pong' });
      expect(ws.isOpen()).toBe(true);
    });

    it('refuses subscriptions that could never deliver: empty filters, a device id that is no UUID, a from_position past the head', async () => {
      const { ws } = await subscriber(`?token=${encodeURIComponent(owner.token)}`);
      for (const subscribe of [{ event_types: [] }, { device_ids: [] }, { device_ids: ['abc'] }, { from_position: 1_000_000_000 }]) {
        ws.send({ type: 'subscribe', ...subscribe });
        const refused = await ws.next((m) => m.type === 'error' || m.type === 'subscribed');
        expect(refused, JSON.stringify(subscribe)).toMatchObject({ type: 'error', code: 'validation_failed' });
      }
      expect(String((ws.received.at(-1) as { message?: string }).message)).toContain('past the log');
      ws.send({ type: 'subscribe', from_position: 0 });
      expect(await ws.next((m) => m.type === 'subscribed' || m.type === 'error')).toMatchObject({ type: 'subscribed' });
    });

    it('closes with 1008 after five invalid messages in a row', async () => {
      const { ws } = await subscriber(`?token=${encodeURIComponent(owner.token)}`);
      const garbage = ['nope', '[1,2', JSON.stringify({ type: 'what' }), JSON.stringify([]), JSON.stringify({ type: 'subscribe', from_position: -1 })];
      for (const raw of garbage) ws.sendRaw(raw);
      const closed = await ws.waitForClose();
      expect(closed.code).toBe(1008);
      expect(ws.received.filter((m) => m.type === 'error').length).toBeGreaterThanOrEqual(4);
    });

    it('counts invalid messages in a row: a valid message in between resets the count', async () => {
      const { ws } = await subscriber(`?token=${encodeURIComponent(owner.token)}`);
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 4; i++) ws.sendRaw('garbage');
        ws.send({ type: 'ping' });
        await ws.next((m) => m.type === 'pong');
      }
      expect(ws.received.filter((m) => m.type === 'error')).toHaveLength(12);
      expect(ws.isOpen()).toBe(true);
    });
  });

  describe('logout', () => {
    it("closes the logged-out session's sockets with 4401 and leaves other sessions' sockets open", async () => {
      const user = await registerUser(api, uniqueName('leaver'));
      const login = await api.post<Data<{ token: string }>>('/api/auth/login', { username: user.username, password: 'correct horse' });
      expect(login.status).toBe(200);
      const other = login.body.data.token;

      const byQuery = await subscribed(user.token);
      const { ws: byCookie } = await subscriber('', { cookie: `session=${encodeURIComponent(user.token)}` });
      const otherSession = await subscribed(other);
      const apiKey = await subscribed(user.apiKey);

      const out = await api.post('/api/auth/logout', undefined, { token: user.token });
      expect(out.status).toBe(200);
      expect((await byQuery.waitForClose()).code).toBe(4401);
      expect((await byCookie.waitForClose()).code).toBe(4401);

      for (const ws of [otherSession, apiKey]) {
        ws.send({ type: 'ping' });
        await ws.next((m) => m.type === 'pong');
        expect(ws.isOpen()).toBe(true);
      }
      expect(await refusedStatus(wsUrl(server.url, `/ws?token=${encodeURIComponent(user.token)}`))).toBe(401);
      expect((await api.get('/api/auth/user', { token: user.token })).status).toBe(401);
    });
  });
});

describe('realtime ping', () => {
  it('drops a peer that does not answer pings, keeps one that does', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'iot-ws-ping-'));
    const config = loadConfig({ PORT: '0', MQTT_PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, BCRYPT_ROUNDS: '4', LOG_LEVEL: 'silent' });
    const running = await startServer(config, { clock: new ManualClock('2026-03-01T12:00:00.000Z'), logger: pino({ level: 'silent' }), pingIntervalMs: 200 });
    const api = client(() => running.url);
    try {
      const user = await registerUser(api, uniqueName('pinger'));
      const url = wsUrl(running.url, `/ws?token=${encodeURIComponent(user.token)}`);
      const started = Date.now();
      const dead = await connect(url, { autoPong: false });
      const alive = await connect(url);
      const closed = await dead.waitForClose(4_000);
      expect(Date.now() - started).toBeLessThan(2_500);
      expect(dead.pings).toBeGreaterThanOrEqual(1);
      expect(closed.code).toBe(1006);
      // The answering peer outlives several more intervals.
      const pingsAtDrop = alive.pings;
      await eventually(() => alive.pings >= pingsAtDrop + 2, 3_000);
      expect(alive.isOpen()).toBe(true);
      alive.send({ type: 'ping' });
      expect(await alive.next((m) => m.type === 'pong')).toMatchObject({ type: 'pong' });
      await alive.close();
    } finally {
      await running.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('realtime slow reader', () => {
  const MAX_BUFFERED = 2048;
  let server: TestServer;
  const api = client(() => server.url);

  beforeAll(async () => {
    server = await startTestServer({ WS_MAX_BUFFERED_BYTES: String(MAX_BUFFERED) });
  });
  afterAll(() => server.close());

  it('closes a reader that stops reading with 1013; it resumes from its last position without loss; others are unaffected', async () => {
    const user = await registerUser(api, uniqueName('slowpoke'));
    const device = await deviceOf(api, user);
    const capture = captureServerSockets(server.server.http);
    const start = server.server.services.log.headPosition();
    const token = encodeURIComponent(user.token);
    const slow = await connect(wsUrl(server.url, `/ws?token=${token}&tag=slow`));
    const steady = await connect(wsUrl(server.url, `/ws?token=${token}`));
    for (const ws of [slow, steady]) {
      ws.send({ type: 'subscribe', from_position: start });
      await ws.next((m) => m.type === 'subscribed');
    }
    const serverSide = await capture.socket('slow');

    // Big events (a ~300 kB configuration: device.updated plus its update_configuration command)
    // until the server's send buffer for the paused reader passes the bound.
    const reconfigure = async (round: number): Promise<void> => {
      const answer = await api.put(`/api/devices/${device.id}`, { configuration: { round, blob: 'x'.repeat(300_000) } }, { token: user.token });
      expect(answer.status, JSON.stringify(answer.body).slice(0, 300)).toBe(200);
    };
    slow.ws.pause();
    let round = 0;
    for (; round < 200 && serverSide.writableLength <= MAX_BUFFERED; round++) {
      await reconfigure(round);
      await server.server.services.runner.waitFor(server.server.services.log.headPosition());
    }
    expect(serverSide.writableLength, `after ${round} rounds`).toBeGreaterThan(MAX_BUFFERED);
    // A few more: the next send finds the buffer over the bound and closes.
    for (let extra = 0; extra < 3; extra++, round++) await reconfigure(round);
    await submitOk(api, device.id, device.token, { sensor_readings: { temperature: 1 } });
    await settle(server, steady);

    slow.ws.resume();
    const closed = await slow.waitForClose(10_000);
    expect(closed.code).toBe(1013);

    const expected = (await logEvents(api, user.token, start)).map((e) => e.position);
    const got = positionsOf(slow);
    expectStrictlyIncreasing(got);
    expect(got.length).toBeLessThan(expected.length);
    // What arrived is a prefix of the log: nothing skipped before the close.
    expect(got).toEqual(expected.slice(0, got.length));

    // Reconnect from the last position received: everything after it, nothing twice.
    const last = got.length > 0 ? got[got.length - 1]! : start;
    const again = await connect(wsUrl(server.url, `/ws?token=${token}`));
    again.send({ type: 'subscribe', from_position: last });
    await again.next((m) => m.type === 'subscribed');
    await again.until((received) => received.some((m) => isEvent(m) && m.position === expected[expected.length - 1]), 10_000);
    await settle(server, again);
    const resumed = positionsOf(again);
    expectStrictlyIncreasing(resumed);
    expect([...got, ...resumed]).toEqual(expected);

    // The reader that kept up received everything, in order, and was never closed.
    expect(steady.isOpen()).toBe(true);
    expect(positionsOf(steady)).toEqual(expected);
    capture.stop();
    await Promise.all([again.close(), steady.close()]);
  });
});

describe('realtime subscriber that stalls while catching up', () => {
  const MAX_BUFFERED = 64 * 1024;
  let server: TestServer;
  const api = client(() => server.url);

  beforeAll(async () => {
    server = await startTestServer({ WS_MAX_BUFFERED_BYTES: String(MAX_BUFFERED) });
  });
  afterAll(() => server.close());

  it('holds a bounded live tail, closes it with 1013 once it falls further behind, and it resumes without loss', async () => {
    const user = await registerUser(api, uniqueName('stalled'));
    const device = await deviceOf(api, user);
    const capture = captureServerSockets(server.server.http);
    const start = server.server.services.log.headPosition();
    // History larger than the socket buffers, so the catch-up waits on the paused reader.
    for (let round = 0; round < 12; round++) {
      const answer = await api.put(`/api/devices/${device.id}`, { configuration: { round, blob: 'x'.repeat(300_000) } }, { token: user.token });
      expect(answer.status).toBe(200);
    }
    const reader = await connect(wsUrl(server.url, `/ws?token=${encodeURIComponent(user.token)}&tag=stalled`));
    const serverSide = await capture.socket('stalled');
    reader.ws.pause();
    reader.send({ type: 'subscribe', from_position: start });
    await eventually(() => serverSide.writableLength > 0, 10_000);

    // Live events worth eight times the bound arrive while it is stalled in the catch-up.
    const batch = (round: number) => ({ sensor_readings: Array.from({ length: 100 }, (_, i) => ({ sensor_type: `s${i}`, value: round + i / 100, unit: 'unit' })) });
    for (let round = 0; round < 80; round++) await submitOk(api, device.id, device.token, batch(round));
    const expected = (await logEvents(api, user.token, start)).map((e) => e.position);

    reader.ws.resume();
    const closed = await reader.waitForClose(15_000);
    expect(closed.code, 'the close frame reaches a reader that reads again').toBe(1013);
    const got = positionsOf(reader);
    expectStrictlyIncreasing(got);
    expect(got.length).toBeLessThan(expected.length);
    expect(got).toEqual(expected.slice(0, got.length));

    const again = await connect(wsUrl(server.url, `/ws?token=${encodeURIComponent(user.token)}`));
    again.send({ type: 'subscribe', from_position: got.at(-1) ?? start });
    await again.until((received) => received.some((m) => isEvent(m) && m.position === expected.at(-1)), 20_000);
    expect([...got, ...positionsOf(again)]).toEqual(expected);
    capture.stop();
    await again.close();
  });

  it('keeps a reader that catches up faster than events arrive, dropping only its live tail', async () => {
    const user = await registerUser(api, uniqueName('sprinter'));
    const device = await deviceOf(api, user);
    const start = server.server.services.log.headPosition();
    const batch = (round: number) => ({ sensor_readings: Array.from({ length: 100 }, (_, i) => ({ sensor_type: `s${i}`, value: round + i / 100, unit: 'unit' })) });
    for (let round = 0; round < 200; round++) await submitOk(api, device.id, device.token, batch(round));
    const reader = await connect(wsUrl(server.url, `/ws?token=${encodeURIComponent(user.token)}`));
    reader.send({ type: 'subscribe', event_types: ['readings.recorded'], from_position: start });
    // Live events keep arriving, several bounds' worth, while it reads the history.
    for (let round = 200; round < 260; round++) await submitOk(api, device.id, device.token, batch(round));
    const expected = (await logEvents(api, user.token, start, 'type=readings.recorded')).map((e) => e.position);
    await reader.until((received) => received.some((m) => isEvent(m) && m.position === expected.at(-1)), 20_000);
    expect(positionsOf(reader)).toEqual(expected);
    expect(reader.isOpen()).toBe(true);
    await reader.close();
  });
});

describe('realtime catch-up of a large history (default WS_MAX_BUFFERED_BYTES)', () => {
  it('does not close a reader that keeps reading while it catches up', async () => {
    const server = await startTestServer();
    const api = client(() => server.url);
    try {
      const user = await registerUser(api, uniqueName('catcher'));
      const device = await deviceOf(api, user);
      const start = server.server.services.log.headPosition();
      // About 12 MB of history: more than the socket buffers plus the 1 MiB bound.
      const big = (round: number) => ({ sensor_readings: Array.from({ length: 1000 }, (_, i) => ({ sensor_type: `s${i % 10}`, value: round * 1000 + i, unit: 'u' })) });
      for (let round = 0; round < 120; round += 8) await Promise.all(Array.from({ length: 8 }, (_, j) => submitOk(api, device.id, device.token, big(round + j))));
      const expected = (await logEvents(api, user.token, start)).map((e) => e.position);

      const reader = await connect(wsUrl(server.url, `/ws?token=${encodeURIComponent(user.token)}`));
      reader.send({ type: 'subscribe', from_position: start });
      await reader.next((m) => m.type === 'subscribed');
      await reader.until((received) => received.some((m) => isEvent(m) && m.position === expected[expected.length - 1]), 20_000);
      expect(positionsOf(reader)).toEqual(expected);
      expect(reader.isOpen()).toBe(true);
      await reader.close();
    } finally {
      await server.close();
    }
  });
});

describe('a replay of the whole log', () => {
  it('leaves the server answering other requests while it runs, page after page', async () => {
    const server = await startTestServer();
    const api = client(() => server.url);
    try {
      const user = await registerUser(api, uniqueName('replayer'));
      const device = await deviceOf(api, user);
      const { log, runner } = server.server.services;
      const beat = { type: 'device.heartbeat', data: { device_id: device.id, device_status: null, firmware_version: null, metrics: null } } as const;
      // Ten catch-up pages of history, stored straight into the log.
      for (let i = 0; i < 50; i++) await log.append([{ streamId: streams.telemetry(device.id), expectedVersion: 'any', events: Array.from({ length: 100 }, () => beat) }]);
      await runner.waitFor(log.headPosition());
      const total = 5_000;

      const reader = await connect(wsUrl(server.url, `/ws?token=${encodeURIComponent(user.token)}`));
      reader.send({ type: 'subscribe', event_types: ['device.heartbeat'], from_position: 0 });
      await reader.next(isEvent);
      const health = await api.get('/api/health');
      expect(health.status).toBe(200);
      // Answered while the replay was still under way: without a turn of the event loop between
      // pages, the health request waited for all of it, and every event had arrived first.
      expect(reader.received.filter(isEvent).length).toBeLessThan(total);
      await reader.until((received) => received.filter(isEvent).length === total, 20_000);
      await reader.close();
    } finally {
      await server.close();
    }
  });
});

describe('session expiry', () => {
  it('closes a socket with 4401 once the session it was opened with expires; an API key socket stays', async () => {
    const short = await startTestServer({ SESSION_TTL_SECONDS: '60' });
    const api = client(() => short.url);
    try {
      short.server.timers.stop();
      const user = await registerUser(api, uniqueName('expiring'));
      const bySession = await connect(wsUrl(short.url, `/ws?token=${encodeURIComponent(user.token)}`));
      const byApiKey = await connect(wsUrl(short.url, `/ws?token=${encodeURIComponent(user.apiKey)}`));
      short.clock.advance(59_000);
      await short.server.timers.runAll();
      expect(bySession.isOpen()).toBe(true);
      short.clock.advance(1_000);
      await short.server.timers.runAll();
      expect((await bySession.waitForClose()).code).toBe(4401);
      expect((await api.get('/api/auth/user', { token: user.token })).status).toBe(401);
      byApiKey.send({ type: 'ping' });
      expect(await byApiKey.next((m) => m.type === 'pong')).toMatchObject({ type: 'pong' });
      await byApiKey.close();
    } finally {
      await short.close();
    }
  });
});

describe('/ws with CORS_ORIGINS set', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ CORS_ORIGINS: 'https://app.example' });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('given a session cookie, then only a listed origin (or none) may subscribe with it', async () => {
    const api = client(() => server.url);
    const user = await registerUser(api, uniqueName('corsws'));
    const cookie = `session=${encodeURIComponent(user.token)}`;
    expect(await refusedStatus(wsUrl(server.url, '/ws'), { headers: { cookie, origin: 'https://evil.example' } })).toBe(403);
    for (const headers of [{ cookie, origin: 'https://app.example' }, { cookie }] as Array<Record<string, string>>) {
      const ws = await connect(wsUrl(server.url, '/ws'), { headers });
      expect((await ws.next((m) => m.type === 'welcome')).type).toBe('welcome');
      await ws.close();
    }
  });
});
