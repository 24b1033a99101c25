import { priorityRank } from '../domain/command.js';
import type { Projection } from './projection.js';
import type { CommandsTable } from './schema.js';
import { queryBuilder as q, type Sql } from './sql.js';

export const commandsProjection: Projection = {
  name: 'commands',
  version: 1,
  tables: ['commands'],
  ddl: `
    CREATE TABLE IF NOT EXISTS commands (
      id TEXT PRIMARY KEY, device_id TEXT NOT NULL, user_id TEXT NOT NULL, command_type TEXT NOT NULL, parameters TEXT NOT NULL,
      priority TEXT NOT NULL, priority_rank INTEGER NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL, queued_position INTEGER NOT NULL,
      sent_at TEXT, executed_at TEXT, expires_at TEXT, response TEXT, failure_reason TEXT, timeout_seconds INTEGER NOT NULL,
      retries INTEGER NOT NULL, attempt INTEGER NOT NULL, batch_id TEXT, version INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS commands_queue ON commands (device_id, status, priority_rank DESC, queued_position);
    CREATE INDEX IF NOT EXISTS commands_user ON commands (user_id, created_at);
    CREATE INDEX IF NOT EXISTS commands_status ON commands (status);
    CREATE INDEX IF NOT EXISTS commands_batch ON commands (batch_id);`,

  apply(sql, event) {
    const at = event.recorded_at;
    const update = (id: string, set: Partial<CommandsTable>) => sql.run(q.updateTable('commands').set({ ...set, version: event.version }).where('id', '=', id));
    switch (event.type) {
      case 'command.queued': {
        const { command_id, parameters, priority, ...rest } = event.data;
        sql.run(
          q.insertInto('commands').values({
            id: command_id,
            ...rest,
            parameters: JSON.stringify(parameters),
            priority,
            priority_rank: priorityRank[priority],
            status: 'pending',
            created_at: at,
            queued_position: event.position,
            sent_at: null,
            executed_at: null,
            response: null,
            failure_reason: null,
            attempt: 0,
            version: event.version,
          }),
        );
        return;
      }
      case 'command.sent':
        return void update(event.data.command_id, { status: 'sent', sent_at: event.data.sent_at, attempt: event.data.attempt });
      case 'command.retried':
        return void update(event.data.command_id, { status: 'pending' });
      case 'command.executed':
        return void update(event.data.command_id, { status: 'executed', executed_at: at, response: event.data.response ? JSON.stringify(event.data.response) : null });
      case 'command.failed':
        return void update(event.data.command_id, { status: 'failed', executed_at: at, response: event.data.response ? JSON.stringify(event.data.response) : null, failure_reason: event.data.reason });
      case 'command.expired':
        return void update(event.data.command_id, { status: 'expired', failure_reason: 'expired' });
      case 'command.cancelled':
        return void update(event.data.command_id, { status: 'cancelled', failure_reason: event.data.reason });
      default:
        return;
    }
  },
};

export type CommandRow = NonNullable<ReturnType<typeof findCommand>>;

export const findCommand = (sql: Sql, id: string) => sql.first(q.selectFrom('commands').selectAll().where('id', '=', id));

/** A device's queue: pending commands, highest priority first, then oldest. */
export const pendingCommands = (sql: Sql, deviceId: string) =>
  sql.all(q.selectFrom('commands').selectAll().where('device_id', '=', deviceId).where('status', '=', 'pending').orderBy('priority_rank', 'desc').orderBy('queued_position'));

export const openCommandsOf = (sql: Sql, deviceId: string) =>
  sql.all(q.selectFrom('commands').select('id').where('device_id', '=', deviceId).where('status', 'in', ['pending', 'sent']));

/** Open commands whose expiry or response timeout has passed. */
export const overdueCommands = (sql: Sql, now: string) =>
  sql.all(
    q
      .selectFrom('commands')
      .select('id')
      .where((eb) =>
        eb.or([
          eb.and([eb('status', 'in', ['pending', 'sent']), eb('expires_at', 'is not', null), eb('expires_at', '<=', now)]),
          eb.and([eb('status', '=', 'sent'), eb(eb.fn('strftime', [eb.val('%Y-%m-%dT%H:%M:%fZ'), 'sent_at', eb.fn('printf', [eb.val('+%d seconds'), 'timeout_seconds'])]), '<=', now)]),
        ]),
      ),
  );

