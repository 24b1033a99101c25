import { z } from 'zod';
import { strictObject } from '../../domain/strict.js';
import { eventTypes } from '../../domain/events.js';
import { uuid } from './common.js';
import { named } from './components.js';

const typeList = z
  .string()
  .max(2000)
  .transform((value) => value.split(',').map((t) => t.trim()).filter(Boolean))
  .pipe(z.array(z.enum(eventTypes as [string, ...string[]], { error: 'unknown event type' })).min(1));

export const eventsQuery = strictObject({
  after_position: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  /** Matching events to skip after after_position; next_position pages without it. */
  offset: z.coerce.number().int().min(0).default(0),
  stream_id: z.string().max(200).optional(),
  type: typeList.optional(),
  device_id: uuid.optional(),
});

export const exportEventsQuery = eventsQuery.omit({ limit: true, offset: true }).extend({
  format: z.enum(['ndjson']).default('ndjson'),
  before_position: z.coerce.number().int().min(1).optional(),
});

export const verifyAnswer = named(
  'VerifyResult',
  z.union([
    z.object({
      ok: z.literal(true),
      checked: z.number().int(),
      head_hash: z.string(),
      proven_from: z.number().int().optional().describe('Only when archived segments could not be read: the chain is proven whole from this position on; live events before it are checked against the hashes their archive cuts recorded'),
      missing_segments: z
        .array(z.object({ segment: z.string(), first_position: z.number().int(), last_position: z.number().int(), deleted: z.boolean().describe('deleted for good (LOG_DELETE_AFTER_DAYS) rather than absent from DATA_DIR/archive') }))
        .optional()
        .describe('Archived segments verification could not read'),
    }),
    z.object({ ok: z.literal(false), checked: z.number().int(), first_bad_position: z.number().int(), reason: z.string() }),
  ]),
);
