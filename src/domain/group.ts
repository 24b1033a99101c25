import { changedFields, type Decider } from './decider.js';
import { DomainError, conflict, invalid, notFound } from './errors.js';
import type { EventOfType, MemberRole } from './events.js';

export type GroupEvent = EventOfType<'group.created' | 'group.updated' | 'group.deleted' | 'group.member_granted' | 'group.member_revoked'>;
export type GroupChanges = EventOfType<'group.updated'>['data']['changes'];

/**
 * Facts about other groups (ancestors, children) come in with the command:
 * the handler reads them, the decider stays pure.
 */
export type GroupCommand =
  | { type: 'create_group'; data: EventOfType<'group.created'>['data'] }
  | { type: 'update_group'; data: { changes: GroupChanges; ancestors_of_new_parent: readonly string[] } }
  | { type: 'delete_group'; data: { child_count: number } }
  | { type: 'grant_member'; data: { member_id: string; role: MemberRole } }
  | { type: 'revoke_member'; data: { member_id: string } };

export type GroupState =
  | { status: 'none' }
  | {
      status: 'active' | 'deleted';
      group_id: string;
      user_id: string;
      name: string;
      description: string | null;
      parent_id: string | null;
      members: ReadonlyMap<string, MemberRole>;
    };

function withMember(state: GroupState, memberId: string, role: MemberRole | null): GroupState {
  if (state.status === 'none') return state;
  const members = new Map(state.members);
  if (role === null) members.delete(memberId);
  else members.set(memberId, role);
  return { ...state, members };
}

export const groupDecider: Decider<GroupCommand, GroupState, GroupEvent> = {
  eventTypes: new Set(['group.created', 'group.updated', 'group.deleted', 'group.member_granted', 'group.member_revoked']),
  initialState: () => ({ status: 'none' }),

  evolve(state, event) {
    switch (event.type) {
      case 'group.created':
        return { status: 'active', ...event.data, members: new Map() };
      case 'group.updated':
        if (state.status === 'none') return state;
        return { ...state, ...event.data.changes };
      case 'group.deleted':
        if (state.status === 'none') return state;
        return { ...state, status: 'deleted' };
      case 'group.member_granted':
        return withMember(state, event.data.member_id, event.data.role);
      case 'group.member_revoked':
        return withMember(state, event.data.member_id, null);
    }
  },

  decide(command, state) {
    if (command.type === 'create_group') {
      if (state.status !== 'none') throw new DomainError('already_exists', 'group already exists');
      if (command.data.parent_id === command.data.group_id) throw invalid('parent_id', 'a group cannot be its own parent');
      return [{ type: 'group.created', data: command.data }];
    }
    if (state.status !== 'active') throw notFound('group');
    switch (command.type) {
      case 'update_group': {
        const { changes, ancestors_of_new_parent } = command.data;
        if (changes.parent_id && (changes.parent_id === state.group_id || ancestors_of_new_parent.includes(state.group_id))) {
          throw invalid('parent_id', 'moving the group there would create a cycle');
        }
        const changed: GroupChanges = changedFields(state, changes);
        if (Object.keys(changed).length === 0) return [];
        return [{ type: 'group.updated', data: { group_id: state.group_id, changes: changed } }];
      }
      case 'delete_group':
        if (command.data.child_count > 0) throw conflict('the group has subgroups; move or delete them first');
        return [{ type: 'group.deleted', data: { group_id: state.group_id, user_id: state.user_id } }];
      case 'grant_member': {
        const { member_id, role } = command.data;
        if (member_id === state.user_id) throw invalid('user_id', 'the owner of a group already has every right on it');
        if (state.members.get(member_id) === role) return [];
        return [{ type: 'group.member_granted', data: { group_id: state.group_id, member_id, role } }];
      }
      case 'revoke_member':
        if (!state.members.has(command.data.member_id)) throw notFound('member');
        return [{ type: 'group.member_revoked', data: { group_id: state.group_id, member_id: command.data.member_id } }];
    }
  },
};