export interface CommandFilter {
  userId: string | null;
  /** Besides the user's own: the commands of these devices (shared with the user). */
  sharedDeviceIds?: readonly string[];
  deviceId?: string;
  status?: CommandsTable['status'];
  commandType?: string;
  batchId?: string;
  start?: string;
  end?: string;
  limit: number;
  offset: number;
}

/** A deleted device leaves every list and count; its commands stay in the log and in this table, for its audit. */
const ofLivingDevices = () => q.selectFrom('commands').where((eb) => eb.exists(eb.selectFrom('devices').select('devices.id').whereRef('devices.id', '=', 'commands.device_id')));

export function listCommands(sql: Sql, filter: CommandFilter): { rows: CommandRow[]; total: number } {
  let query = ofLivingDevices();
  const { userId, sharedDeviceIds = [] } = filter;
  if (userId !== null) query = query.where((eb) => (sharedDeviceIds.length > 0 ? eb.or([eb('user_id', '=', userId), eb('device_id', 'in', sharedDeviceIds)]) : eb('user_id', '=', userId)));
  if (filter.deviceId) query = query.where('device_id', '=', filter.deviceId);
  if (filter.status) query = query.where('status', '=', filter.status);
  if (filter.commandType) query = query.where('command_type', '=', filter.commandType);
  if (filter.batchId) query = query.where('batch_id', '=', filter.batchId);
  if (filter.start) query = query.where('created_at', '>=', filter.start);
  if (filter.end) query = query.where('created_at', '<=', filter.end);
  const total = sql.first(query.select((eb) => eb.fn.countAll<number>().as('n')))?.n ?? 0;
  const rows = sql.all(query.selectAll().orderBy('queued_position', 'desc').limit(filter.limit).offset(filter.offset));
  return { rows, total };
}

/** Every command a batch queued, its deleted devices' too: what a rollout's pace and failure share count. */
export const commandsOfBatch = (sql: Sql, batchId: string) => sql.all(q.selectFrom('commands').selectAll().where('batch_id', '=', batchId));

/** How a batch (a group command) is doing: its commands counted by status. */
export function batchStatusCounts(sql: Sql, batchId: string, userId: string | null): Record<string, number> {
  let query = ofLivingDevices().select(['status', (eb) => eb.fn.countAll<number>().as('n')]).where('batch_id', '=', batchId).groupBy('status');
  if (userId !== null) query = query.where('user_id', '=', userId);
  return Object.fromEntries(sql.all(query).map((r) => [r.status, r.n]));
}

/** Counts by status, success rate (executed of finished by the device) and mean queued→executed latency. */
export function commandStats(sql: Sql, deviceIds: readonly string[], range?: { start: string; end: string }) {
  let query = q.selectFrom('commands').where('device_id', 'in', deviceIds.length ? deviceIds : ['']);
  if (range) query = query.where('created_at', '>=', range.start).where('created_at', '<=', range.end);
  const byStatus = sql.all(query.select(['status', (eb) => eb.fn.countAll<number>().as('n')]).groupBy('status'));
  const latency = sql.first(
    query
      .select((eb) => eb.fn.avg<number>(eb(eb.fn('julianday', ['executed_at']), '-', eb.fn('julianday', ['created_at']))).as('days'))
      .where('status', '=', 'executed'),
  );
  const counts = Object.fromEntries(byStatus.map((r) => [r.status, r.n])) as Record<string, number>;
  const finished = (counts.executed ?? 0) + (counts.failed ?? 0);
  return {
    total: byStatus.reduce((sum, r) => sum + r.n, 0),
    by_status: counts,
    success_rate: finished > 0 ? (counts.executed ?? 0) / finished : null,
    avg_latency_ms: latency?.days != null ? Math.round(latency.days * 86_400_000) : null,
  };
}
