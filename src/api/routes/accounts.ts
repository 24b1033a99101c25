import type { Response } from 'express';
import { z } from 'zod';
import { memberPermissions, permissionsFor, type Accounts, type Session } from '../../commands/accounts.js';
import { grantsOf } from '../../projections/groups.js';
import type { Services } from '../../commands/services.js';
import { countUserDevices } from '../../projections/devices.js';
import { SESSION_COOKIE } from '../auth.js';
import { presentApiKey, presentUser } from '../presenters.js';
import { defineRoute } from '../route.js';
import { apiKey, createApiKeyBody, createdApiKey, currentUser, loginBody, registerBody, revokedApiKey, rotateApiKeyBody, sessionAnswer } from '../schemas/accounts.js';

export function accountRoutes(services: Services, accounts: Accounts) {
  // Over TLS the cookie is never sent in plaintext, not even to a plain-HTTP page of the same host.
  const cookieOptions = { httpOnly: true, sameSite: 'lax', path: '/', secure: services.config.tls !== null } as const;
  const setCookie = (res: Response, session: Session) => res.cookie(SESSION_COOKIE, session.token, { ...cookieOptions, expires: new Date(session.expires_at) });

  return [
    defineRoute(
      { method: 'post', path: '/api/auth/register', operationId: 'registerUser', example: { username: 'alice', email: 'alice@example.com', password: 'correct horse' }, summary: 'Register a user (the first one is admin)', tag: 'auth', access: 'public', body: registerBody, response: sessionAnswer, status: 201, secret: true },
      async ({ body, context, res }) => {
        const session = await accounts.register(body, context.requestId);
        setCookie(res, session);
        return { data: { user: presentUser(session.user), token: session.token, expires_at: session.expires_at, api_key: session.api_key } };
      },
    ),
    defineRoute(
      { method: 'post', path: '/api/auth/login', operationId: 'logIn', example: { username: 'alice', password: 'correct horse' }, errors: [401], summary: 'Log in with a username or email', tag: 'auth', access: 'public', body: loginBody, response: sessionAnswer, secret: true },
      async ({ body, context, req, res }) => {
        const login = body.username ?? body.email ?? '';
        const session = await accounts.login({ login, password: body.password, clientAddress: req.ip ?? 'unknown' }, context.requestId);
        setCookie(res, session);
        return { data: { user: presentUser(session.user), token: session.token, expires_at: session.expires_at, permissions: permissionsFor(session.user.role) } };
      },
    ),
    defineRoute(
      { method: 'post', path: '/api/auth/logout', operationId: 'logOut', summary: 'End this session everywhere', tag: 'auth', access: 'user', response: z.object({ logged_out: z.literal(true) }) },
      async ({ context, res }) => {
        await accounts.logout(context);
        res.clearCookie(SESSION_COOKIE, cookieOptions);
        return { data: { logged_out: true } };
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/auth/user', operationId: 'getCurrentUser', summary: 'The current user', tag: 'auth', access: 'user', response: currentUser },
      ({ context }) => {
        const user = accounts.me(context.principal);
        const groupPermissions = grantsOf(services.sql, user.id).map((grant) => ({ group_id: grant.group_id, role: grant.role, permissions: memberPermissions(grant.role) }));
        return { data: { ...presentUser(user), device_count: countUserDevices(services.sql, user.id), permissions: permissionsFor(user.role), group_permissions: groupPermissions } };
      },
    ),
    ...apiKeyRoutes(accounts),
  ];
}

/** A user's own API keys; another user's key id answers 404, for admins too. */
function apiKeyRoutes(accounts: Accounts) {
  return [
    defineRoute(
      { method: 'get', path: '/api/auth/keys', operationId: 'listApiKeys', summary: 'Your API keys (never their secrets), with status and last use', tag: 'auth', access: 'user', response: apiKey.array() },
      ({ context }) => ({ data: accounts.keys.list(context.principal.userId).map(presentApiKey) }),
    ),
    defineRoute(
      { method: 'post', path: '/api/auth/keys', operationId: 'createApiKey', summary: 'Make a named API key with a scope and an optional expiry; its secret is shown only here', tag: 'auth', access: 'user', body: createApiKeyBody, response: createdApiKey, status: 201, secret: true },
      async ({ body, context }) => {
        const { key, secret } = await accounts.keys.create(body, context);
        return { data: { ...presentApiKey(key), api_key: secret } };
      },
    ),
    defineRoute(
      { method: 'post', path: '/api/auth/keys/:id/rotate', operationId: 'rotateApiKey', summary: 'Replace a key by a new one; the old one works for grace_seconds more', tag: 'auth', access: 'user', body: rotateApiKeyBody, response: createdApiKey, status: 201, secret: true },
      async ({ body, params, context }) => {
        const { key, secret } = await accounts.keys.rotate(params.id!, body, context);
        return { data: { ...presentApiKey(key), api_key: secret } };
      },
    ),
    defineRoute(
      { method: 'delete', path: '/api/auth/keys/:id', operationId: 'revokeApiKey', summary: 'Revoke a key at once (open sockets it authenticated close)', tag: 'auth', access: 'user', response: revokedApiKey },
      async ({ params, context }) => {
        await accounts.keys.revoke(params.id!, context);
        return { data: { id: params.id!, revoked: true } };
      },
    ),
  ];
}
