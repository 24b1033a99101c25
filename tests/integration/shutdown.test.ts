import { rmSync } from 'node:fs';
import { connect as connectTcp } from 'node:net';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { startServer } from '../../src/server.js';
import { client, registerUser } from '../helpers/client.js';
import { createDevice } from '../helpers/fixtures.js';
import { startTestServer } from '../helpers/server.js';
import { keptAliveConnection, settle } from '../helpers/raw-http.js';
import { storedReadingValues } from '../helpers/stored-readings.js';
import { connect, wsUrl } from '../helpers/ws-client.js';

describe('stopping with a request that never finishes', () => {
  it('closes its connection after the grace period instead of waiting for it', async () => {
    const server = await startTestServer({}, undefined, { shutdownGraceMs: 100 });
    const socket = connectTcp(server.server.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    // A body announced at 100,000 bytes, of which a few arrive: the request stays in flight.
    socket.write('POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"user');
    await new Promise((resolve) => setImmediate(resolve));
    await server.close();
    await closed;
    expect(socket.destroyed).toBe(true);
  });
});

describe('stopping with a socket whose peer never answers going-away', () => {
  it('drops it when the grace is over instead of waiting for it', async () => {
    const server = await startTestServer({}, undefined, { shutdownGraceMs: 100 });
    const api = client(() => server.url);
    const user = await registerUser(api);
    const socket = connectTcp(server.server.port, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    // A WebSocket peer that completes the handshake, then reads nothing and answers nothing.
    const upgraded = new Promise<void>((resolve) => socket.once('data', () => resolve()));
    socket.write(
      `GET /ws?token=${encodeURIComponent(user.token)} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    await upgraded;
    socket.on('data', () => undefined);
    const began = Date.now();
    await server.close();
    await closed;
    // Well short of the socket library's own 30 s wait for a close handshake.
    expect(Date.now() - began).toBeLessThan(5_000);
  });
});

describe('one server per data directory', () => {
  it('refuses a second server on a data directory in use, and lets one start once the first stopped', async () => {
    const first = await startTestServer();
    const config = loadConfig({ PORT: '0', MQTT_PORT: '0', HOST: '127.0.0.1', DATA_DIR: first.dataDir, BCRYPT_ROUNDS: '4', LOG_LEVEL: 'silent' });
    const options = { logger: pino({ level: 'silent' }) };
    await expect(startServer(config, options)).rejects.toThrow(/in use by another server/);
    const dataDir = first.dataDir;
    await first.server.close();
    const second = await startServer(config, options);
    expect((await fetch(`${second.url}/api/health`)).status).toBe(200);
    await second.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
});


describe('a stop with requests in flight', () => {
  async function serverWithDevice() {
    const server = await startTestServer();
    const api = client(() => server.url);
    const user = await registerUser(api);
    const device = await createDevice(api, user.token);
    const body = (value: number) => JSON.stringify({ sensor_readings: [{ sensor_type: 'seq', value }] });
    const head = (body: string) =>
      `POST /api/devices/${device.id}/data HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${device.credentials.auth_token}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`;
    return { server, user, device, body, head };
  }

  it('answers a request whose body was still arriving, with Connection: close, and stores it once', async () => {
    const { server, body, head } = await serverWithDevice();
    const connection = await keptAliveConnection(server.server.port);
    const payload = body(41);
    connection.write(`${head(payload)}\r\n${payload.slice(0, 10)}`);
    await settle(server.url);
    const stopped = server.server.close();
    connection.write(payload.slice(10));
    const answer = await connection.ended;
    await stopped;
    expect(answer).toMatch(/^HTTP\/1\.1 201 /);
    expect(answer).toMatch(/\r\nconnection: close\r\n/i);
    expect(storedReadingValues(server.dataDir)).toEqual([41]);
    await server.close();
  });

  it('refuses a request whose headers complete after the stop began by closing its connection unanswered, storing nothing', async () => {
    const { server, body, head } = await serverWithDevice();
    const kept = await keptAliveConnection(server.server.port);
    const payload = body(42);
    kept.write(head(payload));
    await settle(server.url);
    const stopped = server.server.close();
    kept.write(`\r\n${payload}`);
    const answer = await kept.ended;
    await stopped;
    expect(answer).toBe('');
    expect(storedReadingValues(server.dataDir)).toEqual([]);
    await server.close();
  });

  it('answers a request in flight when a pipelined one arrives behind it after the stop began, and refuses only the later one', async () => {
    const { server, body, head } = await serverWithDevice();
    const connection = await keptAliveConnection(server.server.port);
    const [first, second] = [body(43), body(44)];
    connection.write(`${head(first)}\r\n${first.slice(0, 10)}`);
    await settle(server.url);
    const stopped = server.server.close();
    connection.write(`${first.slice(10)}${head(second)}\r\n${second}`);
    const answer = await connection.ended;
    await stopped;
    expect(answer.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    expect(answer).toMatch(/^HTTP\/1\.1 201 /);
    expect(storedReadingValues(server.dataDir)).toEqual([43]);
    await server.close();
  });

  it('says going-away (1001) to /ws and /ws/device sockets', async () => {
    const { server, user, device } = await serverWithDevice();
    const subscriber = await connect(wsUrl(server.url, `/ws?token=${encodeURIComponent(user.token)}`));
    const deviceSocket = await connect(wsUrl(server.url, `/ws/device?token=${encodeURIComponent(device.credentials.auth_token)}`));
    const stopped = server.server.close();
    expect((await subscriber.waitForClose()).code).toBe(1001);
    expect((await deviceSocket.waitForClose()).code).toBe(1001);
    await stopped;
    await server.close();
  });

  it('says going-away to a socket whose upgrade was still authenticating when the stop began', async () => {
    const { server, user } = await serverWithDevice();
    // The stop begins as the upgrade request arrives, before its session token is verified.
    let stopped: Promise<void> | undefined;
    server.server.http.prependOnceListener('upgrade', () => (stopped = server.server.close()));
    const subscriber = await connect(wsUrl(server.url, `/ws?token=${encodeURIComponent(user.token)}`));
    expect((await subscriber.waitForClose()).code).toBe(1001);
    await stopped;
    await server.close();
  });
});
