import { z } from 'zod';
import { decodeColumns, encodeColumns, isStoredColumns, type StoredColumns } from './reading-columns.js';
import { ruleDefinitionSchema } from './rule-schema.js';

/**
 * The event catalogue: every fact the system records, validated at append.
 * Names are past tense and never change; shapes only grow (optional fields) or get an upcaster.
 */
const id = z.string().min(1);
const isoTime = z.string().datetime({ offset: false, precision: 3 });
const jsonObject = z.record(z.string(), z.unknown());

export const roleSchema = z.enum(['admin', 'user']);
export type Role = z.infer<typeof roleSchema>;
export const deviceStatusSchema = z.enum(['online', 'offline', 'error', 'maintenance']);

/**
 * Fields holding credential material (a bcrypt hash, a credential's keyed digest). Written
 * sealed (authenticated encryption under a key kept outside the log); logs written before
 * sealing hold them plain, and nothing serves those.
 */
export const SECRET_FIELDS: ReadonlySet<string> = new Set(['password_hash', 'api_key_hash', 'token_hash', 'key_hash']);

const userRegistered = z.object({
  user_id: id,
  username: z.string(),
  email: z.string(),
  role: roleSchema,
  password_hash: z.string(),
  /** Logs written before API keys had their own events: the registration key (its id is the user's id). */
  api_key_hash: z.string().optional(),
  device_quota: z.number().int().nonnegative(),
});

const sessionStarted = z.object({ session_id: id, user_id: id, expires_at: isoTime });
const sessionEnded = z.object({ session_id: id, user_id: id, reason: z.enum(['logout', 'erased']) });

export const apiKeyScopeSchema = z.enum(['read', 'write', 'devices:ingest']);
export type ApiKeyScope = z.infer<typeof apiKeyScopeSchema>;
const apiKeyCreated = z.object({
  key_id: id,
  user_id: id,
  name: z.string(),
  scope: apiKeyScopeSchema,
  key_hash: z.string(),
  expires_at: isoTime.nullable(),
});
const apiKeyRevoked = z.object({ key_id: id, user_id: id });
/** A new key replaced this one, which stays valid until the grace the caller chose ends. */
const apiKeyRotated = z.object({ key_id: id, user_id: id, replaced_by: id, valid_until: isoTime });

const userQuotaSet = z.object({ user_id: id, device_quota: z.number().int().nonnegative() });
const userDisabled = z.object({ user_id: id });
const userEnabled = z.object({ user_id: id });
const userRoleChanged = z.object({ user_id: id, role: roleSchema });
/** The user's personal data was made unreadable (their key destroyed): names none of it. */
const userErased = z.object({ user_id: id });

/**
 * Personal data of user.registered: sealed under the user's own key (kept outside the log),
 * which erasure destroys. Logs written before hold them plain: served redacted once erased.
 */
export const PERSONAL_FIELDS: ReadonlySet<string> = new Set(['username', 'email']);

export const deviceAttributesSchema = z.object({
  name: z.string(),
  device_type: z.string(),
  description: z.string().nullable(),
  ip_address: z.string().nullable(),
  mac_address: z.string().nullable(),
  group_id: z.string().nullable(),
  configuration: jsonObject,
  firmware_version: z.string().nullable(),
});
export type DeviceAttributes = z.infer<typeof deviceAttributesSchema>;

const deviceRegistered = deviceAttributesSchema.extend({
  device_id: id,
  user_id: id,
  token_hash: z.string(),
});

const deviceUpdated = z.object({
  device_id: id,
  changes: deviceAttributesSchema.omit({ mac_address: true }).partial(),
});

const deviceDecommissioned = z.object({ device_id: id, user_id: id });
/** The owner offers the device to another user; it changes hands only when they accept. */
const deviceTransferOffered = z.object({ device_id: id, from_user_id: id, to_user_id: id });
/** The device, its token and its history now belong to the receiver; it leaves the giver's groups. */
const deviceTransferred = z.object({ device_id: id, from_user_id: id, to_user_id: id });
/** Provisioning again hands out a fresh token; the old one stops working. */
const deviceTokenRotated = z.object({ device_id: id, token_hash: z.string() });
/** A client certificate (by its SHA-256 fingerprint) speaks for the device under mutual TLS; unbinding takes that back. */
const deviceCertificateBound = z.object({ device_id: id, fingerprint: z.string() });
const deviceCertificateUnbound = z.object({ device_id: id, fingerprint: z.string() });

