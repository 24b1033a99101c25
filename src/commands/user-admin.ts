import { DomainError, conflict, notFound } from '../domain/errors.js';
import { streams, type Role } from '../domain/events.js';
import { userDecider, type UserCommand } from '../domain/user.js';
import { deviceIds } from '../projections/devices.js';
import { countActiveAdmins, erasedUserIds, findUserById, listUsers, type UserRow } from '../projections/users.js';
import type { Devices } from './devices.js';
import type { Groups } from './groups.js';
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

  constructor(
    private readonly services: Services,
    private readonly devices: Devices,
    private readonly groups: Groups,
  ) {
    // An erasure cut short after its event, before its key was destroyed: finish it.
    for (const userId of erasedUserIds(services.sql)) services.personal.destroy(userId);
  }

  list(principal: Principal, page: { limit: number; offset: number }): { rows: UserRow[]; total: number } {
    requireAdmin(principal);
    return listUsers(this.services.sql, page.limit, page.offset);
  }

  async change(userId: string, changes: UserChanges, context: RequestContext): Promise<UserRow> {
    requireAdmin(context.principal);
    return this.lock.run('admins', async () => {
      const user = await this.existingUser(userId);
      const removesAdmin = changes.role === 'user' || changes.disabled === true;
      if (removesAdmin) this.keepAnAdmin(user);
      const commands: UserCommand[] = [];
      if (changes.device_quota !== undefined) commands.push({ type: 'set_quota', data: { device_quota: changes.device_quota } });
      if (changes.disabled !== undefined) commands.push({ type: 'set_disabled', data: { disabled: changes.disabled } });
      if (changes.role !== undefined) commands.push({ type: 'set_role', data: { role: changes.role } });
      await handle(this.services, userDecider, streams.user(userId), commands, context);
      return findUserById(this.services.sql, userId)!;
    });
  }

  /**
   * Crypto-shredding: the user's devices are decommissioned, the grants they hold and those on
   * their groups are revoked, their sessions and keys end, the erasure is recorded (naming no
   * personal data), then their key is destroyed, so their
   * personal data in the log, its exports and backups can no longer be read.
   */
  async erase(userId: string, context: RequestContext): Promise<void> {
    return this.lock.run('admins', async () => {
      const user = await this.existingUser(userId);
      this.keepAnAdmin(user);
      for (const deviceId of deviceIds(this.services.sql, userId)) await this.devices.decommission(deviceId, context);
      await this.groups.revokeAllOf(userId, context);
      await handle(this.services, userDecider, streams.user(userId), { type: 'erase_user' }, context);
      this.services.personal.destroy(userId);
    });
  }

  /** An erased user is gone: 404, like an unknown one. */
  private async existingUser(userId: string): Promise<UserRow> {
    await readModelsCaughtUp(this.services);
    const user = findUserById(this.services.sql, userId);
    if (!user || user.erased) throw notFound('user');
    return user;
  }

  private keepAnAdmin(user: UserRow): void {
    if (user.role === 'admin' && !user.disabled && countActiveAdmins(this.services.sql) <= 1) throw conflict('the last admin cannot be demoted, disabled or erased');
  }
}
