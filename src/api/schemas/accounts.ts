import { z } from 'zod';
import { apiKeyScopeSchema, memberRoleSchema } from '../../domain/events.js';
import { strictObject } from '../../domain/strict.js';
import { nonBlank, timestamp } from './common.js';
import { named } from './components.js';

export const registerBody = strictObject({
  username: z.string().regex(/^[A-Za-z0-9_.-]{3,32}$/, '3 to 32 of letters, digits, _ . -'),
  email: z.email().max(254),
  // bcrypt reads 72 bytes and ignores the rest: a longer password would log in with any tail.
  password: z
    .string()
    .min(8, 'at least 8 characters')
    .refine((password) => Buffer.byteLength(password, 'utf8') <= 72, 'at most 72 bytes in UTF-8'),
});

export const loginBody = strictObject({
  username: z.string().min(1).max(254).optional(),
  email: z.string().min(1).max(254).optional(),
  password: z.string().min(1).max(128),
})
  .refine((body) => body.username !== undefined || body.email !== undefined, { message: 'username or email is required', path: ['username'] });

export const user = named(
  'User',
  z.object({
    id: z.string(),
    username: z.string(),
    email: z.string(),
    role: z.enum(['admin', 'user']),
    device_quota: z.number().int(),
    created_at: timestamp,
  }),
);

export const sessionAnswer = named(
  'Session',
  z.object({
    user,
    token: z.string(),
    expires_at: timestamp,
    permissions: z.array(z.string()).optional(),
    api_key: z.string().optional(),
  }),
);

export const currentUser = named(
  'CurrentUser',
  user.extend({
    device_count: z.number().int(),
    permissions: z.array(z.string()),
    /** Roles granted on other users' groups (each covers the group's subgroups too), and what they allow. */
    group_permissions: z.array(z.object({ group_id: z.string(), role: memberRoleSchema, permissions: z.array(z.string()) })),
  }),
);

const YEAR_SECONDS = 366 * 24 * 3600;

export const apiKey = named('ApiKey', z.object({
  id: z.string(),
  name: z.string(),
  scope: apiKeyScopeSchema,
  status: z.enum(['active', 'expired', 'revoked']),
  created_at: timestamp,
  expires_at: timestamp.nullable(),
  last_used_at: timestamp.nullable(),
  revoked_at: timestamp.nullable(),
  replaced_by: z.string().nullable(),
}));

/** A key as made: the only answer that shows its secret. */
export const createdApiKey = apiKey.extend({ api_key: z.string() });

export const createApiKeyBody = strictObject({
  name: nonBlank(100),
  scope: apiKeyScopeSchema.default('write'),
  /** Seconds until it stops working; absent or null: never. */
  expires_in: z.number().int().min(60).max(10 * YEAR_SECONDS).nullable().default(null),
});

export const rotateApiKeyBody = strictObject({
  /** How long the old key keeps working beside the new one (0: it stops now). */
  grace_seconds: z.number().int().min(0).max(30 * 24 * 3600).default(0),
  expires_in: createApiKeyBody.shape.expires_in,
});

export const revokedApiKey = z.object({ id: z.string(), revoked: z.literal(true) });

/** A user as an admin sees them. */
export const managedUser = named('ManagedUser', user.extend({ disabled: z.boolean() }));

export const changeUserBody = strictObject({
  device_quota: z.number().int().min(0).max(1_000_000).optional(),
  disabled: z.boolean().optional(),
  role: z.enum(['admin', 'user']).optional(),
}).refine((body) => Object.values(body).some((value) => value !== undefined), { message: 'name at least one of device_quota, disabled, role', path: ['device_quota'] });

export const eraseSelfBody = strictObject({ password: z.string().min(1).max(128) });

export const erasedUser = z.object({ id: z.string(), erased: z.literal(true) });
