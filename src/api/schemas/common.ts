import { z } from 'zod';
import { strictObject } from '../../domain/strict.js';
import { errorCodes } from '../errors.js';
import { named } from './components.js';

export const paging = strictObject({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  offset: z.coerce.number().int().min(0).default(0),
});
export type Paging = z.infer<typeof paging>;

export const listMeta = (total: number, page: Paging) => ({ total, limit: page.limit, offset: page.offset });

export const booleanQuery = z.enum(['true', 'false', '1', '0']).transform((value) => value === 'true' || value === '1');

export const timestamp = z.string().describe('ISO 8601 UTC with milliseconds');
export const uuid = z.uuid();
/**
 * A name people read: control characters (a NUL cut names short in logs and CSV) and unpaired
 * surrogates (SQLite stores them as U+FFFD, so the read model would differ from the event) are refused.
 */
export const nonBlank = (max: number) =>
  z
    .string()
    .trim()
    .min(1)
    .max(max)
    .refine((name) => !/[\p{Cc}\p{Cs}]/u.test(name), 'no control characters or unpaired surrogates');

export const deleted = z.object({ id: z.string(), deleted: z.literal(true) });

const ISO_8601 = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/i;
const FIELDS = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2}))?)?/i;

const isLeap = (year: number) => (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Whether each field is in range: Date.parse rolls 2026-02-30 over into March and 24:00 into the next day. */
function fieldsExist(year: number, month: number, day: number, hour: number, minute: number, second: number): boolean {
  const days = month === 2 && isLeap(year) ? 29 : DAYS_IN_MONTH[month - 1];
  return days !== undefined && day >= 1 && day <= days && hour <= 23 && minute <= 59 && second <= 59;
}

/** A date must exist as written, whatever its form. */
function existsAsWritten(value: string): boolean {
  const [, year, month, day, hour = '0', minute = '0', second = '0'] = FIELDS.exec(value) ?? [];
  return fieldsExist(Number(year), Number(month), Number(day), Number(hour), Number(minute), Number(second));
}

const UTC_MILLISECONDS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

const number = (value: string, from: number, to: number): number => {
  let n = 0;
  for (let i = from; i < to; i++) n = n * 10 + value.charCodeAt(i) - 48;
  return n;
};

/**
 * Already UTC milliseconds, as devices mostly send it (the shape checked by UTC_MILLISECONDS):
 * its fields read straight off the digits. The hot path of ingestion, where parsing every
 * reading's time and formatting it back cost more than the rest of its check.
 */
const realUtcMilliseconds = (value: string): boolean =>
  fieldsExist(number(value, 0, 4), number(value, 5, 7), number(value, 8, 10), number(value, 11, 13), number(value, 14, 16), number(value, 17, 19));

/** An ISO 8601 date or date-time (UTC when it names no zone), normalised to UTC milliseconds. */
export const isoDate = z
  .string()
  .regex(ISO_8601, 'an ISO 8601 date or date-time')
  .transform((value, ctx) => {
    if (UTC_MILLISECONDS.test(value) && realUtcMilliseconds(value)) return value;
    const zoned = /T/i.test(value) && !ZONED.test(value) ? `${value}Z` : value;
    const time = Date.parse(zoned);
    if (Number.isNaN(time) || !existsAsWritten(value)) {
      ctx.addIssue({ code: 'custom', message: 'not a real date' });
      return z.NEVER;
    }
    return new Date(time).toISOString();
  });

const ZONED = /(Z|[+-]\d{2}:?\d{2})$/i;

/**
 * A moment to look back at (as_of): a date alone is midnight UTC, but a time must name its
 * zone, or the moment would depend on where the client thought it was.
 */
export const isoInstant = z
  .string()
  .superRefine((value, ctx) => {
    if (ISO_8601.test(value) && /T/i.test(value) && !ZONED.test(value)) ctx.addIssue({ code: 'custom', message: 'a time needs its zone (Z or an offset such as +02:00)' });
  })
  .pipe(isoDate);

/** Echoes the moment an as_of answer is for. */
export const asOfMeta = z.object({ as_of: timestamp.optional().describe('the moment asked for (as_of), in UTC; absent for the live view') });

/** The end of a range: a date alone means the whole of that day, so start_date=end_date=D covers D. */
export const isoEndDate = z.preprocess((value) => (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(value) ? `${value}T23:59:59.999Z` : value), isoDate);

export const dateRange = strictObject({ start_date: isoDate.optional(), end_date: isoEndDate.optional() });

/** Refuses a range whose start is after its end. */
export const orderedRange = <T extends { start_date?: string | undefined; end_date?: string | undefined }>(range: T) =>
  !range.start_date || !range.end_date || range.start_date <= range.end_date;

const MAX_JSON_DEPTH = 128;

function depthOf(value: unknown, limit: number): number {
  if (value === null || typeof value !== 'object') return 0;
  if (limit <= 0) return 1;
  let deepest = 0;
  for (const child of Object.values(value)) deepest = Math.max(deepest, depthOf(child, limit - 1));
  return deepest + 1;
}

/** Where a value holds a number JSON cannot carry: 1e999 parses to Infinity, which would be stored as null. */
function nonFiniteAt(value: unknown, limit: number): PropertyKey[] | null {
  if (typeof value === 'number') return Number.isFinite(value) ? null : [];
  if (value === null || typeof value !== 'object' || limit <= 0) return null;
  // By index and by key, no entry pairs: a 1 MiB array of numbers is walked in milliseconds.
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index++) {
      const below = nonFiniteAt(value[index], limit - 1);
      if (below) return [index, ...below];
    }
    return null;
  }
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    const below = nonFiniteAt(record[key], limit - 1);
    if (below) return [key, ...below];
  }
  return null;
}

/** A free-form JSON object (configuration, parameters, statuses), nested at most 128 levels deep, its numbers finite. */
export const jsonObject = z
  .record(z.string(), z.unknown())
  .refine((value) => depthOf(value, MAX_JSON_DEPTH + 1) <= MAX_JSON_DEPTH, `nested more than ${MAX_JSON_DEPTH} levels deep`)
  .superRefine((value, ctx) => {
    const at = nonFiniteAt(value, MAX_JSON_DEPTH);
    if (at) ctx.addIssue({ code: 'custom', path: at, message: 'must be a finite number' });
  });

/** The error envelope every failure answers with. */
export const errorBody = named(
  'Error',
  z.object({
      error: z.object({
        code: z.enum(errorCodes),
        message: z.string(),
        details: z.array(z.object({ path: z.string(), message: z.string() }).catchall(z.string())).describe('one entry per problem; validation failures name the field'),
        request_id: z.string().describe('also in the X-Request-Id header'),
      }),
  }),
);
