import { DEFAULT_TIMEOUT_SECONDS, visibleCommand, type DeviceCommands, type QueueInput } from '../../commands/device-commands.js';
import { visibleGroup } from '../../commands/groups.js';
import { ownerScope, type Services } from '../../commands/services.js';
import { DomainError } from '../../domain/errors.js';
import { batchStatusCounts, listCommands, type CommandRow } from '../../projections/commands.js';
import { devicesOfGroupTree } from '../../projections/group-summaries.js';
import { sharedDeviceIds } from '../../projections/devices.js';
import { z } from 'zod';
import { defineRoute } from '../route.js';
import { listMeta } from '../schemas/common.js';
import { batchMeta, command, commandResultBody, pendingQuery, firmwareBody, firmwareProgressBody, groupCommandAnswer, groupCommandBody, listCommandsQuery, queueCommandBody } from '../schemas/commands.js';
import type { Rollouts } from '../../commands/rollouts.js';
import type { DeviceGateway } from '../../gateway/index.js';
import { findBatch } from '../../projections/batches.js';

export const presentCommand = (row: CommandRow) => ({
  id: row.id,
  device_id: row.device_id,
  user_id: row.user_id,
  command_type: row.command_type,
  parameters: JSON.parse(row.parameters) as Record<string, unknown>,
  priority: row.priority,
  status: row.status,
  created_at: row.created_at,
  sent_at: row.sent_at,
  executed_at: row.executed_at,
  expires_at: row.expires_at,
  response: row.response ? (JSON.parse(row.response) as Record<string, unknown>) : null,
  timeout_seconds: row.timeout_seconds,
  retries: row.retries,
  attempt: row.attempt,
  failure_reason: row.failure_reason,
  batch_id: row.batch_id,
});

const queueInput = (body: z.infer<typeof queueCommandBody>, batchId: string | null): QueueInput => ({
  command_type: body.command_type,
  parameters: body.parameters ?? {},
  priority: body.priority,
  expires_in: body.expires_in ?? null,
  timeout_seconds: body.timeout_seconds ?? DEFAULT_TIMEOUT_SECONDS,
  retries: body.retries ?? 0,
  batch_id: batchId,
});