const groupCreated = z.object({
  group_id: id,
  user_id: id,
  name: z.string(),
  description: z.string().nullable(),
  parent_id: z.string().nullable(),
});

const groupUpdated = z.object({
  group_id: id,
  changes: groupCreated.pick({ name: true, description: true, parent_id: true }).partial(),
});

const groupDeleted = z.object({ group_id: id, user_id: id });

/** What a member may do with a group's devices (and its subgroups'): each role includes the ones before it. */
export const memberRoleSchema = z.enum(['viewer', 'operator', 'manager']);
export type MemberRole = z.infer<typeof memberRoleSchema>;
/** The group's owner let another user in (or changed their role); `member_id`, never `user_id`, which names owners. */
const groupMemberGranted = z.object({ group_id: id, member_id: id, role: memberRoleSchema });
const groupMemberRevoked = z.object({ group_id: id, member_id: id });

export const readingSchema = z.object({
  sensor_type: z.string(),
  value: z.number(),
  unit: z.string().nullable(),
  timestamp: isoTime,
  quality_score: z.number().int().min(0).max(100),
  quality_reasons: z.array(z.string()),
});
export type StoredReading = z.infer<typeof readingSchema>;

const readingsRecorded = z.object({
  device_id: id,
  readings: z.array(readingSchema).min(1),
  device_status: jsonObject.nullable(),
});

const deviceHeartbeat = z.object({
  device_id: id,
  device_status: jsonObject.nullable(),
  firmware_version: z.string().nullable(),
  metrics: jsonObject.nullable(),
});

/** What the device says its configuration is (a command result or a heartbeat), beside the desired one. */
const deviceConfigurationReported = z.object({ device_id: id, configuration: jsonObject, source: z.enum(['command', 'heartbeat']) });
export const firmwareStatusSchema = z.enum(['queued', 'downloading', 'installing', 'done', 'failed']);
const deviceFirmwareProgress = z.object({ device_id: id, version: z.string(), status: firmwareStatusSchema, detail: z.string().nullable() });

const deviceCameOnline = z.object({ device_id: id });
/** The operational state a device reported of itself changed: error, maintenance, or none. */
const deviceStateReported = z.object({ device_id: id, state: z.enum(['error', 'maintenance']).nullable() });
const deviceWentOffline = z.object({ device_id: id, last_seen: isoTime.nullable() });

export const alertKindSchema = z.enum(['threshold', 'anomaly', 'rule']);
export const alertSeveritySchema = z.enum(['info', 'warning', 'critical']);

/**
 * Raised anew. Logs written before `alert.repeated` existed also repeat an open alert with it:
 * the read model counts such a second raise as a repeat.
 */
const alertRaised = z.object({
  alert_id: id,
  device_id: id.nullable(),
  user_id: id,
  rule_id: id.nullable(),
  kind: alertKindSchema,
  sensor_type: z.string().nullable(),
  severity: alertSeveritySchema,
  message: z.string(),
  value: z.number().nullable(),
});
/** The breach again while the alert is open: one alert counts its repeats, subscribers see each. */
const alertRepeated = z.object({
  alert_id: id,
  device_id: id,
  sensor_type: z.string(),
  severity: alertSeveritySchema,
  message: z.string(),
  value: z.number(),
});
const alertAcknowledged = z.object({ alert_id: id });
const alertCleared = z.object({ alert_id: id, reason: z.enum(['manual', 'back_in_range']) });

export const commandPrioritySchema = z.enum(['low', 'normal', 'high', 'critical']);
export type CommandPriority = z.infer<typeof commandPrioritySchema>;

