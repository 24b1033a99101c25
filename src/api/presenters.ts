import { PERSONAL_FIELDS, SECRET_FIELDS } from '../domain/events.js';
import { isSealed } from '../eventlog/index.js';
import type { DeviceRow } from '../projections/devices.js';
import type { GroupSummary } from '../projections/group-summaries.js';
import type { UserRow } from '../projections/users.js';
import type { ApiKeyView } from '../commands/api-keys.js';

/** What clients see of a user: never a hash or a key. */
export const presentUser = (user: UserRow) => ({
  id: user.id,
  username: user.username,
  email: user.email,
  role: user.role,
  device_quota: user.device_quota,
  created_at: user.created_at,
});

export const presentManagedUser = (user: UserRow) => ({ ...presentUser(user), disabled: user.disabled === 1 });

export const presentApiKey = (key: ApiKeyView) => ({
  id: key.id,
  name: key.name,
  scope: key.scope,
  status: key.status,
  created_at: key.created_at,
  expires_at: key.expires_at,
  last_used_at: key.last_used_at,
  revoked_at: key.revoked_at,
  replaced_by: key.replaced_by,
});

export const presentDevice = (device: DeviceRow) => ({
  id: device.id,
  user_id: device.user_id,
  name: device.name,
  device_type: device.device_type,
  description: device.description,
  ip_address: device.ip_address,
  mac_address: device.mac_address,
  status: device.status,
  last_seen: device.last_seen,
  firmware_version: device.firmware_version,
  group_id: device.group_id,
  configuration: JSON.parse(device.configuration) as Record<string, unknown>,
  certificate_fingerprint: device.certificate_fingerprint,
  created_at: device.created_at,
  updated_at: device.updated_at,
  version: device.version,
});

export interface PresentedGroup {
  id: string;
  user_id: string;
  name: string;
  description: string | null;
  parent_id: string | null;
  device_count: number;
  total_device_count: number;
  statistics: { online: number; offline: number };
  created_at: string;
  updated_at: string;
  version: number;
  children?: PresentedGroup[];
}

export const presentGroup = (group: GroupSummary, nested = false): PresentedGroup => ({
  id: group.id,
  user_id: group.user_id,
  name: group.name,
  description: group.description,
  parent_id: group.parent_id,
  device_count: group.device_count,
  total_device_count: group.total_device_count,
  statistics: group.statistics,
  created_at: group.created_at,
  updated_at: group.updated_at,
  version: group.version,
  ...(nested ? { children: group.children.map((child) => presentGroup(child, true)) } : {}),
});

export const REDACTED = '[redacted]';

/**
 * An event as any client may see it: secret fields only sealed, personal data of an erased user
 * never readable. Sealed values are left as stored (an export still verifies); a value stored
 * plain (written before sealing) is replaced, and `redacted` names the fields.
 */
export function servedEvent<E extends { type: string; data: unknown }>(event: E, erased: ReadonlySet<string> = new Set()): E & { redacted?: string[] } {
  const data = event.data as Record<string, unknown>;
  const erasedUser = event.type === 'user.registered' && erased.has(String(data.user_id));
  const hidden = (key: string) => SECRET_FIELDS.has(key) || (erasedUser && PERSONAL_FIELDS.has(key));
  const plain = Object.keys(data).filter((key) => hidden(key) && !isSealed(data[key]));
  if (plain.length === 0) return event;
  return { ...event, data: { ...data, ...Object.fromEntries(plain.map((key) => [key, REDACTED])) }, redacted: plain };
}
