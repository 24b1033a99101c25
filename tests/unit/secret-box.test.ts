import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, secretsKeyOf } from '../../src/config.js';
import { ERASED, PersonalKeys, SealError, SecretBox, isSealed } from '../../src/eventlog/index.js';

const MASTER = 'a master key of at least thirty-two characters';

describe('SecretBox', () => {
  const box = new SecretBox(MASTER);

  it('seals to a fresh value each time, which opens back with the same key and purpose', () => {
    const a = box.seal('$2b$12$abcdefghijklmnopqrstuv', 'password_hash');
    const b = box.seal('$2b$12$abcdefghijklmnopqrstuv', 'password_hash');
    expect(isSealed(a)).toBe(true);
    expect(a).not.toBe(b);
    expect(a).not.toContain('$2b$');
    expect(box.open(a, 'password_hash')).toBe('$2b$12$abcdefghijklmnopqrstuv');
  });

  it('refuses a changed byte, another purpose or another key', () => {
    const sealed = box.seal('secret', 'token_hash');
    const flipped = sealed.slice(0, -2) + (sealed.at(-2) === 'A' ? 'B' : 'A') + sealed.at(-1);
    expect(() => box.open(flipped, 'token_hash')).toThrow(SealError);
    expect(() => box.open(sealed, 'api_key_hash')).toThrow(SealError);
    expect(() => new SecretBox(`${MASTER}!`).open(sealed, 'token_hash')).toThrow(SealError);
    expect(() => box.open('sealed:v1:AA', 'token_hash')).toThrow(SealError);
  });

  it('reads a value written before sealing as it is', () => {
    expect(box.openIfSealed('plain', 'token_hash')).toBe('plain');
  });

  it('keys lookup digests: the same credential, another server key, another digest', () => {
    expect(box.lookupHash('iotd_token')).toBe(box.lookupHash('iotd_token'));
    expect(box.lookupHash('iotd_token')).not.toBe(new SecretBox(`${MASTER}!`).lookupHash('iotd_token'));
  });
});

describe('secrets key and personal keys on disk', () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'secrets-'));
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  it('generates the key once in DATA_DIR (mode 0600) and reuses it; SECRETS_KEY takes precedence and writes nothing', () => {
    const config = loadConfig({ DATA_DIR: dataDir, JWT_SECRET: 'x'.repeat(16) });
    const first = secretsKeyOf(config);
    expect(first.length).toBeGreaterThanOrEqual(32);
    expect(statSync(join(dataDir, 'secrets-key')).mode & 0o077).toBe(0);
    expect(secretsKeyOf(config)).toBe(first);
    expect(secretsKeyOf({ dataDir, secretsKey: MASTER })).toBe(MASTER);
    expect(() => loadConfig({ DATA_DIR: dataDir, JWT_SECRET: 'x'.repeat(16), SECRETS_KEY: 'short' })).toThrow(ConfigError);
  });

  it("seals a user's fields under their own key; once destroyed they read as erased, the file gone", () => {
    const keys = new PersonalKeys(join(dataDir, 'user-keys'), new SecretBox(MASTER));
    const userId = '0b9e6a8e-0000-4000-8000-000000000001';
    keys.create(userId);
    expect(statSync(join(dataDir, 'user-keys', userId)).mode & 0o077).toBe(0);
    const sealed = keys.seal(userId, 'ada@example.com', 'email');
    expect(readFileSync(join(dataDir, 'user-keys', userId), 'utf8')).not.toContain('ada');
    expect(keys.open(userId, sealed, 'email')).toBe('ada@example.com');
    expect(keys.open(userId, 'plain@example.com', 'email')).toBe('plain@example.com');
    keys.destroy(userId);
    expect(keys.open(userId, sealed, 'email')).toBe(ERASED);
    expect(() => keys.seal('../escape', 'x', 'email')).toThrow();
  });
});
