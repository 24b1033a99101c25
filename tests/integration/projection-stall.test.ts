import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import { createDevice, expectError, type Data, type Group, type List } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/**
 * A trigger refusing inserts into the groups read model stands in for a full disk or a broken
 * file: the batch holding a group.created fails, and the read models stall at their checkpoint.
 */
describe('read models stalled by a failing batch', () => {
  let server: TestServer;
  const api = client(() => server.url);
  const retries: Array<() => void> = [];
  let owner: Awaited<ReturnType<typeof registerUser>>;
  let device: Awaited<ReturnType<typeof createDevice>>;
  const headPosition = () => server.server.services.log.headPosition();
  const groupNames = async () => (await api.get<List<Group>>('/api/groups', { token: owner.token })).body.data.map((g) => g.name);

  beforeAll(async () => {
    server = await startTestServer({}, undefined, {
      projectionRetryTimer: (_delayMs, retry) => {
        retries.push(retry);
        return () => undefined;
      },
    });
    owner = await registerUser(api);
    device = await createDevice(api, owner.token);
    server.server.db.exec(`CREATE TRIGGER disk_full BEFORE INSERT ON groups BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`);
  });
  afterAll(() => server.close());

  it('answers 503 with Retry-After for the write whose batch failed, without SQL in the message', async () => {
    const failed = await api.post('/api/groups', { name: 'Floor 1' }, { token: owner.token });
    const error = expectError(failed, 503, 'service_unavailable');
    expect(error.message).not.toMatch(/disk|SQL/i);
    expect(failed.headers.get('retry-after')).toBe('5');
  });

  it('says so at /api/health, so whatever watches the server knows', async () => {
    expectError(await api.get('/api/health'), 503, 'service_unavailable');
  });

  it('refuses writes before storing them, readings included, and keeps answering reads', async () => {
    const head = headPosition();
    expectError(await api.post('/api/groups', { name: 'Floor 2' }, { token: owner.token }), 503, 'service_unavailable');
    // Writes decided from their own stream, which would otherwise be stored and only then refused.
    expectError(await api.put(`/api/devices/${device.id}`, { description: 'moved' }, { token: owner.token }), 503, 'service_unavailable');
    expectError(await api.post(`/api/devices/${device.id}/commands`, { command_type: 'reboot' }, { token: owner.token }), 503, 'service_unavailable');
    const reading = await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 20 } }, { token: device.credentials.auth_token });
    expectError(reading, 503, 'service_unavailable');
    expect(headPosition()).toBe(head);
    const read = await api.get<Data<{ id: string }>>(`/api/devices/${device.id}`, { token: owner.token });
    expect(read.status).toBe(200);
    expect(read.body.data.id).toBe(device.id);
    expect(await groupNames()).toEqual([]);
  });

  it('resumes on a retry once the cause is gone: the stored write appears once, and writes are taken again', async () => {
    server.server.db.exec(`DROP TRIGGER disk_full`);
    retries.shift()!();
    await expect.poll(async () => (await api.get('/api/health')).status).toBe(200);
    expect(await groupNames()).toEqual(['Floor 1']);
    expect((await api.post('/api/groups', { name: 'Floor 2' }, { token: owner.token })).status).toBe(201);
    expect((await api.post(`/api/devices/${device.id}/data`, { sensor_readings: { temperature: 20 } }, { token: device.credentials.auth_token })).status).toBe(201);
    expect((await groupNames()).sort()).toEqual(['Floor 1', 'Floor 2']);
    expect(retries).toEqual([]);
  });
});
