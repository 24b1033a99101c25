import { describe, expect, it } from 'vitest';
import { canHoldTogether, contradicts, enableCycle } from '../../src/commands/rules.js';
import { opposedCommandTypes } from '../../src/domain/contradictions.js';
import { nextRun } from '../../src/automation/schedule.js';
import type { Condition, ReadingLeaf } from '../../src/domain/conditions.js';
import { actionSchema, actionsSchema, scheduleSchema, type RuleAction, type RuleDefinition } from '../../src/domain/rule-schema.js';
import { createRuleBody, updateRuleBody } from '../../src/api/schemas/rules.js';

const enable = (rule_id: string): RuleAction => ({ type: 'enable_rule', rule_id });
const disable = (rule_id: string): RuleAction => ({ type: 'disable_rule', rule_id });
const alert: RuleAction = { type: 'alert', severity: 'info', message: 'hi' };

describe('enableCycle()', () => {
  it('finds a rule enabling itself', () => {
    expect(enableCycle('a', [enable('a')], [])).toEqual(['a', 'a']);
  });

  it('finds a two-rule and a three-rule loop through the other rules', () => {
    expect(enableCycle('a', [enable('b')], [{ id: 'b', actions: [enable('a')] }])).toEqual(['a', 'b', 'a']);
    expect(enableCycle('a', [alert, enable('b')], [{ id: 'b', actions: [enable('c')] }, { id: 'c', actions: [alert, enable('a')] }])).toEqual(['a', 'b', 'c', 'a']);
  });

  it('uses the new actions of the rule being changed, not its old ones', () => {
    // Stored: a enables b, b enables a; the update of a drops its enable_rule: no cycle.
    expect(enableCycle('a', [alert], [{ id: 'b', actions: [enable('a')] }])).toBeNull();
  });

  it('no cycle: chains, disable_rule loops, loops not through this rule', () => {
    expect(enableCycle('a', [enable('b')], [{ id: 'b', actions: [enable('c')] }, { id: 'c', actions: [alert] }])).toBeNull();
    // Rules that disable each other cannot run away.
    expect(enableCycle('a', [disable('b')], [{ id: 'b', actions: [disable('a')] }])).toBeNull();
    expect(enableCycle('a', [enable('b')], [{ id: 'b', actions: [disable('a')] }])).toBeNull();
    // b and c loop between themselves, but a is not on it: the walk still ends.
    expect(enableCycle('a', [enable('b')], [{ id: 'b', actions: [enable('c')] }, { id: 'c', actions: [enable('b')] }])).toBeNull();
    // Unknown rules end the walk.
    expect(enableCycle('a', [enable('ghost')], [])).toBeNull();
    expect(enableCycle('a', [], [])).toBeNull();
  });

  it('terminates on a graph where every other rule enables every other (a loop not through this rule)', () => {
    const ids = Array.from({ length: 6 }, (_, i) => `r${i}`);
    const others = ids.map((id) => ({ id, actions: ids.filter((x) => x !== id).map(enable) }));
    expect(enableCycle('new', [enable('r0')], others)).toBeNull();
    const closing = [...others.slice(0, 5), { id: 'r5', actions: [enable('new')] }];
    expect(enableCycle('new', [enable('r0')], closing)?.at(-1)).toBe('new');
  });

  it('finds no cycle in a large layered acyclic graph quickly (linear, not per path)', () => {
    const width = 6;
    const depth = 10;
    const others: Array<{ id: string; actions: RuleAction[] }> = [];
    for (let layer = 0; layer < depth; layer++) {
      for (let w = 0; w < width; w++) {
        others.push({ id: `r${layer}_${w}`, actions: layer + 1 < depth ? Array.from({ length: width }, (_, k) => enable(`r${layer + 1}_${k}`)) : [alert] });
      }
    }
    const started = performance.now();
    expect(enableCycle('new', [enable('r0_0')], others)).toBeNull();
    expect(performance.now() - started).toBeLessThan(500);
  });
});

const reading = (operator: ReadingLeaf['operator'], value: number, device_id = 'd1', sensor_type = 'temperature'): ReadingLeaf => ({ type: 'reading', device_id, sensor_type, operator, value });

