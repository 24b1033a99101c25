import type { RecordedEvent } from '../domain/events.js';
import { streams } from '../domain/events.js';
import { sharedDeviceIds } from './devices.js';
import type { Projection } from './projection.js';
import { prepared, queryBuilder as q, type Sql } from './sql.js';

/** Which user (and device) each stream belongs to, kept after deletion so history stays readable by its owner. */
function ownedStreams(event: RecordedEvent): Array<{ stream_id: string; user_id: string; device_id: string | null }> {
  switch (event.type) {
    case 'user.registered':
      return [{ stream_id: streams.user(event.data.user_id), user_id: event.data.user_id, device_id: null }];
    case 'device.registered':
      return [
        { stream_id: streams.device(event.data.device_id), user_id: event.data.user_id, device_id: event.data.device_id },
        { stream_id: streams.telemetry(event.data.device_id), user_id: event.data.user_id, device_id: event.data.device_id },
      ];
    case 'group.created':
      return [{ stream_id: streams.group(event.data.group_id), user_id: event.data.user_id, device_id: null }];
    case 'command.queued':
      return [{ stream_id: streams.command(event.data.command_id), user_id: event.data.user_id, device_id: event.data.device_id }];
    case 'rule.created':
      return [{ stream_id: streams.rule(event.data.rule_id), user_id: event.data.user_id, device_id: null }];
    case 'template.created':
      return [{ stream_id: streams.template(event.data.template_id), user_id: event.data.user_id, device_id: null }];
    case 'batch.started':
      return [{ stream_id: streams.batch(event.data.batch_id), user_id: event.data.user_id, device_id: null }];
    case 'alert.raised':
      return [{ stream_id: streams.alert(event.data.alert_id), user_id: event.data.user_id, device_id: event.data.device_id }];
    default:
      return [];
  }
}

export const streamOwnersProjection: Projection = {
  name: 'stream_owners',
  version: 1,
  tables: ['stream_owners'],
  ddl: `
    CREATE TABLE IF NOT EXISTS stream_owners (stream_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, device_id TEXT) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS stream_owners_user ON stream_owners (user_id);
    CREATE INDEX IF NOT EXISTS stream_owners_device ON stream_owners (device_id);`,

  apply(sql, event) {
    if (event.type === 'device.transferred') {
      // Its history goes with the device: the receiver reads it, the giver no longer does.
      const deviceStreams = [streams.device(event.data.device_id), streams.telemetry(event.data.device_id)];
      sql.run(q.updateTable('stream_owners').set({ user_id: event.data.to_user_id }).where('stream_id', 'in', deviceStreams));
      return;
    }
    for (const owned of ownedStreams(event)) sql.run(q.insertInto('stream_owners').values(owned).onConflict((oc) => oc.column('stream_id').doNothing()));
  },
};

const ownerOf = prepared((streamId: string) => q.selectFrom('stream_owners').selectAll().where('stream_id', '=', streamId));
export const streamOwner = (sql: Sql, streamId: string) => ownerOf.first(sql, streamId);

/** The streams of a user (null: any user), optionally only a device's. */
export function ownedStreamIds(sql: Sql, userId: string | null, deviceId?: string): string[] {
  let query = q.selectFrom('stream_owners').select('stream_id');
  if (userId !== null) query = query.where('user_id', '=', userId);
  if (deviceId !== undefined) query = query.where('device_id', '=', deviceId);
  return sql.all(query).map((row) => row.stream_id);
}

/** The streams a user may read: their own, and those of the devices shared with them (their histories); or those of one device. */
export function readableStreamIds(sql: Sql, userId: string, deviceId?: string): string[] {
  const shared = sharedDeviceIds(sql, userId).filter((id) => deviceId === undefined || id === deviceId);
  return [...new Set([...ownedStreamIds(sql, userId, deviceId), ...shared.flatMap((id) => ownedStreamIds(sql, null, id))])];
}
