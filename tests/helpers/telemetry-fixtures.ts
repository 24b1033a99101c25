import { expect } from 'vitest';
import type { Answer, CallOptions, Client } from './client.js';
import { registerUser } from './client.js';
import { createDevice, type Data, type List, type RegisteredDevice, type StoredEvent } from './fixtures.js';
import type { TestServer } from './server.js';

/** Shapes of the Telemetry / Alerts / analytics contract (docs/guide.md), as the tests read them. */
export interface Accepted {
  accepted: number;
  position: number;
}

export interface ReadingIn {
  sensor_type: string;
  value: number;
  unit?: string | null;
  timestamp?: string;
}

export interface RawReading {
  sensor_type: string;
  value: number;
  unit: string | null;
  timestamp: string;
  quality_score: number;
  quality_reasons: string[];
}

export interface BucketRow {
  sensor_type: string;
  bucket_start: string;
  count: number;
  avg: number;
  min: number;
  max: number;
  sum: number;
}

export interface DeviceStatusBody {
  device_id: string;
  status: string;
  connectivity: { online: boolean; last_seen: string | null; seconds_since_last_seen: number | null };
  health: Record<string, unknown> & { error_count: number; mean_quality_score: number | null };
  operational_state: Record<string, unknown>;
}

export interface DeviceLogEntry {
  severity: string;
  category: string;
  message: string;
  details: Record<string, unknown>;
  timestamp: string;
  position: number;
}

export interface Alert {
  id: string;
  device_id: string | null;
  rule_id: string | null;
  kind: 'threshold' | 'anomaly' | 'rule';
  sensor_type: string | null;
  severity: 'info' | 'warning' | 'critical';
  status: 'active' | 'acknowledged' | 'cleared';
  message: string;
  count: number;
  last_value: number | null;
  raised_at: string;
  acknowledged_at: string | null;
  cleared_at: string | null;
}

export interface SensorAnalytics {
  sensor_type: string;
  count: number;
  avg: number;
  min: number;
  max: number;
  stddev: number;
  trend_per_hour: number | null;
}

export interface Analytics {
  devices: { total: number; by_status: Record<string, number>; by_type: Record<string, number> };
  readings: { total: number; per_hour: Array<{ hour: string; count: number }>; by_sensor: SensorAnalytics[] };
  commands: { total: number; by_status: Record<string, number>; success_rate: number | null; avg_latency_ms: number | null };
  rules: { total: number; enabled: number; triggered: number };
  alerts: { active: number; by_severity: Record<string, number> };
}

export type Owner = Awaited<ReturnType<typeof registerUser>>;

/** POST /api/devices/:id/data with the given credential (device token or user token). */
export const submit = (api: Client, deviceId: string, token: string, body: unknown, headers?: Record<string, string>): Promise<Answer<Data<Accepted>>> =>
  api.post<Data<Accepted>>(`/api/devices/${deviceId}/data`, body, { token, ...(headers ? { headers } : {}) });

/** Submits and insists on 201; returns the answer's data. */
export async function submitOk(api: Client, deviceId: string, token: string, body: unknown, headers?: Record<string, string>): Promise<Accepted> {
  const answer = await submit(api, deviceId, token, body, headers);
  expect(answer.status, JSON.stringify(answer.body)).toBe(201);
  return answer.body.data;
}

/** A raw POST (the body sent byte for byte) to the data route. */
export const submitRaw = (api: Client, deviceId: string, token: string, raw: string, options: CallOptions = {}): Promise<Answer> =>
  api.call('POST', `/api/devices/${deviceId}/data`, undefined, { token, raw, ...options, headers: { 'content-type': 'application/json', ...options.headers } });

/** A device (with its token) of a fresh device registered by `owner`. */
export async function deviceOf(api: Client, owner: Owner, body: Record<string, unknown> = {}): Promise<RegisteredDevice & { token: string }> {
  const device = await createDevice(api, owner.token, body);
  return { ...device, token: device.credentials.auth_token };
}

/** GET /api/devices/:id/data as a list; insists on 200. */
export async function readData<T = RawReading>(api: Client, deviceId: string, token: string, query = ''): Promise<List<T>> {
  const answer = await api.get<List<T>>(`/api/devices/${deviceId}/data${query ? `?${query}` : ''}`, { token });
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
  return answer.body;
}

/** Every raw reading of a device, paging through GET /data (limit 500). */
export async function allRawReadings(api: Client, deviceId: string, token: string, query = ''): Promise<RawReading[]> {
  const all: RawReading[] = [];
  for (let offset = 0; ; offset += 500) {
    const page = await readData(api, deviceId, token, `limit=500&offset=${offset}${query ? `&${query}` : ''}`);
    all.push(...page.data);
    if (page.data.length < 500 || all.length >= page.meta.total) return all;
  }
}

