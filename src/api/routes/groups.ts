import { z } from 'zod';
import type { Groups } from '../../commands/groups.js';
import { visibleGroup } from '../../commands/groups.js';
import { ownerScope, type Principal, type Services } from '../../commands/services.js';
import { groupSummaries } from '../../projections/group-summaries.js';
import { findGroup, sharedGroupIds } from '../../projections/groups.js';
import { presentGroup } from '../presenters.js';
import { defineRoute, ifMatchVersion } from '../route.js';
import { deleted, listMeta } from '../schemas/common.js';
import { createGroupBody, grantMemberBody, group, groupTree, listGroupsQuery, member, revokedMember, updateGroupBody } from '../schemas/groups.js';

export function groupRoutes(services: Services, groups: Groups) {
  const summaryOf = (principal: Principal, groupId: string) => {
    const row = visibleGroup(services, principal, groupId, 'viewer');
    const summary = groupSummaries(services.sql, row.user_id).find((s) => s.id === groupId)!;
    return { data: presentGroup(summary), etag: summary.version };
  };
  const parentOf = (body: { parent_id?: string | null | undefined; parent_group?: string | null | undefined }) =>
    body.parent_id !== undefined ? body.parent_id : body.parent_group;

  return [
    defineRoute(
      { method: 'get', path: '/api/groups', operationId: 'listGroups', summary: 'Your groups and those shared with you, flat with parent_id, or nested with ?tree=true', tag: 'groups', access: 'user', query: listGroupsQuery, response: z.union([group.array(), groupTree.array()]), list: true },
      ({ query, context }) => {
        const userId = ownerScope(context.principal);
        const all = [...groupSummaries(services.sql, userId), ...(userId === null ? [] : sharedGroups(services, userId))];
        const visibleIds = new Set(all.map((g) => g.id));
        const chosen = query.tree ? all.filter((g) => g.parent_id === null || !visibleIds.has(g.parent_id)) : all;
        const page = chosen.slice(query.offset, query.offset + query.limit);
        return { data: page.map((g) => presentGroup(g, query.tree === true)), meta: listMeta(chosen.length, query) };
      },
    ),
    defineRoute(
      { method: 'post', path: '/api/groups', operationId: 'createGroup', etag: true, summary: 'Create a group (optionally under a parent)', tag: 'groups', access: 'user', body: createGroupBody, response: group, status: 201 },
      async ({ body, context }) => {
        const created = await groups.create({ name: body.name, description: body.description ?? null, parent_id: parentOf(body) ?? null }, context);
        return { ...summaryOf(context.principal, created.id), status: 201 };
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/groups/:id', operationId: 'getGroup', etag: true, summary: 'A group with its device counts', tag: 'groups', access: 'user', response: group },
      ({ params, context }) => summaryOf(context.principal, params.id!),
    ),
    defineRoute(
      { method: 'put', path: '/api/groups/:id', operationId: 'updateGroup', ifMatch: true, etag: true, summary: 'Rename, describe or move a group (no cycles)', tag: 'groups', access: 'user', body: updateGroupBody, response: group },
      async ({ params, body, context, req }) => {
        const parent = parentOf(body);
        const changes = {
          ...(body.name !== undefined ? { name: body.name } : {}),
          ...(body.description !== undefined ? { description: body.description } : {}),
          ...(parent !== undefined ? { parent_id: parent } : {}),
        };
        await groups.update(params.id!, changes, context, ifMatchVersion(req));
        return summaryOf(context.principal, params.id!);
      },
    ),
    defineRoute(
      { method: 'delete', path: '/api/groups/:id', operationId: 'deleteGroup', ifMatch: true, summary: 'Delete a group without subgroups; its devices become ungrouped (honours If-Match)', tag: 'groups', access: 'user', response: deleted },
      async ({ params, context, req }) => {
        await groups.delete(params.id!, context, ifMatchVersion(req));
        return { data: { id: params.id!, deleted: true } };
      },
    ),
    ...memberRoutes(groups),
  ];
}

/** Sharing a group: its owner (or an admin) grants viewer, operator or manager; members see the list. */
function memberRoutes(groups: Groups) {
  return [
    defineRoute(
      { method: 'get', path: '/api/groups/:id/members', operationId: 'listGroupMembers', summary: "Who shares the group and with which role (its owner, admins and members)", tag: 'groups', access: 'user', response: member.array() },
      ({ params, context }) => ({ data: groups.members(params.id!, context.principal) }),
    ),
    defineRoute(
      { method: 'post', path: '/api/groups/:id/members', operationId: 'grantGroupMember', summary: 'Grant a user viewer, operator or manager on the group and its subgroups (owner or admin); granting again changes the role', tag: 'groups', access: 'user', body: grantMemberBody, response: member, status: 201 },
      async ({ params, body, context }) => ({ data: await groups.grant(params.id!, body, context), status: 201 }),
    ),
    defineRoute(
      { method: 'delete', path: '/api/groups/:id/members/:user_id', operationId: 'revokeGroupMember', summary: "Revoke a member's access at once (owner or admin)", tag: 'groups', access: 'user', response: revokedMember },
      async ({ params, context }) => {
        await groups.revoke(params.id!, params.user_id!, context);
        return { data: { group_id: params.id!, user_id: params.user_id!, revoked: true } };
      },
    ),
  ];
}

/** The groups shared with a user (with those below them), summarised as their owners see them. */
function sharedGroups(services: Services, userId: string) {
  const shared = new Set(sharedGroupIds(services.sql, userId));
  const owners = new Set([...shared].map((id) => findGroup(services.sql, id)?.user_id).filter((owner): owner is string => owner !== undefined && owner !== userId));
  return [...owners].flatMap((owner) => groupSummaries(services.sql, owner).filter((group) => shared.has(group.id)));
}
