import { DomainError, conflict, notFound } from '../domain/errors.js';
import { streams, type Role } from '../domain/events.js';
import { userDecider, type UserCommand } from '../domain/user.js';
import { countActiveAdmins, findUserById, listUsers, type UserRow } from '../projections/users.js';
import { handle } from './handle.js';
import { KeyedLock } from './keyed-lock.js';
import { isAdmin, readModelsCaughtUp, type Principal, type RequestContext, type Services } from './services.js';

export interface UserChanges {
  device_quota?: number | undefined;
  disabled?: boolean | undefined;
  role?: Role | undefined;
}

export function requireAdmin(principal: Principal): void {
  if (!isAdmin(principal)) throw new DomainError('forbidden', 'only an admin can manage users');
}

/** An admin's view of users: quotas, disabling, roles. The system always keeps one admin who can act. */
export class UserAdmin {
  /** One key: whether an admin remains depends on every user at once. */
  private readonly lock = new KeyedLock();

  constructor(private readonly services: Services) {}

  list(principal: Principal, page: { limit: number; offset: number }): { rows: UserRow[]; total: number } {
    requireAdmin(principal);
    return listUsers(this.services.sql, page.limit, page.offset);
  }

  async change(userId: string, changes: UserChanges, context: RequestContext): Promise<UserRow> {
    requireAdmin(context.principal);
    return this.lock.run('admins', async () => {
      await readModelsCaughtUp(this.services);
      const user = findUserById(this.services.sql, userId);
      if (!user) throw notFound('user');
      const removesAdmin = user.role === 'admin' && !user.disabled && (changes.role === 'user' || changes.disabled === true);
      if (removesAdmin && countActiveAdmins(this.services.sql) <= 1) throw conflict('the last admin cannot be demoted or disabled');
      const commands: UserCommand[] = [];
      if (changes.device_quota !== undefined) commands.push({ type: 'set_quota', data: { device_quota: changes.device_quota } });
      if (changes.disabled !== undefined) commands.push({ type: 'set_disabled', data: { disabled: changes.disabled } });
      if (changes.role !== undefined) commands.push({ type: 'set_role', data: { role: changes.role } });
      await handle(this.services, userDecider, streams.user(userId), commands, context);
      return findUserById(this.services.sql, userId)!;
    });
  }
}
