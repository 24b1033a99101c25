import { SECRET_FIELDS } from '../../src/domain/events.js';

const BCRYPT = /\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}/;
const HEX_DIGEST = /^[0-9a-f]{64}$/i;
/** What a secret field may hold when served: ciphertext under the server's key, or the redaction mark. */
const SERVABLE = /^(sealed:|\[redacted\]$)/;

/**
 * Every answer the integration suite receives passes through here: no bcrypt hash anywhere, and a
 * secret field (password, API key or device token digest) never holds a crackable value, plain
 * hex included. Chain hashes and certificate fingerprints are 64 hex digits too, so hex is judged
 * only under a secret field's name.
 */
export function assertNoSecrets(value: unknown, where: string, path = '$'): void {
  if (typeof value === 'string') {
    if (BCRYPT.test(value)) throw new Error(`secret leak: ${where} serves a bcrypt hash at ${path}`);
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((item, index) => assertNoSecrets(item, where, `${path}[${index}]`));
    return;
  }
  if (value === null || typeof value !== 'object') return;
  for (const [key, field] of Object.entries(value)) {
    if (SECRET_FIELDS.has(key) && typeof field === 'string' && (HEX_DIGEST.test(field) || !SERVABLE.test(field))) {
      throw new Error(`secret leak: ${where} serves ${key} at ${path} in the clear`);
    }
    assertNoSecrets(field, where, `${path}.${key}`);
  }
}
