import type { MemberRole } from '../domain/events.js';
import type { Projection } from './projection.js';
import { queryBuilder as q, type Sql } from './sql.js';

/**
 * Names compare case-insensitively in JavaScript, for every script: SQLite's lower() folds
 * only ASCII, and the check and the index must agree.
 */
export const nameKey = (name: string): string => name.normalize('NFC').toLowerCase();

/**
 * Uniqueness is the command side's job; read-model indexes are never UNIQUE, so a
 * committed event can always be applied.
 */
export const groupsProjection: Projection = {
  name: 'groups',
  version: 3,
  tables: ['groups', 'group_members'],
  ddl: `
    CREATE TABLE IF NOT EXISTS groups (
      id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL, name_key TEXT NOT NULL, description TEXT, parent_id TEXT,
      created_at TEXT NOT NULL, updated_at TEXT NOT NULL, version INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS groups_user_name ON groups (user_id, name_key);
    CREATE INDEX IF NOT EXISTS groups_parent ON groups (parent_id);
    CREATE TABLE IF NOT EXISTS group_members (group_id TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL, granted_at TEXT NOT NULL, PRIMARY KEY (group_id, user_id)) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS group_members_user ON group_members (user_id);`,

  apply(sql, event) {
    switch (event.type) {
      case 'group.created': {
        const { group_id, ...group } = event.data;
        sql.run(
          q.insertInto('groups').values({ id: group_id, ...group, name_key: nameKey(group.name), created_at: event.recorded_at, updated_at: event.recorded_at, version: event.version }),
        );
        return;
      }
      case 'group.updated':
        sql.run(
          q
            .updateTable('groups')
            .set({ ...event.data.changes, ...(event.data.changes.name !== undefined ? { name_key: nameKey(event.data.changes.name) } : {}), updated_at: event.recorded_at, version: event.version })
            .where('id', '=', event.data.group_id),
        );
        return;
      case 'group.deleted':
        sql.run(q.deleteFrom('groups').where('id', '=', event.data.group_id));
        sql.run(q.deleteFrom('group_members').where('group_id', '=', event.data.group_id));
        return;
      case 'group.member_granted':
        sql.run(
          q
            .insertInto('group_members')
            .values({ group_id: event.data.group_id, user_id: event.data.member_id, role: event.data.role, granted_at: event.recorded_at })
            .onConflict((oc) => oc.columns(['group_id', 'user_id']).doUpdateSet({ role: event.data.role, granted_at: event.recorded_at })),
        );
        return;
      case 'group.member_revoked':
        sql.run(q.deleteFrom('group_members').where('group_id', '=', event.data.group_id).where('user_id', '=', event.data.member_id));
        return;
      default:
        return;
    }
  },
};

export type GroupRow = NonNullable<ReturnType<typeof findGroup>>;

export const findGroup = (sql: Sql, id: string) => sql.first(q.selectFrom('groups').selectAll().where('id', '=', id));

export const findGroupByName = (sql: Sql, userId: string, name: string) =>
  sql.first(
    q
      .selectFrom('groups')
      .select('id')
      .where('user_id', '=', userId)
      .where('name_key', '=', nameKey(name)),
  );

/** Every group of a user (or of everyone, for admins); the hierarchy is small enough to walk in memory. */
export const listGroups = (sql: Sql, userId: string | null): GroupRow[] => {
  let query = q.selectFrom('groups').selectAll().orderBy('created_at').orderBy('id');
  if (userId !== null) query = query.where('user_id', '=', userId);
  return sql.all(query);
};

export const countChildren = (sql: Sql, groupId: string): number =>
  sql.first(q.selectFrom('groups').select((eb) => eb.fn.countAll<number>().as('n')).where('parent_id', '=', groupId))?.n ?? 0;

/** The chain of parents above a group, nearest first. */
export function ancestorsOf(sql: Sql, groupId: string): string[] {
  const chain: string[] = [];
  let current = findGroup(sql, groupId)?.parent_id ?? null;
  while (current !== null && !chain.includes(current)) {
    chain.push(current);
    current = findGroup(sql, current)?.parent_id ?? null;
  }
  return chain;
}

const ROLE_RANK: Record<MemberRole, number> = { viewer: 1, operator: 2, manager: 3 };
export const roleAtLeast = (role: MemberRole, needed: MemberRole): boolean => ROLE_RANK[role] >= ROLE_RANK[needed];

/** The strongest role a user holds on a group, directly or through a group above it; null: none. */
export function memberRole(sql: Sql, userId: string, groupId: string): MemberRole | null {
  const chain = [groupId, ...ancestorsOf(sql, groupId)];
  const roles = sql.all(q.selectFrom('group_members').select('role').where('user_id', '=', userId).where('group_id', 'in', chain)).map((row) => row.role);
  return roles.reduce<MemberRole | null>((best, role) => (best === null || ROLE_RANK[role] > ROLE_RANK[best] ? role : best), null);
}

export const listMembers = (sql: Sql, groupId: string) =>
  sql.all(q.selectFrom('group_members').select(['user_id', 'role', 'granted_at']).where('group_id', '=', groupId).orderBy('granted_at').orderBy('user_id'));

/** The grants a user holds, as they were given (subgroups inherit each). */
export const grantsOf = (sql: Sql, userId: string) =>
  sql.all(q.selectFrom('group_members').select(['group_id', 'role']).where('user_id', '=', userId).orderBy('granted_at').orderBy('group_id'));

/** Every group a user was granted a role on, with all the groups below them. */
export function sharedGroupIds(sql: Sql, userId: string): string[] {
  const found = new Set(grantsOf(sql, userId).map((grant) => grant.group_id));
  for (let frontier = [...found]; frontier.length > 0; ) {
    const children = sql.all(q.selectFrom('groups').select('id').where('parent_id', 'in', frontier)).map((row) => row.id).filter((id) => !found.has(id));
    children.forEach((id) => found.add(id));
    frontier = children;
  }
  return [...found];
}

/**
 * Whether a user may use a device for `need`: its owner always, a member of a group it is in
 * when their role reaches `need`; `own` only the owner. What a user's rules may read and act on.
 */
export function userMayUse(sql: Sql, userId: string, device: { user_id: string; group_id: string | null }, need: MemberRole | 'own'): boolean {
  if (device.user_id === userId) return true;
  if (need === 'own' || device.group_id === null) return false;
  const role = memberRole(sql, userId, device.group_id);
  return role !== null && roleAtLeast(role, need);
}

/** The same for a group (and through it its subgroups' devices). */
export function userMayUseGroup(sql: Sql, userId: string, group: { id: string; user_id: string }, need: MemberRole): boolean {
  if (group.user_id === userId) return true;
  const role = memberRole(sql, userId, group.id);
  return role !== null && roleAtLeast(role, need);
}
