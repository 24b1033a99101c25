import { expect } from 'vitest';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import { startServer } from '../../src/server.js';
import type { Answer, Client } from './client.js';
import type { TestServer } from './server.js';

/** Shapes of the contract (docs/guide.md), as the tests read them. */
export interface ErrorBody {
  error: { code: string; message: string; details: Array<{ path: string; message: string }>; request_id: string };
}

export interface User {
  id: string;
  username: string;
  email: string;
  role: 'admin' | 'user';
  device_quota: number;
  created_at: string;
}

export interface Device {
  id: string;
  user_id: string;
  name: string;
  device_type: string;
  description: string | null;
  ip_address: string | null;
  mac_address: string | null;
  status: string;
  last_seen: string | null;
  firmware_version: string | null;
  group_id: string | null;
  configuration: Record<string, unknown>;
  certificate_fingerprint: string | null;
  created_at: string;
  updated_at: string;
  version: number;
}

export interface RegisteredDevice extends Device {
  credentials: { device_id: string; auth_token: string };
}

export interface Group {
  id: string;
  user_id: string;
  name: string;
  description: string | null;
  parent_id: string | null;
  device_count: number;
  total_device_count: number;
  statistics: { online: number; offline: number };
  created_at: string;
  version: number;
  children?: Group[];
}

export interface StoredEvent {
  position: number;
  stream_id: string;
  version: number;
  type: string;
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
  recorded_at: string;
  hash: string;
}

export interface Meta {
  total: number;
  limit: number;
  offset: number;
  /** Raw readings only: resumes after the page's last reading; null on the last page. */
  next_cursor?: string | null;
}

export interface Data<T> {
  data: T;
}

export interface List<T> {
  data: T[];
  meta: Meta;
}

const STACK_LIKE = /(\bat\s+\S+\s+\(|\.ts:\d+|\.js:\d+|node_modules|SqliteError|SQLITE_|TypeError|ReferenceError|\bstack\b)/;

/**
 * Asserts the error envelope (docs/guide.md): the status, the code, a message, details as a list,
 * a request_id equal to the X-Request-Id header, and nothing that looks like a stack or SQL.
 */
export function expectError(answer: Answer, status: number, code: string): ErrorBody['error'] {
  const context = `${answer.status} ${JSON.stringify(answer.body)}`;
  expect(answer.status, context).toBe(status);
  expect(answer.headers.get('content-type') ?? '', context).toMatch(/application\/json/);
  const body = answer.body as ErrorBody;
  expect(body, context).toHaveProperty('error');
  expect(body.error.code, context).toBe(code);
  expect(typeof body.error.message).toBe('string');
  expect(body.error.message.length).toBeGreaterThan(0);
  expect(Array.isArray(body.error.details)).toBe(true);
  expect(body.error.request_id).toBeTruthy();
  expect(body.error.request_id).toBe(answer.headers.get('x-request-id'));
  expect(JSON.stringify(body)).not.toMatch(STACK_LIKE);
  return body.error;
}

/** A validation failure naming (at least) one detail whose path is or starts with `path`. */
export function expectValidation(answer: Answer, path: string): ErrorBody['error'] {
  const error = expectError(answer, 400, 'validation_failed');
  const paths = error.details.map((d) => d.path);
  expect(paths.some((p) => p === path || p.startsWith(`${path}.`)), `details ${JSON.stringify(error.details)} should name ${path}`).toBe(true);
  for (const detail of error.details) expect(typeof detail.message).toBe('string');
  return error;
}

let sequence = 0;
/** A name unique within the test run (fits the 3–32 character username rule). */
export const uniqueName = (prefix: string): string => `${prefix.slice(0, 14)}_${++sequence}_${Date.now() % 1_000_000}`;

/** A fresh, unused MAC address. */
export function uniqueMac(): string {
  const n = ++sequence + Math.floor(Math.random() * 0xffffff) * 0x100;
  const bytes = [0x02, 0x00, (n >> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Registers a device through the API and returns its answer's data (with credentials). */
export async function createDevice(api: Client, token: string, body: Record<string, unknown> = {}): Promise<RegisteredDevice> {
  const typed = 'type' in body || 'device_type' in body ? {} : { device_type: 'sensor' };
  const answer = await api.post<Data<RegisteredDevice>>('/api/devices', { name: uniqueName('dev'), ...typed, ...body }, { token });
  if (answer.status !== 201) throw new Error(`device register failed: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body.data;
}

/** Creates a group through the API and returns it. */
export async function createGroup(api: Client, token: string, body: Record<string, unknown> = {}): Promise<Group> {
  const answer = await api.post<Data<Group>>('/api/groups', { name: uniqueName('grp'), ...body }, { token });
  if (answer.status !== 201) throw new Error(`group create failed: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body.data;
}

/** The event log's head position, from the public health route. */
export async function headPosition(api: Client): Promise<number> {
  const answer = await api.get<Data<{ status: string; position: number }>>('/api/health');
  expect(answer.status).toBe(200);
  return answer.body.data.position;
}

/**
 * Like a process restart: closes the server, then loads the configuration afresh from the
 * environment (so a JWT secret can only come from DATA_DIR) and starts a new server on it.
 */
export async function restartFromDisk(server: TestServer, env: Record<string, string> = {}): Promise<void> {
  await server.server.close();
  const config = loadConfig({ PORT: '0', MQTT_PORT: '0', HOST: '127.0.0.1', DATA_DIR: server.dataDir, BCRYPT_ROUNDS: '4', LOG_LEVEL: 'silent', ...env });
  server.server = await startServer(config, { clock: server.clock, logger: pino({ level: 'silent' }) });
  server.url = server.server.url;
}

/** The cookie named `name` from an answer's Set-Cookie headers, with its attributes. */
export function setCookie(answer: Answer, name: string): { value: string; attributes: string[] } | undefined {
  for (const header of answer.headers.getSetCookie()) {
    const [pair, ...attributes] = header.split(';').map((part) => part.trim());
    const eq = pair!.indexOf('=');
    if (pair!.slice(0, eq) === name) return { value: pair!.slice(eq + 1), attributes };
  }
  return undefined;
}
