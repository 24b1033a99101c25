import { sql as raw } from 'kysely';
import { displayedStatus } from '../domain/device-status.js';
import { deviceOf, type RecordedEvent } from '../domain/events.js';
import type { SecretBox } from '../eventlog/index.js';
import { sharedGroupIds } from './groups.js';
import type { Projection } from './projection.js';
import { prepared, queryBuilder as q, type Sql } from './sql.js';

/** Every reading moves last_seen: the hottest write of this read model, compiled once. */
const heardFrom = prepared((at: string, id: string) => q.updateTable('devices').set({ last_seen: at }).where('id', '=', id));
const connectivityOf = prepared((id: string) => q.selectFrom('devices').select('connectivity').where('id', '=', id));

/**
 * Devices as registered, updated and heard from. Readings only move last_seen, to the time of
 * the device's latest submission: that write waits for the batch's end (or for the next other
 * event of the device, which must see the row as the log has it so far), one per device per
 * batch instead of one per submission.
 */
export function devicesProjection(secrets: SecretBox): Projection {
  const heard = new Map<string, string>();
  const writeHeard = (sql: Sql, deviceId: string) => {
    const at = heard.get(deviceId);
    if (at === undefined) return;
    heardFrom.run(sql, at, deviceId);
    heard.delete(deviceId);
  };
  const writeAllHeard = (sql: Sql) => {
    for (const deviceId of heard.keys()) writeHeard(sql, deviceId);
  };
  return {
    ...devicesReadModel,
    apply(sql, event) {
      if (event.type === 'readings.recorded') {
        heard.set(event.data.device_id, event.recorded_at);
        return;
      }
      const deviceId = deviceOf(event);
      if (deviceId === null) writeAllHeard(sql);
      else writeHeard(sql, deviceId);
      applyToDevices(sql, event, secrets);
    },
    afterBatch: writeAllHeard,
  };
}

const devicesReadModel = {
  name: 'devices',
  version: 5,
  tables: ['devices'],
  ddl: `
    CREATE TABLE IF NOT EXISTS devices (
      id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL, device_type TEXT NOT NULL,
      description TEXT, ip_address TEXT, mac_address TEXT, status TEXT NOT NULL, last_seen TEXT,
      firmware_version TEXT, group_id TEXT, configuration TEXT NOT NULL, token_hash TEXT NOT NULL,
      created_at TEXT NOT NULL, updated_at TEXT NOT NULL, version INTEGER NOT NULL,
      reported_configuration TEXT, firmware_state TEXT, connectivity TEXT NOT NULL, reported_state TEXT,
      certificate_fingerprint TEXT);
    CREATE INDEX IF NOT EXISTS devices_user ON devices (user_id, created_at);
    CREATE INDEX IF NOT EXISTS devices_group ON devices (group_id);
    CREATE INDEX IF NOT EXISTS devices_token ON devices (token_hash);
    CREATE INDEX IF NOT EXISTS devices_certificate ON devices (certificate_fingerprint) WHERE certificate_fingerprint IS NOT NULL;
    CREATE INDEX IF NOT EXISTS devices_mac ON devices (lower(replace(mac_address, '-', ':'))) WHERE mac_address IS NOT NULL;`,
};

/**
 * Raw SQL: every connection of a device comes online through this (a fleet reconnecting after
 * an outage is thousands at once), and it has numbers to bind. Coming online is being heard
 * from, also for a device that only connected (/ws/device).
 */
const CAME_ONLINE = `UPDATE devices SET connectivity = 'online', status = coalesce(reported_state, 'online'),
  last_seen = max(coalesce(last_seen, ''), ?), version = ?, updated_at = ? WHERE id = ?`;
const WENT_OFFLINE = `UPDATE devices SET connectivity = 'offline', status = 'offline', version = ?, updated_at = ? WHERE id = ?`;

/** The token's lookup digest: opened from the sealed field (a log written before sealing holds it plain). */
const tokenLookup = (secrets: SecretBox, tokenHash: string) => secrets.openIfSealed(tokenHash, 'token_hash');

