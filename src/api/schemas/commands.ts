import { z } from 'zod';
import { strictObject } from '../../domain/strict.js';
import { commandPrioritySchema } from '../../domain/events.js';
import { isoDate, isoEndDate, jsonObject, orderedRange, paging, timestamp, uuid } from './common.js';
import { named } from './components.js';

const MAX_PARAMETERS_BYTES = 16 * 1024;

export const commandType = z.string().regex(/^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/, 'a name of letters, digits and _ . : - (at most 64), starting with a letter');

export const queueCommandBody = strictObject({
  command_type: commandType,
  parameters: jsonObject.refine((p) => JSON.stringify(p).length <= MAX_PARAMETERS_BYTES, `at most ${MAX_PARAMETERS_BYTES} bytes as JSON`).optional(),
  priority: commandPrioritySchema.default('normal'),
  expires_in: z.number().int().min(1).max(30 * 24 * 3600).optional(),
  timeout_seconds: z.number().int().min(1).max(24 * 3600).optional(),
  retries: z.number().int().min(0).max(10).optional(),
});

export const commandResultBody = strictObject({
  status: z.enum(['executed', 'failed']),
  response: jsonObject.nullable().optional(),
});

export const commandStatusSchema = z.enum(['pending', 'sent', 'executed', 'failed', 'expired', 'cancelled']);

/** How many queued commands a device takes at once; the rest wait for its next fetch. */
export const pendingQuery = paging.pick({ limit: true });

export const listCommandsQuery = paging
  .extend({
    device_id: uuid.optional(),
    status: commandStatusSchema.optional(),
    command_type: commandType.optional(),
    batch_id: z.string().max(64).optional(),
    start_date: isoDate.optional(),
    end_date: isoEndDate.optional(),
  })
  .refine(orderedRange, { message: 'start_date is after end_date', path: ['start_date'] });

export const command = named(
  'Command',
  z.object({
    id: z.string(),
    device_id: z.string(),
    user_id: z.string(),
    command_type: z.string(),
    parameters: z.record(z.string(), z.unknown()),
    priority: commandPrioritySchema,
    status: commandStatusSchema,
    created_at: timestamp,
    sent_at: timestamp.nullable(),
    executed_at: timestamp.nullable(),
    expires_at: timestamp.nullable(),
    response: z.record(z.string(), z.unknown()).nullable(),
    timeout_seconds: z.number().int(),
    retries: z.number().int(),
    attempt: z.number().int(),
    failure_reason: z.string().nullable(),
    batch_id: z.string().nullable(),
  }),
);

export const groupCommandBody = queueCommandBody.extend({
  /** Devices per minute; unset: all at once. */
  rollout_per_minute: z.number().int().min(1).max(100_000).optional(),
  /** Stop queuing (and cancel what was not sent) once more than this share has failed. */
  abort_failure_percent: z.number().min(0).max(100).optional(),
});

const batchStatus = z.enum(['active', 'completed', 'aborted']);

export const groupCommandAnswer = named(
  'GroupCommandResult',
  z.object({
    batch_id: z.string(),
    count: z.number().int(),
    total_devices: z.number().int(),
    status: batchStatus,
    commands: z.array(command),
  }),
);

/** `meta.batch` of GET /api/commands?batch_id=: how a batch is doing. */
export const batchMeta = z.object({
  batch: z
    .object({
      batch_id: z.string(),
      by_status: z.record(z.string(), z.number().int()).describe('the batch\'s commands you may see, counted by status'),
      status: batchStatus.optional().describe('active while commands are still queued at the rollout rate; aborted past the failure share. This and the fields below only to the batch\'s owner or an admin'),
      reason: z.string().nullable().optional().describe('why the batch stopped, when it was aborted'),
      total_devices: z.number().int().optional().describe('devices the batch was started for'),
      rollout_per_minute: z.number().int().nullable().optional(),
      abort_failure_percent: z.number().nullable().optional(),
    })
    .optional()
    .describe('only when batch_id is given'),
});

export const firmwareBody = strictObject({
  version: z.string().trim().min(1).max(64),
  url: z.url({ protocol: /^https?$/, error: 'an http(s) URL' }).max(2048),
  checksum: z.string().regex(/^(sha256:)?[0-9a-fA-F]{64}$/, 'a SHA-256 checksum in hex (optionally prefixed sha256:)'),
});

export const firmwareProgressBody = strictObject({
  version: z.string().trim().min(1).max(64),
  status: z.enum(['downloading', 'installing', 'done', 'failed']),
  detail: z.string().max(500).nullable().optional(),
});
