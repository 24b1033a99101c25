import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TlsCredentials } from '../../src/transport/tls.js';
import { TestCa } from '../helpers/certificates.js';

describe('TlsCredentials', () => {
  let ca: TestCa;
  beforeAll(() => {
    ca = new TestCa();
  });
  afterAll(() => ca.cleanup());

  const logger = pino({ level: 'silent' });

  it('serves TLS 1.2 at least, and asks for a client certificate only with a client CA, refusing none in the handshake', () => {
    const server = ca.issue('localhost', { server: true });
    const plain = new TlsCredentials({ certFile: server.certFile, keyFile: server.keyFile, clientCaFile: null }, logger);
    expect(plain.serverOptions()).toMatchObject({ minVersion: 'TLSv1.2', requestCert: false, rejectUnauthorized: false });
    expect(plain.serverOptions().ca).toBeUndefined();
    const mutual = new TlsCredentials({ certFile: server.certFile, keyFile: server.keyFile, clientCaFile: ca.root.certFile }, logger);
    expect(mutual.mutual).toBe(true);
    expect(mutual.serverOptions()).toMatchObject({ minVersion: 'TLSv1.2', requestCert: true, rejectUnauthorized: false, ca: ca.root.cert });
    expect(mutual.current().fingerprint).toBe(server.fingerprint);
  });

  it('tells every listener of a successful reload, none of a failed one, and stops after unsubscribing', () => {
    const certFile = join(ca.dir, 'unit-cert.pem');
    const keyFile = join(ca.dir, 'unit-key.pem');
    const install = (issued: { certFile: string; keyFile: string }) => {
      copyFileSync(issued.certFile, certFile);
      copyFileSync(issued.keyFile, keyFile);
    };
    install(ca.issue('localhost', { server: true }));
    const credentials = new TlsCredentials({ certFile, keyFile, clientCaFile: null }, logger);
    const heard: string[] = [];
    const stop = credentials.onReload((options) => heard.push(String(options.minVersion)));
    const renewed = ca.issue('localhost', { server: true });
    install(renewed);
    expect(credentials.reload()).toBe(true);
    copyFileSync(ca.root.keyFile, keyFile);
    expect(credentials.reload()).toBe(false);
    expect(credentials.current().fingerprint).toBe(renewed.fingerprint);
    stop();
    install(ca.issue('localhost', { server: true }));
    expect(credentials.reload()).toBe(true);
    expect(heard).toEqual(['TLSv1.2']);
  });
});
