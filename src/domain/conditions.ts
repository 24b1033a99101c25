import { z } from 'zod';
import { strictObject } from './strict.js';

/**
 * The rule condition language: a tree of all / any / not (also {operator: AND|OR,
 * conditions}) over leaves on readings, device status, events and time windows.
 * Parsing is zod; evaluation is pure, given the facts and the time.
 */
export const comparisonOperators = ['>', '>=', '<', '<=', '==', '!='] as const;
export const weekdays = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
const hhmm = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'HH:MM, 00:00 to 23:59');

export const timezoneSchema = z.string().refine((tz) => {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}, 'an IANA time zone such as Europe/Paris');

export const readingLeaf = strictObject({
  type: z.literal('reading'),
  device_id: z.string().min(1).max(64),
  sensor_type: z.string().min(1).max(64),
  operator: z.enum(comparisonOperators),
  value: z.number(),
  for_seconds: z.number().int().min(1).max(7 * 24 * 3600).optional(),
});
export const statusLeaf = strictObject({ type: z.literal('device_status'), device_id: z.string().min(1).max(64), status: z.enum(['online', 'offline', 'error', 'maintenance']) });
export const eventLeaf = strictObject({ type: z.literal('event'), event_type: z.string().min(1).max(64), device_id: z.string().min(1).max(64).optional() });
export const timeLeaf = strictObject({ type: z.literal('time'), after: hhmm.optional(), before: hhmm.optional(), days: z.array(z.enum(weekdays)).min(1).max(7).optional(), timezone: timezoneSchema.optional() })
  .refine((leaf) => leaf.after !== undefined || leaf.before !== undefined || leaf.days !== undefined, 'a time condition needs after, before or days');

export type ReadingLeaf = z.infer<typeof readingLeaf>;
export type StatusLeaf = z.infer<typeof statusLeaf>;
export type EventLeaf = z.infer<typeof eventLeaf>;
export type TimeLeaf = z.infer<typeof timeLeaf>;
export type Leaf = ReadingLeaf | StatusLeaf | EventLeaf | TimeLeaf;
export type Condition = Leaf | { all: Condition[] } | { any: Condition[] } | { not: Condition };

const MAX_DEPTH = 8;
const MAX_CHILDREN = 50;

/** Accepts the operator/conditions alias and answers the canonical tree. */
export const conditionSchema: z.ZodType<Condition> = z.lazy(() =>
  z.union([
    strictObject({ all: z.array(conditionSchema).max(MAX_CHILDREN) }),
    // An empty any can never hold: a rule built on it could never fire.
    strictObject({ any: z.array(conditionSchema).min(1, 'an empty any never holds').max(MAX_CHILDREN) }),
    strictObject({ not: conditionSchema }),
    strictObject({ operator: z.enum(['AND', 'OR', 'and', 'or']), conditions: z.array(conditionSchema).max(MAX_CHILDREN) })
      .refine((alias) => alias.operator.toUpperCase() === 'AND' || alias.conditions.length > 0, 'an empty OR never holds')
      .transform((alias): Condition => (alias.operator.toUpperCase() === 'AND' ? { all: alias.conditions } : { any: alias.conditions })),
    z.discriminatedUnion('type', [readingLeaf, statusLeaf, eventLeaf, timeLeaf]),
  ]),
) as z.ZodType<Condition>;

export const depthOf = (condition: Condition): number =>
  'all' in condition ? 1 + Math.max(0, ...condition.all.map(depthOf)) : 'any' in condition ? 1 + Math.max(0, ...condition.any.map(depthOf)) : 'not' in condition ? 1 + depthOf(condition.not) : 1;

export const isTooDeep = (condition: Condition): boolean => depthOf(condition) > MAX_DEPTH;

/** Every leaf, with its path in the tree (a stable key for per-leaf state such as for_seconds). */
export function leavesOf(condition: Condition, path = 'root'): Array<{ path: string; leaf: Leaf }> {
  if ('all' in condition) return condition.all.flatMap((c, i) => leavesOf(c, `${path}.all.${i}`));
  if ('any' in condition) return condition.any.flatMap((c, i) => leavesOf(c, `${path}.any.${i}`));
  if ('not' in condition) return leavesOf(condition.not, `${path}.not`);
  return [{ path, leaf: condition }];
}

