import { deviceAsOf, reportedStateAsOf, visibleDevice, type Devices, type RegisterDeviceInput } from '../../commands/devices.js';
import { sharedGroupIds } from '../../projections/groups.js';
import type { RequestContext } from '../../commands/services.js';
import { visibleTemplate } from '../../commands/templates.js';
import type { TemplateRow } from '../../projections/templates.js';
import { DomainError } from '../../domain/errors.js';
import { httpStatusOf } from '../errors.js';
import type { z } from 'zod';
import { ownerScope, type Services } from '../../commands/services.js';
import { ownedStreamIds } from '../../projections/stream-owners.js';
import { commandStats, listCommands } from '../../projections/commands.js';
import { listDevices, type DeviceRow } from '../../projections/devices.js';
import { configurationDiff } from '../../domain/configuration.js';
import { countReadingsSince, latestReadings } from '../../projections/telemetry-queries.js';
import { presentDevice, servedEvent } from '../presenters.js';
import { presentCommand } from './commands.js';
import { defineRoute, ifMatchVersion, parse } from '../route.js';
import { asOfMeta, deleted, listMeta, paging } from '../schemas/common.js';
import {
  bulkAnswer,
  bulkBody,
  bulkMeta,
  bulkDelete,
  bulkRegister,
  bulkUpdate,
  certificateBody,
  device,
  deviceAsOfAnswer,
  deviceDetail,
  deviceDetailQuery,
  listDevicesQuery,
  provisionBody,
  registerDeviceBody,
  registeredDevice,
  storedEvent,
  offerTransferBody,
  transferOffer,
  updateDeviceBody,
} from '../schemas/devices.js';