export function commandRoutes(services: Services, commands: DeviceCommands, rollouts: Rollouts, gateway: DeviceGateway) {
  return [
    defineRoute(
      { method: 'post', path: '/api/devices/:id/commands', operationId: 'queueCommand', example: { command_type: 'set_target', parameters: { celsius: 65 }, priority: 'high' }, summary: 'Queue a command for a device', tag: 'commands', access: 'user', body: queueCommandBody, response: command, status: 202 },
      async ({ params, body, context }) => ({ data: presentCommand(await commands.queue(params.id!, queueInput(body, null), context)) }),
    ),
    defineRoute(
      {
        method: 'get',
        path: '/api/devices/:id/commands/pending',
        operationId: 'fetchPendingCommands',
        // A GET that stores (the commands become sent): refused while the read models are stalled.
        errors: [503],
        summary: 'A device fetches up to limit pending commands (highest priority, then oldest); they become sent; meta.total counts all that were pending',
        tag: 'commands',
        access: 'device',
        query: pendingQuery,
        response: command.array(),
        list: true,
      },
      async ({ params, query, context }) => {
        if (context.principal.kind === 'device' && context.principal.deviceId !== params.id) throw new DomainError('forbidden', 'a device token speaks only for its own device');
        const { sent, waiting } = await commands.deliverPending(params.id!, context, query.limit);
        return { data: sent.map(presentCommand), meta: { total: waiting, limit: query.limit, offset: 0 } };
      },
    ),
    defineRoute(
      { method: 'post', path: '/api/devices/:id/commands/:command_id/result', operationId: 'reportCommandResult', example: { status: 'executed', response: { celsius: 65 } }, summary: 'A device reports a result: executed or failed', tag: 'commands', access: 'device', body: commandResultBody, response: command },
      async ({ params, body, context }) => ({ data: presentCommand(await gateway.commandResult(params.id!, params.command_id!, body, context)) }),
    ),
    defineRoute(
      { method: 'get', path: '/api/commands', operationId: 'listCommands', summary: 'Commands, newest first (filters: device_id, status, command_type, batch_id, dates)', tag: 'commands', access: 'user', query: listCommandsQuery, response: command.array(), list: true, meta: batchMeta },
      ({ query, context }) => {
        const userId = ownerScope(context.principal);
        const { rows, total } = listCommands(services.sql, {
          userId,
          ...(userId !== null ? { sharedDeviceIds: sharedDeviceIds(services.sql, userId) } : {}),
          ...(query.device_id ? { deviceId: query.device_id } : {}),
          ...(query.status ? { status: query.status } : {}),
          ...(query.command_type ? { commandType: query.command_type } : {}),
          ...(query.batch_id ? { batchId: query.batch_id } : {}),
          ...(query.start_date ? { start: query.start_date } : {}),
          ...(query.end_date ? { end: query.end_date } : {}),
          limit: query.limit,
          offset: query.offset,
        });
        const batch = query.batch_id ? { batch: batchSummary(services, query.batch_id, ownerScope(context.principal)) } : {};
        return { data: rows.map(presentCommand), meta: { ...listMeta(total, query), ...batch } };
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/commands/:id', operationId: 'getCommand', etag: true, summary: 'One command', tag: 'commands', access: 'user', response: command },
      ({ params, context }) => {
        const row = visibleCommand(services, context.principal, params.id!, 'viewer');
        return { data: presentCommand(row), etag: row.version };
      },
    ),
    defineRoute(
      { method: 'post', path: '/api/commands/:id/cancel', operationId: 'cancelCommand', summary: 'Cancel a pending or sent command (409 otherwise)', tag: 'commands', access: 'user', response: command },
      async ({ params, context }) => ({ data: presentCommand(await commands.cancel(params.id!, context)) }),
    ),
    defineRoute(
      { method: 'post', path: '/api/devices/:id/firmware', operationId: 'startFirmwareUpdate', summary: 'Start a firmware update: a queued firmware_update command', tag: 'commands', access: 'user', body: firmwareBody, response: command, status: 202 },
      async ({ params, body, context }) => ({ data: presentCommand(await commands.startFirmwareUpdate(params.id!, body, context)) }),
    ),
    defineRoute(
      { method: 'post', path: '/api/devices/:id/firmware/progress', operationId: 'reportFirmwareProgress', summary: 'A device reports firmware progress (downloading, installing, done, failed)', tag: 'commands', access: 'device', body: firmwareProgressBody, response: z.object({ version: z.string(), status: z.string() }) },
      async ({ params, body, context }) => ({ data: await gateway.firmwareProgress(params.id!, body, context) }),
    ),
    defineRoute(
      { method: 'post', path: '/api/groups/:id/commands', operationId: 'queueGroupCommand', summary: 'One command per device of a group and its subgroups, as one batch (optionally at a rate, stopped past a failure share)', tag: 'commands', access: 'user', body: groupCommandBody, response: groupCommandAnswer, status: 202 },
      async ({ params, body, context }) => {
        const group = visibleGroup(services, context.principal, params.id!, 'operator');
        const targets = devicesOfGroupTree(services.sql, group.user_id, group.id);
        const { batch_id: _none, ...command } = queueInput(body, null);
        const batch = await rollouts.start(group, targets, command, { per_minute: body.rollout_per_minute ?? null, abort_failure_percent: body.abort_failure_percent ?? null }, context);
        const queued = listCommands(services.sql, { userId: null, batchId: batch.id, limit: 500, offset: 0 }).rows;
        return { data: { batch_id: batch.id, count: queued.length, total_devices: targets.length, status: batch.status, commands: queued.map(presentCommand) } };
      },
    ),
  ];
}

/** How a batch is doing: its state and its commands counted by status. */
function batchSummary(services: Services, batchId: string, userId: string | null): NonNullable<z.infer<typeof batchMeta>['batch']> {
  const batch = findBatch(services.sql, batchId);
  const visible = batch && (userId === null || batch.user_id === userId);
  return {
    batch_id: batchId,
    by_status: batchStatusCounts(services.sql, batchId, userId),
    ...(visible ? { status: batch.status, reason: batch.reason, total_devices: (JSON.parse(batch.device_ids) as string[]).length, rollout_per_minute: batch.per_minute, abort_failure_percent: batch.abort_failure_percent } : {}),
  };
}
