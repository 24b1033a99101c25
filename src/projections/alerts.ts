import { sql as raw } from 'kysely';
import type { EventOfType, RecordedEvent } from '../domain/events.js';
import type { Projection } from './projection.js';
import type { AlertsTable } from './schema.js';
import { prepared, queryBuilder as q, type Sql } from './sql.js';

export const alertsProjection: Projection = {
  name: 'alerts',
  version: 1,
  tables: ['alerts'],
  ddl: `
    CREATE TABLE IF NOT EXISTS alerts (
      id TEXT PRIMARY KEY, device_id TEXT, user_id TEXT NOT NULL, rule_id TEXT, kind TEXT NOT NULL, sensor_type TEXT,
      severity TEXT NOT NULL, status TEXT NOT NULL, message TEXT NOT NULL, count INTEGER NOT NULL, last_value REAL,
      raised_at TEXT NOT NULL, updated_at TEXT NOT NULL, acknowledged_at TEXT, cleared_at TEXT, version INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS alerts_user ON alerts (user_id, status);
    CREATE INDEX IF NOT EXISTS alerts_device ON alerts (device_id);`,

  apply(sql, event) {
    switch (event.type) {
      case 'alert.raised': {
        const { alert_id, value, ...alert } = event.data;
        sql.run(
          q
            .insertInto('alerts')
            .values({ id: alert_id, ...alert, status: 'active', count: 1, last_value: value, raised_at: event.recorded_at, updated_at: event.recorded_at, acknowledged_at: null, cleared_at: null, version: event.version })
            // Older logs repeated an open alert by raising it again (see alert.repeated).
            .onConflict((oc) => oc.column('id').doUpdateSet(repeated(event))),
        );
        return;
      }
      case 'alert.repeated':
        sql.run(q.updateTable('alerts').set(repeated(event)).where('id', '=', event.data.alert_id));
        return;
      case 'alert.acknowledged':
        sql.run(q.updateTable('alerts').set({ status: 'acknowledged', acknowledged_at: event.recorded_at, updated_at: event.recorded_at, version: event.version }).where('id', '=', event.data.alert_id));
        return;
      case 'alert.cleared':
        sql.run(q.updateTable('alerts').set({ status: 'cleared', cleared_at: event.recorded_at, updated_at: event.recorded_at, version: event.version }).where('id', '=', event.data.alert_id));
        return;
      case 'device.decommissioned':
        sql.run(q.deleteFrom('alerts').where('device_id', '=', event.data.device_id));
        return;
      default:
        return;
    }
  },
};

/** A repeat counts on the open alert and shows the breach as it is now. */
const repeated = ({ data, recorded_at, version }: EventOfType<'alert.raised' | 'alert.repeated'> & RecordedEvent) => ({
  count: raw<number>`count + 1`,
  last_value: data.value,
  message: data.message,
  severity: data.severity,
  updated_at: recorded_at,
  version,
});

export type AlertRow = NonNullable<ReturnType<typeof findAlert>>;

export const findAlert = (sql: Sql, id: string) => sql.first(q.selectFrom('alerts').selectAll().where('id', '=', id));

/** Open alerts (active or acknowledged) of a device, keyed `${kind}:${sensor_type}`. */
const openOfDevice = prepared((deviceId: string) =>
  q.selectFrom('alerts').select(['id', 'kind', 'sensor_type']).where('device_id', '=', deviceId).where('status', '!=', 'cleared').where('kind', '!=', 'rule'),
);
export const openDeviceAlerts = (sql: Sql, deviceId: string) => openOfDevice.all(sql, deviceId);

export interface AlertFilter {
  userId: string | null;
  /** Besides the user's own: the alerts of these devices (shared with the user). */
  sharedDeviceIds?: readonly string[];
  status?: AlertsTable['status'];
  severity?: AlertsTable['severity'];
  deviceId?: string;
  limit: number;
  offset: number;
}

export function listAlerts(sql: Sql, filter: AlertFilter): { rows: AlertRow[]; total: number } {
  let query = q.selectFrom('alerts');
  const { userId, sharedDeviceIds = [] } = filter;
  if (userId !== null) query = query.where((eb) => (sharedDeviceIds.length > 0 ? eb.or([eb('user_id', '=', userId), eb('device_id', 'in', sharedDeviceIds)]) : eb('user_id', '=', userId)));
  if (filter.status) query = query.where('status', '=', filter.status);
  if (filter.severity) query = query.where('severity', '=', filter.severity);
  if (filter.deviceId) query = query.where('device_id', '=', filter.deviceId);
  const total = sql.first(query.select((eb) => eb.fn.countAll<number>().as('n')))?.n ?? 0;
  const rows = sql.all(query.selectAll().orderBy('updated_at', 'desc').orderBy('id').limit(filter.limit).offset(filter.offset));
  return { rows, total };
}

/** Open alerts by severity for a set of devices (null: every device of the scope's user). */
/** Active alerts (as GET /api/alerts?status=active lists them) by severity; deviceIds null: also those tied to no device. */
/** Active alerts by severity: a user's (and those of the devices shared with them), of some devices, or both. */
export const activeAlertCounts = (sql: Sql, userId: string | null, deviceIds: readonly string[] | null, sharedDeviceIds: readonly string[] = []) => {
  let query = q.selectFrom('alerts').select(['severity', (eb) => eb.fn.countAll<number>().as('n')]).where('status', '=', 'active').groupBy('severity');
  if (userId !== null) query = query.where((eb) => (sharedDeviceIds.length > 0 ? eb.or([eb('user_id', '=', userId), eb('device_id', 'in', sharedDeviceIds)]) : eb('user_id', '=', userId)));
  if (deviceIds !== null) query = query.where('device_id', 'in', deviceIds.length ? deviceIds : ['']);
  return sql.all(query);
};
