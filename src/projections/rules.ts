import { sql as raw } from 'kysely';
import { leavesOf, type Condition } from '../domain/conditions.js';
import type { RuleAction, RuleDefinition } from '../domain/rule-schema.js';
import type { Projection } from './projection.js';
import type { RulesTable } from './schema.js';
import { queryBuilder as q, type Sql } from './sql.js';

const encode = (definition: Partial<RuleDefinition>): Partial<RulesTable> => {
  const row: Partial<RulesTable> = {};
  if (definition.name !== undefined) row.name = definition.name;
  if (definition.description !== undefined) row.description = definition.description;
  if (definition.trigger_conditions !== undefined) row.trigger_conditions = JSON.stringify(definition.trigger_conditions);
  if (definition.actions !== undefined) row.actions = JSON.stringify(definition.actions);
  if (definition.schedule !== undefined) row.schedule = JSON.stringify(definition.schedule);
  if (definition.is_enabled !== undefined) row.is_enabled = definition.is_enabled ? 1 : 0;
  if (definition.cooldown_seconds !== undefined) row.cooldown_seconds = definition.cooldown_seconds;
  if (definition.trigger_conditions !== undefined || definition.schedule !== undefined) row.trigger_types = triggerTypes(definition);
  return row;
};

/** ",reading,time," style lists, so filters by trigger type or device are a LIKE. */
function triggerTypes(definition: Partial<RuleDefinition>): string {
  const types = new Set((definition.trigger_conditions ? leavesOf(definition.trigger_conditions) : []).map(({ leaf }) => leaf.type as string));
  if (definition.schedule) types.add('schedule');
  return `,${[...types].join(',')},`;
}

export function referencedDevices(conditions: Condition | null, actions: readonly RuleAction[]): string[] {
  const ids = new Set<string>();
  if (conditions) for (const { leaf } of leavesOf(conditions)) if ('device_id' in leaf && leaf.device_id) ids.add(leaf.device_id);
  for (const action of actions) if ('device_id' in action && action.device_id) ids.add(action.device_id);
  return [...ids];
}

