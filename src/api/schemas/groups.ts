import { z } from 'zod';
import { booleanQuery, nonBlank, paging, timestamp } from './common.js';

const parent = z.uuid().nullable();

export const createGroupBody = z.object({
  name: nonBlank(100),
  description: z.string().max(2000).nullable().optional(),
  parent_group: parent.optional(),
  parent_id: parent.optional(),
});

export const updateGroupBody = z.object({
  name: nonBlank(100).optional(),
  description: z.string().max(2000).nullable().optional(),
  parent_group: parent.optional(),
  parent_id: parent.optional(),
});

export const listGroupsQuery = paging.extend({ tree: booleanQuery.optional() });

export const group: z.ZodType = z.lazy(() =>
  z.object({
    id: z.string(),
    user_id: z.string(),
    name: z.string(),
    description: z.string().nullable(),
    parent_id: z.string().nullable(),
    device_count: z.number().int(),
    total_device_count: z.number().int(),
    statistics: z.object({ online: z.number().int(), offline: z.number().int() }),
    created_at: timestamp,
    updated_at: timestamp,
    version: z.number().int(),
    children: z.array(group).optional(),
  }),
);