describe('canHoldTogether()', () => {
  it('disjoint ranges on the same device and sensor cannot hold together', () => {
    expect(canHoldTogether(reading('>', 30), reading('<', 20))).toBe(false);
    expect(canHoldTogether(reading('>=', 30), reading('<=', 29.5))).toBe(false);
    expect(canHoldTogether(reading('==', 10), reading('==', 11))).toBe(false);
    expect(canHoldTogether(reading('==', 10), reading('<', 5))).toBe(false);
    // At zero the strict bound happens to work (0 + Number.EPSILON > 0).
    expect(canHoldTogether(reading('>', 0), reading('<=', 0))).toBe(false);
  });

  it('strict and non-strict bounds meeting at one value do not overlap', () => {
    expect(canHoldTogether(reading('>', 30), reading('<=', 30))).toBe(false);
    expect(canHoldTogether(reading('>=', 30), reading('<', 30))).toBe(false);
    expect(canHoldTogether(reading('==', 10), reading('>', 10))).toBe(false);
    expect(canHoldTogether(reading('<', -40), reading('>=', -40))).toBe(false);
  });

  it('overlapping or touching ranges can', () => {
    expect(canHoldTogether(reading('>', 30), reading('>', 25))).toBe(true);
    expect(canHoldTogether(reading('>=', 30), reading('<=', 30))).toBe(true);
    expect(canHoldTogether(reading('>', 20), reading('<', 30))).toBe(true);
    expect(canHoldTogether(reading('==', 10), reading('>=', 10))).toBe(true);
  });

  it('other sensors or devices, and missing triggers, never rule an overlap out', () => {
    expect(canHoldTogether(reading('>', 30), reading('<', 20, 'd2'))).toBe(true);
    expect(canHoldTogether(reading('>', 30), reading('<', 20, 'd1', 'humidity'))).toBe(true);
    expect(canHoldTogether(null, reading('<', 20))).toBe(true);
    expect(canHoldTogether(null, null)).toBe(true);
  });

  it('readings required by a top-level all count; those under any or not are conservatively ignored', () => {
    const status: Condition = { type: 'device_status', device_id: 'd1', status: 'online' };
    expect(canHoldTogether({ all: [status, reading('>', 30)] }, { all: [reading('<', 20)] })).toBe(false);
    expect(canHoldTogether({ any: [reading('>', 30)] }, reading('<', 20))).toBe(true);
    expect(canHoldTogether({ not: reading('<', 30) }, reading('<', 20))).toBe(true);
    // Contradictory within one rule already: never holds, so never together.
    expect(canHoldTogether({ all: [reading('>', 30), reading('<', 20)] }, null)).toBe(false);
  });
});

const definition = (trigger: Condition | null, actions: RuleAction[], over: Partial<RuleDefinition> = {}): RuleDefinition => ({
  name: 'r',
  description: null,
  trigger_conditions: trigger,
  actions,
  schedule: null,
  is_enabled: true,
  cooldown_seconds: 0,
  ...over,
});
const command = (parameters: Record<string, unknown> | undefined, device_id = 'd1', command_type = 'set_fan'): RuleAction => ({ type: 'command', device_id, command_type, ...(parameters ? { parameters } : {}) });

describe('opposedCommandTypes()', () => {
  it('the same words but one pair of opposites, in any spelling', () => {
    for (const [a, b] of [['turn_on', 'turn_off'], ['open_valve', 'close_valve'], ['start', 'stop'], ['turnOn', 'turnOff'], ['Door-Lock', 'door_unlock'], ['fan.up', 'fan.down']] as const) {
      expect(opposedCommandTypes(a, b), `${a} / ${b}`).toBe(true);
      expect(opposedCommandTypes(b, a), `${b} / ${a}`).toBe(true);
    }
  });

  it('not: the same type, unrelated words, two differences, different lengths', () => {
    for (const [a, b] of [['turn_on', 'turn_on'], ['reboot', 'shutdown'], ['turn_on_light', 'turn_off_fan'], ['turn_on', 'on'], ['open', 'opener']] as const) {
      expect(opposedCommandTypes(a, b), `${a} / ${b}`).toBe(false);
    }
  });
});

