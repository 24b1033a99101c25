import { Cron } from 'croner';
import { leavesOf, type Condition, type ReadingLeaf } from '../domain/conditions.js';
import { commandsContradict } from '../domain/contradictions.js';
import { DomainError, notFound, type ErrorDetail } from '../domain/errors.js';
import { isEventType, streams, type MemberRole } from '../domain/events.js';
import { ruleDecider } from '../domain/rule.js';
import type { RuleAction, RuleDefinition } from '../domain/rule-schema.js';
import { findDevice } from '../projections/devices.js';
import { groupCommandTargets } from '../projections/group-summaries.js';
import { findGroup, userMayUse, userMayUseGroup } from '../projections/groups.js';
import type { Sql } from '../projections/sql.js';
import { decodeRule, findRule, rulesOfUser, type RuleRow } from '../projections/rules.js';
import { handle, type IfMatch } from './handle.js';
import { mayAccess, type Principal, type RequestContext, type Services } from './services.js';
import { requireUser } from './devices.js';

export function visibleRule(services: Services, principal: Principal, ruleId: string): RuleRow {
  const rule = findRule(services.sql, ruleId);
  const allowed = rule && mayAccess(principal, rule.user_id);
  if (!allowed) throw notFound('rule');
  return rule;
}

export class Rules {
  constructor(private readonly services: Services) {}

  async create(definition: RuleDefinition, allowConflicts: boolean, context: RequestContext): Promise<RuleRow> {
    const userId = requireUser(context.principal);
    const ruleId = this.services.newId();
    return this.services.locks.owners.run(`rules:${userId}`, async () => {
      this.validate(ruleId, userId, definition, allowConflicts);
      await handle(this.services, ruleDecider, streams.rule(ruleId), { type: 'create_rule', data: { rule_id: ruleId, user_id: userId, ...definition } }, context);
      return findRule(this.services.sql, ruleId)!;
    });
  }

  async update(ruleId: string, changes: Partial<RuleDefinition>, allowConflicts: boolean, context: RequestContext | null, ifMatch?: IfMatch): Promise<RuleRow> {
    const rule = context ? visibleRule(this.services, context.principal, ruleId) : findRule(this.services.sql, ruleId);
    if (!rule) throw notFound('rule');
    return this.services.locks.owners.run(`rules:${rule.user_id}`, async () => {
      const current = findRule(this.services.sql, ruleId);
      if (!current) throw notFound('rule');
      // What the request leaves as it was is not judged again: a rule stored before empty triggers
      // were refused, or naming a device deleted since, stays editable (to disable it, say).
      const changed = { conditions: changes.trigger_conditions !== undefined, schedule: changes.schedule !== undefined, actions: changes.actions !== undefined };
      this.validate(ruleId, rule.user_id, { ...decodeRule(current), ...changes }, allowConflicts, changed);
      await handle(this.services, ruleDecider, streams.rule(ruleId), { type: 'update_rule', data: { changes } }, context, ifMatch !== undefined ? { ifMatch } : {});
      return findRule(this.services.sql, ruleId)!;
    });
  }

  async delete(ruleId: string, context: RequestContext, ifMatch?: IfMatch): Promise<void> {
    const rule = visibleRule(this.services, context.principal, ruleId);
    await this.services.locks.owners.run(`rules:${rule.user_id}`, () =>
      handle(this.services, ruleDecider, streams.rule(ruleId), { type: 'delete_rule' }, context, ifMatch !== undefined ? { ifMatch } : {}),
    );
  }

  /** A draft for a dry run is checked as a rule is (its references are the user's), except for conflicts. */
  checkDraft(userId: string, definition: RuleDefinition): void {
    refuseProblems(this.problemsOf(null, userId, definition).map((p) => ({ ...p, path: `rule.${p.path}` })));
  }

  /** Everything a rule refers to must exist and be the owner's; its logic must be able to run. */
  private validate(ruleId: string, userId: string, definition: RuleDefinition, allowConflicts: boolean, changed: Changed = EVERYTHING): void {
    const others = rulesOfUser(this.services.sql, userId).filter((r) => r.id !== ruleId);
    const problems = this.problemsOf(ruleId, userId, definition, changed);
    const cycle = enableCycle(ruleId, definition.actions, others.map((r) => ({ id: r.id, actions: decodeRule(r).actions })));
    if (cycle) problems.push({ path: 'actions', message: `rules would enable each other in a cycle: ${cycle.join(' → ')}` });
    refuseProblems(problems);
    if (!allowConflicts && definition.is_enabled) this.refuseConflicts(definition, others);
  }