const commandQueued = z.object({
  command_id: id,
  device_id: id,
  user_id: id,
  command_type: z.string(),
  parameters: jsonObject,
  priority: commandPrioritySchema,
  expires_at: isoTime.nullable(),
  timeout_seconds: z.number().int().positive(),
  retries: z.number().int().nonnegative(),
  batch_id: id.nullable(),
});
const commandSent = z.object({ command_id: id, device_id: id, attempt: z.number().int().positive(), sent_at: isoTime });
const commandExecuted = z.object({ command_id: id, device_id: id, response: jsonObject.nullable() });
const commandFailed = z.object({ command_id: id, device_id: id, response: jsonObject.nullable(), reason: z.enum(['device', 'timeout']) });
const commandRetried = z.object({ command_id: id, device_id: id, attempt: z.number().int().positive() });
const commandExpired = z.object({ command_id: id, device_id: id });
const commandCancelled = z.object({ command_id: id, device_id: id, reason: z.enum(['user', 'device_deleted', 'batch_aborted']) });

const ruleCreated = ruleDefinitionSchema.extend({ rule_id: id, user_id: id });
const ruleUpdated = z.object({ rule_id: id, changes: ruleDefinitionSchema.partial() });
const ruleDeleted = z.object({ rule_id: id, user_id: id });

export const actionOutcomeSchema = z.object({
  index: z.number().int().nonnegative(),
  type: z.string(),
  due_at: isoTime,
  status: z.enum(['pending', 'done', 'failed']),
  detail: z.string().nullable(),
});

/** A firing: what caused it and what matched; its actions follow as rule.action_completed. */
const ruleTriggered = z.object({
  rule_id: id,
  execution_id: id,
  user_id: id,
  cause: z.object({ kind: z.enum(['condition', 'schedule', 'timer']), position: z.number().int().nullable(), event_type: z.string().nullable() }),
  matched: jsonObject,
  actions: z.array(actionOutcomeSchema),
});
const ruleActionCompleted = z.object({
  rule_id: id,
  execution_id: id,
  index: z.number().int().nonnegative(),
  status: z.enum(['done', 'failed']),
  detail: z.string().nullable(),
});
/** A rule that fired too often in a minute was held back (runaway chains end here). */
const ruleThrottled = z.object({ rule_id: id, firings_last_minute: z.number().int() });

const templateCreated = z.object({
  template_id: id,
  user_id: id,
  name: z.string(),
  device_type: z.string(),
  description: z.string().nullable(),
  configuration: jsonObject,
  thresholds: jsonObject,
});
const templateUpdated = z.object({ template_id: id, changes: templateCreated.omit({ template_id: true, user_id: true }).partial() });
const templateDeleted = z.object({ template_id: id, user_id: id });

/** A group command rolled out at a rate, or watched for failures: queued progressively, stopped past a failure share. */
const batchStarted = z.object({
  batch_id: id,
  user_id: id,
  group_id: id,
  device_ids: z.array(id),
  command: z.object({
    command_type: z.string(),
    parameters: jsonObject,
    priority: commandPrioritySchema,
    expires_in: z.number().int().positive().nullable(),
    timeout_seconds: z.number().int().positive(),
    retries: z.number().int().nonnegative(),
  }),
  per_minute: z.number().int().positive().nullable(),
  abort_failure_percent: z.number().min(0).max(100).nullable(),
});
const batchFinished = z.object({ batch_id: id, outcome: z.enum(['completed', 'aborted']), reason: z.string().nullable() });

/**
 * A cut of the log: telemetry events moved into a sealed segment file. It names the segment's
 * ends and, for each event left live right after an archived one, the hash it chains from, so
 * the live log still verifies (this event's own hash covers them) once the segment is gone.
 */
const logArchived = z.object({
  segment: z.string(),
  first_position: z.number().int().positive(),
  last_position: z.number().int().positive(),
  events: z.number().int().positive(),
  first_hash: z.string(),
  last_hash: z.string(),
  links: z.array(z.tuple([z.number().int().positive(), z.string()])),
});
/** An archived segment deleted for good (LOG_DELETE_AFTER_DAYS): its events are no longer anywhere. */
const logSegmentDeleted = z.object({ segment: z.string(), first_position: z.number().int().positive(), last_position: z.number().int().positive(), events: z.number().int().positive() });