export const rulesProjection: Projection = {
  name: 'rules',
  version: 2,
  tables: ['rules', 'rule_executions', 'rule_pending_actions'],
  ddl: `
    CREATE TABLE IF NOT EXISTS rules (
      id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT, trigger_conditions TEXT NOT NULL,
      actions TEXT NOT NULL, schedule TEXT NOT NULL, is_enabled INTEGER NOT NULL, cooldown_seconds INTEGER NOT NULL,
      last_triggered TEXT, trigger_count INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, version INTEGER NOT NULL,
      trigger_types TEXT NOT NULL, device_ids TEXT NOT NULL, last_cause_position INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS rules_user ON rules (user_id, created_at);
    CREATE TABLE IF NOT EXISTS rule_executions (
      id TEXT PRIMARY KEY, rule_id TEXT NOT NULL, user_id TEXT NOT NULL, triggered_at TEXT NOT NULL, cause TEXT NOT NULL,
      matched TEXT NOT NULL, actions TEXT NOT NULL, position INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS rule_executions_rule ON rule_executions (rule_id, position);
    CREATE TABLE IF NOT EXISTS rule_pending_actions (
      execution_id TEXT NOT NULL, action_index INTEGER NOT NULL, rule_id TEXT NOT NULL, due_at TEXT NOT NULL,
      PRIMARY KEY (execution_id, action_index)) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS rule_pending_due ON rule_pending_actions (due_at);`,

  apply(sql, event) {
    const at = event.recorded_at;
    switch (event.type) {
      case 'rule.created': {
        const { rule_id, user_id, ...definition } = event.data;
        const encoded = encode(definition);
        sql.run(
          q.insertInto('rules').values({
            id: rule_id,
            user_id,
            name: definition.name,
            description: definition.description,
            trigger_conditions: encoded.trigger_conditions!,
            actions: encoded.actions!,
            schedule: encoded.schedule!,
            is_enabled: encoded.is_enabled!,
            cooldown_seconds: definition.cooldown_seconds,
            last_triggered: null,
            trigger_count: 0,
            created_at: at,
            updated_at: at,
            version: event.version,
            trigger_types: triggerTypes(definition),
            device_ids: `,${referencedDevices(definition.trigger_conditions, definition.actions).join(',')},`,
            // Events up to its own creation are history to it, also when the engine catches up after a crash.
            last_cause_position: event.position,
          }),
        );
        return;
      }
      case 'rule.updated': {
        const current = sql.first(q.selectFrom('rules').selectAll().where('id', '=', event.data.rule_id));
        if (!current) return;
        const merged = { ...decodeRule(current), ...event.data.changes };
        sql.run(
          q
            .updateTable('rules')
            .set({
              ...encode(event.data.changes),
              trigger_types: triggerTypes(merged),
              device_ids: `,${referencedDevices(merged.trigger_conditions, merged.actions).join(',')},`,
              // Nor does the new definition judge events from before it.
              last_cause_position: raw`max(last_cause_position, ${event.position})`,
              updated_at: at,
              version: event.version,
            })
            .where('id', '=', event.data.rule_id),
        );
        return;
      }
      case 'rule.deleted':
        sql.run(q.deleteFrom('rules').where('id', '=', event.data.rule_id));
        sql.run(q.deleteFrom('rule_pending_actions').where('rule_id', '=', event.data.rule_id));
        return;
      case 'rule.triggered': {
        const { execution_id, rule_id, user_id, cause, matched, actions } = event.data;
        sql.run(
          q
            .updateTable('rules')
            .set({ last_triggered: at, trigger_count: raw`trigger_count + 1`, version: event.version, last_cause_position: cause.position ?? raw`last_cause_position` })
            .where('id', '=', rule_id),
        );
        sql.run(q.insertInto('rule_executions').values({ id: execution_id, rule_id, user_id, triggered_at: at, cause: JSON.stringify(cause), matched: JSON.stringify(matched), actions: JSON.stringify(actions), position: event.position }));
        for (const action of actions) {
          if (action.status === 'pending') sql.run(q.insertInto('rule_pending_actions').values({ execution_id, action_index: action.index, rule_id, due_at: action.due_at }));
        }
        return;
      }
      case 'rule.action_completed': {
        const { execution_id, index, status, detail } = event.data;
        sql.run(q.deleteFrom('rule_pending_actions').where('execution_id', '=', execution_id).where('action_index', '=', index));
        const execution = sql.first(q.selectFrom('rule_executions').select('actions').where('id', '=', execution_id));
        if (!execution) return;
        const actions = (JSON.parse(execution.actions) as Array<{ index: number }>).map((a) => (a.index === index ? { ...a, status, detail, completed_at: at } : a));
        sql.run(q.updateTable('rule_executions').set({ actions: JSON.stringify(actions) }).where('id', '=', execution_id));
        sql.run(q.updateTable('rules').set({ version: event.version }).where('id', '=', event.data.rule_id));
        return;
      }
      case 'rule.throttled':
        sql.run(q.updateTable('rules').set({ version: event.version }).where('id', '=', event.data.rule_id));
        return;
      default:
        return;
    }
  },
};

export type RuleRow = NonNullable<ReturnType<typeof findRule>>;

export const findRule = (sql: Sql, id: string) => sql.first(q.selectFrom('rules').selectAll().where('id', '=', id));

export function decodeRule(row: Pick<RulesTable, 'name' | 'description' | 'trigger_conditions' | 'actions' | 'schedule' | 'is_enabled' | 'cooldown_seconds'>): RuleDefinition {
  return {
    name: row.name,
    description: row.description,
    trigger_conditions: JSON.parse(row.trigger_conditions) as Condition | null,
    actions: JSON.parse(row.actions) as RuleAction[],
    schedule: JSON.parse(row.schedule) as RuleDefinition['schedule'],
    is_enabled: row.is_enabled === 1,
    cooldown_seconds: row.cooldown_seconds,
  };
}