  /** What is wrong with the `changed` parts of a definition, by path; `ruleId` is null for a draft that is no rule yet. */
  private problemsOf(ruleId: string | null, userId: string, definition: RuleDefinition, changed: Changed = EVERYTHING): ErrorDetail[] {
    const problems: ErrorDetail[] = [];
    const deviceProblem = (deviceId: string, need: MemberRole) => referenceProblem(this.services.sql, userMayUse, findDevice(this.services.sql, deviceId), userId, need, 'device');
    if (!definition.trigger_conditions && !definition.schedule) problems.push({ path: 'trigger_conditions', message: 'a rule needs trigger_conditions, a schedule, or both' });
    if ((changed.conditions || changed.schedule) && definition.trigger_conditions && !definition.schedule && leavesOf(definition.trigger_conditions).length === 0) {
      problems.push({ path: 'trigger_conditions', message: 'a condition naming nothing never changes, so it could never fire' });
    }
    if (changed.conditions && definition.trigger_conditions) {
      for (const { path, leaf } of leavesOf(definition.trigger_conditions)) {
        const at = path.replace(/^root/, 'trigger_conditions');
        const problem = 'device_id' in leaf && leaf.device_id !== undefined ? deviceProblem(leaf.device_id, 'viewer') : null;
        if (problem) problems.push({ path: `${at}.device_id`, message: problem });
        if (leaf.type === 'event' && !isEventType(leaf.event_type)) problems.push({ path: `${at}.event_type`, message: 'no such event type; it could never happen' });
      }
    }
    if (changed.actions) {
      definition.actions.forEach((action, index) => {
        const at = `actions.${index}`;
        // A rule acts on a device (a command, an alert) only where its owner may operate it.
        const onDevice = 'device_id' in action && action.device_id !== undefined ? deviceProblem(action.device_id, 'operator') : null;
        if (onDevice) problems.push({ path: `${at}.device_id`, message: onDevice });
        const onGroup = action.type === 'command' && action.group_id !== undefined ? referenceProblem(this.services.sql, userMayUseGroup, findGroup(this.services.sql, action.group_id), userId, 'operator', 'group') : null;
        if (onGroup) problems.push({ path: `${at}.group_id`, message: onGroup });
        if ((action.type === 'enable_rule' || action.type === 'disable_rule') && action.rule_id !== ruleId && findRule(this.services.sql, action.rule_id)?.user_id !== userId) {
          problems.push({ path: `${at}.rule_id`, message: 'no such rule of yours' });
        }
      });
    }
    if (definition.schedule && 'cron' in definition.schedule) {
      try {
        new Cron(definition.schedule.cron, { paused: true, ...(definition.schedule.timezone ? { timezone: definition.schedule.timezone } : {}) });
      } catch (error) {
        problems.push({ path: 'schedule.cron', message: error instanceof Error ? error.message : 'not a valid cron expression' });
      }
    }
    return problems;
  }

  private refuseConflicts(definition: RuleDefinition, others: readonly RuleRow[]): void {
    const targetsOf: CommandTargets = (action) => (action.device_id ? [action.device_id] : groupCommandTargets(this.services.sql, action.group_id!));
    const conflicts = others.filter((other) => other.is_enabled === 1 && contradicts(definition, decodeRule(other), targetsOf));
    if (conflicts.length > 0) {
      throw new DomainError(
        'rule_conflict',
        'an enabled rule with an overlapping trigger sends a contradicting command to the same device',
        conflicts.map((c) => ({ path: 'actions', message: `conflicts with rule ${c.id} (${c.name})`, rule_id: c.id, name: c.name })),
      );
    }
  }
}

/** The parts of a rule a request sets: only those are judged again. */
interface Changed {
  conditions: boolean;
  schedule: boolean;
  actions: boolean;
}
const EVERYTHING: Changed = { conditions: true, schedule: true, actions: true };

/**
 * What is wrong with a device or group a rule names: missing or not shared with its owner reads
 * as missing (nothing says it exists); shared with too weak a role says what is missing.
 */
