import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { comparisonOperators, conditionSchema, evaluate, readingKey, weekdays, type Condition, type Facts, type Leaf } from '../../src/domain/conditions.js';

/**
 * Laws of the condition evaluator over arbitrary valid trees and arbitrary facts. Devices,
 * sensors and values come from small pools so that leaves often meet facts about them.
 */
const DEVICES = ['d1', 'd2', 'd3'] as const;
const SENSORS = ['temperature', 'humidity'] as const;
const STATUSES = ['online', 'offline', 'error', 'maintenance'] as const;
const EVENT_TYPES = ['readings.recorded', 'device.went_offline', 'device.came_online', 'command.executed'] as const;
const ZONES = ['UTC', 'Europe/Paris', 'America/New_York', 'Asia/Kolkata', 'Australia/Sydney'] as const;

const value = fc.oneof(fc.integer({ min: -5, max: 5 }), fc.double({ min: -1e6, max: 1e6, noNaN: true, noDefaultInfinity: true }));
const hhmm = fc.tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 })).map(([h, m]) => `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`);

const readingLeaf: fc.Arbitrary<Leaf> = fc.record(
  {
    type: fc.constant('reading' as const),
    device_id: fc.constantFrom(...DEVICES),
    sensor_type: fc.constantFrom(...SENSORS),
    operator: fc.constantFrom(...comparisonOperators),
    value,
    for_seconds: fc.integer({ min: 1, max: 3600 }),
  },
  { requiredKeys: ['type', 'device_id', 'sensor_type', 'operator', 'value'] },
);
const statusLeaf: fc.Arbitrary<Leaf> = fc.record({ type: fc.constant('device_status' as const), device_id: fc.constantFrom(...DEVICES), status: fc.constantFrom(...STATUSES) });
const eventLeaf: fc.Arbitrary<Leaf> = fc.record({ type: fc.constant('event' as const), event_type: fc.constantFrom(...EVENT_TYPES), device_id: fc.constantFrom(...DEVICES) }, { requiredKeys: ['type', 'event_type'] });
const timeLeaf: fc.Arbitrary<Leaf> = fc
  .record(
    { type: fc.constant('time' as const), after: hhmm, before: hhmm, days: fc.subarray([...weekdays], { minLength: 1 }), timezone: fc.constantFrom(...ZONES) },
    { requiredKeys: ['type'] },
  )
  .filter((leaf) => leaf.after !== undefined || leaf.before !== undefined || leaf.days !== undefined);
const leaf: fc.Arbitrary<Leaf> = fc.oneof(readingLeaf, statusLeaf, eventLeaf, timeLeaf);

