import { z } from 'zod';
import { strictObject } from './strict.js';
import { conditionSchema, timezoneSchema } from './conditions.js';

/** Rules: their actions and schedules, shared by the API, the events and the engine. */
const delay = { delay_seconds: z.number().int().min(0).max(7 * 24 * 3600).optional() };
const id = z.string().min(1).max(64);

export const commandAction = strictObject({
  type: z.literal('command'),
  device_id: id.optional(),
  group_id: id.optional(),
  command_type: z.string().regex(/^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/, 'a command name of letters, digits and _ . : -'),
  parameters: z.record(z.string(), z.unknown()).optional(),
  priority: z.enum(['low', 'normal', 'high', 'critical']).optional(),
  ...delay,
})
  .refine((action) => (action.device_id === undefined) !== (action.group_id === undefined), 'exactly one of device_id or group_id');
export const alertAction = strictObject({
  type: z.literal('alert'),
  severity: z.enum(['info', 'warning', 'critical']),
  message: z.string().trim().min(1).max(500),
  device_id: id.optional(),
  ...delay,
});
export const switchAction = strictObject({ type: z.enum(['enable_rule', 'disable_rule']), rule_id: id, ...delay });

export const actionSchema = z.discriminatedUnion('type', [commandAction, alertAction, switchAction]);
export type RuleAction = z.infer<typeof actionSchema>;
export const actionsSchema = z.array(actionSchema).min(1, 'at least one action').max(20);

export const scheduleSchema = z.union([
  strictObject({
      cron: z
        .string()
        .max(100)
        .refine((cron) => cron.trim().split(/\s+/).length === 5, 'five fields: minute hour day-of-month month day-of-week'),
      timezone: timezoneSchema.optional(),
    }),
  strictObject({ every_seconds: z.number().int().min(1).max(366 * 24 * 3600) }),
]);
export type RuleSchedule = z.infer<typeof scheduleSchema>;

export const ruleDefinitionSchema = z.object({
  name: z.string().trim().min(1).max(100),
  description: z.string().max(2000).nullable(),
  trigger_conditions: conditionSchema.nullable(),
  actions: actionsSchema,
  schedule: scheduleSchema.nullable(),
  is_enabled: z.boolean(),
  cooldown_seconds: z.number().int().min(0).max(30 * 24 * 3600),
});
export type RuleDefinition = z.infer<typeof ruleDefinitionSchema>;
