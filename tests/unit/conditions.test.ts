import { describe, expect, it } from 'vitest';
import {
  compare,
  conditionSchema,
  depthOf,
  evaluate,
  inTimeWindow,
  isTooDeep,
  leavesOf,
  localTime,
  readingKey,
  type Condition,
  type Facts,
  type ReadingLeaf,
  type TimeLeaf,
} from '../../src/domain/conditions.js';

/** Facts with only what a test names; everything else empty. */
function facts(over: Partial<Facts> & { values?: Record<string, number> } = {}): Facts {
  const { values, ...rest } = over;
  return {
    now: new Date('2026-03-02T12:00:00.000Z'),
    readings: new Map(Object.entries(values ?? {})),
    statuses: new Map(),
    holdingSince: new Map(),
    event: null,
    ...rest,
  };
}

const temp = (operator: ReadingLeaf['operator'], value: number, extra: Partial<ReadingLeaf> = {}): ReadingLeaf => ({ type: 'reading', device_id: 'd1', sensor_type: 'temperature', operator, value, ...extra });
const withTemp = (value: number, over: Partial<Facts> = {}) => facts({ values: { [readingKey('d1', 'temperature')]: value }, ...over });
const time = (leaf: Omit<TimeLeaf, 'type'>): TimeLeaf => ({ type: 'time', ...leaf });
const at = (iso: string): Date => new Date(iso);

describe('comparison operators', () => {
  const cases: Array<[ReadingLeaf['operator'], number, number, boolean]> = [
    ['>', 31, 30, true],
    ['>', 30, 30, false],
    ['>', 29, 30, false],
    ['>=', 30, 30, true],
    ['>=', 29.999, 30, false],
    ['<', 29, 30, true],
    ['<', 30, 30, false],
    ['<=', 30, 30, true],
    ['<=', 30.001, 30, false],
    ['==', 30, 30, true],
    ['==', 30.5, 30, false],
    ['!=', 30.5, 30, true],
    ['!=', 30, 30, false],
    ['>', -1, -2, true],
    ['<', -3, -2, true],
  ];
  it.each(cases)('%s: %d against %d is %s', (operator, value, threshold, expected) => {
    expect(compare(value, operator, threshold)).toBe(expected);
    expect(evaluate(temp(operator, threshold), withTemp(value))).toBe(expected);
  });

  it('a reading leaf without a known value is false whatever the operator (even != and <)', () => {
    for (const operator of ['>', '>=', '<', '<=', '==', '!='] as const) expect(evaluate(temp(operator, 0), facts())).toBe(false);
    // A value of another sensor or device does not count.
    expect(evaluate(temp('>', 0), facts({ values: { [readingKey('d1', 'humidity')]: 50, [readingKey('d2', 'temperature')]: 50 } }))).toBe(false);
  });
});

describe('leaves other than readings', () => {
  it('device_status is true only for the exact status of that device', () => {
    const leaf: Condition = { type: 'device_status', device_id: 'd1', status: 'offline' };
    expect(evaluate(leaf, facts({ statuses: new Map([['d1', 'offline']]) }))).toBe(true);
    expect(evaluate(leaf, facts({ statuses: new Map([['d1', 'online']]) }))).toBe(false);
    expect(evaluate(leaf, facts({ statuses: new Map([['d2', 'offline']]) }))).toBe(false);
    expect(evaluate(leaf, facts())).toBe(false);
  });

  it('an event leaf is true only at the moment of a matching event (type, and device when given)', () => {
    const anyDevice: Condition = { type: 'event', event_type: 'device.went_offline' };
    const oneDevice: Condition = { type: 'event', event_type: 'device.went_offline', device_id: 'd1' };
    expect(evaluate(anyDevice, facts({ event: { type: 'device.went_offline', device_id: 'd9' } }))).toBe(true);
    expect(evaluate(oneDevice, facts({ event: { type: 'device.went_offline', device_id: 'd9' } }))).toBe(false);
    expect(evaluate(oneDevice, facts({ event: { type: 'device.went_offline', device_id: 'd1' } }))).toBe(true);
    expect(evaluate(oneDevice, facts({ event: { type: 'device.came_online', device_id: 'd1' } }))).toBe(false);
    expect(evaluate(anyDevice, facts({ event: null }))).toBe(false);
  });
});

