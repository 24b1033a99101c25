import type { RecordedEvent } from '../domain/events.js';
import type { Projection } from './projection.js';
import { reportedErrors } from './device-health.js';
import type { DeviceLogsTable } from './schema.js';
import { queryBuilder as q, type Sql } from './sql.js';

type Entry = Pick<DeviceLogsTable, 'severity' | 'category' | 'message'> & { details: Record<string, unknown> };

/** What a device's log says about an event, if anything. */
function entriesFor(event: RecordedEvent): { deviceId: string; entries: Entry[] } | null {
  switch (event.type) {
    case 'device.registered':
      return { deviceId: event.data.device_id, entries: [{ severity: 'info', category: 'lifecycle', message: 'device registered', details: {} }] };
    case 'device.updated': {
      const { configuration, ...other } = event.data.changes;
      const entries: Entry[] = [];
      if (configuration) entries.push({ severity: 'info', category: 'configuration', message: 'configuration changed', details: { configuration } });
      if (Object.keys(other).length > 0) entries.push({ severity: 'info', category: 'lifecycle', message: `updated ${Object.keys(other).join(', ')}`, details: other });
      return { deviceId: event.data.device_id, entries };
    }
    case 'device.configuration_reported':
      return { deviceId: event.data.device_id, entries: [{ severity: 'info', category: 'configuration', message: `device reported its configuration (${event.data.source})`, details: { configuration: event.data.configuration } }] };
    case 'device.firmware_progress':
      return {
        deviceId: event.data.device_id,
        entries: [{ severity: event.data.status === 'failed' ? 'error' : 'info', category: 'firmware', message: `firmware ${event.data.version}: ${event.data.status}`, details: { detail: event.data.detail } }],
      };
    case 'device.came_online':
      return { deviceId: event.data.device_id, entries: [{ severity: 'info', category: 'status', message: 'came online', details: {} }] };
    case 'device.state_reported': {
      const { state } = event.data;
      const entry: Entry = { severity: state === 'error' ? 'error' : state === 'maintenance' ? 'warning' : 'info', category: 'status', message: state ? `reports ${state}` : 'reports normal operation', details: {} };
      return { deviceId: event.data.device_id, entries: [entry] };
    }
    case 'device.went_offline':
      return { deviceId: event.data.device_id, entries: [{ severity: 'warning', category: 'status', message: 'went offline', details: { last_seen: event.data.last_seen } }] };
    case 'readings.recorded':
    case 'device.heartbeat': {
      const errors = reportedErrors(event.data.device_status);
      const entries: Entry[] = errors.map((message) => ({ severity: 'error', category: 'device_error', message, details: { device_status: event.data.device_status } }));
      return { deviceId: event.data.device_id, entries };
    }
    default:
      return null;
  }
}

/** Raw SQL: every connection of a device logs that it came online (thousands at once when a fleet reconnects), and it has numbers to bind. */
const INSERT = 'INSERT INTO device_logs (device_id, position, seq, severity, category, message, details, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?)';

export const deviceLogsProjection: Projection = {
  name: 'device_logs',
  version: 1,
  tables: ['device_logs'],
  ddl: `
    CREATE TABLE IF NOT EXISTS device_logs (
      device_id TEXT NOT NULL, position INTEGER NOT NULL, seq INTEGER NOT NULL, severity TEXT NOT NULL, category TEXT NOT NULL,
      message TEXT NOT NULL, details TEXT NOT NULL, timestamp TEXT NOT NULL, PRIMARY KEY (device_id, position, seq)) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS device_logs_time ON device_logs (device_id, timestamp);`,

  apply(sql, event) {
    if (event.type === 'device.decommissioned') {
      sql.run(q.deleteFrom('device_logs').where('device_id', '=', event.data.device_id));
      return;
    }
    const found = entriesFor(event);
    found?.entries.forEach((entry, seq) =>
      sql.runRaw(INSERT, [found.deviceId, event.position, seq, entry.severity, entry.category, entry.message, JSON.stringify(entry.details), event.recorded_at]),
    );
  },
};

export const logSeverities = ['debug', 'info', 'warning', 'error', 'critical'] as const;

export interface DeviceLogFilter {
  deviceId: string;
  /** The least severity to include. */
  severity?: DeviceLogsTable['severity'];
  start?: string;
  end?: string;
  limit: number;
  offset: number;
}

export function listDeviceLogs(sql: Sql, filter: DeviceLogFilter) {
  let query = q.selectFrom('device_logs').where('device_id', '=', filter.deviceId);
  if (filter.severity) query = query.where('severity', 'in', logSeverities.slice(logSeverities.indexOf(filter.severity)));
  if (filter.start) query = query.where('timestamp', '>=', filter.start);
  if (filter.end) query = query.where('timestamp', '<=', filter.end);
  const total = sql.first(query.select((eb) => eb.fn.countAll<number>().as('n')))?.n ?? 0;
  const rows = sql.all(query.selectAll().orderBy('position', 'desc').orderBy('seq').limit(filter.limit).offset(filter.offset));
  return { rows, total };
}
