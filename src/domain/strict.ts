import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';

/**
 * Objects the server reads refuse fields they do not know: a misspelt `for_second` dropped in
 * silence would save a rule without its window. Each unknown field is named, with the field
 * probably meant when one is close.
 */
export const strictObject = <Shape extends z.core.$ZodLooseShape>(shape: Shape) => z.strictObject(shape, { error: unknownFieldsMessage });

/** Zod reports every unknown key of one object in one issue; its message holds one line per key, in order. */
function unknownFieldsMessage(issue: z.core.$ZodRawIssue): string | undefined {
  if (issue.code !== 'unrecognized_keys') return undefined;
  const shape = (issue.inst as { _zod?: { def?: { shape?: Record<string, unknown> } } } | undefined)?._zod?.def?.shape ?? {};
  const known = Object.keys(shape);
  return issue.keys.map((key) => unknownField(key, known)).join('\n');
}

export function unknownField(key: string, known: readonly string[]): string {
  const meant = closestField(key, known);
  return meant ? `unknown field "${key}"; did you mean "${meant}"?` : `unknown field "${key}"`;
}

export const suggestsField = (message: string): boolean => message.includes('; did you mean "');

/** The known field a typo most likely meant: one or two edits away (a third of its length at most), or its abbreviation (maximum for max). */
export function closestField(key: string, known: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  let best: { field: string; distance: number } | undefined;
  for (const field of known) {
    const distance = editDistance(lower, field.toLowerCase());
    const allowed = Math.max(1, Math.min(2, Math.floor(field.length / 3)));
    if (distance <= allowed && (!best || distance < best.distance)) best = { field, distance };
  }
  if (best) return best.field;
  return known.find((field) => field.length >= 3 && (lower.startsWith(field.toLowerCase()) || field.toLowerCase().startsWith(lower)) && lower.length >= 3);
}

/** Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours each count one. */
export function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = best;
    }
  }
  return rows[a.length]![b.length]!;
}

/** An issue as details: one per unknown field, so each names its own path. */
export function issueDetails(issue: z.core.$ZodIssue, path: readonly PropertyKey[]): Array<{ path: PropertyKey[]; message: string }> {
  if (issue.code !== 'unrecognized_keys') return [{ path: [...path], message: issue.message }];
  const lines = issue.message.split('\n');
  return issue.keys.map((key, index) => ({ path: [...path, key], message: lines.length === issue.keys.length ? lines[index]! : `unknown field "${key}"` }));
}

/**
 * Two names the contract allows for one field (type and device_type): given both, they must
 * agree, or one would silently win over the other.
 */
export const synonymsAgree =
  <T extends object>(...pairs: ReadonlyArray<readonly [keyof T & string, keyof T & string]>) =>
  (value: T, ctx: z.core.$RefinementCtx<T>): void => {
    for (const [first, second] of pairs) {
      if (value[first] === undefined || value[second] === undefined || isDeepStrictEqual(value[first], value[second])) continue;
      ctx.addIssue({ code: 'custom', path: [second], message: `${first} and ${second} name the same field: give one, or the same value in both` });
    }
  };
