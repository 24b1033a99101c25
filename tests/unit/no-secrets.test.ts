import { describe, expect, it } from 'vitest';
import { assertNoSecrets } from '../helpers/no-secrets.js';

describe('the suite-wide secret scan every answer passes through', () => {
  it('given a bcrypt hash anywhere, or a secret field in the clear, then it fails', () => {
    const bcrypt = `$2b$12$${'a'.repeat(53)}`;
    expect(() => assertNoSecrets({ data: [{ note: bcrypt }] }, 'test')).toThrow(/bcrypt/);
    expect(() => assertNoSecrets({ data: { password_hash: bcrypt } }, 'test')).toThrow(/secret leak/);
    expect(() => assertNoSecrets({ data: { token_hash: 'f'.repeat(64) } }, 'test')).toThrow(/token_hash/);
    expect(() => assertNoSecrets([{ data: { api_key_hash: 'abc' } }], 'test')).toThrow(/api_key_hash/);
  });

  it('given sealed or redacted secret fields, chain hashes and fingerprints, then it passes', () => {
    expect(() =>
      assertNoSecrets({ data: { token_hash: 'sealed:v1:abc', password_hash: '[redacted]', hash: 'a'.repeat(64), certificate_fingerprint: 'b'.repeat(64) } }, 'test'),
    ).not.toThrow();
  });
});
