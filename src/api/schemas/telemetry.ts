import { z } from 'zod';
import { strictObject } from '../../domain/strict.js';
import { alertKindSchema, alertSeveritySchema } from '../../domain/events.js';
import { logSeverities } from '../../projections/device-logs.js';
import type { RawCursor } from '../../projections/telemetry-queries.js';
import { dateRange, isoDate, isoEndDate, jsonObject, orderedRange, paging, timestamp, uuid } from './common.js';
import { named } from './components.js';

/** Names that would reach an object's prototype rather than a key of it. */
const RESERVED_NAMES = new Set(['__proto__', 'constructor', 'prototype']);
const sensorType = z
  .string()
  .trim()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_.:/-]+$/, 'letters, digits and _ . : / -')
  .refine((name) => !RESERVED_NAMES.has(name), 'a reserved name');
/** Beyond this, squares overflow a double and the rollups' deviation would be lost. */
export const MAX_ABS_READING = 1e15;
const finite = z.number({ error: 'must be a finite number' }).min(-MAX_ABS_READING, `at least -${MAX_ABS_READING}`).max(MAX_ABS_READING, `at most ${MAX_ABS_READING}`);
const statusObject = jsonObject;
/** Reported fields (battery, signal, status ...), or a status word alone, read as {status}. */
const deviceStatusInput = z.union([z.string().trim().min(1).max(64).transform((status): Record<string, unknown> => ({ status })), statusObject]);

const readingObject = named(
  'ReadingInput',
  strictObject({
  sensor_type: sensorType,
  value: finite,
  unit: z.string().max(32).nullable().optional(),
  timestamp: isoDate.optional(),
  }),
  'request',
);

export const submitReadingsBody = strictObject({
  sensor_readings: z.union([
    z.array(readingObject).min(1, 'at least one reading'),
    z.record(sensorType, finite).refine((readings) => Object.keys(readings).length > 0, 'at least one reading'),
  ], { error: 'expected a list of readings, or an object of sensor type to value' }),
  timestamp: isoDate.optional(),
  device_status: deviceStatusInput.nullable().optional(),
});

export const submitAnswer = z.object({ accepted: z.number().int(), position: z.number().int() });

export const heartbeatBody = strictObject({
  device_status: deviceStatusInput.nullable().optional(),
  firmware_version: z.string().trim().min(1).max(64).nullable().optional(),
  metrics: statusObject.nullable().optional(),
  /** The configuration the device runs, to compare with the desired one. */
  configuration: statusObject.optional(),
});

export const heartbeatAnswer = z.object({ device_id: z.string(), status: z.string(), position: z.number().int(), server_time: timestamp });

/** A raw page's cursor, opaque to clients: the time and log sequence of the oldest reading the page returned. */
const cursorForm = z.tuple([z.iso.datetime({ precision: 3 }), z.number().int().min(0)]);

export const encodeCursor = ({ ts, seq }: RawCursor): string => Buffer.from(JSON.stringify([ts, seq])).toString('base64url');

const rawCursor = z
  .string()
  .max(200)
  .transform((text, ctx): RawCursor => {
    const parsed = cursorForm.safeParse(parseJsonOrNull(Buffer.from(text, 'base64url').toString('utf8')));
    if (parsed.success) return { ts: parsed.data[0], seq: parsed.data[1] };
    ctx.addIssue({ code: 'custom', message: 'not a cursor this server gave (pass meta.next_cursor as it is)' });
    return z.NEVER;
  })
  .describe('meta.next_cursor of the previous raw page: resumes just after its last reading');

