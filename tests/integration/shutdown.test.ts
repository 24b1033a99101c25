import { rmSync } from 'node:fs';
import { connect as connectTcp } from 'node:net';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { startServer } from '../../src/server.js';
import { startTestServer } from '../helpers/server.js';

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

describe('one server per data directory', () => {
  it('refuses a second server on a data directory in use, and lets one start once the first stopped', async () => {
    const first = await startTestServer();
    const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: first.dataDir, BCRYPT_ROUNDS: '4', LOG_LEVEL: 'silent' });
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
