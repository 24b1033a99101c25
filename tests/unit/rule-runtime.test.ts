import { describe, expect, it } from 'vitest';
import { readingKey, type Condition, type Facts } from '../../src/domain/conditions.js';
import { actionSchedule, gate, initialRuntime, MAX_FIRINGS_PER_MINUTE, observe, trackHolding, type RuleRuntime, type Verdict } from '../../src/domain/rule.js';

const T0 = Date.parse('2026-03-02T12:00:00.000Z');
const SECOND = 1000;
const MINUTE = 60 * SECOND;

const hot: Condition = { type: 'reading', device_id: 'd1', sensor_type: 'temperature', operator: '>', value: 30 };
const hotFor30: Condition = { type: 'reading', device_id: 'd1', sensor_type: 'temperature', operator: '>', value: 30, for_seconds: 30 };

function facts(value: number | undefined, at: number, event: Facts['event'] = { type: 'readings.recorded', device_id: 'd1' }): Facts {
  const readings = new Map<string, number>();
  if (value !== undefined) readings.set(readingKey('d1', 'temperature'), value);
  return { now: new Date(at), readings, statuses: new Map(), holdingSince: new Map(), event };
}

/** Feeds observations in order, the way the engine does, and answers each verdict kind. */
function run(condition: Condition, cooldownSeconds: number, steps: Array<{ value?: number; at: number; event?: Facts['event'] }>, start: RuleRuntime = initialRuntime()) {
  let runtime = start;
  const verdicts: Verdict['kind'][] = [];
  for (const step of steps) {
    const observed = observe(condition, cooldownSeconds, runtime, facts(step.value, step.at, step.event === undefined ? { type: 'readings.recorded', device_id: 'd1' } : step.event));
    runtime = observed.runtime;
    verdicts.push(observed.verdict.kind);
  }
  return { verdicts, runtime };
}

describe('observe(): firing on the rising edge', () => {
  it('fires once when a threshold is crossed, not again per reading while it stays true', () => {
    const { verdicts } = run(hot, 0, [25, 35, 36, 40, 31].map((value, i) => ({ value, at: T0 + i * SECOND })));
    expect(verdicts).toEqual(['quiet', 'fire', 'quiet', 'quiet', 'quiet']);
  });

  it('fires again after the condition went false and true again', () => {
    const { verdicts } = run(hot, 0, [25, 35, 36, 20, 40, 41, 30, 31].map((value, i) => ({ value, at: T0 + i * SECOND })));
    expect(verdicts).toEqual(['quiet', 'fire', 'quiet', 'quiet', 'fire', 'quiet', 'quiet', 'fire']);
  });

  it('fires on the very first observation when the condition already holds', () => {
    expect(run(hot, 0, [{ value: 50, at: T0 }]).verdicts).toEqual(['fire']);
  });

  it('remembers whether the conditions held in the runtime it answers', () => {
    const { runtime } = run(hot, 0, [{ value: 35, at: T0 }]);
    expect(runtime.was_true).toBe(true);
    expect(runtime.last_fired).toBe(T0);
    expect(runtime.recent).toEqual([T0]);
    expect(run(hot, 0, [{ value: 20, at: T0 }], runtime).runtime.was_true).toBe(false);
  });

  it('an event trigger fires at every matching event: it is true only at that moment', () => {
    const onReading: Condition = { type: 'event', event_type: 'readings.recorded', device_id: 'd1' };
    const { verdicts, runtime } = run(onReading, 0, [0, 1, 2].map((i) => ({ value: 20, at: T0 + i * SECOND })));
    expect(verdicts).toEqual(['fire', 'fire', 'fire']);
    expect(runtime.was_true).toBe(false);
    // An event of another device does not match.
    expect(run(onReading, 0, [{ value: 20, at: T0, event: { type: 'readings.recorded', device_id: 'd2' } }]).verdicts).toEqual(['quiet']);
  });

  it('is pure: the runtime given is not changed', () => {
    const runtime = initialRuntime();
    const frozen = JSON.stringify(runtime);
    observe(hot, 0, runtime, facts(35, T0));
    expect(JSON.stringify(runtime)).toBe(frozen);
  });
});

