import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

const SECRET = 'a-secret-of-at-least-16-chars';

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('loadConfig', () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'config-'));
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  it('fills every default', () => {
    expect(loadConfig({ JWT_SECRET: SECRET })).toEqual({
      port: 8080,
      host: '0.0.0.0',
      dataDir: resolve('./data'),
      jwtSecret: SECRET,
      secretsKey: null,
      corsOrigins: null,
      logLevel: 'info',
      bcryptRounds: 12,
      offlineAfterSeconds: 180,
      retentionDays: 30,
      rateLimitPerMinute: null,
      sessionTtlSeconds: 604_800,
      defaultDeviceQuota: 100,
      wsMaxBufferedBytes: 1_048_576,
      mqttPort: 1883,
      mqttBrokerUrl: null,
      mqttClientId: 'iot-controller',
      tls: null,
      mqttTlsPort: 8883,
      logArchiveAfterDays: null,
      logDeleteAfterDays: null,
    });
  });

  it('deletes archived segments only when the log is archived, and no sooner than it is', () => {
    expect(loadConfig({ JWT_SECRET: SECRET, LOG_ARCHIVE_AFTER_DAYS: '30', LOG_DELETE_AFTER_DAYS: '365' })).toMatchObject({ logArchiveAfterDays: 30, logDeleteAfterDays: 365 });
    expect(() => loadConfig({ JWT_SECRET: SECRET, LOG_DELETE_AFTER_DAYS: '365' })).toThrow(/LOG_DELETE_AFTER_DAYS/);
    expect(() => loadConfig({ JWT_SECRET: SECRET, LOG_ARCHIVE_AFTER_DAYS: '30', LOG_DELETE_AFTER_DAYS: '7' })).toThrow(/no fewer days/);
    expect(() => loadConfig({ JWT_SECRET: SECRET, LOG_ARCHIVE_AFTER_DAYS: '0' })).toThrow(/LOG_ARCHIVE_AFTER_DAYS/);
  });

  it('takes MQTT_PORT=0 (no TCP listener) and an mqtt(s) or ws(s) MQTT_BROKER_URL', () => {
    expect(loadConfig({ JWT_SECRET: SECRET, MQTT_PORT: '0' }).mqttPort).toBe(0);
    for (const url of ['mqtt://user:pw@broker:1883', 'mqtts://broker.example:8883', 'wss://broker.example/mqtt']) {
      expect(loadConfig({ JWT_SECRET: SECRET, MQTT_BROKER_URL: url, MQTT_CLIENT_ID: 'server-1' })).toMatchObject({ mqttBrokerUrl: url, mqttClientId: 'server-1' });
    }
  });

  it.each([['MQTT_PORT', '70000'], ['MQTT_PORT', 'x'], ['MQTT_BROKER_URL', 'http://broker'], ['MQTT_BROKER_URL', 'not a url']])('refuses %s=%s, naming it', (name, value) => {
    expect(configError({ JWT_SECRET: SECRET, [name]: value }).message).toContain(name);
  });

  it('reads the TLS files as absolute paths, the client CA optional', () => {
    const config = loadConfig({ JWT_SECRET: SECRET, TLS_CERT_FILE: 'cert.pem', TLS_KEY_FILE: '/etc/key.pem', MQTT_TLS_PORT: '9883' });
    expect(config.tls).toEqual({ certFile: resolve('cert.pem'), keyFile: '/etc/key.pem', clientCaFile: null });
    expect(config.mqttTlsPort).toBe(9883);
    expect(loadConfig({ JWT_SECRET: SECRET, TLS_CERT_FILE: 'c', TLS_KEY_FILE: 'k', TLS_CLIENT_CA: 'ca.pem' }).tls?.clientCaFile).toBe(resolve('ca.pem'));
  });

  it.each([
    [{ TLS_CERT_FILE: 'cert.pem' }, 'TLS_KEY_FILE'],
    [{ TLS_KEY_FILE: 'key.pem' }, 'TLS_CERT_FILE'],
    [{ TLS_CLIENT_CA: 'ca.pem' }, 'TLS_CLIENT_CA'],
    [{ TLS_CERT_FILE: 'c', TLS_KEY_FILE: 'k', MQTT_TLS_PORT: '70000' }, 'MQTT_TLS_PORT'],
  ])('refuses half a TLS set-up (%o), naming %s', (env, named) => {
    const message = configError({ JWT_SECRET: SECRET, ...env }).message;
    expect(message).toMatch(new RegExp(`\\b${named}\\b`));
  });

  it('parses every setting given', () => {
    const config = loadConfig({
      PORT: '3000',
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      JWT_SECRET: SECRET,
      LOG_LEVEL: 'debug',
      BCRYPT_ROUNDS: '4',
      OFFLINE_AFTER_SECONDS: '60',
      RETENTION_DAYS: '7',
      RATE_LIMIT_PER_MINUTE: '120',
      SESSION_TTL_SECONDS: '3600',
      DEFAULT_DEVICE_QUOTA: '0',
    });
    expect(config).toMatchObject({
      port: 3000,
      host: '127.0.0.1',
      dataDir,
      logLevel: 'debug',
      bcryptRounds: 4,
      offlineAfterSeconds: 60,
      retentionDays: 7,
      rateLimitPerMinute: 120,
      sessionTtlSeconds: 3600,
      defaultDeviceQuota: 0,
    });
  });

  it('treats an empty value as unset', () => {
    const config = loadConfig({ PORT: '', LOG_LEVEL: '', BCRYPT_ROUNDS: '', JWT_SECRET: SECRET });
    expect([config.port, config.logLevel, config.bcryptRounds]).toEqual([8080, 'info', 12]);
  });

  it.each(['abc', '70000', '-1', '80.5'])('refuses PORT=%s, naming PORT', (port) => {
    expect(configError({ PORT: port, JWT_SECRET: SECRET }).message).toMatch(/\bPORT\b/);
  });

  it.each(['3', '16', 'twelve', '10.5'])('refuses BCRYPT_ROUNDS=%s, naming BCRYPT_ROUNDS', (rounds) => {
    expect(configError({ BCRYPT_ROUNDS: rounds, JWT_SECRET: SECRET }).message).toMatch(/\bBCRYPT_ROUNDS\b/);
  });

  it.each(['verbose', 'INFO', 'warning'])('refuses LOG_LEVEL=%s, naming LOG_LEVEL', (level) => {
    expect(configError({ LOG_LEVEL: level, JWT_SECRET: SECRET }).message).toMatch(/\bLOG_LEVEL\b/);
  });

  it('refuses a JWT_SECRET shorter than 16 characters, naming it', () => {
    expect(configError({ JWT_SECRET: 'short', DATA_DIR: dataDir }).message).toMatch(/\bJWT_SECRET\b/);
  });

  it('names every bad setting at once and nothing that is fine', () => {
    const message = configError({ PORT: 'x', BCRYPT_ROUNDS: '99', LOG_LEVEL: 'loud', HOST: 'localhost', JWT_SECRET: SECRET }).message;
    expect(message).toMatch(/\bPORT\b/);
    expect(message).toMatch(/\bBCRYPT_ROUNDS\b/);
    expect(message).toMatch(/\bLOG_LEVEL\b/);
    expect(message).not.toMatch(/\bHOST\b/);
  });

  it('generates a JWT secret once, keeps it in DATA_DIR and reuses it', () => {
    const first = loadConfig({ DATA_DIR: dataDir });
    const file = join(dataDir, 'jwt-secret');
    expect(existsSync(file)).toBe(true);
    expect(first.jwtSecret.length).toBeGreaterThanOrEqual(32);
    expect(readFileSync(file, 'utf8').trim()).toBe(first.jwtSecret);
    expect(statSync(file).mode & 0o077).toBe(0);
    expect(loadConfig({ DATA_DIR: dataDir }).jwtSecret).toBe(first.jwtSecret);
  });

  it('creates DATA_DIR for the secret when it does not exist, and each data dir gets its own secret', () => {
    const nested = join(dataDir, 'not', 'yet');
    const a = loadConfig({ DATA_DIR: nested }).jwtSecret;
    const b = loadConfig({ DATA_DIR: dataDir }).jwtSecret;
    expect(existsSync(join(nested, 'jwt-secret'))).toBe(true);
    expect(a).not.toBe(b);
  });

  it('uses a given JWT_SECRET and writes no file', () => {
    expect(loadConfig({ DATA_DIR: dataDir, JWT_SECRET: SECRET }).jwtSecret).toBe(SECRET);
    expect(existsSync(join(dataDir, 'jwt-secret'))).toBe(false);
  });

  it('does not turn a whitespace-only PORT into port 0', () => {
    let port: number | undefined;
    try {
      port = loadConfig({ PORT: '  ', JWT_SECRET: SECRET }).port;
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return;
    }
    expect(port).toBe(8080);
  });

  it('never takes a secret shorter than 16 characters from the jwt-secret file', () => {
    writeFileSync(join(dataDir, 'jwt-secret'), '\n');
    let secret: string | undefined;
    try {
      secret = loadConfig({ DATA_DIR: dataDir }).jwtSecret;
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return;
    }
    expect(secret.length).toBeGreaterThanOrEqual(16);
  });

  it('splits CORS_ORIGINS on commas, trimming and dropping blanks', () => {
    expect(loadConfig({ JWT_SECRET: SECRET, CORS_ORIGINS: ' https://a.example ,https://b.example:8443,, ' }).corsOrigins).toEqual([
      'https://a.example',
      'https://b.example:8443',
    ]);
    expect(loadConfig({ JWT_SECRET: SECRET, CORS_ORIGINS: 'https://only.example' }).corsOrigins).toEqual(['https://only.example']);
  });
});