export interface RuleFilter {
  userId: string | null;
  deviceId?: string;
  triggerType?: string;
  isEnabled?: boolean;
  limit: number;
  offset: number;
}

export function listRules(sql: Sql, filter: RuleFilter): { rows: RuleRow[]; total: number } {
  let query = q.selectFrom('rules');
  if (filter.userId !== null) query = query.where('user_id', '=', filter.userId);
  if (filter.deviceId) query = query.where('device_ids', 'like', `%,${filter.deviceId.replace(/[%_,]/g, '')},%`);
  if (filter.triggerType) query = query.where('trigger_types', 'like', `%,${filter.triggerType},%`);
  if (filter.isEnabled !== undefined) query = query.where('is_enabled', '=', filter.isEnabled ? 1 : 0);
  const total = sql.first(query.select((eb) => eb.fn.countAll<number>().as('n')))?.n ?? 0;
  const rows = sql.all(query.selectAll().orderBy('created_at').orderBy('id').limit(filter.limit).offset(filter.offset));
  return { rows, total };
}

export const enabledRules = (sql: Sql) => sql.all(q.selectFrom('rules').selectAll().where('is_enabled', '=', 1));

export const rulesOfUser = (sql: Sql, userId: string) => sql.all(q.selectFrom('rules').selectAll().where('user_id', '=', userId));

export function listExecutions(sql: Sql, ruleId: string, limit: number, offset: number) {
  const query = q.selectFrom('rule_executions').where('rule_id', '=', ruleId);
  const total = sql.first(query.select((eb) => eb.fn.countAll<number>().as('n')))?.n ?? 0;
  const rows = sql.all(query.selectAll().orderBy('position', 'desc').limit(limit).offset(offset));
  return { total, rows };
}

export const dueActions = (sql: Sql, now: string) =>
  sql.all(q.selectFrom('rule_pending_actions').selectAll().where('due_at', '<=', now).orderBy('due_at').orderBy('execution_id').orderBy('action_index'));

export const findExecution = (sql: Sql, id: string) => sql.first(q.selectFrom('rule_executions').selectAll().where('id', '=', id));

/** Rules naming a device of the list in a condition or an action. */
const namingAnyOf = (deviceIds: readonly string[]) =>
  raw<boolean>`exists (select 1 from json_each(${JSON.stringify(deviceIds)}) as scoped where instr(rules.device_ids, ',' || scoped.value || ',') > 0)`;

/** Rule counts of a user (null: everyone's); with devices, only the rules naming one of them. */
export function ruleCounts(sql: Sql, scope: { userId: string | null; start: string; end: string; deviceIds: readonly string[] | null }) {
  let rules = q.selectFrom('rules');
  if (scope.userId !== null) rules = rules.where('user_id', '=', scope.userId);
  if (scope.deviceIds !== null) rules = rules.where(namingAnyOf(scope.deviceIds));
  const counts = sql.first(rules.select([(eb) => eb.fn.countAll<number>().as('total'), (eb) => eb.fn.coalesce(eb.fn.sum<number>('is_enabled'), raw<number>`0`).as('enabled')]));
  let firings = q.selectFrom('rule_executions').where('triggered_at', '>=', scope.start).where('triggered_at', '<=', scope.end);
  if (scope.userId !== null) firings = firings.where('user_id', '=', scope.userId);
  if (scope.deviceIds !== null) firings = firings.where('rule_id', 'in', q.selectFrom('rules').select('id').where(namingAnyOf(scope.deviceIds)));
  const triggered = sql.first(firings.select((eb) => eb.fn.countAll<number>().as('n')))?.n ?? 0;
  return { total: counts?.total ?? 0, enabled: counts?.enabled ?? 0, triggered };
}