function referenceProblem<T>(sql: Sql, mayUse: (sql: Sql, userId: string, target: T, need: MemberRole) => boolean, target: T | undefined, userId: string, need: MemberRole, noun: string): string | null {
  if (target === undefined || !mayUse(sql, userId, target, 'viewer')) return `no such ${noun} of yours or shared with you`;
  return mayUse(sql, userId, target, need) ? null : `this ${noun} is shared with you below ${need}: a rule may read it, not act on it`;
}

function refuseProblems(problems: ErrorDetail[]): void {
  if (problems.length > 0) throw new DomainError('validation_failed', `invalid rule: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`, problems);
}

/** The chain of enable_rule actions from this rule back to itself, if there is one (each rule explored once). */
export function enableCycle(ruleId: string, actions: readonly RuleAction[], others: ReadonlyArray<{ id: string; actions: readonly RuleAction[] }>): string[] | null {
  const enabled = (list: readonly RuleAction[]) => list.flatMap((a) => (a.type === 'enable_rule' ? [a.rule_id] : []));
  const enables = new Map<string, string[]>(others.map((r) => [r.id, enabled(r.actions)]));
  enables.set(ruleId, enabled(actions));
  const explored = new Set<string>();
  const walk = (id: string, path: string[]): string[] | null => {
    for (const next of enables.get(id) ?? []) {
      if (next === ruleId) return [...path, next];
      if (explored.has(next)) continue;
      explored.add(next);
      const found = walk(next, [...path, next]);
      if (found) return found;
    }
    return null;
  };
  return walk(ruleId, [ruleId]);
}

type CommandAction = Extract<RuleAction, { type: 'command' }>;

/** The devices a command action reaches: its device, or those of its group and subgroups. */
export type CommandTargets = (action: CommandAction) => readonly string[];
const directTargets: CommandTargets = (action) => (action.device_id ? [action.device_id] : []);

/** Two rules contradict when their triggers can hold together and they give one device contradicting commands. */
export function contradicts(a: RuleDefinition, b: RuleDefinition, targetsOf: CommandTargets = directTargets): boolean {
  const commands = (rule: RuleDefinition) =>
    rule.actions.filter((x): x is CommandAction => x.type === 'command').map((action) => ({ action, devices: new Set(targetsOf(action)) }));
  const theirs = commands(b);
  const clash = commands(a).some((x) => theirs.some((y) => [...x.devices].some((d) => y.devices.has(d)) && commandsContradict(x.action, y.action)));
  return clash && canHoldTogether(a.trigger_conditions, b.trigger_conditions);
}

/**
 * Conservative: only readings required by both rules (top-level all, or a single leaf) with
 * disjoint ranges rule out an overlap; anything else may hold together.
 */
export function canHoldTogether(a: Condition | null, b: Condition | null): boolean {
  const required = (c: Condition | null): ReadingLeaf[] => {
    if (!c) return [];
    if ('type' in c) return c.type === 'reading' ? [c] : [];
    if ('all' in c) return c.all.flatMap((x) => ('type' in x && x.type === 'reading' ? [x] : []));
    return [];
  };
  const intervals = new Map<string, Interval>();
  for (const leaf of [...required(a), ...required(b)]) {
    const key = `${leaf.device_id}:${leaf.sensor_type}`;
    intervals.set(key, narrow(intervals.get(key) ?? { low: -Infinity, lowOpen: true, high: Infinity, highOpen: true }, leaf));
  }
  return [...intervals.values()].every((r) => r.low < r.high || (r.low === r.high && !r.lowOpen && !r.highOpen));
}

/** A range of values with open or closed ends. */
interface Interval {
  low: number;
  lowOpen: boolean;
  high: number;
  highOpen: boolean;
}

function narrow(range: Interval, leaf: ReadingLeaf): Interval {
  const raise = (low: number, open: boolean): Interval =>
    low > range.low || (low === range.low && open) ? { ...range, low, lowOpen: open } : range;
  const lower = (high: number, open: boolean): Interval =>
    high < range.high || (high === range.high && open) ? { ...range, high, highOpen: open } : range;
  switch (leaf.operator) {
    case '>':
      return raise(leaf.value, true);
    case '>=':
      return raise(leaf.value, false);
    case '<':
      return lower(leaf.value, true);
    case '<=':
      return lower(leaf.value, false);
    case '==':
      return narrow(narrow(range, { ...leaf, operator: '>=' }), { ...leaf, operator: '<=' });
    case '!=':
      return range;
  }
}
