import type { Projection } from './projection.js';
import type { DeviceHealthTable } from './schema.js';
import { queryBuilder as q, type Sql } from './sql.js';

/** A reported status counts as an error when it says so: status "error", or an error/errors field. */
export function reportedErrors(status: Record<string, unknown> | null): string[] {
  if (!status) return [];
  const found: string[] = [];
  if (status.status === 'error' || status.state === 'error') found.push('device reports status error');
  for (const key of ['error', 'errors', 'error_code']) {
    const value = status[key];
    if (Array.isArray(value)) found.push(...value.map((v) => String(v)));
    else if (value !== undefined && value !== null && value !== false && value !== '') found.push(String(value));
  }
  return found;
}

/** Raw SQL: it has numbers to bind, and runs once per device of every batch of readings. */
const UPSERT = `INSERT INTO device_health (device_id, last_status, error_count, quality_sum, quality_count, last_heartbeat_at, metrics)
  VALUES (?, ?, ?, ?, ?, ?, ?)
  ON CONFLICT (device_id) DO UPDATE SET
    last_status = coalesce(excluded.last_status, last_status),
    error_count = error_count + excluded.error_count,
    quality_sum = quality_sum + excluded.quality_sum,
    quality_count = quality_count + excluded.quality_count,
    last_heartbeat_at = coalesce(excluded.last_heartbeat_at, last_heartbeat_at),
    metrics = coalesce(excluded.metrics, metrics)`;

/** What a batch adds to a device's row: the latest of what replaces, the sum of what counts. */
type HealthDelta = Omit<DeviceHealthTable, 'device_id'>;

/**
 * Health as devices report it. A batch folds each device's readings and heartbeats into one
 * delta and upserts it at the end: what replaces keeps its latest value, what counts adds up
 * (quality scores are integers, so the sums do not depend on where batches end).
 */
export function deviceHealthProjection(): Projection {
  const deltas = new Map<string, HealthDelta>();
  const add = (deviceId: string, status: Record<string, unknown> | null, quality: { sum: number; count: number }, heartbeat: { at: string; metrics: Record<string, unknown> | null } | null) => {
    const delta = deltas.get(deviceId) ?? { last_status: null, error_count: 0, quality_sum: 0, quality_count: 0, last_heartbeat_at: null, metrics: null };
    if (status) delta.last_status = JSON.stringify(status);
    delta.error_count += reportedErrors(status).length > 0 ? 1 : 0;
    delta.quality_sum += quality.sum;
    delta.quality_count += quality.count;
    if (heartbeat) delta.last_heartbeat_at = heartbeat.at;
    if (heartbeat?.metrics) delta.metrics = JSON.stringify(heartbeat.metrics);
    deltas.set(deviceId, delta);
  };
  return {
    name: 'device_health',
    version: 1,
    tables: ['device_health'],
    ddl: `
      CREATE TABLE IF NOT EXISTS device_health (
        device_id TEXT PRIMARY KEY, last_status TEXT, error_count INTEGER NOT NULL, quality_sum REAL NOT NULL,
        quality_count INTEGER NOT NULL, last_heartbeat_at TEXT, metrics TEXT);`,

    apply(sql, event) {
      switch (event.type) {
        case 'readings.recorded': {
          const sum = event.data.readings.reduce((total, r) => total + r.quality_score, 0);
          add(event.data.device_id, event.data.device_status, { sum, count: event.data.readings.length }, null);
          return;
        }
        case 'device.heartbeat':
          add(event.data.device_id, event.data.device_status, { sum: 0, count: 0 }, { at: event.recorded_at, metrics: event.data.metrics });
          return;
        case 'device.decommissioned':
          deltas.delete(event.data.device_id);
          sql.run(q.deleteFrom('device_health').where('device_id', '=', event.data.device_id));
          return;
        default:
          return;
      }
    },

    afterBatch(sql) {
      for (const [deviceId, d] of deltas) sql.runRaw(UPSERT, [deviceId, d.last_status, d.error_count, d.quality_sum, d.quality_count, d.last_heartbeat_at, d.metrics]);
      deltas.clear();
    },

    forget: () => deltas.clear(),
  };
}

export const findDeviceHealth = (sql: Sql, deviceId: string) =>
  sql.first(q.selectFrom('device_health').selectAll().where('device_id', '=', deviceId));
