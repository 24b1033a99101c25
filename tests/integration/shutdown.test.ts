import { connect as connectTcp } from 'node:net';
import { describe, expect, it } from 'vitest';
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
