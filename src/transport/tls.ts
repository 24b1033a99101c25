import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { TLSSocket, createSecureContext, type SecureContextOptions, type Server as TlsServer, type TlsOptions } from 'node:tls';
import type { Logger } from 'pino';
import type { ClientCertificate } from '../commands/credentials.js';
import type { TlsFiles } from '../config.js';
import { normalizeFingerprint } from '../domain/certificates.js';

/** The PEM material of one load: what every TLS listener serves until the next reload. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  /** The CA that signs device certificates; null when mutual TLS is off. */
  ca: Buffer | null;
  /** The server certificate's SHA-256 fingerprint and end of validity, for the logs. */
  fingerprint: string;
  validTo: string;
}

export class TlsLoadError extends Error {}

/** Older protocol versions have known downgrade attacks; every current client speaks 1.2. */
const MIN_VERSION = 'TLSv1.2';

/**
 * The server's certificate and key (and the client CA), read from their files and re-read on
 * `reload()` (SIGHUP), so a renewed certificate is served without a restart.
 *
 * A TLS listener is created from `serverOptions()` and calls `attach(server)`: every successful
 * reload then swaps the server's secure context, so new handshakes get the new certificate while
 * open connections carry on. For example an MQTT over TLS listener:
 *
 * ```ts
 * const server = tls.createServer(credentials.serverOptions(), broker.handle);
 * credentials.attach(server);
 * // devices: clientCertificateOf(socket) -> accounts.authenticateCertificate(...)
 * ```
 */
export class TlsCredentials {
  private material: TlsMaterial;
  private readonly listeners = new Set<(options: SecureContextOptions) => void>();

  /** Reads the files now: a missing or broken one stops the start with a message naming it. */
  constructor(
    private readonly files: TlsFiles,
    private readonly logger: Logger,
  ) {
    this.material = loadMaterial(files);
    logger.info({ fingerprint: this.material.fingerprint, valid_to: this.material.validTo, mutual: this.mutual }, 'tls certificate loaded');
  }

  /** Whether devices may present a client certificate (TLS_CLIENT_CA is set). */
  get mutual(): boolean {
    return this.files.clientCaFile !== null;
  }

  current(): TlsMaterial {
    return this.material;
  }

  /** What a TLS server is created with; a client certificate is asked for, and judged by the app, not the handshake. */
  serverOptions(): TlsOptions {
    return {
      ...this.contextOptions(),
      // Refusing in the handshake would turn away token-carrying devices and browsers; the app decides.
      requestCert: this.mutual,
      rejectUnauthorized: false,
    };
  }

  /** Calls `listener` with the new context options after every successful reload; returns an unsubscribe. */
  onReload(listener: (options: SecureContextOptions) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Makes `server` serve every reloaded certificate from its next handshake on. */
  attach(server: TlsServer): () => void {
    return this.onReload((options) => server.setSecureContext(options));
  }

  /**
   * Reads the files again. A file that is missing, broken or does not match its pair keeps the
   * certificate in use (and is logged): a renewal gone wrong must not take the server down.
   */
  reload(): boolean {
    let material: TlsMaterial;
    try {
      material = loadMaterial(this.files);
    } catch (error) {
      this.logger.error({ err: error instanceof Error ? error.message : String(error) }, 'tls reload failed; the previous certificate stays in use');
      return false;
    }
    this.material = material;
    const options = this.contextOptions();
    for (const listener of this.listeners) listener(options);
    this.logger.info({ fingerprint: material.fingerprint, valid_to: material.validTo }, 'tls certificate reloaded');
    return true;
  }

  private contextOptions(): SecureContextOptions {
    const { cert, key, ca } = this.material;
    return { cert, key, ...(ca ? { ca } : {}), minVersion: MIN_VERSION };
  }
}

function loadMaterial(files: TlsFiles): TlsMaterial {
  const cert = readPem(files.certFile, 'TLS_CERT_FILE');
  const key = readPem(files.keyFile, 'TLS_KEY_FILE');
  const ca = files.clientCaFile === null ? null : readPem(files.clientCaFile, 'TLS_CLIENT_CA');
  const server = parseCertificate(cert, 'TLS_CERT_FILE', files.certFile);
  if (ca) parseCertificate(ca, 'TLS_CLIENT_CA', files.clientCaFile!);
  try {
    // Fails on a key that is not PEM or does not belong to the certificate.
    createSecureContext({ cert, key, ...(ca ? { ca } : {}), minVersion: MIN_VERSION });
  } catch (error) {
    throw new TlsLoadError(`TLS_KEY_FILE ${files.keyFile} does not fit TLS_CERT_FILE ${files.certFile}: ${error instanceof Error ? error.message : String(error)}`);
  }
  return { cert, key, ca, fingerprint: normalizeFingerprint(server.fingerprint256), validTo: new Date(server.validTo).toISOString() };
}

function readPem(file: string, setting: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new TlsLoadError(`${setting} ${file} cannot be read: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function parseCertificate(pem: Buffer, setting: string, file: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (error) {
    throw new TlsLoadError(`${setting} ${file} holds no PEM certificate: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/**
 * The certificate a client presented on this connection, if any: its fingerprint, and whether it
 * chains to TLS_CLIENT_CA and is within its validity (checked by OpenSSL in the handshake).
 * Any transport may call it with its socket (an HTTP request's, an upgrade's, an MQTT connection's).
 */
export function clientCertificateOf(socket: unknown): ClientCertificate | null {
  if (!(socket instanceof TLSSocket)) return null;
  const peer = socket.getPeerCertificate();
  if (!peer || typeof peer.fingerprint256 !== 'string' || peer.fingerprint256 === '') return null;
  const error = socket.authorizationError as Error | string | null | undefined;
  return {
    fingerprint: normalizeFingerprint(peer.fingerprint256),
    authorized: socket.authorized,
    problem: socket.authorized ? null : error instanceof Error ? error.message : String(error ?? 'not verified'),
    validTo: new Date(peer.valid_to).toISOString(),
  };
}
