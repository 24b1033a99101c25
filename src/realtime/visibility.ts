import { SECRET_FIELDS, deviceOf, type RecordedEvent } from '../domain/events.js';
import { sharedDeviceIds } from '../projections/devices.js';
import { streamOwner } from '../projections/stream-owners.js';
import type { Sql } from '../projections/sql.js';

export interface Audience {
  /** The user whose resource the event concerns; null: only admins see it. */
  userId: string | null;
  deviceId: string | null;
}

/** Whose event it is, from the stream it belongs to (read after the projections applied it). */
export function audienceOf(sql: Sql, event: RecordedEvent): Audience {
  const owner = streamOwner(sql, event.stream_id);
  return { userId: owner?.user_id ?? null, deviceId: owner?.device_id ?? deviceOf(event) };
}

/** The event as a live subscriber sees it: no secret, not even sealed. */
export function liveMessage(event: RecordedEvent): string {
  const data = Object.fromEntries(Object.entries(event.data).filter(([key]) => !SECRET_FIELDS.has(key)));
  return JSON.stringify({ type: 'event', position: event.position, event_type: event.type, stream_id: event.stream_id, data, recorded_at: event.recorded_at });
}

/** Events after which the devices shared with a user may differ. */
const MEMBERSHIP_EVENTS: ReadonlySet<string> = new Set([
  'group.member_granted',
  'group.member_revoked',
  'group.updated',
  'group.deleted',
  'device.registered',
  'device.updated',
  'device.transferred',
  'device.decommissioned',
]);

/**
 * The devices of groups shared with a subscriber, read again only after an event that may change
 * them: a grant revoked stops the stream of those devices at once.
 */
export class SharedDevices {
  private ids: ReadonlySet<string> | null = null;

  constructor(
    private readonly sql: Sql,
    private readonly userId: string,
  ) {}

  notice(event: RecordedEvent): void {
    if (MEMBERSHIP_EVENTS.has(event.type)) this.ids = null;
  }

  has(deviceId: string): boolean {
    this.ids ??= new Set(sharedDeviceIds(this.sql, this.userId));
    return this.ids.has(deviceId);
  }
}