/** The device's events, oldest first, through GET /api/devices/:id/history (every page). */
export async function deviceHistory(api: Client, deviceId: string, token: string): Promise<StoredEvent[]> {
  const all: StoredEvent[] = [];
  for (let offset = 0; ; offset += 500) {
    const answer = await api.get<List<StoredEvent>>(`/api/devices/${deviceId}/history?limit=500&offset=${offset}`, { token });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    all.push(...answer.body.data);
    if (answer.body.data.length < 500) return all;
  }
}

/** Events of one type about one device, counted straight from the log table. */
export function countEventsInLog(server: TestServer, type: string, deviceId: string): number {
  const row = server.server.db
    .prepare<[string, string], { n: number }>(`SELECT count(*) AS n FROM events WHERE type = ? AND json_extract(data, '$.device_id') = ?`)
    .get(type, deviceId);
  return row?.n ?? 0;
}

/** The log's head position through the public health route. */
export async function head(api: Client): Promise<number> {
  const answer = await api.get<Data<{ position: number }>>('/api/health');
  expect(answer.status).toBe(200);
  return answer.body.data.position;
}

export const iso = (ms: number): string => new Date(ms).toISOString();

/** `now` of the server's clock moved by `offsetMs`, as ISO. */
export const at = (server: TestServer, offsetMs: number): string => iso(server.clock.now().getTime() + offsetMs);

export const MINUTE = 60_000;
export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;

// ---------------------------------------------------------------------------------------------
// Naive aggregation: what every rollup must equal, computed the slow, obvious way.

export type BucketSize = 'minute' | 'hour' | 'day';
const bucketMs: Record<BucketSize, number> = { minute: MINUTE, hour: HOUR, day: DAY };

/** The UTC start of the bucket holding `timestamp`, by arithmetic on epoch milliseconds. */
export const naiveBucketStart = (bucket: BucketSize, timestamp: string): string => {
  const ms = Date.parse(timestamp);
  return iso(Math.floor(ms / bucketMs[bucket]) * bucketMs[bucket]);
};

export interface NaiveAggregate {
  count: number;
  sum: number;
  min: number;
  max: number;
  sum_sq: number;
  /** Σ|v| and Σv², to bound the float error of sums taken in another order. */
  abs_sum: number;
}

export interface AggregatedReading {
  device_id: string;
  sensor_type: string;
  value: number;
  timestamp: string;
}

/** Groups readings by device, sensor and bucket: key `${device}|${sensor}|${bucket_start}`. */
export function naiveRollups(readings: readonly AggregatedReading[], bucket: BucketSize): Map<string, NaiveAggregate> {
  const out = new Map<string, NaiveAggregate>();
  for (const r of readings) {
    const key = `${r.device_id}|${r.sensor_type}|${naiveBucketStart(bucket, r.timestamp)}`;
    const values = out.get(key);
    if (!values) {
      out.set(key, { count: 1, sum: r.value, min: r.value, max: r.value, sum_sq: r.value * r.value, abs_sum: Math.abs(r.value) });
    } else {
      values.count += 1;
      values.sum += r.value;
      values.min = Math.min(values.min, r.value);
      values.max = Math.max(values.max, r.value);
      values.sum_sq += r.value * r.value;
      values.abs_sum += Math.abs(r.value);
    }
  }
  return out;
}

/** Float sums taken in another order differ by rounding only: a relative bound on that. */
export function expectSumClose(actual: number, expected: number, magnitude: number, context: string): void {
  expect(Math.abs(actual - expected), `${context}: ${actual} vs ${expected}`).toBeLessThanOrEqual(1e-9 * Math.max(1, magnitude));
}

/** Splits `items` into consecutive chunks at the given cut points (any numbers; used modulo the length). */
export function chunk<T>(items: readonly T[], cuts: readonly number[]): T[][] {
  const at = [...new Set(cuts.map((c) => (items.length === 0 ? 0 : c % items.length)).filter((c) => c > 0))].sort((a, b) => a - b);
  const chunks: T[][] = [];
  let from = 0;
  for (const cut of [...at, items.length]) {
    if (cut > from) chunks.push(items.slice(from, cut));
    from = cut;
  }
  return chunks;
}

/** Population mean and standard deviation. */
export function meanAndStddev(values: readonly number[]): { mean: number; stddev: number } {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const variance = values.reduce((a, v) => a + (v - mean) ** 2, 0) / values.length;
  return { mean, stddev: Math.sqrt(variance) };
}