describe('for_seconds (evaluated from holdingSince at the leaf path)', () => {
  const now = at('2026-03-02T12:00:00.000Z');
  const leaf = temp('>', 30, { for_seconds: 30 });

  it('is false until the comparison has held for the whole window, true from then on', () => {
    const since = (ms: number) => new Map([['root', now.getTime() - ms]]);
    expect(evaluate(leaf, withTemp(35, { now, holdingSince: since(29_999) }))).toBe(false);
    expect(evaluate(leaf, withTemp(35, { now, holdingSince: since(30_000) }))).toBe(true);
    expect(evaluate(leaf, withTemp(35, { now, holdingSince: since(3_600_000) }))).toBe(true);
  });

  it('is false without a holding time, and false when the comparison no longer holds however long it held', () => {
    expect(evaluate(leaf, withTemp(35, { now }))).toBe(false);
    expect(evaluate(leaf, withTemp(25, { now, holdingSince: new Map([['root', now.getTime() - 60_000]]) }))).toBe(false);
  });

  it('looks the holding time up by the leaf path inside a tree', () => {
    const tree: Condition = { all: [{ type: 'device_status', device_id: 'd1', status: 'online' }, leaf] };
    const statuses = new Map([['d1', 'online']]);
    expect(evaluate(tree, withTemp(35, { now, statuses, holdingSince: new Map([['root', now.getTime() - 60_000]]) }))).toBe(false);
    expect(evaluate(tree, withTemp(35, { now, statuses, holdingSince: new Map([['root.all.1', now.getTime() - 60_000]]) }))).toBe(true);
  });
});

