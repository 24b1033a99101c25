import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, registerUser } from '../helpers/client.js';
import { createDevice } from '../helpers/fixtures.js';
import { connectDevice, freePort, type DeviceMqtt } from '../helpers/mqtt-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { allRawReadings } from '../helpers/telemetry-fixtures.js';

/** Stalled read models are transient: MQTT answers them as it answers an overload. */
describe('MQTT while the read models are stalled', () => {
  let server: TestServer;
  const api = client(() => server.url);
  const retries: Array<() => void> = [];
  let mqttUrl: string;
  let owner: Awaited<ReturnType<typeof registerUser>>;
  let device: { id: string; token: string };
  let early: DeviceMqtt;
  let firstWrite: ReturnType<typeof api.post>;
  let releaseDeviceLock = () => undefined as void;

  beforeAll(async () => {
    const port = await freePort();
    server = await startTestServer({ MQTT_PORT: String(port) }, undefined, {
      projectionRetryTimer: (_delayMs, retry) => {
        retries.push(retry);
        return () => undefined;
      },
    });
    server.server.timers.stop();
    mqttUrl = `mqtt://127.0.0.1:${port}`;
    owner = await registerUser(api);
    const created = await createDevice(api, owner.token);
    device = { id: created.id, token: created.credentials.auth_token };
    early = await connectDevice(mqttUrl, device);
    // Its came-online event is stored after CONNACK: shown before the stall, it is not the write held below.
    const status = async () => (await api.get<{ data: { status: string } }>(`/api/devices/${device.id}`, { token: owner.token })).body.data.status;
    while ((await status()) !== 'online') await new Promise((resolve) => setImmediate(resolve));
    // A trigger refusing inserts into a read model stands in for a full disk: the batch fails, the read models stall.
    server.server.db.exec(`CREATE TRIGGER disk_full BEFORE INSERT ON groups BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`);
    firstWrite = api.post('/api/groups', { name: 'Floor 1' }, { token: owner.token });
    while (!server.server.services.runner.stalled()) await new Promise((resolve) => setImmediate(resolve));
    // A write of the same device stored just before the stall holds the device's lock until the retry shows it.
    void server.server.services.locks.devices.run(device.id, () => new Promise<void>((release) => (releaseDeviceLock = release)));
  });
  afterAll(async () => {
    await early.end();
    await server.close();
  });

  it('leaves a publish unacknowledged and closes the connection at once, not behind the held lock, so the device sends it again', async () => {
    await expect(early.publish(`devices/${device.id}/telemetry`, { sensor_readings: { temperature: 1 } })).rejects.toThrow();
    await early.closed();
  });

  it('answers CONNACK 3 (server unavailable), not "not authorized", to a device connecting meanwhile', async () => {
    await expect(connectDevice(mqttUrl, device)).rejects.toMatchObject({ code: 3 });
  });

  it('takes the device again once the read models resume, and the resent reading is stored once', async () => {
    server.server.db.exec('DROP TRIGGER disk_full');
    releaseDeviceLock();
    retries.shift()!();
    expect((await firstWrite).status).toBe(201);
    const again = await connectDevice(mqttUrl, device);
    await again.publish(`devices/${device.id}/telemetry`, { sensor_readings: { temperature: 1 } }, { qos: 1, dup: true });
    expect((await allRawReadings(api, device.id, owner.token)).map((r) => r.value)).toEqual([1]);
    await again.end();
  });
});
