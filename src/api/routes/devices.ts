import { deviceAsOf, visibleDevice, type Devices } from '../../commands/devices.js';
import { ownerScope, type Services } from '../../commands/services.js';
import { streams } from '../../domain/events.js';
import { commandStats, listCommands } from '../../projections/commands.js';
import { listDevices } from '../../projections/devices.js';
import { countReadingsSince, latestReadings } from '../../projections/telemetry-queries.js';
import { presentDevice } from '../presenters.js';
import { presentCommand } from './commands.js';
import { defineRoute, ifMatchVersion } from '../route.js';
import { deleted, listMeta, paging } from '../schemas/common.js';
import { device, deviceDetail, deviceDetailQuery, listDevicesQuery, registerDeviceBody, registeredDevice, storedEvent, updateDeviceBody } from '../schemas/devices.js';

export function deviceRoutes(services: Services, devices: Devices) {
  return [
    defineRoute(
      { method: 'post', path: '/api/devices', summary: 'Register a device; its token is shown only here', tag: 'devices', access: 'user', body: registerDeviceBody, response: registeredDevice, status: 201 },
      async ({ body, context }) => {
        const { type, device_type, ...rest } = body;
        const { device: row, token } = await devices.register(
          {
            name: rest.name,
            device_type: (device_type ?? type)!,
            description: rest.description ?? null,
            ip_address: rest.ip_address ?? null,
            mac_address: rest.mac_address ?? null,
            group_id: rest.group_id ?? null,
            configuration: rest.configuration ?? {},
            firmware_version: rest.firmware_version ?? null,
            auth_token: rest.auth_token ?? null,
          },
          context,
        );
        return { data: { ...presentDevice(row), credentials: { device_id: row.id, auth_token: token } }, etag: row.version };
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/devices', summary: 'List devices (filters: status, type, group_id, q)', tag: 'devices', access: 'user', query: listDevicesQuery, response: device.array(), list: true },
      ({ query, context }) => {
        const { rows, total } = listDevices(services.sql, {
          userId: ownerScope(context.principal),
          ...(query.status ? { status: query.status } : {}),
          ...(query.type ?? query.device_type ? { deviceType: query.type ?? query.device_type } : {}),
          ...(query.group_id ? { groupId: query.group_id } : {}),
          ...(query.q ? { nameContains: query.q } : {}),
          limit: query.limit,
          offset: query.offset,
        });
        return { data: rows.map(presentDevice), meta: listMeta(total, query) };
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/devices/:id', summary: 'A device with recent data, commands and metrics; ?as_of for the past', tag: 'devices', access: 'any', query: deviceDetailQuery, response: deviceDetail },
      async ({ params, query, context }) => {
        if (query.as_of) {
          const { reported_status: _reported, ...device } = await deviceAsOf(services, context.principal, params.id!, new Date(query.as_of));
          return { data: device };
        }
        const row = visibleDevice(services, context.principal, params.id!);
        const dayAgo = new Date(services.clock.now().getTime() - 24 * 3_600_000).toISOString();
        return {
          data: {
            ...presentDevice(row),
            recent_data: latestReadings(services.sql, row.id),
            recent_commands: listCommands(services.sql, { userId: null, deviceId: row.id, limit: 10, offset: 0 }).rows.map(presentCommand),
            metrics: deviceMetrics(services, row.id, dayAgo),
          },
          etag: row.version,
        };
      },
    ),
    defineRoute(
      { method: 'put', path: '/api/devices/:id', summary: 'Update a device (honours If-Match)', tag: 'devices', access: 'user', body: updateDeviceBody, response: device },
      async ({ params, body, context, req }) => {
        const { settings, configuration, type, device_type, ...rest } = body;
        const changes = {
          ...rest,
          ...(configuration ?? settings ? { configuration: configuration ?? settings } : {}),
          ...(device_type ?? type ? { device_type: device_type ?? type } : {}),
        };
        const row = await devices.update(params.id!, changes, context, ifMatchVersion(req));
        return { data: presentDevice(row), etag: row.version };
      },
    ),
    defineRoute(
      { method: 'delete', path: '/api/devices/:id', summary: 'Decommission a device; its history stays in the log', tag: 'devices', access: 'user', response: deleted },
      async ({ params, context }) => {
        await devices.decommission(params.id!, context);
        return { data: { id: params.id!, deleted: true } };
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/devices/:id/history', summary: "The device's events, oldest first", tag: 'devices', access: 'user', query: paging, response: storedEvent.array(), list: true },
      async ({ params, query, context }) => {
        const row = visibleDevice(services, context.principal, params.id!);
        const filter = { afterPosition: 0, streamIds: [streams.device(row.id)] };
        const [events, total] = await Promise.all([services.log.readAll({ ...filter, limit: query.offset + query.limit }), services.log.countEvents(filter)]);
        return { data: events.slice(query.offset), meta: listMeta(total, query) };
      },
    ),
  ];
}

function deviceMetrics(services: Services, deviceId: string, dayAgo: string) {
  const commands = commandStats(services.sql, [deviceId]);
  return {
    readings_24h: countReadingsSince(services.sql, deviceId, dayAgo),
    commands_total: commands.total,
    commands_by_status: commands.by_status,
    command_success_rate: commands.success_rate,
    mean_command_latency_ms: commands.avg_latency_ms,
  };
}