describe('time windows', () => {
  it('after is inclusive and before exclusive (UTC by default)', () => {
    const leaf = time({ after: '08:00', before: '17:30' });
    expect(inTimeWindow(leaf, at('2026-03-02T07:59:59.999Z'))).toBe(false);
    expect(inTimeWindow(leaf, at('2026-03-02T08:00:00.000Z'))).toBe(true);
    expect(inTimeWindow(leaf, at('2026-03-02T12:00:00.000Z'))).toBe(true);
    expect(inTimeWindow(leaf, at('2026-03-02T17:29:59.000Z'))).toBe(true);
    expect(inTimeWindow(leaf, at('2026-03-02T17:30:00.000Z'))).toBe(false);
  });

  it('only after, or only before, bounds one side of the day', () => {
    expect(inTimeWindow(time({ after: '20:00' }), at('2026-03-02T23:59:00.000Z'))).toBe(true);
    expect(inTimeWindow(time({ after: '20:00' }), at('2026-03-02T00:10:00.000Z'))).toBe(false);
    expect(inTimeWindow(time({ before: '06:00' }), at('2026-03-02T00:10:00.000Z'))).toBe(true);
    expect(inTimeWindow(time({ before: '06:00' }), at('2026-03-02T06:00:00.000Z'))).toBe(false);
  });

  it('a window whose after is later than its before spans midnight', () => {
    const night = time({ after: '22:00', before: '06:00' });
    expect(inTimeWindow(night, at('2026-03-02T21:59:00.000Z'))).toBe(false);
    expect(inTimeWindow(night, at('2026-03-02T22:00:00.000Z'))).toBe(true);
    expect(inTimeWindow(night, at('2026-03-02T23:59:00.000Z'))).toBe(true);
    expect(inTimeWindow(night, at('2026-03-03T00:00:00.000Z'))).toBe(true);
    expect(inTimeWindow(night, at('2026-03-03T05:59:00.000Z'))).toBe(true);
    expect(inTimeWindow(night, at('2026-03-03T06:00:00.000Z'))).toBe(false);
    expect(inTimeWindow(night, at('2026-03-03T12:00:00.000Z'))).toBe(false);
  });

  it('days of the week are the local days (2026-03-01 is a Sunday)', () => {
    expect(localTime(at('2026-03-01T12:00:00.000Z'), 'UTC').day).toBe('sun');
    expect(localTime(at('2026-03-02T12:00:00.000Z'), 'UTC').day).toBe('mon');
    const weekdays = time({ days: ['mon', 'tue', 'wed', 'thu', 'fri'] });
    expect(inTimeWindow(weekdays, at('2026-03-01T12:00:00.000Z'))).toBe(false); // Sunday
    expect(inTimeWindow(weekdays, at('2026-03-02T12:00:00.000Z'))).toBe(true); // Monday
    expect(inTimeWindow(weekdays, at('2026-03-07T12:00:00.000Z'))).toBe(false); // Saturday
    // Days and hours together: Monday mornings only.
    const mondayMorning = time({ days: ['mon'], after: '06:00', before: '12:00' });
    expect(inTimeWindow(mondayMorning, at('2026-03-02T09:00:00.000Z'))).toBe(true);
    expect(inTimeWindow(mondayMorning, at('2026-03-02T13:00:00.000Z'))).toBe(false);
    expect(inTimeWindow(mondayMorning, at('2026-03-03T09:00:00.000Z'))).toBe(false);
  });

  it('the timezone decides the local hour and the local day', () => {
    // 23:30 UTC on Sunday 1 March is 00:30 on Monday 2 March in Paris (UTC+1 in winter).
    const sundayLate = at('2026-03-01T23:30:00.000Z');
    expect(localTime(sundayLate, 'Europe/Paris')).toEqual({ day: 'mon', minutes: 30 });
    expect(inTimeWindow(time({ days: ['mon'] }), sundayLate)).toBe(false);
    expect(inTimeWindow(time({ days: ['mon'], timezone: 'Europe/Paris' }), sundayLate)).toBe(true);
    // New York is UTC-5 in winter: 13:00 UTC is 08:00 there.
    const morningNY = time({ after: '08:00', before: '09:00', timezone: 'America/New_York' });
    expect(inTimeWindow(morningNY, at('2026-01-15T13:00:00.000Z'))).toBe(true);
    expect(inTimeWindow(morningNY, at('2026-01-15T08:30:00.000Z'))).toBe(false);
    // Kolkata has a half-hour offset (UTC+5:30).
    expect(localTime(at('2026-01-15T00:00:00.000Z'), 'Asia/Kolkata').minutes).toBe(5 * 60 + 30);
  });

  it('follows daylight saving time: a local window stays at the same wall-clock hours while its UTC offset moves', () => {
    const parisMorning = time({ after: '08:00', before: '09:00', timezone: 'Europe/Paris' });
    const utcMorning = time({ after: '08:00', before: '09:00' });
    // Winter (UTC+1): 08:30 in Paris is 07:30 UTC.
    expect(inTimeWindow(parisMorning, at('2026-01-15T07:30:00.000Z'))).toBe(true);
    expect(inTimeWindow(parisMorning, at('2026-01-15T08:30:00.000Z'))).toBe(false);
    // Summer (UTC+2): 08:30 in Paris is 06:30 UTC; 07:30 UTC is already 09:30 there.
    expect(inTimeWindow(parisMorning, at('2026-07-15T06:30:00.000Z'))).toBe(true);
    expect(inTimeWindow(parisMorning, at('2026-07-15T07:30:00.000Z'))).toBe(false);
    // The UTC window does not move.
    expect(inTimeWindow(utcMorning, at('2026-01-15T08:30:00.000Z'))).toBe(true);
    expect(inTimeWindow(utcMorning, at('2026-07-15T08:30:00.000Z'))).toBe(true);
    // Around the switch (last Sunday of March 2026, 29 March, 01:00 UTC): the local hour jumps from 02:00 to 03:00.
    expect(localTime(at('2026-03-29T00:59:00.000Z'), 'Europe/Paris').minutes).toBe(1 * 60 + 59);
    expect(localTime(at('2026-03-29T01:00:00.000Z'), 'Europe/Paris').minutes).toBe(3 * 60);
    const earlyHours = time({ after: '02:00', before: '03:00', timezone: 'Europe/Paris' });
    expect(inTimeWindow(earlyHours, at('2026-03-29T00:59:00.000Z'))).toBe(false);
    expect(inTimeWindow(earlyHours, at('2026-03-29T01:00:00.000Z'))).toBe(false);
    expect(inTimeWindow(earlyHours, at('2026-03-30T01:30:00.000Z'))).toBe(false); // 03:30 local
    expect(inTimeWindow(earlyHours, at('2026-03-30T00:30:00.000Z'))).toBe(true); // 02:30 local
  });

  it('a midnight-spanning window in a timezone', () => {
    const nightParis = time({ after: '22:00', before: '06:00', timezone: 'Europe/Paris' });
    expect(inTimeWindow(nightParis, at('2026-01-15T21:30:00.000Z'))).toBe(true); // 22:30 local
    expect(inTimeWindow(nightParis, at('2026-01-15T20:30:00.000Z'))).toBe(false); // 21:30 local
    expect(inTimeWindow(nightParis, at('2026-01-16T04:59:00.000Z'))).toBe(true); // 05:59 local
    expect(inTimeWindow(nightParis, at('2026-01-16T05:00:00.000Z'))).toBe(false); // 06:00 local
    expect(inTimeWindow(nightParis, at('2026-07-16T03:59:00.000Z'))).toBe(true); // 05:59 local in summer
    expect(inTimeWindow(nightParis, at('2026-07-16T04:00:00.000Z'))).toBe(false); // 06:00 local in summer
  });

  it('a time leaf is evaluated against facts.now', () => {
    const leaf: Condition = time({ after: '08:00', before: '09:00' });
    expect(evaluate(leaf, facts({ now: at('2026-03-02T08:15:00.000Z') }))).toBe(true);
    expect(evaluate(leaf, facts({ now: at('2026-03-02T09:15:00.000Z') }))).toBe(false);
  });
});