function applyToDevices(sql: Sql, event: RecordedEvent, secrets: SecretBox): void {
  switch (event.type) {
    case 'device.registered': {
      const { device_id, configuration, token_hash, ...rest } = event.data;
      sql.run(
        q.insertInto('devices').values({
          id: device_id,
          ...rest,
          token_hash: tokenLookup(secrets, token_hash),
          configuration: JSON.stringify(configuration),
          status: 'offline',
          connectivity: 'offline',
          reported_state: null,
          last_seen: null,
          reported_configuration: null,
          firmware_state: null,
          certificate_fingerprint: null,
          created_at: event.recorded_at,
          updated_at: event.recorded_at,
          version: event.version,
        }),
      );
      return;
    }
    case 'device.updated': {
      const { configuration, ...changes } = event.data.changes;
      sql.run(
        q
          .updateTable('devices')
          .set({
            ...changes,
            ...(configuration ? { configuration: JSON.stringify(configuration) } : {}),
            updated_at: event.recorded_at,
            version: event.version,
          })
          .where('id', '=', event.data.device_id),
      );
      return;
    }
    case 'device.decommissioned':
      sql.run(q.deleteFrom('devices').where('id', '=', event.data.device_id));
      return;
    case 'device.token_rotated':
      sql.run(q.updateTable('devices').set({ token_hash: tokenLookup(secrets, event.data.token_hash), version: event.version, updated_at: event.recorded_at }).where('id', '=', event.data.device_id));
      return;
    case 'device.certificate_bound':
    case 'device.certificate_unbound': {
      const fingerprint = event.type === 'device.certificate_bound' ? event.data.fingerprint : null;
      sql.run(q.updateTable('devices').set({ certificate_fingerprint: fingerprint, version: event.version, updated_at: event.recorded_at }).where('id', '=', event.data.device_id));
      return;
    }
    case 'device.transferred':
      sql.run(q.updateTable('devices').set({ user_id: event.data.to_user_id, group_id: null, version: event.version, updated_at: event.recorded_at }).where('id', '=', event.data.device_id));
      return;
    case 'group.deleted':
      sql.run(q.updateTable('devices').set({ group_id: null }).where('group_id', '=', event.data.group_id));
      return;
    case 'device.heartbeat':
      sql.run(
        q
          .updateTable('devices')
          .set({ last_seen: event.recorded_at, ...(event.data.firmware_version ? { firmware_version: event.data.firmware_version } : {}) })
          .where('id', '=', event.data.device_id),
      );
      return;
    case 'device.state_reported': {
      const device = connectivityOf.first(sql, event.data.device_id);
      if (!device) return;
      const { state } = event.data;
      sql.run(
        q
          .updateTable('devices')
          .set({ reported_state: state, status: displayedStatus(device.connectivity, state), version: event.version, updated_at: event.recorded_at })
          .where('id', '=', event.data.device_id),
      );
      return;
    }
    case 'device.configuration_reported':
      sql.run(q.updateTable('devices').set({ reported_configuration: JSON.stringify(event.data.configuration) }).where('id', '=', event.data.device_id));
      return;
    case 'device.firmware_progress': {
      const { version, status, detail } = event.data;
      sql.run(
        q
          .updateTable('devices')
          .set({ firmware_state: JSON.stringify({ target_version: version, status, detail, updated_at: event.recorded_at }), ...(status === 'done' ? { firmware_version: version } : {}) })
          .where('id', '=', event.data.device_id),
      );
      return;
    }
    case 'device.came_online':
      sql.runRaw(CAME_ONLINE, [event.recorded_at, event.version, event.recorded_at, event.data.device_id]);
      return;
    case 'device.went_offline':
      sql.runRaw(WENT_OFFLINE, [event.version, event.recorded_at, event.data.device_id]);
      return;
    default:
      return;
  }
}

export type DeviceRow = NonNullable<ReturnType<typeof findDevice>>;

const byId = prepared((id: string) => q.selectFrom('devices').selectAll().where('id', '=', id));
export const findDevice = (sql: Sql, id: string) => byId.first(sql, id);

