import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCa, httpsCall, type Issued } from '../helpers/certificates.js';
import { client, registerUser } from '../helpers/client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { connect, wsUrl } from '../helpers/ws-client.js';

describe('TLS: HTTPS and WSS on the HTTP port', () => {
  let ca: TestCa;
  let serverCert: Issued;
  let server: TestServer;

  beforeAll(async () => {
    ca = new TestCa();
    serverCert = ca.issue('localhost', { server: true });
    server = await startTestServer({ TLS_CERT_FILE: serverCert.certFile, TLS_KEY_FILE: serverCert.keyFile });
  });
  afterAll(async () => {
    await server?.close();
    ca?.cleanup();
  });

  const register = async () => {
    const name = `tls_${Date.now() % 1_000_000}_${Math.floor(Math.random() * 1000)}`;
    return httpsCall(`${server.url}/api/auth/register`, { method: 'POST', ca: ca.root.cert, body: { username: name, email: `${name}@example.com`, password: 'correct horse' } });
  };

  it('serves the API over HTTPS with its certificate, and says so with HSTS', async () => {
    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const health = await httpsCall(`${server.url}/api/health`, { ca: ca.root.cert });
    expect(health.status).toBe(200);
    expect(health.serverFingerprint).toBe(serverCert.fingerprint);
    expect(health.headers['strict-transport-security']).toBe('max-age=31536000');
    // Errors too: a browser must learn it from any answer.
    const missing = await httpsCall(`${server.url}/api/nothing-here`, { ca: ca.root.cert });
    expect(missing.status).toBe(404);
    expect(missing.headers['strict-transport-security']).toBe('max-age=31536000');
  });

  it('sets the session cookie Secure, also when clearing it', async () => {
    const registered = await register();
    expect(registered.status).toBe(201);
    const cookie = ([] as string[]).concat(registered.headers['set-cookie'] ?? []).find((c) => c.startsWith('session='));
    expect(cookie).toMatch(/; Secure/);
    expect(cookie).toMatch(/HttpOnly/);
    const out = await httpsCall(`${server.url}/api/auth/logout`, { method: 'POST', ca: ca.root.cert, token: registered.body.data.token });
    expect(out.status).toBe(200);
    expect(([] as string[]).concat(out.headers['set-cookie'] ?? []).find((c) => c.startsWith('session='))).toMatch(/; Secure/);
  });

  it('refuses plaintext HTTP on the TLS port', async () => {
    await expect(fetch(server.url.replace('https:', 'http:') + '/api/health')).rejects.toThrow();
  });

  it('refuses a client that offers nothing newer than TLS 1.1', async () => {
    const port = Number(new URL(server.url).port);
    const outcome = await new Promise<string>((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, ca: ca.root.cert, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
      socket.once('secureConnect', () => {
        socket.destroy();
        resolve('connected');
      });
      socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    });
    expect(outcome).not.toBe('connected');
  });

  it('a client that does not trust the CA fails the handshake', async () => {
    const stranger = new TestCa('stranger-ca');
    try {
      await expect(httpsCall(`${server.url}/api/health`, { ca: stranger.root.cert })).rejects.toThrow(/certificate/i);
    } finally {
      stranger.cleanup();
    }
  });

  it('does not start with a certificate file it cannot read or a key of another certificate, naming the setting', async () => {
    await expect(startTestServer({ TLS_CERT_FILE: `${ca.dir}/missing.pem`, TLS_KEY_FILE: serverCert.keyFile })).rejects.toThrow(/TLS_CERT_FILE .*missing\.pem/);
    await expect(startTestServer({ TLS_CERT_FILE: serverCert.keyFile, TLS_KEY_FILE: serverCert.keyFile })).rejects.toThrow(/TLS_CERT_FILE .*no PEM certificate/);
    await expect(startTestServer({ TLS_CERT_FILE: serverCert.certFile, TLS_KEY_FILE: ca.root.keyFile })).rejects.toThrow(/TLS_KEY_FILE .*does not fit/);
  });

  it('without TLS_CLIENT_CA a client certificate speaks for no device', async () => {
    const token = (await register()).body.data.token as string;
    const deviceCert = ca.issue('device');
    const created = await httpsCall(`${server.url}/api/devices`, { method: 'POST', ca: ca.root.cert, token, body: { name: 'no mtls', device_type: 'sensor', certificate_fingerprint: deviceCert.fingerprint } });
    expect(created.status).toBe(201);
    const answer = await httpsCall(`${server.url}/api/devices/${created.body.data.id}/data`, { method: 'POST', ca: ca.root.cert, client: deviceCert, body: { sensor_readings: [{ sensor_type: 't', value: 1 }] } });
    expect(answer.status).toBe(401);
  });

  it('opens /ws and /ws/device over WSS', async () => {
    const registered = await register();
    const token = registered.body.data.token as string;
    const subscriber = await connect(wsUrl(server.url, `/ws?token=${token}`), { ca: ca.root.cert });
    expect(wsUrl(server.url, '/ws')).toMatch(/^wss:/);
    expect((await subscriber.next((m) => m.type === 'welcome')).type).toBe('welcome');
    const created = await httpsCall(`${server.url}/api/devices`, { method: 'POST', ca: ca.root.cert, token, body: { name: 'tls device', device_type: 'sensor' } });
    expect(created.status).toBe(201);
    const device = await connect(wsUrl(server.url, '/ws/device'), { ca: ca.root.cert, headers: { authorization: `Bearer ${created.body.data.credentials.auth_token}` } });
    device.send({ type: 'heartbeat', id: 'h1' });
    expect(await device.next((m) => m.type === 'ack')).toMatchObject({ ref: 'h1' });
    await device.close();
    await subscriber.close();
  });
});

describe('without TLS', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server?.close();
  });

  it('answers plain HTTP without HSTS and with a cookie that is not Secure', async () => {
    const api = client(() => server.url);
    const answer = await api.post('/api/auth/register', { username: `plain_${Date.now() % 100000}`, email: `plain${Date.now() % 100000}@example.com`, password: 'correct horse' });
    expect(answer.status).toBe(201);
    expect(answer.headers.get('strict-transport-security')).toBeNull();
    expect(answer.headers.get('set-cookie')).not.toMatch(/Secure/);
    expect((await registerUser(api)).token).toBeTruthy();
  });
});