describe('observe(): for_seconds', () => {
  it('fires only once the comparison has held for the whole window, and only once', () => {
    const steps = [
      { value: 35, at: T0 }, // starts holding
      { value: 36, at: T0 + 10 * SECOND },
      { value: undefined, at: T0 + 29 * SECOND, event: null }, // a tick
      { value: undefined, at: T0 + 30 * SECOND, event: null }, // 30 s: fires
      { value: undefined, at: T0 + 45 * SECOND, event: null },
      { value: 37, at: T0 + 60 * SECOND },
    ].map((s) => ({ ...s, value: s.value ?? 36 }));
    const { verdicts } = run(hotFor30, 0, steps);
    expect(verdicts).toEqual(['quiet', 'quiet', 'quiet', 'fire', 'quiet', 'quiet']);
  });

  it('a dip below the threshold restarts the window', () => {
    const { verdicts, runtime } = run(hotFor30, 0, [
      { value: 35, at: T0 },
      { value: 25, at: T0 + 20 * SECOND }, // breaks it
      { value: 35, at: T0 + 25 * SECOND }, // holds again from here
      { value: 35, at: T0 + 40 * SECOND, event: null }, // 40 s after the first, 15 s after the restart
      { value: 35, at: T0 + 54 * SECOND, event: null },
      { value: 35, at: T0 + 55 * SECOND, event: null }, // 30 s after the restart
    ]);
    expect(verdicts).toEqual(['quiet', 'quiet', 'quiet', 'quiet', 'quiet', 'fire']);
    expect(runtime.holding).toEqual({ root: T0 + 25 * SECOND });
  });

  it('trackHolding keeps the earliest time each for_seconds leaf has held, by path, and forgets leaves that stopped', () => {
    const tree: Condition = { all: [hotFor30, { type: 'reading', device_id: 'd1', sensor_type: 'temperature', operator: '<', value: 100, for_seconds: 5 }, hot] };
    const first = trackHolding(tree, initialRuntime(), facts(35, T0));
    expect(first).toEqual({ 'root.all.0': T0, 'root.all.1': T0 });
    const second = trackHolding(tree, { ...initialRuntime(), holding: first }, facts(40, T0 + 10 * SECOND));
    expect(second).toEqual({ 'root.all.0': T0, 'root.all.1': T0 });
    const third = trackHolding(tree, { ...initialRuntime(), holding: second }, facts(20, T0 + 20 * SECOND));
    expect(third).toEqual({ 'root.all.1': T0 });
  });

  it('a window carried over in a persisted runtime (a restart) completes on time', () => {
    const before = run(hotFor30, 0, [{ value: 35, at: T0 }, { value: 35, at: T0 + 15 * SECOND, event: null }]);
    const restored = JSON.parse(JSON.stringify(before.runtime)) as RuleRuntime;
    expect(run(hotFor30, 0, [{ value: 35, at: T0 + 29 * SECOND, event: null }], restored).verdicts).toEqual(['quiet']);
    expect(run(hotFor30, 0, [{ value: 35, at: T0 + 30 * SECOND, event: null }], restored).verdicts).toEqual(['fire']);
  });
});

describe('cooldown', () => {
  it('holds back a firing within cooldown_seconds of the last, and lets one through after', () => {
    // Crossing at 0 s, again at 20 s (within 60 s: held back), again at 70 s (fires).
    const { verdicts } = run(hot, 60, [
      { value: 35, at: T0 },
      { value: 20, at: T0 + 10 * SECOND },
      { value: 35, at: T0 + 20 * SECOND },
      { value: 20, at: T0 + 30 * SECOND },
      { value: 35, at: T0 + 70 * SECOND },
    ]);
    expect(verdicts).toEqual(['fire', 'quiet', 'quiet', 'quiet', 'fire']);
  });

  it('a crossing held back by the cooldown does not fire later while the condition stays true', () => {
    const { verdicts } = run(hot, 60, [
      { value: 35, at: T0 },
      { value: 20, at: T0 + 10 * SECOND },
      { value: 35, at: T0 + 20 * SECOND }, // held back
      { value: 36, at: T0 + 90 * SECOND }, // still true, no new edge
    ]);
    expect(verdicts).toEqual(['fire', 'quiet', 'quiet', 'quiet']);
  });

  it('gate() answers quiet exactly until cooldown_seconds have passed', () => {
    const runtime: RuleRuntime = { ...initialRuntime(), last_fired: T0, recent: [T0] };
    expect(gate(30, runtime, T0 + 29_999).verdict.kind).toBe('quiet');
    expect(gate(30, runtime, T0 + 30_000).verdict.kind).toBe('fire');
    expect(gate(0, runtime, T0).verdict.kind).toBe('fire');
    // A quiet verdict leaves the runtime as it was.
    expect(gate(30, runtime, T0 + 1).runtime).toBe(runtime);
  });
});

