import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCa, httpsCall, type HttpsOptions, type Issued } from '../helpers/certificates.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { UpgradeRefused, connect, refusedStatus, wsUrl } from '../helpers/ws-client.js';

/** `AB:CD:...`, as openssl and browsers print a fingerprint. */
const colonForm = (fingerprint: string) => fingerprint.toUpperCase().match(/../g)!.join(':');

describe('mutual TLS: devices authenticate with a bound client certificate', () => {
  let ca: TestCa;
  let stranger: TestCa;
  let server: TestServer;
  let owner: string;
  let other: string;
  let valid: Issued;
  let unbound: Issued;
  let expired: Issued;
  let foreign: Issued;

  const call = (path: string, options: Omit<HttpsOptions, 'ca'> = {}) => httpsCall(server.url + path, { ca: ca.root.cert, ...options });
  const as = (client: Issued) => ({ client });
  const registerUser = async () => {
    const name = `mtls_${Date.now() % 1_000_000}_${Math.floor(Math.random() * 10_000)}`;
    const answer = await call('/api/auth/register', { method: 'POST', body: { username: name, email: `${name}@example.com`, password: 'correct horse' } });
    return answer.body.data.token as string;
  };
  const createDevice = async (token: string, body: Record<string, unknown> = {}) => {
    const answer = await call('/api/devices', { method: 'POST', token, body: { name: 'meter', device_type: 'sensor', ...body } });
    expect(answer.status).toBe(201);
    return { id: answer.body.data.id as string, token: answer.body.data.credentials.auth_token as string, data: answer.body.data };
  };
  const bind = (deviceId: string, fingerprint: string, token = owner) => call(`/api/devices/${deviceId}/certificate`, { method: 'PUT', token, body: { fingerprint } });
  const submit = (deviceId: string, options: Omit<HttpsOptions, 'ca'>) => call(`/api/devices/${deviceId}/data`, { method: 'POST', body: { sensor_readings: [{ sensor_type: 'temperature', value: 21.5 }] }, ...options });
  const deviceSocketOptions = (client: Issued) => ({ ca: ca.root.cert, cert: client.cert, key: client.key });

  beforeAll(async () => {
    ca = new TestCa();
    stranger = new TestCa('stranger-ca');
    const serverCert = ca.issue('localhost', { server: true });
    valid = ca.issue('device-valid');
    unbound = ca.issue('device-unbound');
    expired = ca.issue('device-expired', { days: -1 });
    foreign = stranger.issue('device-foreign');
    server = await startTestServer({ TLS_CERT_FILE: serverCert.certFile, TLS_KEY_FILE: serverCert.keyFile, TLS_CLIENT_CA: ca.root.certFile });
    owner = await registerUser();
    other = await registerUser();
  });
  afterAll(async () => {
    await server?.close();
    ca?.cleanup();
    stranger?.cleanup();
  });

  it('binds by fingerprint (either spelling) as an event that bumps the version, and the certificate then speaks for the device', async () => {
    const device = await createDevice(owner);
    expect(device.data.certificate_fingerprint).toBeNull();
    expect((await submit(device.id, as(valid))).status).toBe(401);

    const bound = await bind(device.id, colonForm(valid.fingerprint));
    expect(bound.status).toBe(200);
    expect(bound.body.data.certificate_fingerprint).toBe(valid.fingerprint);
    expect(bound.body.data.version).toBe(device.data.version + 1);
    expect(bound.headers.etag).toBe(`"${device.data.version + 1}"`);

    // The same fingerprint again changes nothing; a stale If-Match is refused.
    const again = await bind(device.id, valid.fingerprint);
    expect([again.status, again.body.data.version]).toEqual([200, device.data.version + 1]);
    const stale = await call(`/api/devices/${device.id}/certificate`, { method: 'DELETE', token: owner, headers: { 'if-match': `"${device.data.version}"` } });
    expect(stale.status).toBe(412);

    const stored = await submit(device.id, as(valid));
    expect(stored.status).toBe(201);
    expect((await call(`/api/devices/${device.id}`, as(valid))).status).toBe(200);
    const history = await call(`/api/devices/${device.id}/history`, { token: owner });
    expect(history.body.data.map((e: { type: string }) => e.type)).toContain('device.certificate_bound');
    // The certificate is the device's, not its owner's: it cannot act as a user.
    expect((await call('/api/devices', as(valid))).status).toBe(403);
  });

  it('refuses an unbound, an expired and another CA\'s certificate with 401, even when their fingerprint is bound', async () => {
    const device = await createDevice(owner);
    const refusal = await submit(device.id, as(unbound));
    expect([refusal.status, refusal.body.error.message]).toEqual([401, 'the client certificate was refused: it is bound to no device']);
    for (const [refused, why] of [[expired, 'it has expired'], [foreign, 'it is not signed by the trusted CA']] as const) {
      expect((await bind(device.id, refused.fingerprint)).status).toBe(200);
      const answer = await submit(device.id, as(refused));
      expect([answer.status, answer.body.error.code, answer.body.error.message]).toEqual([401, 'unauthenticated', `the client certificate was refused: ${why}`]);
    }
    // Without a certificate the answer stays the usual one.
    expect((await submit(device.id, {})).body.error.message).toMatch(/^authentication required/);
  });

  it('binds at registration, and a token still works beside the certificate', async () => {
    const cert = ca.issue('device-registered');
    const device = await createDevice(owner, { certificate_fingerprint: cert.fingerprint });
    expect(device.data.certificate_fingerprint).toBe(cert.fingerprint);
    expect((await submit(device.id, as(cert))).status).toBe(201);
    expect((await submit(device.id, { token: device.token })).status).toBe(201);
  });

  it('refuses a malformed fingerprint, another user\'s device, a device token, and a certificate bound elsewhere; nothing is stored', async () => {
    const device = await createDevice(owner);
    for (const fingerprint of ['xyz', 'a'.repeat(63), 'a'.repeat(65), 42, null, `${colonForm(valid.fingerprint)}:`]) {
      const answer = await bind(device.id, fingerprint as string);
      expect(answer.status).toBe(400);
      expect(answer.body.error.code).toBe('validation_failed');
    }
    expect((await call(`/api/devices/${device.id}/certificate`, { method: 'PUT', token: owner, body: {} })).status).toBe(400);
    expect((await bind(device.id, ca.issue('x').fingerprint, other)).status).toBe(404);
    expect((await bind(device.id, ca.issue('y').fingerprint, device.token)).status).toBe(403);
    expect((await bind('no-such-device', ca.issue('z').fingerprint)).status).toBe(404);
    const elsewhere = await bind(device.id, valid.fingerprint);
    expect(elsewhere.status).toBe(409);
    expect(elsewhere.body.error.message).toMatch(/bound to another device/);
    expect((await call(`/api/devices/${device.id}/certificate`, { method: 'DELETE', token: other })).status).toBe(404);
    expect((await call(`/api/devices/${device.id}/certificate`, { method: 'DELETE', token: owner })).status).toBe(404);
    const after = await call(`/api/devices/${device.id}`, { token: owner });
    expect([after.body.data.certificate_fingerprint, after.body.data.version]).toEqual([null, device.data.version]);
    const malformed = await call('/api/devices', { method: 'POST', token: owner, body: { name: 'bad', device_type: 'sensor', certificate_fingerprint: 'f'.repeat(10_000) } });
    expect([malformed.status, malformed.body.error.details[0].path]).toEqual([400, 'certificate_fingerprint']);
    const registered = await call('/api/devices', { method: 'POST', token: owner, body: { name: 'dup', device_type: 'sensor', certificate_fingerprint: valid.fingerprint } });
    expect(registered.status).toBe(409);
    expect(registered.body.error.details[0].path).toBe('certificate_fingerprint');
  });

  it('binds a certificate to one device only, also when two owners race for it', async () => {
    const cert = ca.issue('device-raced');
    const [first, second] = [await createDevice(owner), await createDevice(other)];
    const answers = await Promise.all([bind(first.id, cert.fingerprint, owner), bind(second.id, cert.fingerprint, other)]);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 409]);
    const winner = answers[0]!.status === 200 ? first : second;
    const stored = await submit(winner.id, as(cert));
    expect(stored.status).toBe(201);
  });

  it('opens /ws/device with the certificate alone, never /ws', async () => {
    const cert = ca.issue('device-socket');
    const device = await createDevice(owner, { certificate_fingerprint: cert.fingerprint });
    const socket = await connect(wsUrl(server.url, '/ws/device'), deviceSocketOptions(cert));
    socket.send({ type: 'heartbeat', id: 'by-certificate' });
    expect(await socket.next((m) => m.type === 'ack')).toMatchObject({ ref: 'by-certificate' });
    expect(await refusedStatus(wsUrl(server.url, '/ws'), deviceSocketOptions(cert))).toBe(401);
    const refused = await connect(wsUrl(server.url, '/ws/device'), deviceSocketOptions(expired)).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(UpgradeRefused);
    expect(JSON.parse((refused as UpgradeRefused).body).error.message).toBe('the client certificate was refused: it has expired');
    expect(await refusedStatus(wsUrl(server.url, '/ws/device'), deviceSocketOptions(unbound))).toBe(401);
    await socket.close();
    expect(device.id).toBeTruthy();
  });

  it('unbinding closes the sockets opened with that certificate at once and refuses it from then on; a token socket stays', async () => {
    const cert = ca.issue('device-unbind');
    const device = await createDevice(owner, { certificate_fingerprint: cert.fingerprint });
    const byCertificate = await connect(wsUrl(server.url, '/ws/device'), deviceSocketOptions(cert));
    const byToken = await connect(wsUrl(server.url, '/ws/device'), { ca: ca.root.cert, headers: { authorization: `Bearer ${device.token}` } });
    const unbind = await call(`/api/devices/${device.id}/certificate`, { method: 'DELETE', token: owner });
    expect(unbind.status).toBe(200);
    expect(unbind.body.data.certificate_fingerprint).toBeNull();
    expect(await byCertificate.waitForClose()).toMatchObject({ code: 4401, reason: 'client certificate unbound' });
    byToken.send({ type: 'heartbeat', id: 'still-here' });
    expect(await byToken.next((m) => m.type === 'ack')).toMatchObject({ ref: 'still-here' });
    expect((await submit(device.id, as(cert))).status).toBe(401);
    expect(await refusedStatus(wsUrl(server.url, '/ws/device'), deviceSocketOptions(cert))).toBe(401);
    const history = await call(`/api/devices/${device.id}/history`, { token: owner });
    expect(history.body.data.map((e: { type: string }) => e.type)).toContain('device.certificate_unbound');
    await byToken.close();
  });

  it('binding a renewed certificate retires the old one and closes its socket', async () => {
    const old = ca.issue('device-old');
    const renewed = ca.issue('device-renewed');
    const device = await createDevice(owner, { certificate_fingerprint: old.fingerprint });
    const socket = await connect(wsUrl(server.url, '/ws/device'), deviceSocketOptions(old));
    expect((await bind(device.id, renewed.fingerprint)).status).toBe(200);
    expect((await socket.waitForClose()).code).toBe(4401);
    expect((await submit(device.id, as(old))).status).toBe(401);
    expect((await submit(device.id, as(renewed))).status).toBe(201);
  });

  it('a decommissioned device\'s certificate speaks for nothing', async () => {
    const cert = ca.issue('device-gone');
    const device = await createDevice(owner, { certificate_fingerprint: cert.fingerprint });
    expect((await call(`/api/devices/${device.id}`, { method: 'DELETE', token: owner })).status).toBe(200);
    expect((await submit(device.id, as(cert))).status).toBe(401);
  });

  // Last: it moves the server's clock past every certificate (and session) made here.
  it('a socket opened with a certificate is closed when the certificate expires, and the certificate is refused from then on', async () => {
    const cert = ca.issue('device-expiring');
    const device = await createDevice(owner, { certificate_fingerprint: cert.fingerprint });
    const socket = await connect(wsUrl(server.url, '/ws/device'), deviceSocketOptions(cert));
    const byToken = await connect(wsUrl(server.url, '/ws/device'), { ca: ca.root.cert, headers: { authorization: `Bearer ${device.token}` } });
    server.clock.set(new Date(new X509Certificate(cert.cert).validTo));
    await server.server.timers.runAll();
    expect(await socket.waitForClose()).toMatchObject({ code: 4401, reason: 'client certificate expired' });
    expect(byToken.isOpen()).toBe(true);
    expect((await submit(device.id, as(cert))).status).toBe(401);
    await byToken.close();
  });

  it('lists the certificate routes in the OpenAPI document', async () => {
    const doc = await call('/api/openapi.json');
    const paths = doc.body.paths as Record<string, Record<string, unknown>>;
    expect(Object.keys(paths['/api/devices/{id}/certificate'] ?? {}).sort()).toEqual(['delete', 'put']);
  });
});