// Every device request authenticates through this: only what a principal needs, not the whole row.
const byTokenHash = prepared((keyed: string, legacy: string) => q.selectFrom('devices').select(['id', 'user_id']).where('token_hash', 'in', [keyed, legacy]));
/** By the token's keyed digest, or its plain SHA-256 for a token registered before keyed digests. */
export const findDeviceByTokenHash = (sql: Sql, digests: { keyed: string; legacy: string }) => byTokenHash.first(sql, digests.keyed, digests.legacy);

// Every request on a mutual TLS connection without a token authenticates through this.
const byCertificate = prepared((fingerprint: string) => q.selectFrom('devices').select(['id', 'user_id']).where('certificate_fingerprint', '=', fingerprint));
export const findDeviceByCertificate = (sql: Sql, fingerprint: string) => byCertificate.first(sql, fingerprint);

export const findDeviceByMac = (sql: Sql, mac: string) =>
  sql.first(q.selectFrom('devices').select(['id', 'user_id']).where(raw<string>`lower(replace(mac_address, '-', ':'))`, '=', mac.toLowerCase().replaceAll('-', ':')));

export interface DeviceFilter {
  /** null: every user's devices (admins). */
  userId: string | null;
  /** Besides the user's own: the devices in these groups (shared with the user). */
  sharedGroupIds?: readonly string[];
  status?: string;
  deviceType?: string;
  groupId?: string;
  nameContains?: string;
  limit: number;
  offset: number;
}

export function listDevices(sql: Sql, filter: DeviceFilter): { rows: DeviceRow[]; total: number } {
  let query = q.selectFrom('devices');
  const { userId, sharedGroupIds = [] } = filter;
  if (userId !== null) query = query.where((eb) => (sharedGroupIds.length > 0 ? eb.or([eb('user_id', '=', userId), eb('group_id', 'in', sharedGroupIds)]) : eb('user_id', '=', userId)));
  if (filter.status) query = query.where('status', '=', filter.status);
  if (filter.deviceType) query = query.where('device_type', '=', filter.deviceType);
  if (filter.groupId) query = query.where('group_id', '=', filter.groupId);
  if (filter.nameContains) {
    const pattern = `%${filter.nameContains.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    query = query.where(raw<boolean>`name LIKE ${pattern} ESCAPE '\\'`);
  }
  const total = sql.first(query.select((eb) => eb.fn.countAll<number>().as('n')))?.n ?? 0;
  const rows = sql.all(query.selectAll().orderBy('created_at').orderBy('id').limit(filter.limit).offset(filter.offset));
  return { rows, total };
}

/** Online devices with when they were last heard from, for the offline sweep. */
export const onlineDevices = (sql: Sql) =>
  sql.all(q.selectFrom('devices').select(['id', 'last_seen', 'configuration']).where('connectivity', '=', 'online'));

export const countUserDevices = (sql: Sql, userId: string): number =>
  sql.first(q.selectFrom('devices').select((eb) => eb.fn.countAll<number>().as('n')).where('user_id', '=', userId))?.n ?? 0;

/** Connected (online, or online in error or maintenance) or not, per group. */
export const deviceConnectivityCountsByGroup = (sql: Sql, userId: string | null) => {
  let query = q
    .selectFrom('devices')
    .select(['group_id', 'connectivity', (eb) => eb.fn.countAll<number>().as('n')])
    .where('group_id', 'is not', null)
    .groupBy(['group_id', 'connectivity']);
  if (userId !== null) query = query.where('user_id', '=', userId);
  return sql.all(query);
};

/** Ids of the devices of a user (null: everyone's), optionally only those in some groups. */
export function deviceIds(sql: Sql, userId: string | null, groupIds?: readonly string[]): string[] {
  let query = q.selectFrom('devices').select('id');
  if (userId !== null) query = query.where('user_id', '=', userId);
  if (groupIds) query = query.where('group_id', 'in', groupIds.length ? groupIds : ['']);
  return sql.all(query).map((row) => row.id);
}

/** The devices of the groups shared with a user (and the groups below them). */
export const sharedDeviceIds = (sql: Sql, userId: string): string[] => deviceIds(sql, null, sharedGroupIds(sql, userId));
