import { describe, expect, it } from 'vitest';
import { fold } from '../../src/domain/decider.js';
import type { DomainEvent, EventOfType } from '../../src/domain/events.js';
import { groupDecider } from '../../src/domain/group.js';
import { spec } from '../helpers/decider-spec.js';

const group = spec(groupDecider);

const creation: EventOfType<'group.created'>['data'] = { group_id: 'g1', user_id: 'u1', name: 'Lab', description: null, parent_id: 'p1' };
const created: EventOfType<'group.created'> = { type: 'group.created', data: creation };
const deleted: EventOfType<'group.deleted'> = { type: 'group.deleted', data: { group_id: 'g1', user_id: 'u1' } };
const updated = (changes: EventOfType<'group.updated'>['data']['changes']): EventOfType<'group.updated'> => ({
  type: 'group.updated',
  data: { group_id: 'g1', changes },
});
const move = (parent_id: string | null, ancestors_of_new_parent: readonly string[] = []) =>
  ({ type: 'update_group', data: { changes: { parent_id }, ancestors_of_new_parent } }) as const;
const foreign: DomainEvent = { type: 'device.decommissioned', data: { device_id: 'd1', user_id: 'u1' } };

describe('group decider: create_group', () => {
  it('creates a group', () => {
    group.given([]).when({ type: 'create_group', data: creation }).then([created]);
  });

  it('creates a root group', () => {
    group.given([]).when({ type: 'create_group', data: { ...creation, parent_id: null } }).then([{ type: 'group.created', data: { ...creation, parent_id: null } }]);
  });

  it('refuses to create it twice', () => {
    group.given([created]).when({ type: 'create_group', data: creation }).thenThrows('already_exists');
  });

  it('refuses to create over a deleted group', () => {
    group.given([created, deleted]).when({ type: 'create_group', data: creation }).thenThrows('already_exists');
  });

  it('refuses a group that is its own parent, naming parent_id', () => {
    const error = group.given([]).when({ type: 'create_group', data: { ...creation, parent_id: 'g1' } }).thenThrows('validation_failed');
    expect(error.details.map((d) => d.path)).toEqual(['parent_id']);
  });
});

describe('group decider: update_group', () => {
  it('renames and describes, recording only what changes', () => {
    group
      .given([created])
      .when({ type: 'update_group', data: { changes: { name: 'Lab 2', description: 'second floor', parent_id: 'p1' }, ancestors_of_new_parent: [] } })
      .then([updated({ name: 'Lab 2', description: 'second floor' })]);
  });

  it('decides nothing when nothing changes', () => {
    group.given([created]).when({ type: 'update_group', data: { changes: { name: 'Lab', description: null }, ancestors_of_new_parent: [] } }).thenNothing();
    group.given([created]).when({ type: 'update_group', data: { changes: {}, ancestors_of_new_parent: [] } }).thenNothing();
    group.given([created]).when(move('p1', ['root'])).thenNothing();
  });

  it('compares against the state after earlier updates', () => {
    group.given([created, updated({ name: 'Renamed' })]).when({ type: 'update_group', data: { changes: { name: 'Renamed' }, ancestors_of_new_parent: [] } }).thenNothing();
  });

  it('moves the group under another parent', () => {
    group.given([created]).when(move('p2', ['root'])).then([updated({ parent_id: 'p2' })]);
  });

  it('moves the group to the root', () => {
    group.given([created]).when(move(null)).then([updated({ parent_id: null })]);
  });

  it('refuses to make the group its own parent', () => {
    const error = group.given([created]).when(move('g1')).thenThrows('validation_failed');
    expect(error.details.map((d) => d.path)).toEqual(['parent_id']);
  });

  it('refuses to move the group under its own child (a cycle)', () => {
    group.given([created]).when(move('child', ['g1', 'p1'])).thenThrows('validation_failed');
  });

  it('refuses to move the group under a deeper descendant (a longer cycle)', () => {
    group.given([created]).when(move('grandchild', ['child', 'g1', 'p1'])).thenThrows('validation_failed');
  });

  it('refuses to update an unknown group', () => {
    group.given([]).when(move('p2')).thenThrows('not_found');
  });

  it('refuses to update a deleted group', () => {
    group.given([created, deleted]).when({ type: 'update_group', data: { changes: { name: 'x' }, ancestors_of_new_parent: [] } }).thenThrows('not_found');
  });

  it('skips events of other types in the stream', () => {
    group.given([foreign, created, foreign]).when(move('p2')).then([updated({ parent_id: 'p2' })]);
  });
});

describe('group decider: delete_group', () => {
  it('deletes a group without subgroups', () => {
    group.given([created]).when({ type: 'delete_group', data: { child_count: 0 } }).then([deleted]);
  });

  it('refuses to delete a group with subgroups', () => {
    group.given([created]).when({ type: 'delete_group', data: { child_count: 2 } }).thenThrows('conflict');
  });

  it('refuses to delete an unknown group', () => {
    group.given([]).when({ type: 'delete_group', data: { child_count: 0 } }).thenThrows('not_found');
  });

  it('refuses to delete a group twice', () => {
    group.given([created, deleted]).when({ type: 'delete_group', data: { child_count: 0 } }).thenThrows('not_found');
  });
});

describe('group decider: fold', () => {
  it('applies updates over the creation and skips foreign events', () => {
    expect(fold(groupDecider, [foreign, created, updated({ name: 'B', parent_id: null }), foreign])).toEqual({
      status: 'active',
      group_id: 'g1',
      user_id: 'u1',
      name: 'B',
      description: null,
      parent_id: null,
      members: new Map(),
    });
  });

  it('ignores updates and deletions before creation', () => {
    expect(fold(groupDecider, [updated({ name: 'B' }), deleted])).toEqual({ status: 'none' });
  });
});

describe('group decider: members', () => {
  const groupCreated: DomainEvent = { type: 'group.created', data: { group_id: 'g1', user_id: 'u1', name: 'A', description: null, parent_id: null } };
  const granted: DomainEvent = { type: 'group.member_granted', data: { group_id: 'g1', member_id: 'u2', role: 'viewer' } };

  it('grants a role, changes it, and records nothing when it is already so', () => {
    group.given([groupCreated]).when({ type: 'grant_member', data: { member_id: 'u2', role: 'viewer' } }).then([granted]);
    group.given([groupCreated, granted]).when({ type: 'grant_member', data: { member_id: 'u2', role: 'viewer' } }).then([]);
    group.given([groupCreated, granted]).when({ type: 'grant_member', data: { member_id: 'u2', role: 'manager' } }).then([{ type: 'group.member_granted', data: { group_id: 'g1', member_id: 'u2', role: 'manager' } }]);
  });

  it('refuses the owner as a member, and revoking someone who is not one', () => {
    group.given([groupCreated]).when({ type: 'grant_member', data: { member_id: 'u1', role: 'viewer' } }).thenThrows('validation_failed');
    group.given([groupCreated]).when({ type: 'revoke_member', data: { member_id: 'u2' } }).thenThrows('not_found');
    group.given([groupCreated, granted]).when({ type: 'revoke_member', data: { member_id: 'u2' } }).then([{ type: 'group.member_revoked', data: { group_id: 'g1', member_id: 'u2' } }]);
  });
});