export const eventSchemas = {
  'user.registered': userRegistered,
  'session.started': sessionStarted,
  'session.ended': sessionEnded,
  'api_key.created': apiKeyCreated,
  'api_key.revoked': apiKeyRevoked,
  'api_key.rotated': apiKeyRotated,
  'user.quota_set': userQuotaSet,
  'user.disabled': userDisabled,
  'user.enabled': userEnabled,
  'user.role_changed': userRoleChanged,
  'user.erased': userErased,
  'device.registered': deviceRegistered,
  'device.updated': deviceUpdated,
  'device.decommissioned': deviceDecommissioned,
  'device.token_rotated': deviceTokenRotated,
  'device.certificate_bound': deviceCertificateBound,
  'device.certificate_unbound': deviceCertificateUnbound,
  'device.transfer_offered': deviceTransferOffered,
  'device.transferred': deviceTransferred,
  'group.created': groupCreated,
  'group.updated': groupUpdated,
  'group.deleted': groupDeleted,
  'group.member_granted': groupMemberGranted,
  'group.member_revoked': groupMemberRevoked,
  'readings.recorded': readingsRecorded,
  'device.heartbeat': deviceHeartbeat,
  'device.came_online': deviceCameOnline,
  'device.state_reported': deviceStateReported,
  'device.configuration_reported': deviceConfigurationReported,
  'device.firmware_progress': deviceFirmwareProgress,
  'device.went_offline': deviceWentOffline,
  'alert.raised': alertRaised,
  'alert.repeated': alertRepeated,
  'alert.acknowledged': alertAcknowledged,
  'alert.cleared': alertCleared,
  'command.queued': commandQueued,
  'command.sent': commandSent,
  'command.executed': commandExecuted,
  'command.failed': commandFailed,
  'command.retried': commandRetried,
  'command.expired': commandExpired,
  'command.cancelled': commandCancelled,
  'template.created': templateCreated,
  'template.updated': templateUpdated,
  'template.deleted': templateDeleted,
  'batch.started': batchStarted,
  'batch.finished': batchFinished,
  'rule.created': ruleCreated,
  'rule.updated': ruleUpdated,
  'rule.deleted': ruleDeleted,
  'rule.triggered': ruleTriggered,
  'rule.action_completed': ruleActionCompleted,
  'rule.throttled': ruleThrottled,
  'log.archived': logArchived,
  'log.segment_deleted': logSegmentDeleted,
} as const;

type Schemas = typeof eventSchemas;
export type EventType = keyof Schemas;
export const eventTypes = Object.keys(eventSchemas) as EventType[];

/** An event as a decider emits it: a type and its payload. */
export type DomainEvent = {
  [K in EventType]: { type: K; data: z.infer<Schemas[K]> };
}[EventType];

export type EventOfType<K extends EventType> = Extract<DomainEvent, { type: K }>;

export const metadataSchema = z.object({
  actor_type: z.enum(['user', 'device', 'system']).optional(),
  actor_id: z.string().optional(),
  request_id: z.string().optional(),
  correlation_id: z.string().optional(),
  causation_id: z.string().optional(),
  idempotency_key: z.string().optional(),
});
export type EventMetadata = z.infer<typeof metadataSchema>;

/** An event as the log stores it. */
export type RecordedEvent = DomainEvent & {
  position: number;
  stream_id: string;
  version: number;
  metadata: EventMetadata;
  recorded_at: string;
  hash: string;
};

type Upcaster = (data: Record<string, unknown>) => Record<string, unknown>;

/**
 * Stored shapes read as the current one. readings.recorded first carried bare readings
 * ({sensor_type, value, timestamp}); quality scores, units and the reported device status came
 * later; now its readings are stored as columns (see storedForm), turned back into objects here.
 */
