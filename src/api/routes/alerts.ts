import { changeAlert } from '../../commands/alerts.js';
import { visibleDevice } from '../../commands/devices.js';
import { visibleGroup } from '../../commands/groups.js';
import { ownerScope, type Services } from '../../commands/services.js';
import type { AlertRow } from '../../projections/alerts.js';
import { listAlerts } from '../../projections/alerts.js';
import { commandStats } from '../../projections/commands.js';
import { ruleCounts } from '../../projections/rules.js';
import { alertAnalytics, deviceCounts, readingAnalytics } from '../../projections/analytics.js';
import { deviceIds, sharedDeviceIds } from '../../projections/devices.js';
import { devicesOfGroupTree } from '../../projections/group-summaries.js';
import { defineRoute } from '../route.js';
import { listMeta } from '../schemas/common.js';
import { alert, alertsQuery, analytics, analyticsQuery } from '../schemas/telemetry.js';

const presentAlert = ({ user_id: _user, updated_at: _updated, version: _version, ...row }: AlertRow) => row;

const DAY_MS = 24 * 3_600_000;

export function alertRoutes(services: Services) {
  return [
    defineRoute(
      { method: 'get', path: '/api/alerts', operationId: 'listAlerts', summary: 'Alerts of your devices and of devices shared with you (filters: status, severity, device_id), most recent first', tag: 'alerts', access: 'user', query: alertsQuery, response: alert.array(), list: true },
      ({ query, context }) => {
        const userId = ownerScope(context.principal);
        const { rows, total } = listAlerts(services.sql, {
          userId,
          ...(userId !== null ? { sharedDeviceIds: sharedDeviceIds(services.sql, userId) } : {}),
          ...(query.status ? { status: query.status } : {}),
          ...(query.severity ? { severity: query.severity } : {}),
          ...(query.device_id ? { deviceId: query.device_id } : {}),
          limit: query.limit,
          offset: query.offset,
        });
        return { data: rows.map(presentAlert), meta: listMeta(total, query) };
      },
    ),
    ...(['acknowledge', 'clear'] as const).map((action) =>
      defineRoute(
        { method: 'post', path: `/api/alerts/:id/${action}`, operationId: action === 'clear' ? 'clearAlert' : 'acknowledgeAlert', etag: true, summary: `${action === 'clear' ? 'Clear' : 'Acknowledge'} an alert`, tag: 'alerts', access: 'user', response: alert },
        async ({ params, context }) => {
          const row = await changeAlert(services, params.id!, action === 'clear' ? 'clear_alert' : 'acknowledge_alert', context);
          return { data: presentAlert(row), etag: row.version };
        },
      ),
    ),
    defineRoute(
      { method: 'get', path: '/api/analytics', operationId: 'getAnalytics', summary: 'Device, reading, command, rule and alert analytics over a range (default: the last 24 h)', tag: 'analytics', access: 'user', query: analyticsQuery, response: analytics },
      ({ query, context }) => {
        const scopeUser = ownerScope(context.principal);
        let ids: string[];
        // A device or group shared with the caller counts whole, as its owner sees it; so do the
        // shared devices in a fleet-wide answer (the same devices GET /api/devices lists).
        const shared = scopeUser === null || query.device_id || query.group_id ? [] : sharedDeviceIds(services.sql, scopeUser);
        if (query.device_id) ids = [visibleDevice(services, context.principal, query.device_id, 'viewer').id];
        else if (query.group_id) {
          const group = visibleGroup(services, context.principal, query.group_id, 'viewer');
          ids = devicesOfGroupTree(services.sql, group.user_id, group.id);
        } else ids = [...new Set([...deviceIds(services.sql, scopeUser), ...shared])];
        const end = query.end_date ?? services.clock.now().toISOString();
        const start = query.start_date ?? new Date(Date.parse(end) - DAY_MS).toISOString();
        const scope = { deviceIds: ids, userId: scopeUser, start, end };
        return {
          data: {
            devices: deviceCounts(services.sql, ids),
            readings: readingAnalytics(services.sql, scope),
            commands: commandStats(services.sql, ids, { start, end }),
            rules: ruleCounts(services.sql, { userId: scopeUser, start, end, deviceIds: query.device_id || query.group_id ? ids : null }),
            // The devices are authorised above: their alerts count whoever's they are (a shared device's are its owner's).
            alerts: query.device_id || query.group_id ? alertAnalytics(services.sql, { ...scope, userId: null, fleetWide: false }) : alertAnalytics(services.sql, { ...scope, fleetWide: true, sharedDeviceIds: shared }),
          },
        };
      },
    ),
  ];
}