function parseJsonOrNull(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export const dataQuery = dateRange
  .extend({
    sensor_type: sensorType.optional(),
    interval: z.enum(['raw', 'minute', 'hour', 'day']).default('raw'),
    limit: paging.shape.limit,
    offset: paging.shape.offset,
    cursor: rawCursor.optional(),
  })
  .refine(orderedRange, { message: 'start_date is after end_date', path: ['start_date'] })
  .refine((query) => query.cursor === undefined || query.interval === 'raw', { message: 'a cursor pages raw readings only', path: ['cursor'] })
  .refine((query) => query.cursor === undefined || query.offset === 0, { message: 'give a cursor or an offset, not both', path: ['cursor'] });

export const rawReading = named('Reading', z.object({ sensor_type: z.string(), value: z.number(), unit: z.string().nullable(), timestamp, quality_score: z.number().int(), quality_reasons: z.array(z.string()) }));
/** Beside the paging fields of a raw page: where the next one starts. */
export const rawPageMeta = z.object({
  next_cursor: z.string().nullable().optional().describe('raw readings only: pass as cursor for the next page, older readings; null on the last page'),
});

export const bucketReading = named('Bucket', z.object({ sensor_type: z.string(), bucket_start: timestamp, count: z.number().int(), avg: z.number(), min: z.number(), max: z.number(), sum: z.number() }));

export const exportQuery = dateRange
  .extend({ format: z.enum(['csv', 'ndjson']).default('csv'), sensor_type: sensorType.optional() })
  .refine(orderedRange, { message: 'start_date is after end_date', path: ['start_date'] });

export const logsQuery = paging
  .extend({ severity: z.enum(logSeverities).optional(), start_date: isoDate.optional(), end_date: isoEndDate.optional() })
  .refine(orderedRange, { message: 'start_date is after end_date', path: ['start_date'] });

export const deviceLog = named('DeviceLog', z.object({ severity: z.enum(logSeverities), category: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()), timestamp, position: z.number().int() }));

export const deviceStatus = named(
  'DeviceStatus',
  z.object({
    device_id: z.string(),
    status: z.string(),
    connectivity: z.object({ online: z.boolean(), last_seen: timestamp.nullable(), seconds_since_last_seen: z.number().nullable(), offline_after_seconds: z.number() }),
    health: z.record(z.string(), z.unknown()),
    operational_state: z.record(z.string(), z.unknown()),
  }),
);

export const alertsQuery = paging.extend({
  status: z.enum(['active', 'acknowledged', 'cleared']).optional(),
  severity: alertSeveritySchema.optional(),
  device_id: uuid.optional(),
});

export const alert = named(
  'Alert',
  z.object({
    id: z.string(),
    device_id: z.string().nullable(),
    rule_id: z.string().nullable(),
    kind: alertKindSchema,
    sensor_type: z.string().nullable(),
    severity: alertSeveritySchema,
    status: z.enum(['active', 'acknowledged', 'cleared']),
    message: z.string(),
    count: z.number().int(),
    last_value: z.number().nullable(),
    raised_at: timestamp,
    acknowledged_at: timestamp.nullable(),
    cleared_at: timestamp.nullable(),
  }),
);

export const analyticsQuery = dateRange
  .extend({ device_id: uuid.optional(), group_id: uuid.optional() })
  .refine(orderedRange, { message: 'start_date is after end_date', path: ['start_date'] })
  // Either would silently win over the other; a client asking for both means something neither answers.
  .refine((query) => !(query.device_id && query.group_id), { message: 'give device_id or group_id, not both', path: ['group_id'] });

const counts = z.record(z.string(), z.number().int());
export const analytics = named(
  'Analytics',
  z.object({
    devices: z.object({ total: z.number().int(), by_status: counts, by_type: counts }),
    readings: z.object({
      total: z.number().int(),
      per_hour: z.array(z.object({ hour: timestamp, count: z.number().int() })),
      by_sensor: z.array(z.object({ sensor_type: z.string(), count: z.number().int(), avg: z.number(), min: z.number(), max: z.number(), stddev: z.number(), trend_per_hour: z.number().nullable() })),
    }),
    commands: z.object({ total: z.number().int(), by_status: counts, success_rate: z.number().nullable(), avg_latency_ms: z.number().nullable() }),
    rules: z.object({ total: z.number().int(), enabled: z.number().int(), triggered: z.number().int() }),
    alerts: z.object({ active: z.number().int(), by_severity: counts }),
  }),
);