describe('gate(): the runaway limit', () => {
  it(`lets ${MAX_FIRINGS_PER_MINUTE} firings through in a minute, then throttles, recording once a minute`, () => {
    let runtime = initialRuntime();
    const verdicts: Verdict[] = [];
    for (let i = 0; i < MAX_FIRINGS_PER_MINUTE + 5; i++) {
      const gated = gate(0, runtime, T0 + i * SECOND);
      runtime = gated.runtime;
      verdicts.push(gated.verdict);
    }
    expect(verdicts.slice(0, MAX_FIRINGS_PER_MINUTE).every((v) => v.kind === 'fire')).toBe(true);
    const held = verdicts.slice(MAX_FIRINGS_PER_MINUTE);
    expect(held.every((v) => v.kind === 'throttled')).toBe(true);
    expect(held.map((v) => (v.kind === 'throttled' ? v.record : null))).toEqual([true, false, false, false, false]);
    expect(held[0]).toEqual({ kind: 'throttled', firings: MAX_FIRINGS_PER_MINUTE, record: true });
    expect(runtime.throttled_at).toBe(T0 + MAX_FIRINGS_PER_MINUTE * SECOND);
    expect(runtime.recent).toHaveLength(MAX_FIRINGS_PER_MINUTE);
  });

  it('lets firings through again once the oldest ones are a minute old, and records a new throttling only a minute after the last', () => {
    let runtime = initialRuntime();
    for (let i = 0; i < MAX_FIRINGS_PER_MINUTE; i++) runtime = gate(0, runtime, T0 + i * SECOND).runtime;
    const throttled = gate(0, runtime, T0 + 30 * SECOND);
    expect(throttled.verdict).toEqual({ kind: 'throttled', firings: MAX_FIRINGS_PER_MINUTE, record: true });
    runtime = throttled.runtime;
    // At 60 s the first firing (at 0 s) has left the window: one more goes through.
    const freed = gate(0, runtime, T0 + MINUTE);
    expect(freed.verdict.kind).toBe('fire');
    runtime = freed.runtime;
    // Full again; the last record was at 30 s, so no new record until 90 s.
    const again = gate(0, runtime, T0 + MINUTE + 500);
    expect(again.verdict).toMatchObject({ kind: 'throttled', record: false });
    runtime = again.runtime;
    expect(runtime.throttled_at).toBe(T0 + 30 * SECOND);
    // Still full (recent firings at 85 s): 1 ms before 90 s no record, at 90 s a new one.
    const busy: RuleRuntime = { ...runtime, recent: Array.from({ length: MAX_FIRINGS_PER_MINUTE }, () => T0 + 85 * SECOND) };
    expect(gate(0, busy, T0 + 90 * SECOND - 1).verdict).toMatchObject({ kind: 'throttled', record: false });
    const recorded = gate(0, busy, T0 + 90 * SECOND);
    expect(recorded.verdict).toEqual({ kind: 'throttled', firings: MAX_FIRINGS_PER_MINUTE, record: true });
    expect(recorded.runtime.throttled_at).toBe(T0 + 90 * SECOND);
  });

  it('the cooldown is checked before the limit: a cooled-down rule is quiet, not throttled', () => {
    const full: RuleRuntime = { ...initialRuntime(), last_fired: T0, recent: Array.from({ length: MAX_FIRINGS_PER_MINUTE }, (_, i) => T0 - i) };
    expect(gate(60, full, T0 + SECOND).verdict.kind).toBe('quiet');
    expect(gate(0, full, T0 + SECOND).verdict.kind).toBe('throttled');
  });

  it('observe() passes rising edges through the same limit', () => {
    const onReading: Condition = { type: 'event', event_type: 'readings.recorded', device_id: 'd1' };
    const { verdicts } = run(onReading, 0, Array.from({ length: 12 }, (_, i) => ({ value: 1, at: T0 + i * SECOND })));
    expect(verdicts.filter((v) => v === 'fire')).toHaveLength(MAX_FIRINGS_PER_MINUTE);
    expect(verdicts.slice(MAX_FIRINGS_PER_MINUTE)).toEqual(['throttled', 'throttled']);
  });
});

describe('actionSchedule(): when each action is due', () => {
  it('adds the delays up, since actions run in order', () => {
    expect(actionSchedule([{}, { delay_seconds: 60 }, {}, { delay_seconds: 30 }, { delay_seconds: 0 }], T0)).toEqual([T0, T0 + 60_000, T0 + 60_000, T0 + 90_000, T0 + 90_000]);
  });

  it('without delays every action is due at the firing; an empty list has nothing due', () => {
    expect(actionSchedule([{}, {}, { delay_seconds: undefined }], T0)).toEqual([T0, T0, T0]);
    expect(actionSchedule([], T0)).toEqual([]);
  });

  it('a first action with a delay is due after it', () => {
    expect(actionSchedule([{ delay_seconds: 5 }, { delay_seconds: 5 }], T0)).toEqual([T0 + 5_000, T0 + 10_000]);
  });
});
