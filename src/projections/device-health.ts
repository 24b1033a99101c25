import type { RecordedEvent } from '../domain/events.js';
import type { Projection } from './projection.js';
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

/** Raw SQL: this upsert runs for every reading and heartbeat, and has numbers to bind. */
const UPSERT = `INSERT INTO device_health (device_id, last_status, error_count, quality_sum, quality_count, last_heartbeat_at, metrics)
  VALUES (?, ?, ?, ?, ?, ?, ?)
  ON CONFLICT (device_id) DO UPDATE SET
    last_status = coalesce(excluded.last_status, last_status),
    error_count = error_count + excluded.error_count,
    quality_sum = quality_sum + excluded.quality_sum,
    quality_count = quality_count + excluded.quality_count,
    last_heartbeat_at = coalesce(excluded.last_heartbeat_at, last_heartbeat_at),
    metrics = coalesce(excluded.metrics, metrics)`;

function record(sql: Sql, event: RecordedEvent, deviceId: string, status: Record<string, unknown> | null, quality: { sum: number; count: number }, heartbeat: { metrics: Record<string, unknown> | null } | null): void {
  const errors = reportedErrors(status).length > 0 ? 1 : 0;
  sql.runRaw(UPSERT, [
    deviceId,
    status ? JSON.stringify(status) : null,
    errors,
    quality.sum,
    quality.count,
    heartbeat ? event.recorded_at : null,
    heartbeat?.metrics ? JSON.stringify(heartbeat.metrics) : null,
  ]);
}

export const deviceHealthProjection: Projection = {
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
        record(sql, event, event.data.device_id, event.data.device_status, { sum, count: event.data.readings.length }, null);
        return;
      }
      case 'device.heartbeat':
        record(sql, event, event.data.device_id, event.data.device_status, { sum: 0, count: 0 }, { metrics: event.data.metrics });
        return;
      case 'device.decommissioned':
        sql.run(q.deleteFrom('device_health').where('device_id', '=', event.data.device_id));
        return;
      default:
        return;
    }
  },
};

export const findDeviceHealth = (sql: Sql, deviceId: string) =>
  sql.first(q.selectFrom('device_health').selectAll().where('device_id', '=', deviceId));
