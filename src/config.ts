import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';

const optionalPositiveInt = z.coerce.number().int().positive().optional();

/** Every setting the server reads (README.md's configuration table); the only place that reads process.env. */
const envSchema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().min(1).default('0.0.0.0'),
  DATA_DIR: z.string().min(1).default('./data'),
  JWT_SECRET: z.string().min(16, 'JWT_SECRET must be at least 16 characters').optional(),
  SECRETS_KEY: z.string().min(32, 'SECRETS_KEY must be at least 32 characters').optional(),
  CORS_ORIGINS: z.string().optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  BCRYPT_ROUNDS: z.coerce.number().int().min(4).max(15).default(12),
  OFFLINE_AFTER_SECONDS: z.coerce.number().int().positive().default(180),
  RETENTION_DAYS: z.coerce.number().int().positive().default(30),
  RATE_LIMIT_PER_MINUTE: optionalPositiveInt,
  SESSION_TTL_SECONDS: z.coerce.number().int().positive().default(7 * 24 * 3600),
  DEFAULT_DEVICE_QUOTA: z.coerce.number().int().nonnegative().default(100),
  WS_MAX_BUFFERED_BYTES: z.coerce.number().int().min(1024).default(1024 * 1024),
  MQTT_PORT: z.coerce.number().int().min(0).max(65535).default(1883),
  MQTT_BROKER_URL: z.url({ protocol: /^(mqtts?|wss?)$/, error: 'MQTT_BROKER_URL must be an mqtt://, mqtts://, ws:// or wss:// URL' }).optional(),
  MQTT_CLIENT_ID: z.string().min(1).max(128).default('iot-controller'),
  TLS_CERT_FILE: z.string().min(1).optional(),
  TLS_KEY_FILE: z.string().min(1).optional(),
  TLS_CLIENT_CA: z.string().min(1).optional(),
  MQTT_TLS_PORT: z.coerce.number().int().min(0).max(65535).default(8883),
  LOG_ARCHIVE_AFTER_DAYS: optionalPositiveInt,
  LOG_DELETE_AFTER_DAYS: optionalPositiveInt,
}).superRefine((env, ctx) => {
  // Only archived segments are ever deleted: the live log is the whole truth until a cut.
  if (env.LOG_DELETE_AFTER_DAYS !== undefined && (env.LOG_ARCHIVE_AFTER_DAYS === undefined || env.LOG_DELETE_AFTER_DAYS < env.LOG_ARCHIVE_AFTER_DAYS)) {
    ctx.addIssue({ code: 'custom', path: ['LOG_DELETE_AFTER_DAYS'], message: 'LOG_DELETE_AFTER_DAYS deletes archived segments: it needs LOG_ARCHIVE_AFTER_DAYS, and no fewer days than it' });
  }
  // One file alone would start a plaintext server the operator believes is encrypted.
  if ((env.TLS_CERT_FILE === undefined) !== (env.TLS_KEY_FILE === undefined)) {
    ctx.addIssue({ code: 'custom', path: [env.TLS_CERT_FILE ? 'TLS_KEY_FILE' : 'TLS_CERT_FILE'], message: 'TLS_CERT_FILE and TLS_KEY_FILE go together: set both (PEM files) or neither' });
  }
  if (env.TLS_CLIENT_CA && !env.TLS_CERT_FILE) ctx.addIssue({ code: 'custom', path: ['TLS_CLIENT_CA'], message: 'mutual TLS needs TLS_CERT_FILE and TLS_KEY_FILE too' });
});

