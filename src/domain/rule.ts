import { leavesOf, readingHolds, evaluate, type Condition, type Facts } from './conditions.js';
import { changedFields, type Decider } from './decider.js';
import { DomainError, notFound } from './errors.js';
import type { EventOfType } from './events.js';
import type { RuleDefinition } from './rule-schema.js';

export type RuleEvent = EventOfType<'rule.created' | 'rule.updated' | 'rule.deleted'>;

export type RuleCommand =
  | { type: 'create_rule'; data: EventOfType<'rule.created'>['data'] }
  | { type: 'update_rule'; data: { changes: Partial<RuleDefinition> } }
  | { type: 'delete_rule' };

export type RuleState = { status: 'none' } | { status: 'active' | 'deleted'; rule_id: string; user_id: string; definition: RuleDefinition };

export const ruleDecider: Decider<RuleCommand, RuleState, RuleEvent> = {
  eventTypes: new Set(['rule.created', 'rule.updated', 'rule.deleted']),
  initialState: () => ({ status: 'none' }),

  evolve(state, event) {
    switch (event.type) {
      case 'rule.created': {
        const { rule_id, user_id, ...definition } = event.data;
        return { status: 'active', rule_id, user_id, definition };
      }
      case 'rule.updated':
        return state.status === 'none' ? state : { ...state, definition: { ...state.definition, ...event.data.changes } };
      case 'rule.deleted':
        return state.status === 'none' ? state : { ...state, status: 'deleted' };
    }
  },

  decide(command, state) {
    if (command.type === 'create_rule') {
      if (state.status !== 'none') throw new DomainError('already_exists', 'rule already exists');
      return [{ type: 'rule.created', data: command.data }];
    }
    if (state.status !== 'active') throw notFound('rule');
    switch (command.type) {
      case 'update_rule': {
        const changes = changedFields(state.definition, command.data.changes);
        if (Object.keys(changes).length === 0) return [];
        return [{ type: 'rule.updated', data: { rule_id: state.rule_id, changes } }];
      }
      case 'delete_rule':
        return [{ type: 'rule.deleted', data: { rule_id: state.rule_id, user_id: state.user_id } }];
    }
  },
};

/** What the engine remembers of a rule between observations. */
export interface RuleRuntime {
  /** Whether the conditions held at the last observation: firing is on the rising edge. */
  was_true: boolean;
  /** Since when (ms) each reading leaf with for_seconds has held, by leaf path. */
  holding: Record<string, number>;
  last_fired: number | null;
  /** Firing times (ms) within the last minute, for the runaway limit. */
  recent: number[];
  /** The next scheduled run (ms), for scheduled rules. */
  next_run: number | null;
  /** When the runaway limit last held the rule back (ms), so it is recorded once a minute. */
  throttled_at: number | null;
}

export const initialRuntime = (): RuleRuntime => ({ was_true: false, holding: {}, last_fired: null, recent: [], next_run: null, throttled_at: null });

export const MAX_FIRINGS_PER_MINUTE = 10;
const MINUTE_MS = 60_000;

export type Verdict = { kind: 'fire' } | { kind: 'quiet' } | { kind: 'throttled'; firings: number; record: boolean };

/** Updates the for_seconds clocks of the reading leaves from the facts. */
export function trackHolding(condition: Condition, runtime: RuleRuntime, facts: Pick<Facts, 'readings' | 'now'>): Record<string, number> {
  const holding: Record<string, number> = {};
  for (const { path, leaf } of leavesOf(condition)) {
    if (leaf.type !== 'reading' || leaf.for_seconds === undefined) continue;
    if (readingHolds(leaf, facts)) holding[path] = runtime.holding[path] ?? facts.now.getTime();
  }
  return holding;
}

/**
 * One observation of a condition-triggered rule: fires on the rising edge (not again
 * while the conditions stay true), at most once per cooldown, at most
 * MAX_FIRINGS_PER_MINUTE a minute. Pure: the caller persists the runtime it returns.
 */
export function observe(condition: Condition, cooldownSeconds: number, runtime: RuleRuntime, facts: Facts): { verdict: Verdict; runtime: RuleRuntime } {
  const holding = trackHolding(condition, runtime, facts);
  const withHolding: Facts = { ...facts, holdingSince: new Map(Object.entries(holding)) };
  const now = withHolding.now.getTime();
  const holdsNow = evaluate(condition, withHolding);
  // An event leaf is true only at its event's moment: afterwards the rule may fire again.
  const holdsAfter = withHolding.event ? evaluate(condition, { ...withHolding, event: null }) : holdsNow;
  const next = { ...runtime, holding, was_true: holdsAfter };
  if (!holdsNow || runtime.was_true) return { verdict: { kind: 'quiet' }, runtime: next };
  return gate(cooldownSeconds, next, now);
}

/** Cooldown and the runaway limit, for condition and scheduled firings alike. */
export function gate(cooldownSeconds: number, runtime: RuleRuntime, now: number): { verdict: Verdict; runtime: RuleRuntime } {
  if (runtime.last_fired !== null && now - runtime.last_fired < cooldownSeconds * 1000) return { verdict: { kind: 'quiet' }, runtime };
  const recent = runtime.recent.filter((at) => now - at < MINUTE_MS);
  if (recent.length >= MAX_FIRINGS_PER_MINUTE) {
    const record = runtime.throttled_at === null || now - runtime.throttled_at >= MINUTE_MS;
    return { verdict: { kind: 'throttled', firings: recent.length, record }, runtime: { ...runtime, recent, throttled_at: record ? now : runtime.throttled_at } };
  }
  return { verdict: { kind: 'fire' }, runtime: { ...runtime, recent: [...recent, now], last_fired: now } };
}

/** When each action is due: delays add up, since actions run in order. */
export function actionSchedule(actions: ReadonlyArray<{ delay_seconds?: number | undefined }>, firedAt: number): number[] {
  let at = firedAt;
  return actions.map((action) => (at += (action.delay_seconds ?? 0) * 1000));
}
