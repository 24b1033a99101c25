import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { deviceOf } from '../helpers/telemetry-fixtures.js';
import { captureServerSockets, connect, eventually, wsUrl } from '../helpers/ws-client.js';

/** The bound, small so that a burst of a few thousand messages passes it many times over. */
const BOUND = 4096;
const BURST = 3_000;

describe('device socket: what a device sends is read no faster than it is handled', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let capture: ReturnType<typeof captureServerSockets>;

  beforeAll(async () => {
    server = await startTestServer({ WS_MAX_BUFFERED_BYTES: String(BOUND) });
    capture = captureServerSockets(server.server.http);
  });
  afterAll(async () => {
    capture.stop();
    await server.close();
  });

  it('given a burst far past the bound, then the server stops reading the socket while it catches up, and answers every message in order', async () => {
    const owner = await registerUser(api, 'backlogowner');
    const device = await deviceOf(api, owner);
    const ws = await connect(wsUrl(server.url, `/ws/device?token=${encodeURIComponent(device.token)}&tag=burst`));
    const serverSide = await capture.socket('burst');
    // Counts the server's pauses of the socket (a refusal is handled without waiting on I/O, so a
    // pause may last no longer than the turn of the event loop that drains the backlog).
    let pauses = 0;
    const socket = serverSide as unknown as { pause(): unknown; isPaused(): boolean };
    const pause = socket.pause.bind(socket);
    socket.pause = () => (pauses++, pause());
    // Well-formed but refused (a timestamp too far ahead): answered, never stored, never counted as garbage.
    for (let id = 1; id <= BURST; id++) ws.send({ type: 'readings', id, timestamp: '2099-01-01T00:00:00.000Z', sensor_readings: { temperature: 20 } });
    await ws.until((received) => received.filter((m) => m.type === 'error').length === BURST, 60_000);
    const answered = ws.received.filter((m) => m.type === 'error');
    expect(answered.map((m) => m.id)).toEqual(Array.from({ length: BURST }, (_, i) => i + 1));
    expect(pauses).toBeGreaterThan(0);
    await eventually(() => !socket.isPaused());
    expect(ws.isOpen()).toBe(true);
    await ws.close();
  }, 90_000);
});
