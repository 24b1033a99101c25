import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('server smoke', () => {
  let server: TestServer;
  const api = client(() => server.url);
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  it('answers health with the log position', async () => {
    const answer = await api.get('/api/health');
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ data: { status: 'ok', position: 0, mqtt: { tcp: { state: 'off', port: null }, tls: { state: 'off', port: null }, websocket: '/mqtt' } } });
    expect(answer.headers.get('x-request-id')).toBeTruthy();
  });

  it('registers, then reads its own user', async () => {
    const user = await registerUser(api, 'smoke_user');
    const me = await api.get('/api/auth/user', { token: user.token });
    expect(me.status).toBe(200);
    expect(me.body.data).toMatchObject({ username: 'smoke_user', role: 'admin', device_count: 0 });
  });
});
