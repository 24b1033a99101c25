import { execFileSync } from 'node:child_process';
import { X509Certificate, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A PEM certificate and its key, on disk and in memory. */
export interface Issued {
  certFile: string;
  keyFile: string;
  cert: Buffer;
  key: Buffer;
  /** SHA-256 as the server stores it: 64 lowercase hex digits. */
  fingerprint: string;
}

export interface IssueOptions {
  /** Days of validity; a negative number makes a certificate that has already expired. */
  days?: number;
  /** For a server: its names (IP:127.0.0.1,DNS:localhost by default). */
  server?: boolean;
}

/**
 * A throwaway certificate authority made with the openssl CLI in a temporary directory: tests
 * issue a server certificate for 127.0.0.1 and device certificates (valid, expired) from it.
 */
export class TestCa {
  readonly dir: string;
  readonly root: Issued;
  private count = 0;

  constructor(name = 'test-ca') {
    this.dir = mkdtempSync(join(tmpdir(), 'iot-pki-'));
    const keyFile = join(this.dir, `${name}.key`);
    const certFile = join(this.dir, `${name}.pem`);
    openssl(['req', '-x509', ...newKey(keyFile), '-days', '2', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', certFile]);
    this.root = issued(certFile, keyFile);
  }

  /** A certificate signed by this CA, named `cn`. */
  issue(cn: string, options: IssueOptions = {}): Issued {
    const base = join(this.dir, `${++this.count}-${cn.replace(/[^\w.-]/g, '_')}`);
    const extFile = `${base}.ext`;
    writeFileSync(extFile, options.server ? 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' : 'extendedKeyUsage=clientAuth\n');
    openssl(['req', '-new', ...newKey(`${base}.key`), '-subj', `/CN=${cn}`, '-out', `${base}.csr`]);
    const days = options.days ?? 2;
    if (days < 0) this.signInThePast(`${base}.csr`, days, extFile, `${base}.pem`);
    else openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', this.root.certFile, '-CAkey', this.root.keyFile, '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', String(days), '-extfile', extFile, '-out', `${base}.pem`]);
    return issued(`${base}.pem`, `${base}.key`);
  }

  /**
   * A certificate whose day of validity ended `-days` days ago: `openssl ca` takes explicit dates
   * on every OpenSSL version (`x509 -days` with a negative number is not portable).
   */
  private signInThePast(csrFile: string, days: number, extFile: string, outFile: string): void {
    const config = join(this.dir, 'ca.cnf');
    if (!existsSync(config)) {
      writeFileSync(join(this.dir, 'index.txt'), '');
      writeFileSync(config, `[ca]\ndefault_ca = test\n[test]\ndatabase = ${this.dir}/index.txt\nnew_certs_dir = ${this.dir}\nserial = ${this.dir}/serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n[any]\ncommonName = supplied\n`);
    }
    const end = Date.now() + days * 86_400_000;
    const asn1 = (ms: number) => new Date(ms).toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
    openssl(['ca', '-batch', '-config', config, '-cert', this.root.certFile, '-keyfile', this.root.keyFile, '-in', csrFile, '-out', outFile, '-rand_serial', '-notext', '-startdate', asn1(end - 86_400_000), '-enddate', asn1(end), '-extfile', extFile]);
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const newKey = (keyFile: string) => ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile];

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function issued(certFile: string, keyFile: string): Issued {
  const cert = readFileSync(certFile);
  return { certFile, keyFile, cert, key: readFileSync(keyFile), fingerprint: new X509Certificate(cert).fingerprint256.replaceAll(':', '').toLowerCase() };
}

export interface HttpsAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
  /** The fingerprint of the certificate the server presented (normalized). */
  serverFingerprint: string;
}

export interface HttpsOptions {
  method?: string;
  body?: unknown;
  token?: string;
  /** The CA the client trusts for the server's certificate. */
  ca: Buffer;
  /** A client certificate to present (mutual TLS). */
  client?: Pick<Issued, 'cert' | 'key'>;
  headers?: Record<string, string>;
}

/** One request on a fresh TLS connection (so each call makes its own handshake), JSON in and out. */
export function httpsCall(url: string, options: HttpsOptions): Promise<HttpsAnswer> {
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  const headers: Record<string, string> = { ...options.headers };
  if (payload !== undefined) headers['content-type'] = 'application/json';
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers, ca: options.ca, agent: false, ...(options.client ? { cert: options.client.cert, key: options.client.key } : {}) }, (res) => {
      const peer = res.socket && 'getPeerCertificate' in res.socket ? (res.socket as import('node:tls').TLSSocket).getPeerCertificate() : undefined;
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        let body: unknown = text;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          // not JSON: the test reads the text
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, serverFingerprint: (peer?.fingerprint256 ?? '').replaceAll(':', '').toLowerCase() });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}
