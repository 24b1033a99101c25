import { z } from 'zod';
import { strictObject } from '../../domain/strict.js';
import { named } from './components.js';
import { memberRoleSchema } from '../../domain/events.js';
import { booleanQuery, nonBlank, paging, timestamp } from './common.js';

const parent = z.uuid().nullable();

/** parent_group and parent_id name the same thing: given both, they must agree, or one would silently lose. */
const oneParent = (body: { parent_group?: string | null | undefined; parent_id?: string | null | undefined }) =>
  body.parent_group === undefined || body.parent_id === undefined || body.parent_group === body.parent_id;
const parentsDisagree = { message: 'parent_group and parent_id name different groups', path: ['parent_group'] };

export const createGroupBody = strictObject({
  name: nonBlank(100),
  description: z.string().max(2000).nullable().optional(),
  parent_group: parent.optional(),
  parent_id: parent.optional(),
})
  .refine(oneParent, parentsDisagree);

export const updateGroupBody = strictObject({
  name: nonBlank(100).optional(),
  description: z.string().max(2000).nullable().optional(),
  parent_group: parent.optional(),
  parent_id: parent.optional(),
})
  .refine(oneParent, parentsDisagree);

export const listGroupsQuery = paging.extend({ tree: booleanQuery.optional() });

export const group = named(
  'Group',
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
  }),
);

type GroupTree = z.infer<typeof group> & { children: GroupTree[] };

/** A group with its subgroups, as GET /api/groups?tree=true nests them. */
export const groupTree: z.ZodType<GroupTree> = named(
  'GroupTree',
  z.lazy(() => group.extend({ children: z.array(groupTree) })),
);

export const member = named('GroupMember', z.object({ user_id: z.string(), username: z.string(), role: memberRoleSchema, granted_at: timestamp }));

export const grantMemberBody = strictObject({ user_id: z.uuid().optional(), username: z.string().min(1).max(254).optional(), role: memberRoleSchema }).refine(
  (body) => (body.user_id === undefined) !== (body.username === undefined),
  { message: 'name the user by exactly one of user_id or username', path: ['user_id'] },
);

export const revokedMember = z.object({ group_id: z.string(), user_id: z.string(), revoked: z.literal(true) });