/** PEM files of the server's certificate, its key, and the CA that signs device certificates (mutual TLS). */
export interface TlsFiles {
  certFile: string;
  keyFile: string;
  clientCaFile: string | null;
}

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  jwtSecret: string;
  /** Seals secret fields of events; null: a key generated once and kept in DATA_DIR (see secretsKeyOf). */
  secretsKey: string | null;
  corsOrigins: string[] | null;
  logLevel: z.infer<typeof envSchema>['LOG_LEVEL'];
  bcryptRounds: number;
  offlineAfterSeconds: number;
  retentionDays: number;
  rateLimitPerMinute: number | null;
  sessionTtlSeconds: number;
  defaultDeviceQuota: number;
  /** A live subscriber with more unsent bytes than this is closed (1013) and resumes. */
  wsMaxBufferedBytes: number;
  /** null: plain HTTP. */
  tls: TlsFiles | null;
  /** MQTT over TLS, opened only when `tls` is set. */
  mqttTlsPort: number;
  /** The embedded MQTT broker's TCP port; 0: no TCP listener (MQTT over WebSocket at /mqtt stays). */
  mqttPort: number;
  /** An existing broker to use instead of the embedded one (credentials in the URL). */
  mqttBrokerUrl: string | null;
  /** The server's client id there: stable, so its persistent session survives restarts. */
  mqttClientId: string;
  /** Readings and heartbeats older than this move into sealed segments under DATA_DIR/archive; null: never. */
  logArchiveAfterDays: number | null;
  /** Archived segments whose newest event is older than this are deleted for good; null: kept. */
  logDeleteAfterDays: number | null;
}

export class ConfigError extends Error {}

/** Parses the environment; throws ConfigError naming every bad setting. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const blankAsUnset = Object.fromEntries(
    Object.entries(env)
      .map(([key, value]) => [key, value?.trim()] as const)
      .filter(([, value]) => value !== undefined && value !== ''),
  );
  const parsed = envSchema.safeParse(blankAsUnset);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ');
    throw new ConfigError(`invalid configuration: ${problems}`);
  }
  const e = parsed.data;
  const dataDir = resolve(e.DATA_DIR);
  return {
    port: e.PORT,
    host: e.HOST,
    dataDir,
    jwtSecret: e.JWT_SECRET ?? persistentSecret(dataDir, 'jwt-secret', 'JWT_SECRET'),
    secretsKey: e.SECRETS_KEY ?? null,
    corsOrigins: e.CORS_ORIGINS ? e.CORS_ORIGINS.split(',').map((o) => o.trim()).filter(Boolean) : null,
    logLevel: e.LOG_LEVEL,
    bcryptRounds: e.BCRYPT_ROUNDS,
    offlineAfterSeconds: e.OFFLINE_AFTER_SECONDS,
    retentionDays: e.RETENTION_DAYS,
    rateLimitPerMinute: e.RATE_LIMIT_PER_MINUTE ?? null,
    sessionTtlSeconds: e.SESSION_TTL_SECONDS,
    defaultDeviceQuota: e.DEFAULT_DEVICE_QUOTA,
    wsMaxBufferedBytes: e.WS_MAX_BUFFERED_BYTES,
    mqttPort: e.MQTT_PORT,
    tls: e.TLS_CERT_FILE && e.TLS_KEY_FILE ? { certFile: resolve(e.TLS_CERT_FILE), keyFile: resolve(e.TLS_KEY_FILE), clientCaFile: e.TLS_CLIENT_CA ? resolve(e.TLS_CLIENT_CA) : null } : null,
    mqttTlsPort: e.MQTT_TLS_PORT,
    mqttBrokerUrl: e.MQTT_BROKER_URL ?? null,
    mqttClientId: e.MQTT_CLIENT_ID,
    logArchiveAfterDays: e.LOG_ARCHIVE_AFTER_DAYS ?? null,
    logDeleteAfterDays: e.LOG_DELETE_AFTER_DAYS ?? null,
  };
}

/**
 * The key sealing secrets in the log: SECRETS_KEY, or one generated on first use and kept in
 * DATA_DIR (mode 0600). Read when the server starts, not with the rest of the settings, so that
 * parsing settings writes no file a caller did not ask for.
 */
export function secretsKeyOf(config: Pick<Config, 'dataDir' | 'secretsKey'>): string {
  return config.secretsKey ?? persistentSecret(config.dataDir, 'secrets-key', 'SECRETS_KEY');
}

/** A generated secret kept beside the data, so what it protects survives a restart. */
function persistentSecret(dataDir: string, name: string, setting: string): string {
  const file = join(dataDir, name);
  if (existsSync(file)) {
    const kept = readFileSync(file, 'utf8').trim();
    if (kept.length < 16) throw new ConfigError(`${file} holds no usable secret (under 16 characters); remove it or set ${setting}`);
    return kept;
  }
  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(48).toString('base64url');
  writeFileSync(file, secret, { mode: 0o600 });
  return secret;
}
