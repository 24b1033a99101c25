import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { MAX_PROJECTION_LAG } from '../../src/commands/telemetry.js';
import { client, registerUser } from '../helpers/client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('ingestion under overload', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let device: { id: string; token: string };

  beforeAll(async () => {
    server = await startTestServer();
    const user = await registerUser(api, 'overloaded');
    const created = await api.post('/api/devices', { name: 'busy', type: 'sensor' }, { token: user.token });
    device = { id: created.body.data.id, token: created.body.data.credentials.auth_token };
  });
  afterAll(() => server.close());

  it('answers 503 with Retry-After and stores nothing while the read models trail the log too far', async () => {
    const lag = vi.spyOn(server.server.services.runner, 'lag').mockReturnValue(MAX_PROJECTION_LAG + 1);
    try {
      const before = (await api.get('/api/health')).body.data.position;
      const answer = await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 20 } }, { token: device.token });
      expect(answer.status).toBe(503);
      expect(answer.body.error.code).toBe('service_unavailable');
      expect(answer.headers.get('retry-after')).toBe('1');
      expect((await api.post(`/api/devices/${device.id}/heartbeat`, {}, { token: device.token })).status).toBe(503);
      expect((await api.get('/api/health')).body.data.position).toBe(before);
    } finally {
      lag.mockRestore();
    }
  });

  it('accepts again once they have caught up', async () => {
    const answer = await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 20 } }, { token: device.token });
    expect(answer.status).toBe(201);
  });
});