describe('parsing', () => {
  const leafA = temp('>', 30);
  const leafB: Condition = { type: 'device_status', device_id: 'd1', status: 'online' };

  it('accepts the canonical tree as it is', () => {
    const tree: Condition = { all: [leafA, { any: [leafB, { not: { type: 'event', event_type: 'device.went_offline' } }] }] };
    expect(conditionSchema.parse(tree)).toEqual(tree);
  });

  it('turns the operator/conditions alias into all/any, at any depth and in either case', () => {
    expect(conditionSchema.parse({ operator: 'AND', conditions: [leafA, leafB] })).toEqual({ all: [leafA, leafB] });
    expect(conditionSchema.parse({ operator: 'OR', conditions: [leafA, leafB] })).toEqual({ any: [leafA, leafB] });
    expect(conditionSchema.parse({ operator: 'and', conditions: [] })).toEqual({ all: [] });
    // An empty any (or OR) could never hold.
    expect(conditionSchema.safeParse({ operator: 'or', conditions: [] }).success).toBe(false);
    expect(conditionSchema.safeParse({ any: [] }).success).toBe(false);
    expect(conditionSchema.parse({ not: { operator: 'AND', conditions: [{ operator: 'OR', conditions: [leafA] }] } })).toEqual({ not: { all: [{ any: [leafA] }] } });
  });

  it('refuses bad operators, unknown leaf types, non-numbers, bad HH:MM, bad days, bad time zones, and empty time leaves', () => {
    const bad: unknown[] = [
      { ...leafA, operator: '=>' },
      { ...leafA, operator: 'gt' },
      { ...leafA, value: '30' },
      { ...leafA, value: Number.POSITIVE_INFINITY },
      { ...leafA, for_seconds: 0 },
      { ...leafA, for_seconds: 1.5 },
      { type: 'humidity', device_id: 'd1' },
      { type: 'device_status', device_id: 'd1', status: 'asleep' },
      { type: 'time', after: '24:00' },
      { type: 'time', after: '8:00' },
      { type: 'time', before: '12:60' },
      { type: 'time', days: ['monday'] },
      { type: 'time', days: [] },
      { type: 'time', after: '08:00', timezone: 'Mars/Olympus_Mons' },
      { type: 'time' },
      { operator: 'XOR', conditions: [leafA] },
      { all: leafA },
      { all: [leafA], any: [leafB] },
      { not: [leafA] },
      {},
      null,
      'temperature > 30',
    ];
    for (const input of bad) expect(conditionSchema.safeParse(input).success, JSON.stringify(input)).toBe(false);
  });

  it('knows every leaf and its path, and the depth of a tree', () => {
    const tree: Condition = { all: [leafA, { not: { any: [leafB, leafA] } }] };
    expect(leavesOf(tree).map((l) => l.path)).toEqual(['root.all.0', 'root.all.1.not.any.0', 'root.all.1.not.any.1']);
    expect(leavesOf(leafA)).toEqual([{ path: 'root', leaf: leafA }]);
    expect(depthOf(leafA)).toBe(1);
    expect(depthOf(tree)).toBe(4);
    let deep: Condition = leafA;
    for (let i = 0; i < 7; i++) deep = { not: deep };
    expect(isTooDeep(deep)).toBe(false);
    expect(isTooDeep({ not: deep })).toBe(true);
  });
});
