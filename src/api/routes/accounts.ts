import type { Response } from 'express';
import { z } from 'zod';
import { permissionsFor, type Accounts, type Session } from '../../commands/accounts.js';
import type { Services } from '../../commands/services.js';
import { countUserDevices } from '../../projections/devices.js';
import { SESSION_COOKIE } from '../auth.js';
import { presentUser } from '../presenters.js';
import { defineRoute } from '../route.js';
import { currentUser, loginBody, registerBody, sessionAnswer } from '../schemas/accounts.js';

export function accountRoutes(services: Services, accounts: Accounts) {
  const setCookie = (res: Response, session: Session) =>
    res.cookie(SESSION_COOKIE, session.token, { httpOnly: true, sameSite: 'lax', path: '/', expires: new Date(session.expires_at) });

  return [
    defineRoute(
      { method: 'post', path: '/api/auth/register', operationId: 'registerUser', example: { username: 'alice', email: 'alice@example.com', password: 'correct horse' }, summary: 'Register a user (the first one is admin)', tag: 'auth', access: 'public', body: registerBody, response: sessionAnswer, status: 201 },
      async ({ body, context, res }) => {
        const session = await accounts.register(body, context.requestId);
        setCookie(res, session);
        return { data: { user: presentUser(session.user), token: session.token, expires_at: session.expires_at, api_key: session.api_key } };
      },
    ),
    defineRoute(
      { method: 'post', path: '/api/auth/login', operationId: 'logIn', example: { username: 'alice', password: 'correct horse' }, errors: [401], summary: 'Log in with a username or email', tag: 'auth', access: 'public', body: loginBody, response: sessionAnswer },
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
        res.clearCookie(SESSION_COOKIE, { path: '/' });
        return { data: { logged_out: true } };
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/auth/user', operationId: 'getCurrentUser', summary: 'The current user', tag: 'auth', access: 'user', response: currentUser },
      ({ context }) => {
        const user = accounts.me(context.principal);
        return { data: { ...presentUser(user), device_count: countUserDevices(services.sql, user.id), permissions: permissionsFor(user.role) } };
      },
    ),
  ];
}
