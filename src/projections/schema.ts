import type { ApiKeyScope, MemberRole, Role } from '../domain/events.js';

/** The read-model tables, one interface each; Kysely types every query from this. */
export interface UsersTable {
  id: string;
  username: string;
  email: string;
  role: Role;
  device_quota: number;
  password_hash: string;
  created_at: string;
  username_key: string;
  email_key: string;
  /** 1 while an admin has disabled the user (and for ever once erased). */
  disabled: number;
  /** 1 once the user's personal data was erased. */
  erased: number;
}

export interface GroupMembersTable {
  group_id: string;
  user_id: string;
  role: MemberRole;
  granted_at: string;
}

export interface ApiKeysTable {
  id: string;
  user_id: string;
  name: string;
  scope: ApiKeyScope;
  /** The key's lookup digest (keyed, or plain SHA-256 for a key made before keyed digests). */
  key_hash: string;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  replaced_by: string | null;
}

export interface SessionsTable {
  id: string;
  user_id: string;
  started_at: string;
  expires_at: string;
  ended_at: string | null;
}

export interface DevicesTable {
  id: string;
  user_id: string;
  name: string;
  device_type: string;
  description: string | null;
  ip_address: string | null;
  mac_address: string | null;
  status: string;
  last_seen: string | null;
  firmware_version: string | null;
  group_id: string | null;
  configuration: string;
  token_hash: string;
  /** SHA-256 of the client certificate bound to it (mutual TLS), lowercase hex. */
  certificate_fingerprint: string | null;
  created_at: string;
  updated_at: string;
  version: number;
  reported_configuration: string | null;
  firmware_state: string | null;
  connectivity: 'online' | 'offline';
  reported_state: 'error' | 'maintenance' | null;
}

export interface GroupsTable {
  id: string;
  user_id: string;
  name: string;
  name_key: string;
  description: string | null;
  parent_id: string | null;
  created_at: string;
  updated_at: string;
  version: number;
}

export interface AlertsTable {
  id: string;
  device_id: string | null;
  user_id: string;
  rule_id: string | null;
  kind: 'threshold' | 'anomaly' | 'rule';
  sensor_type: string | null;
  severity: 'info' | 'warning' | 'critical';
  status: 'active' | 'acknowledged' | 'cleared';
  message: string;
  count: number;
  last_value: number | null;
  raised_at: string;
  updated_at: string;
  acknowledged_at: string | null;
  cleared_at: string | null;
  version: number;
}

/** Raw readings of one batch, device, sensor and hour (see reading-chunks.ts). */
export interface ReadingChunksTable {
  device_id: string;
  hour: string;
  sensor_type: string;
  seq: number;
  count: number;
  first_ts: string;
  last_ts: string;
  readings: Buffer;
}

export interface RollupsTable {
  device_id: string;
  sensor_type: string;
  bucket: 'hour' | 'day';
  bucket_start: string;
  count: number;
  sum: number;
  min: number;
  max: number;
  sum_sq: number;
}

/** A quarter hour of minute rollups of one device's sensor, packed (see minute-blocks.ts). */
export interface MinuteRollupsTable {
  device_id: string;
  block_start: string;
  sensor_type: string;
  /** Minutes of the block with readings: a range's minutes are counted without decoding blocks. */
  minute_count: number;
  minutes: Buffer;
}

/** A bucket's totals, as a rollup row holds them (and a minute of a packed block). */
export type BucketTotals = Pick<RollupsTable, 'bucket_start' | 'count' | 'sum' | 'min' | 'max' | 'sum_sq'>;

export interface SensorStatsTable {
  device_id: string;
  sensor_type: string;
  count: number;
  mean: number;
  variance: number;
  last_timestamp: string | null;
}

/** Each sensor's newest reading (less its quality reasons). */
export interface LatestReadingsTable {
  device_id: string;
  sensor_type: string;
  ts: string;
  seq: number;
  value: number;
  unit: string | null;
  quality_score: number;
}

export interface DeviceHealthTable {
  device_id: string;
  last_status: string | null;
  error_count: number;
  quality_sum: number;
  quality_count: number;
  last_heartbeat_at: string | null;
  metrics: string | null;
}

export interface DeviceLogsTable {
  device_id: string;
  position: number;
  seq: number;
  severity: 'debug' | 'info' | 'warning' | 'error' | 'critical';
  category: string;
  message: string;
  details: string;
  timestamp: string;
}

export interface StreamOwnersTable {
  stream_id: string;
  user_id: string;
  device_id: string | null;
}

export interface CommandsTable {
  id: string;
  device_id: string;
  user_id: string;
  command_type: string;
  parameters: string;
  priority: 'low' | 'normal' | 'high' | 'critical';
  priority_rank: number;
  status: 'pending' | 'sent' | 'executed' | 'failed' | 'expired' | 'cancelled';
  created_at: string;
  queued_position: number;
  sent_at: string | null;
  executed_at: string | null;
  expires_at: string | null;
  response: string | null;
  failure_reason: string | null;
  timeout_seconds: number;
  retries: number;
  attempt: number;
  batch_id: string | null;
  version: number;
}

export interface RulesTable {
  id: string;
  user_id: string;
  name: string;
  description: string | null;
  trigger_conditions: string;
  actions: string;
  schedule: string;
  is_enabled: number;
  cooldown_seconds: number;
  last_triggered: string | null;
  trigger_count: number;
  created_at: string;
  updated_at: string;
  version: number;
  trigger_types: string;
  device_ids: string;
  /** Events at or before this position are not the rule's to judge: its last firing's cause, or its (re)definition. */
  last_cause_position: number;
}

export interface RuleExecutionsTable {
  id: string;
  rule_id: string;
  user_id: string;
  triggered_at: string;
  cause: string;
  matched: string;
  actions: string;
  position: number;
}

export interface RulePendingActionsTable {
  execution_id: string;
  action_index: number;
  rule_id: string;
  due_at: string;
}

export interface TemplatesTable {
  id: string;
  user_id: string;
  name: string;
  device_type: string;
  description: string | null;
  configuration: string;
  thresholds: string;
  created_at: string;
  updated_at: string;
  version: number;
}

export interface BatchesTable {
  id: string;
  user_id: string;
  group_id: string;
  device_ids: string;
  command: string;
  per_minute: number | null;
  abort_failure_percent: number | null;
  status: 'active' | 'completed' | 'aborted';
  reason: string | null;
  started_at: string;
  finished_at: string | null;
}

export interface ReadModels {
  templates: TemplatesTable;
  batches: BatchesTable;
  rules: RulesTable;
  rule_executions: RuleExecutionsTable;
  rule_pending_actions: RulePendingActionsTable;
  commands: CommandsTable;
  stream_owners: StreamOwnersTable;
  alerts: AlertsTable;
  reading_chunks: ReadingChunksTable;
  rollups: RollupsTable;
  minute_rollups: MinuteRollupsTable;
  sensor_stats: SensorStatsTable;
  latest_readings: LatestReadingsTable;
  device_health: DeviceHealthTable;
  device_logs: DeviceLogsTable;
  users: UsersTable;
  sessions: SessionsTable;
  api_keys: ApiKeysTable;
  group_members: GroupMembersTable;
  devices: DevicesTable;
  groups: GroupsTable;
}