/** What a condition is evaluated against. */
export interface Facts {
  now: Date;
  /** Latest value per `${device_id}:${sensor_type}`. */
  readings: ReadonlyMap<string, number>;
  /** Status per device id. */
  statuses: ReadonlyMap<string, string>;
  /** Since when (ms) each reading leaf, by path, has held; for for_seconds. */
  holdingSince: ReadonlyMap<string, number>;
  /** The event being processed, if any: event leaves are true only at its moment. */
  event: { type: string; device_id: string | null } | null;
}

export const readingKey = (deviceId: string, sensorType: string): string => `${deviceId}:${sensorType}`;

export function compare(value: number, operator: ReadingLeaf['operator'], threshold: number): boolean {
  switch (operator) {
    case '>':
      return value > threshold;
    case '>=':
      return value >= threshold;
    case '<':
      return value < threshold;
    case '<=':
      return value <= threshold;
    case '==':
      return value === threshold;
    case '!=':
      return value !== threshold;
  }
}

/** Whether a reading leaf's comparison holds now, ignoring for_seconds. */
export function readingHolds(leaf: ReadingLeaf, facts: Pick<Facts, 'readings'>): boolean {
  const value = facts.readings.get(readingKey(leaf.device_id, leaf.sensor_type));
  return value !== undefined && compare(value, leaf.operator, leaf.value);
}

/** Evaluates a tree; never throws on a valid tree. all([]) is true, any([]) is false. */
export function evaluate(condition: Condition, facts: Facts, path = 'root'): boolean {
  if ('all' in condition) return condition.all.every((c, i) => evaluate(c, facts, `${path}.all.${i}`));
  if ('any' in condition) return condition.any.some((c, i) => evaluate(c, facts, `${path}.any.${i}`));
  if ('not' in condition) return !evaluate(condition.not, facts, `${path}.not`);
  return evaluateLeaf(condition, facts, path);
}

function evaluateLeaf(leaf: Leaf, facts: Facts, path: string): boolean {
  switch (leaf.type) {
    case 'reading': {
      if (!readingHolds(leaf, facts)) return false;
      if (leaf.for_seconds === undefined) return true;
      const since = facts.holdingSince.get(path);
      return since !== undefined && facts.now.getTime() - since >= leaf.for_seconds * 1000;
    }
    case 'device_status':
      return facts.statuses.get(leaf.device_id) === leaf.status;
    case 'event':
      return facts.event !== null && facts.event.type === leaf.event_type && (leaf.device_id === undefined || leaf.device_id === facts.event.device_id);
    case 'time':
      return inTimeWindow(leaf, facts.now);
  }
}

/** One formatter per zone: building one costs a hundred times more than formatting with it. Zones are validated, so few. */
const formatters = new Map<string, Intl.DateTimeFormat>();
function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-US', { timeZone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

/** The local weekday and minute of the day in a time zone. */
export function localTime(now: Date, timeZone: string): { day: (typeof weekdays)[number]; minutes: number } {
  const parts = formatterFor(timeZone).formatToParts(now);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '';
  const day = get('weekday').toLowerCase().slice(0, 3) as (typeof weekdays)[number];
  return { day, minutes: Number(get('hour')) * 60 + Number(get('minute')) };
}

const toMinutes = (value: string): number => Number(value.slice(0, 2)) * 60 + Number(value.slice(3, 5));

/** after/before bound a daily window; a window whose after is later than its before spans midnight. */
export function inTimeWindow(leaf: TimeLeaf, now: Date): boolean {
  const { day, minutes } = localTime(now, leaf.timezone ?? 'UTC');
  if (leaf.days && !leaf.days.includes(day)) return false;
  const after = leaf.after !== undefined ? toMinutes(leaf.after) : null;
  const before = leaf.before !== undefined ? toMinutes(leaf.before) : null;
  if (after !== null && before !== null && after > before) return minutes >= after || minutes < before;
  return (after === null || minutes >= after) && (before === null || minutes < before);
}