/** Valid canonical trees: leaves under all / any / not, up to the schema's depth of 8. */
const { tree } = fc.letrec<{ tree: Condition }>((tie) => ({
  tree: fc.oneof(
    { maxDepth: 6, depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.array(tie('tree'), { maxLength: 4 }).map((all): Condition => ({ all })),
    fc.array(tie('tree'), { minLength: 1, maxLength: 4 }).map((any): Condition => ({ any })),
    tie('tree').map((not): Condition => ({ not })),
  ),
}));

/** The same tree written with the {operator, conditions} alias wherever it has all / any. */
function toAlias(condition: Condition, lowerCase: boolean): unknown {
  const op = (name: 'AND' | 'OR') => (lowerCase ? name.toLowerCase() : name);
  if ('all' in condition) return { operator: op('AND'), conditions: condition.all.map((c) => toAlias(c, lowerCase)) };
  if ('any' in condition) return { operator: op('OR'), conditions: condition.any.map((c) => toAlias(c, lowerCase)) };
  if ('not' in condition) return { not: toAlias(condition.not, lowerCase) };
  return condition;
}

/** A holdingSince in which every leaf has held since the same moment, whatever its path. */
class UniformHolding extends Map<string, number> {
  constructor(private readonly since: number | undefined) {
    super();
  }
  override get(): number | undefined {
    return this.since;
  }
}

const NOW_MIN = Date.parse('2025-01-01T00:00:00.000Z');
const NOW_MAX = Date.parse('2027-12-31T23:59:59.999Z');

const readingsArb = fc
  .array(fc.tuple(fc.constantFrom(...DEVICES), fc.constantFrom(...SENSORS), value), { maxLength: 6 })
  .map((entries) => new Map(entries.map(([d, s, v]) => [readingKey(d, s), v] as const)));
const statusesArb = fc.array(fc.tuple(fc.constantFrom(...DEVICES), fc.constantFrom(...STATUSES)), { maxLength: 3 }).map((entries) => new Map<string, string>(entries));
const eventArb = fc.option(fc.record({ type: fc.constantFrom(...EVENT_TYPES), device_id: fc.option(fc.constantFrom(...DEVICES), { nil: null }) }), { nil: null });
const nowArb = fc.integer({ min: NOW_MIN, max: NOW_MAX });

/** Facts whose holding times do not depend on the leaf path (so trees rewritten around a leaf agree). */
const uniformFacts: fc.Arbitrary<Facts> = fc
  .record({ now: nowArb, readings: readingsArb, statuses: statusesArb, event: eventArb, heldFor: fc.option(fc.integer({ min: 0, max: 7200 }), { nil: undefined }) })
  .map(({ now, readings, statuses, event, heldFor }) => ({ now: new Date(now), readings, statuses, event, holdingSince: new UniformHolding(heldFor === undefined ? undefined : now - heldFor * 1000) }));

/** Facts with arbitrary holding times by arbitrary paths (some real, some not). */
const anyFacts: fc.Arbitrary<Facts> = fc
  .record({
    now: nowArb,
    readings: readingsArb,
    statuses: statusesArb,
    event: eventArb,
    holding: fc.array(fc.tuple(fc.constantFrom('root', 'root.all.0', 'root.any.1', 'root.not', 'root.all.0.not', 'nonsense'), fc.integer({ min: NOW_MIN - 1e7, max: NOW_MAX })), { maxLength: 4 }),
  })
  .map(({ now, readings, statuses, event, holding }) => ({ now: new Date(now), readings, statuses, event, holdingSince: new Map(holding) }));

const RUNS = { numRuns: 300 };

describe('condition evaluator laws', () => {
  it('the generated trees are valid: the schema accepts each and answers it unchanged', () => {
    fc.assert(
      fc.property(tree, (c) => {
        const parsed = conditionSchema.safeParse(c);
        expect(parsed.success).toBe(true);
        expect(parsed.data).toEqual(c);
      }),
      RUNS,
    );
  });

  it('the generators are not degenerate: trees and facts give both outcomes, leaves of every kind hold sometimes', () => {
    const samples = fc.sample(fc.tuple(tree, uniformFacts), { numRuns: 2000, seed: 42 });
    const outcomes = samples.map(([c, facts]) => evaluate(c, facts));
    expect(outcomes.filter(Boolean).length).toBeGreaterThan(200);
    expect(outcomes.filter((o) => !o).length).toBeGreaterThan(200);
    const leaves = fc.sample(fc.tuple(leaf, uniformFacts), { numRuns: 4000, seed: 7 });
    for (const type of ['reading', 'device_status', 'event', 'time'] as const) {
      expect(leaves.some(([l, facts]) => l.type === type && evaluate(l, facts)), `some ${type} leaf holds`).toBe(true);
      expect(leaves.some(([l, facts]) => l.type === type && !evaluate(l, facts)), `some ${type} leaf fails`).toBe(true);
    }
    expect(leaves.some(([l, facts]) => l.type === 'reading' && l.for_seconds !== undefined && evaluate(l, facts))).toBe(true);
  });

  it('evaluation never throws on a valid tree and always answers a boolean', () => {
    fc.assert(
      fc.property(tree, fc.oneof(anyFacts, uniformFacts), (c, facts) => {
        const parsed = conditionSchema.parse(c);
        expect(typeof evaluate(parsed, facts)).toBe('boolean');
      }),
      RUNS,
    );
  });

  it('double negation: not(not c) = c', () => {
    fc.assert(
      fc.property(tree, uniformFacts, (c, facts) => {
        expect(evaluate({ not: { not: c } }, facts)).toBe(evaluate(c, facts));
      }),
      RUNS,
    );
  });

  it('negation: not c = !c (for any facts, holding times by path included)', () => {
    fc.assert(
      fc.property(tree, anyFacts, (c, facts) => {
        // The path of c changes under not, so the holding times must not depend on paths.
        const uniform: Facts = { ...facts, holdingSince: new UniformHolding(facts.holdingSince.get('root')) };
        expect(evaluate({ not: c }, uniform)).toBe(!evaluate(c, uniform));
      }),
      RUNS,
    );
  });

  it('identities: all([]) is true and any([]) is false, whatever the facts', () => {
    fc.assert(
      fc.property(anyFacts, (facts) => {
        expect(evaluate({ all: [] }, facts)).toBe(true);
        expect(evaluate({ any: [] }, facts)).toBe(false);
        expect(evaluate({ not: { all: [] } }, facts)).toBe(false);
        expect(evaluate({ not: { any: [] } }, facts)).toBe(true);
      }),
    );
  });

  it('all is the conjunction and any the disjunction of the children', () => {
    fc.assert(
      fc.property(fc.array(tree, { maxLength: 5 }), uniformFacts, (xs, facts) => {
        const each = xs.map((x) => evaluate(x, facts));
        expect(evaluate({ all: xs }, facts)).toBe(each.every(Boolean));
        expect(evaluate({ any: xs }, facts)).toBe(each.some(Boolean));
      }),
      RUNS,
    );
  });

  it("De Morgan: not(all(xs)) = any(map not xs), and not(any(xs)) = all(map not xs)", () => {
    fc.assert(
      fc.property(fc.array(tree, { maxLength: 5 }), uniformFacts, (xs, facts) => {
        const negated = xs.map((x): Condition => ({ not: x }));
        expect(evaluate({ not: { all: xs } }, facts)).toBe(evaluate({ any: negated }, facts));
        expect(evaluate({ not: { any: xs } }, facts)).toBe(evaluate({ all: negated }, facts));
      }),
      RUNS,
    );
  });

  it('the order of children does not matter', () => {
    fc.assert(
      fc.property(fc.array(tree, { maxLength: 5 }), uniformFacts, (xs, facts) => {
        const reversed = [...xs].reverse();
        expect(evaluate({ all: reversed }, facts)).toBe(evaluate({ all: xs }, facts));
        expect(evaluate({ any: reversed }, facts)).toBe(evaluate({ any: xs }, facts));
      }),
      RUNS,
    );
  });

  it('the AND / OR alias parses to the canonical tree and evaluates the same, for any facts', () => {
    fc.assert(
      fc.property(tree, fc.boolean(), anyFacts, (c, lowerCase, facts) => {
        const alias = conditionSchema.parse(toAlias(c, lowerCase));
        expect(alias).toEqual(c);
        // Same tree, same leaf paths: the holding times by path apply alike.
        expect(evaluate(alias, facts)).toBe(evaluate(c, facts));
      }),
      RUNS,
    );
  });

  it('a leaf is never true about a device the facts know nothing of (reading, status)', () => {
    fc.assert(
      fc.property(fc.oneof(readingLeaf, statusLeaf), uniformFacts, (l, facts) => {
        const blank: Facts = { ...facts, readings: new Map(), statuses: new Map() };
        expect(evaluate(l, blank)).toBe(false);
      }),
    );
  });
});
