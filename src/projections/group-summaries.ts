import { deviceIds, deviceConnectivityCountsByGroup } from './devices.js';
import { findGroup, listGroups, type GroupRow } from './groups.js';
import type { Sql } from './sql.js';

export interface GroupSummary extends GroupRow {
  device_count: number;
  total_device_count: number;
  statistics: { online: number; offline: number };
  children: GroupSummary[];
}

/**
 * Every visible group with its direct and total (subgroups included) device counts.
 * statistics counts the devices of the group and its subgroups: online, and everything else.
 */
export function groupSummaries(sql: Sql, userId: string | null): GroupSummary[] {
  const groups = listGroups(sql, userId);
  const direct = new Map<string, { total: number; online: number }>();
  for (const { group_id, connectivity, n } of deviceConnectivityCountsByGroup(sql, userId)) {
    const entry = direct.get(group_id!) ?? { total: 0, online: 0 };
    entry.total += n;
    if (connectivity === 'online') entry.online += n;
    direct.set(group_id!, entry);
  }
  const summaries = new Map<string, GroupSummary>(
    groups.map((group) => [
      group.id,
      { ...group, device_count: direct.get(group.id)?.total ?? 0, total_device_count: 0, statistics: { online: 0, offline: 0 }, children: [] },
    ]),
  );
  for (const summary of summaries.values()) {
    if (summary.parent_id) summaries.get(summary.parent_id)?.children.push(summary);
  }
  const totals = (summary: GroupSummary, seen: Set<string>): { total: number; online: number } => {
    if (seen.has(summary.id)) return { total: 0, online: 0 };
    seen.add(summary.id);
    const own = direct.get(summary.id) ?? { total: 0, online: 0 };
    return summary.children.reduce((sum, child) => {
      const sub = totals(child, seen);
      return { total: sum.total + sub.total, online: sum.online + sub.online };
    }, own);
  };
  for (const summary of summaries.values()) {
    const { total, online } = totals(summary, new Set());
    summary.total_device_count = total;
    summary.statistics = { online, offline: total - online };
  }
  return [...summaries.values()];
}

/** The ids of a group and all its subgroups. */
export function subtreeIds(summaries: readonly GroupSummary[], rootId: string): string[] {
  const root = summaries.find((s) => s.id === rootId);
  if (!root) return [];
  const ids: string[] = [];
  const walk = (node: GroupSummary) => {
    if (ids.includes(node.id)) return;
    ids.push(node.id);
    node.children.forEach(walk);
  };
  walk(root);
  return ids;
}

/** The devices of a group and its subgroups: where a group command goes. */
export const devicesOfGroupTree = (sql: Sql, userId: string, groupId: string): string[] => deviceIds(sql, userId, subtreeIds(groupSummaries(sql, userId), groupId));

/** The devices a command to a group reaches, as the group's owner sees them (a member's rule or request acts for the owner). */
export function groupCommandTargets(sql: Sql, groupId: string): string[] {
  const group = findGroup(sql, groupId);
  return group ? devicesOfGroupTree(sql, group.user_id, groupId) : [];
}
