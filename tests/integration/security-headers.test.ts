import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { client, registerUser } from '../helpers/client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('security headers', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let user: Awaited<ReturnType<typeof registerUser>>;

  beforeAll(async () => {
    server = await startTestServer();
    user = await registerUser(api);
  });
  afterAll(() => server.close());

  it('sends nosniff on every answer: success, error, unknown route, refused upgrade', async () => {
    const answers = [
      await api.get('/api/health'),
      await api.get('/api/devices', { token: user.token }),
      await api.get('/api/devices'),
      await api.get('/api/nowhere'),
      await api.post('/api/devices', { name: 1 }, { token: user.token }),
    ];
    for (const answer of answers) expect(answer.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await rawAnswer(server.server.port, 'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')).toMatch(/^HTTP\/1.1 401[^]*x-content-type-options: nosniff/i);
    expect(await rawAnswer(server.server.port, 'NOT HTTP\r\n\r\n')).toMatch(/^HTTP\/1.1 400[^]*x-content-type-options: nosniff/i);
  });

  it('forbids caching of answers that carry a secret, and only of those', async () => {
    const name = `nocache_${Date.now() % 100000}`;
    const registered = await api.post('/api/auth/register', { username: name, email: `${name}@example.com`, password: 'correct horse' });
    const login = await api.post('/api/auth/login', { username: name, password: 'correct horse' });
    const device = await api.post('/api/devices', { name: 'd', type: 'sensor' }, { token: user.token });
    const provisioned = await api.post('/api/devices/provision', { mac_address: 'AA:BB:CC:DD:EE:01' }, { token: user.token });
    for (const answer of [registered, login, device, provisioned]) {
      expect(answer.status).toBeLessThan(300);
      expect(answer.headers.get('cache-control')).toBe('no-store');
    }
    expect((await api.get('/api/devices', { token: user.token })).headers.get('cache-control')).toBeNull();
  });
});

/** What the server answers to bytes no HTTP client library would send, once it closes. */
function rawAnswer(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request));
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('utf8')));
    socket.on('error', reject);
    socket.on('close', () => resolve(received));
  });
}
