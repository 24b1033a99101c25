import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { secretsKeyOf, type Config } from '../config.js';

/** How a sealed value starts: the format's version, so a later one can sit beside it. */
export const SEALED_PREFIX = 'sealed:v1:';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export const isSealed = (value: unknown): value is string => typeof value === 'string' && value.startsWith(SEALED_PREFIX);

export class SealError extends Error {}

/**
 * AES-256-GCM: the value cannot be read without the key, and a changed byte (or a value moved to
 * another field, named in `purpose` as associated data) fails to open instead of opening wrong.
 */
export function sealWith(key: Uint8Array, plain: string, purpose: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv).setAAD(Buffer.from(purpose, 'utf8'));
  const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
  return SEALED_PREFIX + Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url');
}

export function openWith(key: Uint8Array, sealed: string, purpose: string): string {
  if (!isSealed(sealed)) throw new SealError('not a sealed value');
  const bytes = Buffer.from(sealed.slice(SEALED_PREFIX.length), 'base64url');
  if (bytes.length < IV_BYTES + TAG_BYTES) throw new SealError('sealed value too short');
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, IV_BYTES)).setAAD(Buffer.from(purpose, 'utf8'));
    decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
    return Buffer.concat([decipher.update(bytes.subarray(IV_BYTES, bytes.length - TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    throw new SealError(`a sealed ${purpose} does not open with this key`);
  }
}

const derive = (master: string, use: string): Buffer => Buffer.from(hkdfSync('sha256', Buffer.from(master, 'utf8'), 'iot-controller', use, 32));

/**
 * The server's secret keys, all derived from one master key kept outside the log: one seals
 * secret fields of events, one keys the digests credentials are looked up by, one wraps
 * per-user keys.
 */
export class SecretBox {
  private readonly sealKey: Buffer;
  private readonly lookupKey: Buffer;
  readonly wrapKey: Buffer;

  constructor(master: string) {
    this.sealKey = derive(master, 'seal event fields');
    this.lookupKey = derive(master, 'credential lookup');
    this.wrapKey = derive(master, 'wrap user keys');
  }

  seal(plain: string, purpose: string): string {
    return sealWith(this.sealKey, plain, purpose);
  }

  open(sealed: string, purpose: string): string {
    return openWith(this.sealKey, sealed, purpose);
  }

  /** A value written before sealing existed is stored plain: it reads as it is. */
  openIfSealed(value: string, purpose: string): string {
    return isSealed(value) ? this.open(value, purpose) : value;
  }

  /**
   * HMAC-SHA256 of a credential: what a read model looks it up by. Without the server's key, a
   * leaked read model cannot be used to test guesses of an owner-chosen device token.
   */
  lookupHash(credential: string): string {
    return createHmac('sha256', this.lookupKey).update(credential, 'utf8').digest('hex');
  }
}

export const secretBoxFor = (config: Pick<Config, 'dataDir' | 'secretsKey'>): SecretBox => new SecretBox(secretsKeyOf(config));