describe('contradicts()', () => {
  it('overlapping triggers sending the same command type to the same device with different parameters', () => {
    expect(contradicts(definition(reading('>', 30), [command({ speed: 1 })]), definition(reading('>', 25), [command({ speed: 3 })]))).toBe(true);
    expect(contradicts(definition(reading('>', 30), [alert, command({ speed: 1 })]), definition(null, [command(undefined)], { schedule: { every_seconds: 60 } }))).toBe(true);
  });

  it('overlapping triggers sending opposite command types to the same device, whatever the parameters', () => {
    expect(contradicts(definition(reading('>', 50), [command(undefined, 'd1', 'turn_on')]), definition(reading('>', 60), [command(undefined, 'd1', 'turn_off')]))).toBe(true);
    expect(contradicts(definition(reading('>', 50), [command(undefined, 'd1', 'turn_on')]), definition(reading('>', 60), [command(undefined, 'd2', 'turn_off')]))).toBe(false);
    expect(contradicts(definition(reading('>', 50), [command(undefined, 'd1', 'turn_on')]), definition(reading('<', 40), [command(undefined, 'd1', 'turn_off')]))).toBe(false);
  });

  it('a command to a group reaches the devices the resolver names', () => {
    const toGroup: RuleAction = { type: 'command', group_id: 'g1', command_type: 'set_fan', parameters: { speed: 3 } };
    const targets = (action: Extract<RuleAction, { type: 'command' }>) => (action.group_id === 'g1' ? ['d1', 'd2'] : action.device_id ? [action.device_id] : []);
    expect(contradicts(definition(reading('>', 30), [command({ speed: 1 }, 'd2')]), definition(reading('>', 25), [toGroup]), targets)).toBe(true);
    expect(contradicts(definition(reading('>', 30), [command({ speed: 1 }, 'd3')]), definition(reading('>', 25), [toGroup]), targets)).toBe(false);
  });

  it('no contradiction: same parameters, other device, other command type, disjoint triggers, no command', () => {
    expect(contradicts(definition(reading('>', 30), [command({ speed: 1 })]), definition(reading('>', 25), [command({ speed: 1 })]))).toBe(false);
    expect(contradicts(definition(reading('>', 30), [command(undefined)]), definition(reading('>', 25), [command({})]))).toBe(false);
    expect(contradicts(definition(reading('>', 30), [command({ speed: 1 })]), definition(reading('>', 25), [command({ speed: 3 }, 'd2')]))).toBe(false);
    expect(contradicts(definition(reading('>', 30), [command({ speed: 1 })]), definition(reading('>', 25), [command({ speed: 3 }, 'd1', 'set_light')]))).toBe(false);
    expect(contradicts(definition(reading('>', 30), [command({ on: true })]), definition(reading('<', 20), [command({ on: false })]))).toBe(false);
    expect(contradicts(definition(reading('>', 30), [alert]), definition(reading('>', 25), [alert]))).toBe(false);
  });
});

