import type { Accounts } from '../../commands/accounts.js';
import { requireAdmin, type UserAdmin } from '../../commands/user-admin.js';
import { SESSION_COOKIE } from '../auth.js';
import { presentManagedUser } from '../presenters.js';
import { defineRoute } from '../route.js';
import { changeUserBody, eraseSelfBody, erasedUser, managedUser } from '../schemas/accounts.js';
import { listMeta, paging } from '../schemas/common.js';

/** User management: admins only (403 for anyone else, as for verifying the log). */
export function userRoutes(accounts: Accounts, admin: UserAdmin) {
  return [
    defineRoute(
      { method: 'get', path: '/api/users', operationId: 'listUsers', summary: 'Every user, with quota, role and whether disabled (admin)', tag: 'users', access: 'user', query: paging, response: managedUser.array(), list: true },
      ({ query, context }) => {
        const { rows, total } = admin.list(context.principal, query);
        return { data: rows.map(presentManagedUser), meta: listMeta(total, query) };
      },
    ),
    defineRoute(
      { method: 'patch', path: '/api/users/:id', operationId: 'updateUser', summary: 'Set a quota, disable or enable, promote or demote (admin; never the last admin: 409)', tag: 'users', access: 'user', body: changeUserBody, response: managedUser },
      async ({ params, body, context }) => ({ data: presentManagedUser(await admin.change(params.id!, body, context)) }),
    ),
    defineRoute(
      { method: 'delete', path: '/api/users/:id', operationId: 'eraseUser', summary: "Erase a user: devices decommissioned, sessions and keys revoked, personal data made unreadable (admin; never the last admin: 409)", tag: 'users', access: 'user', response: erasedUser },
      async ({ params, context }) => {
        requireAdmin(context.principal);
        await admin.erase(params.id!, context);
        return { data: { id: params.id!, erased: true } };
      },
    ),
    defineRoute(
      { method: 'delete', path: '/api/auth/user', operationId: 'eraseSelf', summary: 'Erase your own account (with your password): as an admin erasing you', tag: 'auth', access: 'user', body: eraseSelfBody, response: erasedUser },
      async ({ body, context, req, res }) => {
        const userId = context.principal.userId;
        await accounts.confirmPassword(userId, body.password, req.ip ?? 'unknown');
        await admin.erase(userId, context);
        res.clearCookie(SESSION_COOKIE, { path: '/' });
        return { data: { id: userId, erased: true } };
      },
    ),
  ];
}
