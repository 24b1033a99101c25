import { z } from 'zod';
import { strictObject } from '../../domain/strict.js';
import { conditionSchema, isTooDeep, type Condition } from '../../domain/conditions.js';
import { actionSchema, scheduleSchema as ruleSchedule } from '../../domain/rule-schema.js';
import { named } from './components.js';
import { booleanQuery, isoDate, isoEndDate, nonBlank, paging, timestamp, uuid } from './common.js';

const action = named('Action', actionSchema, 'request');
const actionsSchema = z.array(action).min(1, 'at least one action').max(20);
const scheduleSchema = named('Schedule', ruleSchedule, 'request');
const condition = named('Condition', conditionSchema, 'request');

/** Checked on the body, not the field: a refined copy of Condition would lose its name in the document. */
const conditionsNotTooDeep = (body: { trigger_conditions?: Condition | null | undefined }, ctx: z.core.$RefinementCtx) => {
  if (body.trigger_conditions && isTooDeep(body.trigger_conditions)) ctx.addIssue({ code: 'custom', path: ['trigger_conditions'], message: 'conditions nested more than 8 levels deep' });
};

export const createRuleBody = strictObject({
  name: nonBlank(100),
  description: z.string().max(2000).nullable().optional(),
  trigger_conditions: condition.nullable().optional(),
  actions: actionsSchema,
  schedule: scheduleSchema.nullable().optional(),
  is_enabled: z.boolean().optional(),
  cooldown_seconds: z.number().int().min(0).max(30 * 24 * 3600).optional(),
  allow_conflicts: z.boolean().optional(),
}).superRefine(conditionsNotTooDeep);

export const updateRuleBody = strictObject({
  name: nonBlank(100).optional(),
  description: z.string().max(2000).nullable().optional(),
  trigger_conditions: condition.nullable().optional(),
  actions: actionsSchema.optional(),
  schedule: scheduleSchema.nullable().optional(),
  is_enabled: z.boolean().optional(),
  enabled_status: z.boolean().optional(),
  cooldown_seconds: z.number().int().min(0).max(30 * 24 * 3600).optional(),
  allow_conflicts: z.boolean().optional(),
})
  // The same switch under two names: given both, they must agree, or one would silently lose.
  .refine((body) => body.is_enabled === undefined || body.enabled_status === undefined || body.is_enabled === body.enabled_status, {
    message: 'is_enabled and enabled_status disagree',
    path: ['enabled_status'],
  })
  .superRefine(conditionsNotTooDeep);

export const listRulesQuery = paging.extend({
  device_id: uuid.optional(),
  type: z.enum(['reading', 'device_status', 'event', 'time', 'schedule']).optional(),
  is_enabled: booleanQuery.optional(),
});

export const dryRunBody = strictObject({ rule: createRuleBody, start_date: isoDate, end_date: isoEndDate })
  .refine((body) => body.start_date <= body.end_date, { message: 'start_date is after end_date', path: ['start_date'] });

export const rule = named(
  'Rule',
  z.object({
    id: z.string(),
    user_id: z.string(),
    name: z.string(),
    description: z.string().nullable(),
    trigger_conditions: condition.nullable(),
    actions: z.array(action),
    schedule: scheduleSchema.nullable(),
    is_enabled: z.boolean(),
    cooldown_seconds: z.number().int(),
    last_triggered: timestamp.nullable(),
    trigger_count: z.number().int(),
    created_at: timestamp,
    updated_at: timestamp,
    version: z.number().int(),
  }),
);

export const execution = named(
  'Execution',
  z.object({
    id: z.string(),
    rule_id: z.string(),
    triggered_at: timestamp,
    cause: z.record(z.string(), z.unknown()),
    matched: z.record(z.string(), z.unknown()),
    actions: z.array(
      z.object({
        index: z.number().int(),
        type: z.string(),
        due_at: timestamp,
        status: z.enum(['pending', 'done', 'failed']),
        detail: z.string().nullable(),
        /** When its outcome was recorded; null while pending. */
        completed_at: timestamp.nullable(),
      }),
    ),
  }),
);

export const dryRunAnswer = named(
  'DryRunResult',
  z.object({
    events_examined: z.number().int().describe('events with something inside the window: readings by their own timestamps, other events by when they were recorded'),
    count: z.number().int(),
    firings: z.array(z.object({ at: timestamp, cause: z.record(z.string(), z.unknown()), matched: z.record(z.string(), z.unknown()), actions: z.array(z.record(z.string(), z.unknown())) })),
    complete: z.boolean().describe('false when the run stopped early: at 1,000 firings, 200,000 moments looked at, or 200,000 events read from the log'),
    simulated_until: timestamp.describe('how far the run got; end_date when complete'),
  }),
);