describe('schemas of actions, schedules and rule bodies', () => {
  it('a command action names exactly one of device_id or group_id', () => {
    expect(actionSchema.safeParse({ type: 'command', device_id: 'd1', command_type: 'reboot' }).success).toBe(true);
    expect(actionSchema.safeParse({ type: 'command', group_id: 'g1', command_type: 'reboot', parameters: { a: 1 }, priority: 'high', delay_seconds: 10 }).success).toBe(true);
    expect(actionSchema.safeParse({ type: 'command', command_type: 'reboot' }).success).toBe(false);
    expect(actionSchema.safeParse({ type: 'command', device_id: 'd1', group_id: 'g1', command_type: 'reboot' }).success).toBe(false);
    expect(actionSchema.safeParse({ type: 'command', device_id: 'd1', command_type: '1 bad name' }).success).toBe(false);
    expect(actionSchema.safeParse({ type: 'command', device_id: 'd1', command_type: 'reboot', priority: 'urgent' }).success).toBe(false);
  });

  it('alerts and rule switches; delays are whole non-negative seconds', () => {
    expect(actionSchema.safeParse({ type: 'alert', severity: 'critical', message: 'hot' }).success).toBe(true);
    expect(actionSchema.safeParse({ type: 'alert', severity: 'fatal', message: 'hot' }).success).toBe(false);
    expect(actionSchema.safeParse({ type: 'alert', severity: 'info', message: '   ' }).success).toBe(false);
    expect(actionSchema.safeParse({ type: 'enable_rule', rule_id: 'r1' }).success).toBe(true);
    expect(actionSchema.safeParse({ type: 'disable_rule' }).success).toBe(false);
    expect(actionSchema.safeParse({ type: 'alert', severity: 'info', message: 'x', delay_seconds: -1 }).success).toBe(false);
    expect(actionSchema.safeParse({ type: 'alert', severity: 'info', message: 'x', delay_seconds: 1.5 }).success).toBe(false);
    expect(actionSchema.safeParse({ type: 'email', to: 'x' }).success).toBe(false);
    expect(actionsSchema.safeParse([]).success).toBe(false);
  });

  it('a schedule is a cron with an optional valid timezone, or every_seconds ≥ 1, not both', () => {
    expect(scheduleSchema.safeParse({ cron: '0 * * * *' }).success).toBe(true);
    expect(scheduleSchema.safeParse({ cron: '30 7 * * 1-5', timezone: 'Europe/Paris' }).success).toBe(true);
    expect(scheduleSchema.safeParse({ cron: '0 * * * *', timezone: 'Nowhere/Land' }).success).toBe(false);
    expect(scheduleSchema.safeParse({ every_seconds: 1 }).success).toBe(true);
    expect(scheduleSchema.safeParse({ every_seconds: 0 }).success).toBe(false);
    expect(scheduleSchema.safeParse({ every_seconds: 2.5 }).success).toBe(false);
    expect(scheduleSchema.safeParse({ cron: '0 * * * *', every_seconds: 60 }).success).toBe(false);
    expect(scheduleSchema.safeParse({}).success).toBe(false);
  });

  it('the create body needs a name and actions; the update body takes the enabled_status alias', () => {
    expect(createRuleBody.safeParse({ name: 'x', actions: [alert] }).success).toBe(true);
    expect(createRuleBody.safeParse({ name: '', actions: [alert] }).success).toBe(false);
    expect(createRuleBody.safeParse({ name: 'x' }).success).toBe(false);
    expect(createRuleBody.safeParse({ name: 'x', actions: [alert], cooldown_seconds: -1 }).success).toBe(false);
    const update = updateRuleBody.parse({ enabled_status: false });
    expect(update.enabled_status).toBe(false);
    let deep: unknown = reading('>', 1);
    for (let i = 0; i < 8; i++) deep = { not: deep };
    expect(createRuleBody.safeParse({ name: 'x', actions: [alert], trigger_conditions: deep }).success).toBe(false);
  });
});

describe('nextRun()', () => {
  const T0 = Date.parse('2026-03-01T12:00:00.000Z');

  it('every_seconds runs that long after', () => {
    expect(nextRun({ every_seconds: 90 }, T0)).toBe(T0 + 90_000);
  });

  it('a cron runs at its next occurrence strictly after the given time', () => {
    expect(nextRun({ cron: '0 * * * *' }, T0)).toBe(Date.parse('2026-03-01T13:00:00.000Z'));
    expect(nextRun({ cron: '0 * * * *' }, T0 - 1)).toBe(T0);
    expect(nextRun({ cron: '*/15 * * * *' }, T0 + 60_000)).toBe(Date.parse('2026-03-01T12:15:00.000Z'));
  });

  it('a cron with a timezone runs at local wall-clock times, across daylight saving time', () => {
    // 07:30 in Paris: 06:30 UTC in winter, 05:30 UTC in summer.
    expect(nextRun({ cron: '30 7 * * *', timezone: 'Europe/Paris' }, T0)).toBe(Date.parse('2026-03-02T06:30:00.000Z'));
    expect(nextRun({ cron: '30 7 * * *', timezone: 'Europe/Paris' }, Date.parse('2026-07-01T12:00:00.000Z'))).toBe(Date.parse('2026-07-02T05:30:00.000Z'));
    expect(nextRun({ cron: '30 7 * * *' }, T0)).toBe(Date.parse('2026-03-02T07:30:00.000Z'));
  });
});
