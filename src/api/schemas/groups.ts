import { z } from 'zod';
import { memberRoleSchema } from '../../domain/events.js';
import { booleanQuery, nonBlank, paging, timestamp } from './common.js';

const parent = z.uuid().nullable();

/** parent_group and parent_id name the same thing: given both, they must agree, or one would silently lose. */
const oneParent = (body: { parent_group?: string | null | undefined; parent_id?: string | null | undefined }) =>
  body.parent_group === undefined || body.parent_id === undefined || body.parent_group === body.parent_id;
const parentsDisagree = { message: 'parent_group and parent_id name different groups', path: ['parent_group'] };

export const createGroupBody = z
  .object({
    name: nonBlank(100),
    description: z.string().max(2000).nullable().optional(),
    parent_group: parent.optional(),
    parent_id: parent.optional(),
  })
  .refine(oneParent, parentsDisagree);

export const updateGroupBody = z
  .object({
    name: nonBlank(100).optional(),
    description: z.string().max(2000).nullable().optional(),
    parent_group: parent.optional(),
    parent_id: parent.optional(),
  })
  .refine(oneParent, parentsDisagree);

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

export const member = z.object({ user_id: z.string(), username: z.string(), role: memberRoleSchema, granted_at: timestamp });

export const grantMemberBody = z
  .strictObject({ user_id: z.uuid().optional(), username: z.string().min(1).max(254).optional(), role: memberRoleSchema })
  .refine((body) => (body.user_id === undefined) !== (body.username === undefined), { message: 'name the user by exactly one of user_id or username', path: ['user_id'] });

export const revokedMember = z.object({ group_id: z.string(), user_id: z.string(), revoked: z.literal(true) });