export function deviceRoutes(services: Services, devices: Devices) {
  return [
    defineRoute(
      { method: 'post', path: '/api/devices', operationId: 'registerDevice', example: { name: 'boiler', type: 'thermostat', mac_address: 'AA:BB:CC:DD:EE:01', configuration: { thresholds: { temperature: { max: 80 } } } }, etag: true, summary: 'Register a device; its token is shown only here', tag: 'devices', access: 'user', body: registerDeviceBody, response: registeredDevice, status: 201, secret: true },
      async ({ body, context }) => {
        const template = body.template_id ? visibleTemplate(services, context.principal, body.template_id) : null;
        const { device: row, token } = await devices.register(registrationInput(body, template), context);
        return { data: { ...presentDevice(row), credentials: { device_id: row.id, auth_token: token } }, etag: row.version };
      },
    ),
    defineRoute(
      {
        method: 'post',
        path: '/api/devices/provision',
        operationId: 'provisionDevice',
        alsoStatus: 200,
        etag: true,
        secret: true,
        summary: "Provision by hardware id (MAC): registers the first time (201); again (200, a fresh token) only with the device's current_token or its owner signed in, else 409",
        tag: 'devices',
        access: 'user',
        body: provisionBody,
        response: registeredDevice,
        status: 201,
      },
      async ({ body, context }) => provisionDevice(devices, body, context),
    ),
    defineRoute(
      { method: 'post', path: '/api/devices/bulk', operationId: 'bulkDevices', summary: 'Register, update or delete many devices; each operation answered on its own (207)', tag: 'devices', access: 'user', body: bulkBody, response: bulkAnswer, status: 207, meta: bulkMeta, secret: true },
      async ({ body, context }) => {
        const results = [];
        for (const [index, operation] of body.operations.entries()) results.push({ index, action: operation.action, ...(await bulkOperation(devices, operation, index, context)) });
        const failed = results.filter((r) => r.status >= 400).length;
        return { status: 207, data: results, meta: { total: results.length, succeeded: results.length - failed, failed } };
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/devices', operationId: 'listDevices', summary: 'List devices: your own and those of groups shared with you (filters: status, type, group_id, q)', tag: 'devices', access: 'user', query: listDevicesQuery, response: device.array(), list: true },
      ({ query, context }) => {
        const userId = ownerScope(context.principal);
        const { rows, total } = listDevices(services.sql, {
          userId,
          ...(userId !== null ? { sharedGroupIds: sharedGroupIds(services.sql, userId) } : {}),
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
      { method: 'get', path: '/api/devices/:id', operationId: 'getDevice', errors: [503], etag: true, summary: 'A device with recent data, commands and metrics; ?as_of for the past', tag: 'devices', access: 'any', query: deviceDetailQuery, response: deviceDetail.or(deviceAsOfAnswer), meta: asOfMeta },
      async ({ params, query, context }) => {
        if (query.as_of) {
          const { reported_status: _reported, connectivity: _connectivity, ...device } = await deviceAsOf(services, context.principal, params.id!, new Date(query.as_of));
          const reported = await reportedStateAsOf(services, device.id, new Date(query.as_of));
          return { data: { ...device, ...configurationState(device.configuration, reported.reported_configuration, reported.firmware) }, meta: { as_of: query.as_of } };
        }
        const row = visibleDevice(services, context.principal, params.id!, 'viewer');
        const dayAgo = new Date(services.clock.now().getTime() - 24 * 3_600_000).toISOString();
        return {
          data: {
            ...presentDevice(row),
            recent_data: latestReadings(services.sql, row.id),
            recent_commands: listCommands(services.sql, { userId: null, deviceId: row.id, limit: 10, offset: 0 }).rows.map(presentCommand),
            ...liveConfigurationState(row),
            metrics: deviceMetrics(services, row.id, dayAgo),
          },
          etag: row.version,
        };
      },
    ),
    defineRoute(
      { method: 'put', path: '/api/devices/:id', operationId: 'updateDevice', ifMatch: true, etag: true, summary: 'Update a device (honours If-Match)', tag: 'devices', access: 'user', body: updateDeviceBody, response: device },
      async ({ params, body, context, req }) => {
        const row = await devices.update(params.id!, deviceChanges(body), context, ifMatchVersion(req));
        return { data: presentDevice(row), etag: row.version };
      },
    ),
    defineRoute(
      { method: 'delete', path: '/api/devices/:id', operationId: 'deleteDevice', ifMatch: true, summary: 'Decommission a device; its history stays in the log (honours If-Match)', tag: 'devices', access: 'user', response: deleted },
      async ({ params, context, req }) => {
        await devices.decommission(params.id!, context, ifMatchVersion(req));
        return { data: { id: params.id!, deleted: true } };
      },
    ),
    defineRoute(
      { method: 'put', path: '/api/devices/:id/certificate', operationId: 'bindDeviceCertificate', summary: 'Bind a client certificate (SHA-256 fingerprint) that may speak for the device under mutual TLS; replaces one bound before', tag: 'devices', access: 'user', body: certificateBody, response: device },
      async ({ params, body, context, req }) => {
        const row = await devices.bindCertificate(params.id!, body.fingerprint, context, ifMatchVersion(req));
        return { data: presentDevice(row), etag: row.version };
      },
    ),
    defineRoute(
      { method: 'post', path: '/api/devices/:id/transfer', operationId: 'offerDeviceTransfer', summary: 'Offer the device to another user (owner or admin); it changes hands when they accept', tag: 'devices', access: 'user', body: offerTransferBody, response: transferOffer, status: 201 },
      async ({ params, body, context }) => ({ data: { device_id: params.id!, to_user_id: await devices.offerTransfer(params.id!, body, context), status: 'offered' as const }, status: 201 }),
    ),
    defineRoute(
      { method: 'post', path: '/api/devices/:id/transfer/accept', operationId: 'acceptDeviceTransfer', summary: 'Accept a device offered to you: it, its token and its history become yours (within your quota)', tag: 'devices', access: 'user', response: device },
      async ({ params, context }) => {
        const row = await devices.acceptTransfer(params.id!, context);
        return { data: presentDevice(row), etag: row.version };
      },
    ),
    defineRoute(
      { method: 'delete', path: '/api/devices/:id/certificate', operationId: 'unbindDeviceCertificate', summary: "Unbind the device's client certificate; connections made with it are closed at once", tag: 'devices', access: 'user', response: device },
      async ({ params, context, req }) => {
        const row = await devices.unbindCertificate(params.id!, context, ifMatchVersion(req));
        return { data: presentDevice(row), etag: row.version };
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/devices/:id/history', operationId: 'getDeviceHistory', errors: [503], summary: "The device's events, oldest first", tag: 'devices', access: 'user', query: paging, response: storedEvent.array(), list: true },
      async ({ params, query, context }) => {
        const row = visibleDevice(services, context.principal, params.id!, 'viewer');
        // Everything of the device: its own stream, its telemetry, commands and alerts.
        const filter = { afterPosition: 0, streamIds: ownedStreamIds(services.sql, null, row.id) };
        const [events, total] = await Promise.all([services.log.readAll({ ...filter, limit: query.limit, offset: query.offset }), services.log.countEvents(filter)]);
        return { data: events.map((event) => servedEvent(event)), meta: listMeta(total, query) };
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

/** Desired (what was set), reported (what the device says it runs) and where they differ; the firmware update state. */
function configurationState(desired: Record<string, unknown>, reported: Record<string, unknown> | null, firmware: Record<string, unknown> | null) {
  const diff = configurationDiff(desired, reported);
  return {
    desired_configuration: desired,
    reported_configuration: reported,
    configuration_diff: diff,
    configuration_in_sync: reported !== null && diff.length === 0,
    firmware,
  };
}

const liveConfigurationState = (row: DeviceRow) =>
  configurationState(
    JSON.parse(row.configuration) as Record<string, unknown>,
    row.reported_configuration ? (JSON.parse(row.reported_configuration) as Record<string, unknown>) : null,
    row.firmware_state ? (JSON.parse(row.firmware_state) as Record<string, unknown>) : null,
  );

type RegisterBody = Omit<z.infer<typeof registerDeviceBody>, 'name'> & { name: string };

/** Provisioning as HTTP and MQTT (provision/request) both answer it. */
export async function provisionDevice(devices: Devices, body: z.infer<typeof provisionBody>, context: RequestContext) {
  const { current_token, ...rest } = body;
  const input = { ...registrationInput({ ...rest, name: rest.name ?? `device ${rest.mac_address}`, device_type: rest.device_type ?? rest.type ?? 'generic' }), mac_address: rest.mac_address, current_token: current_token ?? null };
  const { device: row, token, created } = await devices.provision(input, context);
  return { status: created ? 201 : 200, data: { ...presentDevice(row), credentials: { device_id: row.id, auth_token: token } }, etag: row.version };
}

/**
 * A registration as the handler takes it, from the body of POST /api/devices (and its
 * relatives); a template gives the type, configuration and thresholds the body leaves out.
 */
function registrationInput(body: RegisterBody, template: TemplateRow | null = null): RegisterDeviceInput {
  const fromTemplate = template ? { ...(JSON.parse(template.configuration) as Record<string, unknown>), thresholds: JSON.parse(template.thresholds) as unknown } : {};
  return {
    name: body.name,
    device_type: (body.device_type ?? body.type ?? template?.device_type)!,
    description: body.description ?? null,
    ip_address: body.ip_address ?? null,
    mac_address: body.mac_address ?? null,
    group_id: body.group_id ?? null,
    configuration: { ...fromTemplate, ...body.configuration },
    firmware_version: body.firmware_version ?? null,
    auth_token: body.auth_token ?? null,
    certificate_fingerprint: body.certificate_fingerprint ?? null,
  };
}

/** The changes of PUT /api/devices/:id, with its aliases resolved. */
function deviceChanges(body: z.infer<typeof updateDeviceBody>) {
  const { settings, configuration, type, device_type, ...rest } = body;
  return {
    ...rest,
    ...(configuration ?? settings ? { configuration: configuration ?? settings } : {}),
    ...(device_type ?? type ? { device_type: device_type ?? type } : {}),
  };
}

/** One operation of a bulk request: validated and run alone; its failure is its own answer. */
async function bulkOperation(devices: Devices, operation: { action: 'register' | 'update' | 'delete' }, index: number, context: RequestContext) {
  try {
    switch (operation.action) {
      case 'register': {
        const { device } = parse(bulkRegister, operation, `operations.${index}`);
        const template = device.template_id ? visibleTemplate(devices.services, context.principal, device.template_id) : null;
        const { device: row, token } = await devices.register(registrationInput(device, template), context);
        return { status: 201, data: { ...presentDevice(row), credentials: { device_id: row.id, auth_token: token } } };
      }
      case 'update': {
        const { id, changes } = parse(bulkUpdate, operation, `operations.${index}`);
        return { status: 200, data: presentDevice(await devices.update(id, deviceChanges(changes), context)) };
      }
      case 'delete': {
        const { id } = parse(bulkDelete, operation, `operations.${index}`);
        await devices.decommission(id, context);
        return { status: 200, data: { id, deleted: true } };
      }
    }
  } catch (error) {
    if (!(error instanceof DomainError)) throw error;
    return { status: httpStatusOf(error.code), error: { code: error.code, message: error.message, details: error.details } };
  }
}
