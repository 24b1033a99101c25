import { copyFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildWhenStale, startBuiltServer, type BuiltServer } from '../helpers/built-server.js';
import { TestCa, httpsCall, type Issued } from '../helpers/certificates.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { connect, wsUrl, type WsClient } from '../helpers/ws-client.js';

/** The files the server is configured with; a renewal copies new ones over them, as certbot does. */
function liveFiles(ca: TestCa) {
  const certFile = join(ca.dir, 'live-cert.pem');
  const keyFile = join(ca.dir, 'live-key.pem');
  const install = (issued: Issued) => {
    copyFileSync(issued.certFile, certFile);
    copyFileSync(issued.keyFile, keyFile);
  };
  return { certFile, keyFile, install };
}

async function registerWithDevice(url: string, ca: Buffer) {
  const name = `reload_${Date.now() % 1_000_000}_${Math.floor(Math.random() * 1000)}`;
  const user = await httpsCall(`${url}/api/auth/register`, { method: 'POST', ca, body: { username: name, email: `${name}@example.com`, password: 'correct horse' } });
  const token = user.body.data.token as string;
  const device = await httpsCall(`${url}/api/devices`, { method: 'POST', ca, token, body: { name: 'renewed', device_type: 'sensor' } });
  return device.body.data.credentials.auth_token as string;
}

/** A device socket opened before a reload must still be answered after it. */
async function stillAnswers(socket: WsClient, ref: string): Promise<void> {
  socket.send({ type: 'heartbeat', id: ref });
  expect(await socket.next((m) => m.type === 'ack' && m.ref === ref)).toMatchObject({ type: 'ack' });
}

describe('TLS reload in the running server', () => {
  let ca: TestCa;
  let server: TestServer;
  let files: ReturnType<typeof liveFiles>;
  let first: Issued;

  beforeAll(async () => {
    ca = new TestCa();
    files = liveFiles(ca);
    first = ca.issue('localhost', { server: true });
    files.install(first);
    server = await startTestServer({ TLS_CERT_FILE: files.certFile, TLS_KEY_FILE: files.keyFile });
  });
  afterAll(async () => {
    await server?.close();
    ca?.cleanup();
  });

  it('serves a renewed certificate from the next handshake on, keeps open sockets, and keeps the old one when the new files are bad', async () => {
    const deviceToken = await registerWithDevice(server.url, ca.root.cert);
    const socket = await connect(wsUrl(server.url, '/ws/device'), { ca: ca.root.cert, headers: { authorization: `Bearer ${deviceToken}` } });
    expect((await httpsCall(`${server.url}/api/health`, { ca: ca.root.cert })).serverFingerprint).toBe(first.fingerprint);

    const renewed = ca.issue('localhost', { server: true });
    files.install(renewed);
    // Nothing changes until the reload: the files are read once.
    expect((await httpsCall(`${server.url}/api/health`, { ca: ca.root.cert })).serverFingerprint).toBe(first.fingerprint);
    expect(server.server.tls!.reload()).toBe(true);
    expect(server.server.tls!.current().fingerprint).toBe(renewed.fingerprint);
    expect((await httpsCall(`${server.url}/api/health`, { ca: ca.root.cert })).serverFingerprint).toBe(renewed.fingerprint);
    await stillAnswers(socket, 'after-reload');

    // A renewal gone wrong: a truncated certificate, then a key of another certificate.
    writeFileSync(files.certFile, '-----BEGIN CERTIFICATE-----\nMIIB\n');
    expect(server.server.tls!.reload()).toBe(false);
    files.install({ ...ca.issue('localhost', { server: true }), keyFile: first.keyFile });
    expect(server.server.tls!.reload()).toBe(false);
    rmSync(files.keyFile);
    expect(server.server.tls!.reload()).toBe(false);
    const answer = await httpsCall(`${server.url}/api/health`, { ca: ca.root.cert });
    expect([answer.status, answer.serverFingerprint]).toEqual([200, renewed.fingerprint]);
    await stillAnswers(socket, 'after-failed-reload');
    await socket.close();
  });
});

describe('SIGHUP to the built server', () => {
  let ca: TestCa;
  let started: BuiltServer | undefined;
  beforeAll(() => {
    buildWhenStale();
    ca = new TestCa();
  }, 180_000);
  afterAll(async () => {
    await started?.stop();
    ca?.cleanup();
  });

  it('reloads the certificate without dropping a connection, and logs a failed reload', { timeout: 30_000 }, async () => {
    const files = liveFiles(ca);
    const first = ca.issue('localhost', { server: true });
    files.install(first);
    started = await startBuiltServer({ TLS_CERT_FILE: files.certFile, TLS_KEY_FILE: files.keyFile });
    const { url } = started;
    expect(url).toMatch(/^https:/);
    const socket = await connect(wsUrl(url, '/ws/device'), { ca: ca.root.cert, headers: { authorization: `Bearer ${await registerWithDevice(url, ca.root.cert)}` } });

    const renewed = ca.issue('localhost', { server: true });
    files.install(renewed);
    started.child.kill('SIGHUP');
    await started.waitForLog((entry) => entry.msg === 'tls certificate reloaded' && entry.fingerprint === renewed.fingerprint);
    expect((await httpsCall(`${url}/api/health`, { ca: ca.root.cert })).serverFingerprint).toBe(renewed.fingerprint);
    await stillAnswers(socket, 'after-sighup');

    writeFileSync(files.keyFile, 'not a key');
    started.child.kill('SIGHUP');
    const failure = await started.waitForLog((entry) => entry.msg === 'tls reload failed; the previous certificate stays in use');
    expect(String(failure.err)).toMatch(/TLS_KEY_FILE/);
    expect((await httpsCall(`${url}/api/health`, { ca: ca.root.cert })).serverFingerprint).toBe(renewed.fingerprint);
    await stillAnswers(socket, 'after-failed-sighup');
    expect(started.child.exitCode).toBeNull();
    await socket.close();
  });
});
