import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import { createDevice, expectValidation, uniqueName, type RegisteredDevice } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('as_of answers', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let token: string;
  let device: RegisteredDevice;

  beforeAll(async () => {
    server = await startTestServer();
    token = (await registerUser(api, uniqueName('asof'))).token;
    device = await createDevice(api, token, { name: 'then' });
    server.clock.advance(60_000);
    await api.put(`/api/devices/${device.id}`, { name: 'now' }, { token });
  });
  afterAll(() => server?.close());

  const routes = () => [`/api/devices/${device.id}`, `/api/devices/${device.id}/status`];

  it('echo the moment asked for in meta.as_of, in UTC, whatever zone it was asked in', async () => {
    const asked = new Date(Date.parse(device.created_at) + 30_000);
    const inParis = new Date(asked.getTime() + 2 * 3_600_000).toISOString().replace('Z', '+02:00');
    for (const path of routes()) {
      for (const value of [asked.toISOString(), inParis]) {
        const answer = await api.get(`${path}?as_of=${encodeURIComponent(value)}`, { token });
        expect(answer.status, JSON.stringify(answer.body)).toBe(200);
        expect(answer.body.meta).toEqual({ as_of: asked.toISOString() });
      }
    }
    const then = await api.get(`/api/devices/${device.id}?as_of=${encodeURIComponent(asked.toISOString())}`, { token });
    expect(then.body.data.name).toBe('then');
  });

  it('read a date alone as midnight UTC, and say so', async () => {
    const day = new Date(Date.parse(device.created_at) + 86_400_000).toISOString().slice(0, 10);
    const answer = await api.get(`/api/devices/${device.id}?as_of=${day}`, { token });
    expect(answer.body.meta).toEqual({ as_of: `${day}T00:00:00.000Z` });
  });

  it('refuse a time without a zone with 400: the moment would depend on where the client is', async () => {
    const local = new Date(Date.parse(device.created_at) + 30_000).toISOString().slice(0, 19);
    for (const path of routes()) {
      const error = expectValidation(await api.get(`${path}?as_of=${local}`, { token }), 'as_of');
      expect(error.details[0]?.message).toBe('a time needs its zone (Z or an offset such as +02:00)');
    }
  });

  it('carry no as_of in the live view', async () => {
    for (const path of routes()) expect((await api.get(path, { token })).body.meta).toBeUndefined();
  });

  it('carry what the log can tell of the live view: the configuration reported then, and how it differed', async () => {
    const before = server.clock.now().toISOString();
    server.clock.advance(1000);
    const heartbeat = await api.post(`/api/devices/${device.id}/heartbeat`, { configuration: { rate: 5 } }, { headers: { 'x-device-token': device.credentials.auth_token } });
    expect(heartbeat.status, JSON.stringify(heartbeat.body)).toBe(200);
    server.clock.advance(1000);
    const at = (moment: string) => api.get(`/api/devices/${device.id}?as_of=${encodeURIComponent(moment)}`, { token });
    expect((await at(before)).body.data).toMatchObject({ desired_configuration: {}, reported_configuration: null, configuration_in_sync: false, firmware: null });
    const after = (await at(server.clock.now().toISOString())).body.data;
    expect(after).toMatchObject({ desired_configuration: {}, reported_configuration: { rate: 5 }, configuration_in_sync: false });
    expect(after.configuration_diff).toEqual((await api.get(`/api/devices/${device.id}`, { token })).body.data.configuration_diff);
  });
});
