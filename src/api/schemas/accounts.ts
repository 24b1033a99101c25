import { z } from 'zod';
import { strictObject } from '../../domain/strict.js';
import { timestamp } from './common.js';
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

export const currentUser = named('CurrentUser', user.extend({ device_count: z.number().int(), permissions: z.array(z.string()) }));