const upcasters: { [K in EventType]?: Upcaster } = {
  'readings.recorded': (data) =>
    isStoredColumns(data)
      ? fromStoredColumns(data)
      : isCurrentRecording(data)
      ? data
      : {
          device_status: null,
          ...data,
          readings: Array.isArray(data.readings)
            ? data.readings.map((reading: Record<string, unknown>) => ({ unit: null, quality_score: 100, quality_reasons: [], ...reading }))
            : data.readings,
        },
};

/** The stored form's readings as objects again, beside the fields it keeps as they are. */
function fromStoredColumns({ columns, deflated, ...rest }: Record<string, unknown>): Record<string, unknown> {
  const stored = (deflated === undefined ? { columns } : { deflated }) as StoredColumns;
  // The catalogue's key order (device_id, readings, device_status), as a live event has it.
  return { device_id: rest.device_id, readings: decodeColumns(stored), ...rest };
}

/**
 * The form an event's data is stored in: readings.recorded keeps its readings as columns (see
 * reading-columns.ts), its other fields as they are, so SQL can still find a device's status in it.
 * The upcaster above turns it back; everything else is stored as given.
 */
export function storedForm(event: DomainEvent): unknown {
  if (event.type !== 'readings.recorded') return event.data;
  // Fields named one by one: object rest and spread cost more than the encoding on the hot path.
  const { device_id, device_status, readings } = event.data;
  const encoded = encodeColumns(readings);
  return 'columns' in encoded ? { device_id, device_status, columns: encoded.columns } : { device_id, device_status, deflated: encoded.deflated };
}

/** Whether data as stored differs from the shape it is read as (so an export carries both). */
export const isCompactForm = (type: string, data: unknown): boolean =>
  type === 'readings.recorded' && data !== null && typeof data === 'object' && isStoredColumns(data as Record<string, unknown>);

/** Nearly every stored event has the current shape: read as it is, a rebuild copies no reading. */
function isCurrentRecording(data: Record<string, unknown>): boolean {
  return 'device_status' in data && Array.isArray(data.readings) && data.readings.every(isCurrentReading);
}

function isCurrentReading(reading: unknown): boolean {
  return typeof reading === 'object' && reading !== null && 'unit' in reading && 'quality_score' in reading && 'quality_reasons' in reading;
}

/** The device an event concerns, if its data names one. */
export function deviceOf(event: RecordedEvent): string | null {
  const data = event.data as { device_id?: unknown };
  return typeof data.device_id === 'string' ? data.device_id : null;
}

/** Reads stored data through its upcaster, if its type has one. */
export function upcast(type: string, data: unknown): unknown {
  const upcaster = isEventType(type) ? upcasters[type] : undefined;
  return upcaster && data !== null && typeof data === 'object' ? upcaster(data as Record<string, unknown>) : data;
}

export const isEventType = (type: string): type is EventType => Object.hasOwn(eventSchemas, type);

/** Validates a payload against the catalogue; throws a ZodError naming the bad field. */
export function parseEvent(type: string, data: unknown): DomainEvent {
  if (!isEventType(type)) throw new Error(`unknown event type ${type}`);
  return { type, data: eventSchemas[type].parse(data) } as DomainEvent;
}

export const streams = {
  user: (userId: string) => `user-${userId}`,
  device: (deviceId: string) => `device-${deviceId}`,
  group: (groupId: string) => `group-${groupId}`,
  /** Readings and heartbeats: the volume, kept apart so the device stream stays short. */
  telemetry: (deviceId: string) => `telemetry-${deviceId}`,
  alert: (alertId: string) => `alert-${alertId}`,
  command: (commandId: string) => `command-${commandId}`,
  rule: (ruleId: string) => `rule-${ruleId}`,
  template: (templateId: string) => `template-${templateId}`,
  batch: (batchId: string) => `batch-${batchId}`,
  /** The log's own housekeeping (archive cuts), an admin's to read. */
  log: () => 'log',
};

/** A log written before API keys had events holds one registration key per user: its id is the user's. */
export const registrationKeyId = (userId: string): string => userId;

export function assertNever(value: never): never {
  throw new Error(`unexpected value ${JSON.stringify(value)}`);
}
