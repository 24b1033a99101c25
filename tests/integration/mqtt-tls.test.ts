import { copyFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCa, httpsCall, type Issued } from '../helpers/certificates.js';
import { connectDevice, connectMqtt, freePort, type DeviceMqtt } from '../helpers/mqtt-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('MQTT over TLS (MQTT_TLS_PORT) and device certificates', () => {
  let ca: TestCa;
  let serverCert: Issued;
  let deviceCert: Issued;
  let server: TestServer;
  let mqttsUrl: string;
  let token: string;
  const open: DeviceMqtt[] = [];

  const api = (path: string, options: { method?: string; body?: unknown } = {}) => httpsCall(`${server.url}${path}`, { ...options, ca: ca.root.cert, token });
  const newDevice = async (body: Record<string, unknown> = {}) => {
    const answer = await api('/api/devices', { method: 'POST', body: { name: `tls-${Math.random().toString(36).slice(2, 8)}`, device_type: 'sensor', ...body } });
    expect(answer.status).toBe(201);
    return { id: answer.body.data.id as string, token: answer.body.data.credentials.auth_token as string };
  };
  const readingCount = async (id: string) => (await api(`/api/devices/${id}/data?interval=raw`)).body.meta.total as number;
  const keep = (connection: DeviceMqtt) => (open.push(connection), connection);
  /** The certificate a fresh handshake on MQTT_TLS_PORT is given. */
  const presentedFingerprint = () =>
    new Promise<string>((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: Number(new URL(mqttsUrl).port), ca: ca.root.cert, servername: 'localhost' }, () => {
        resolve(socket.getPeerCertificate().fingerprint256.replaceAll(':', '').toLowerCase());
        socket.destroy();
      });
      socket.once('error', reject);
    });

  beforeAll(async () => {
    ca = new TestCa();
    serverCert = ca.issue('localhost', { server: true });
    deviceCert = ca.issue('sensor-1');
    const port = await freePort();
    server = await startTestServer({ TLS_CERT_FILE: serverCert.certFile, TLS_KEY_FILE: serverCert.keyFile, TLS_CLIENT_CA: ca.root.certFile, MQTT_TLS_PORT: String(port) });
    mqttsUrl = `mqtts://127.0.0.1:${port}`;
    const registered = await httpsCall(`${server.url}/api/auth/register`, { method: 'POST', ca: ca.root.cert, body: { username: 'tlsowner', email: 'tlsowner@example.com', password: 'correct horse' } });
    token = registered.body.data.token;
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.end()));
    await server?.close();
    ca?.cleanup();
  });

  it('reports the TLS listener in /api/health', async () => {
    const health = await api('/api/health');
    expect(health.body.data.mqtt.tls).toEqual({ state: 'listening', port: Number(new URL(mqttsUrl).port) });
  });

  it('takes a QoS 1 reading from a device with its token, acknowledged once stored', async () => {
    const device = await newDevice();
    const connection = keep(await connectDevice(mqttsUrl, device, { ca: ca.root.cert }));
    await connection.publish(`devices/${device.id}/telemetry`, { sensor_readings: { temperature: 21.5 } });
    expect(await readingCount(device.id)).toBe(1);
  });

  it('serves the server certificate, and a client that does not trust its CA cannot connect', async () => {
    const fingerprint = await presentedFingerprint();
    expect(fingerprint).toBe(serverCert.fingerprint);
    const device = await newDevice();
    await expect(connectDevice(mqttsUrl, device)).rejects.toThrow(/certificate/i);
    await expect(connectDevice(mqttsUrl.replace('mqtts:', 'mqtt:'), device, { connectTimeout: 2_000 })).rejects.toThrow();
  });

  it('lets a device connect with its bound client certificate and no password, and cuts it off when unbound', async () => {
    const device = await newDevice({ certificate_fingerprint: deviceCert.fingerprint });
    const connection = keep(await connectMqtt(mqttsUrl, { clientId: device.id, ca: ca.root.cert, cert: deviceCert.cert, key: deviceCert.key }));
    await connection.publish(`devices/${device.id}/telemetry`, { sensor_readings: { humidity: 40 } });
    expect(await readingCount(device.id)).toBe(1);
    expect((await api(`/api/devices/${device.id}/certificate`, { method: 'DELETE' })).status).toBe(200);
    await connection.closed();
    await expect(connectMqtt(mqttsUrl, { clientId: device.id, ca: ca.root.cert, cert: deviceCert.cert, key: deviceCert.key })).rejects.toThrow(/Not authorized/i);
  });

  it('refuses an expired certificate, one of another CA, and a bound one presented for another client id', async () => {
    const expired = ca.issue('old-sensor', { days: -1 });
    const stranger = new TestCa('other-ca');
    try {
      const foreign = stranger.issue('intruder');
      const device = await newDevice({ certificate_fingerprint: expired.fingerprint });
      await expect(connectMqtt(mqttsUrl, { clientId: device.id, ca: ca.root.cert, cert: expired.cert, key: expired.key })).rejects.toThrow(/Not authorized/i);
      const other = await newDevice({ certificate_fingerprint: foreign.fingerprint });
      await expect(connectMqtt(mqttsUrl, { clientId: other.id, ca: ca.root.cert, cert: foreign.cert, key: foreign.key })).rejects.toThrow(/Not authorized/i);
      const bound = ca.issue('sensor-2');
      const owner = await newDevice({ certificate_fingerprint: bound.fingerprint });
      const victim = await newDevice();
      expect(owner.id).not.toBe(victim.id);
      await expect(connectMqtt(mqttsUrl, { clientId: victim.id, ca: ca.root.cert, cert: bound.cert, key: bound.key })).rejects.toThrow(/Not authorized/i);
    } finally {
      stranger.cleanup();
    }
  });

  it('serves a renewed certificate after a reload, keeping the connections it has', async () => {
    const device = await newDevice();
    const connection = keep(await connectDevice(mqttsUrl, device, { ca: ca.root.cert }));
    const renewed = ca.issue('localhost', { server: true });
    copyFileSync(renewed.certFile, serverCert.certFile);
    copyFileSync(renewed.keyFile, serverCert.keyFile);
    expect(server.server.tls!.reload()).toBe(true);
    expect(await presentedFingerprint()).toBe(renewed.fingerprint);
    await connection.publish(`devices/${device.id}/telemetry`, { sensor_readings: { temperature: 22 } });
    expect(await readingCount(device.id)).toBe(1);
  });
});
