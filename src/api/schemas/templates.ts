import { z } from 'zod';
import { strictObject } from '../../domain/strict.js';
import { thresholdsInput } from '../../domain/thresholds.js';
import { nonBlank, timestamp } from './common.js';
import { deviceConfiguration } from './devices.js';
import { named } from './components.js';

const fields = {
  name: nonBlank(100),
  device_type: z.string().trim().min(1).max(64),
  description: z.string().max(2000).nullable(),
  configuration: deviceConfiguration,
  thresholds: named('Thresholds', thresholdsInput, 'request'),
};

export const createTemplateBody = strictObject({
  ...fields,
  description: fields.description.optional(),
  configuration: fields.configuration.optional(),
  thresholds: fields.thresholds.optional(),
});

export const updateTemplateBody = strictObject(fields).partial();

export const template = named(
  'Template',
  z.object({
    id: z.string(),
    user_id: z.string(),
    name: z.string(),
    device_type: z.string(),
    description: z.string().nullable(),
    configuration: z.record(z.string(), z.unknown()),
    thresholds: z.record(z.string(), z.unknown()),
    created_at: timestamp,
    updated_at: timestamp,
    version: z.number().int(),
  }),
);
