import type { Services } from '../../commands/services.js';
import type { UserAdmin } from '../../commands/user-admin.js';
import { presentManagedUser } from '../presenters.js';
import { defineRoute } from '../route.js';
import { changeUserBody, managedUser } from '../schemas/accounts.js';
import { listMeta, paging } from '../schemas/common.js';

/** User management: admins only (403 for anyone else, as for verifying the log). */
export function userRoutes(_services: Services, admin: UserAdmin) {
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
  ];
}
