import { DomainError, invalid, notFound } from '../domain/errors.js';
import { streams } from '../domain/events.js';
import { groupDecider, type GroupChanges } from '../domain/group.js';
import type { MemberRole } from '../domain/events.js';
import { ancestorsOf, countChildren, findGroup, findGroupByName, grantsOf, listGroups, listMembers, memberRole, roleAtLeast, type GroupRow } from '../projections/groups.js';
import { findUserById, findUserByLogin } from '../projections/users.js';
import { groupLockKey, requireUser, type DeviceNeed } from './devices.js';
import { handle, type IfMatch } from './handle.js';
import { mayAccess, readModelsCaughtUp, type Principal, type RequestContext, type Services } from './services.js';

/**
 * A group as its owner or an admin may use it, or a member whose role reaches `need`; anyone
 * else gets 404, a member whose role falls short 403.
 */
export function visibleGroup(services: Services, principal: Principal, groupId: string, need: DeviceNeed = 'own'): GroupRow {
  const group = findGroup(services.sql, groupId);
  if (!group) throw notFound('group');
  if (mayAccess(principal, group.user_id)) return group;
  const role = principal.kind === 'user' ? memberRole(services.sql, principal.userId, groupId) : null;
  if (role === null) throw notFound('group');
  if (need === 'own' || !roleAtLeast(role, need)) throw new DomainError('forbidden', `your role on this group (${role}) does not allow this`);
  return group;
}

export type MemberRow = ReturnType<typeof listMembers>[number] & { username: string };

export class Groups {
  constructor(private readonly services: Services) {}

  async create(input: { name: string; description: string | null; parent_id: string | null }, context: RequestContext): Promise<GroupRow> {
    const userId = requireUser(context.principal);
    return this.services.locks.owners.run(groupLockKey(userId), async () => {
      await readModelsCaughtUp(this.services);
      this.checkName(userId, input.name, null);
      this.checkParent(input.parent_id, userId);
      const groupId = this.services.newId();
      await handle(this.services, groupDecider, streams.group(groupId), { type: 'create_group', data: { group_id: groupId, user_id: userId, ...input } }, context);
      return findGroup(this.services.sql, groupId)!;
    });
  }

  /** By its owner, an admin, or a manager of it (who may move it only among the owner's groups). */
  async update(groupId: string, changes: GroupChanges, context: RequestContext, ifMatch?: IfMatch): Promise<GroupRow> {
    const group = visibleGroup(this.services, context.principal, groupId, 'manager');
    return this.services.locks.owners.run(groupLockKey(group.user_id), async () => {
      if (changes.name !== undefined) this.checkName(group.user_id, changes.name, groupId);
      if (changes.parent_id) this.checkParent(changes.parent_id, group.user_id);
      const ancestors = changes.parent_id ? ancestorsOf(this.services.sql, changes.parent_id) : [];
      await handle(
        this.services,
        groupDecider,
        streams.group(groupId),
        { type: 'update_group', data: { changes, ancestors_of_new_parent: ancestors } },
        context,
        ifMatch !== undefined ? { ifMatch } : {},
      );
      return findGroup(this.services.sql, groupId)!;
    });
  }

  async delete(groupId: string, context: RequestContext, ifMatch?: IfMatch): Promise<void> {
    const group = visibleGroup(this.services, context.principal, groupId);
    // Children are counted under the lock: a subgroup created meanwhile must stop the delete.
    await this.services.locks.owners.run(groupLockKey(group.user_id), () => {
      const command = { type: 'delete_group', data: { child_count: countChildren(this.services.sql, groupId) } } as const;
      return handle(this.services, groupDecider, streams.group(groupId), command, context, { ...(ifMatch !== undefined ? { ifMatch } : {}) });
    });
  }

  /** Members see who else shares the group; only its owner (or an admin) changes them. */
  members(groupId: string, principal: Principal): MemberRow[] {
    visibleGroup(this.services, principal, groupId, 'viewer');
    return listMembers(this.services.sql, groupId).map((member) => ({ ...member, username: findUserById(this.services.sql, member.user_id)?.username ?? '' }));
  }

  async grant(groupId: string, input: { user_id?: string | undefined; username?: string | undefined; role: MemberRole }, context: RequestContext): Promise<MemberRow> {
    visibleGroup(this.services, context.principal, groupId);
    const member = input.user_id !== undefined ? findUserById(this.services.sql, input.user_id) : findUserByLogin(this.services.sql, input.username ?? '');
    if (!member || member.erased) throw invalid(input.user_id !== undefined ? 'user_id' : 'username', 'no such user');
    await handle(this.services, groupDecider, streams.group(groupId), { type: 'grant_member', data: { member_id: member.id, role: input.role } }, context);
    return this.members(groupId, context.principal).find((m) => m.user_id === member.id)!;
  }

  async revoke(groupId: string, memberId: string, context: RequestContext): Promise<void> {
    visibleGroup(this.services, context.principal, groupId);
    await this.revokeNow(groupId, memberId, context);
  }

  /**
   * Every grant a user holds, and every grant on their groups, ends, each a revocation in its
   * group's history: when the user is erased, no membership outlives them on either side.
   */
  async revokeAllOf(userId: string, context: RequestContext): Promise<void> {
    const { sql } = this.services;
    for (const grant of grantsOf(sql, userId)) await this.revokeNow(grant.group_id, userId, context);
    for (const group of listGroups(sql, userId)) {
      for (const member of listMembers(sql, group.id)) await this.revokeNow(group.id, member.user_id, context);
    }
  }

  private revokeNow(groupId: string, memberId: string, context: RequestContext): Promise<unknown> {
    return handle(this.services, groupDecider, streams.group(groupId), { type: 'revoke_member', data: { member_id: memberId } }, context);
  }

  private checkName(userId: string, name: string, self: string | null): void {
    const existing = findGroupByName(this.services.sql, userId, name);
    if (existing && existing.id !== self) {
      throw new DomainError('already_exists', 'a group with this name exists', [{ path: 'name', message: 'already taken' }]);
    }
  }

  private checkParent(parentId: string | null, userId: string): void {
    if (!parentId) return;
    const parent = findGroup(this.services.sql, parentId);
    if (!parent || parent.user_id !== userId) throw invalid('parent_id', 'no such parent group');
  }
}

