import { DEFAULT_TIMEOUT_SECONDS, visibleCommand, type DeviceCommands, type QueueInput } from '../../commands/device-commands.js';
import { visibleGroup } from '../../commands/groups.js';
import { ownerScope, type Services } from '../../commands/services.js';
import { DomainError } from '../../domain/errors.js';
import { batchStatusCounts, listCommands, type CommandRow } from '../../projections/commands.js';
import { deviceIds } from '../../projections/devices.js';
import { groupSummaries, subtreeIds } from '../../projections/group-summaries.js';
import { z } from 'zod';
import { defineRoute } from '../route.js';
import { listMeta } from '../schemas/common.js';
import { command, commandResultBody, firmwareBody, firmwareProgressBody, groupCommandAnswer, listCommandsQuery, queueCommandBody } from '../schemas/commands.js';

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

export function commandRoutes(services: Services, commands: DeviceCommands) {
  return [
    defineRoute(
      { method: 'post', path: '/api/devices/:id/commands', summary: 'Queue a command for a device', tag: 'commands', access: 'user', body: queueCommandBody, response: command, status: 202 },
      async ({ params, body, context }) => ({ data: presentCommand(await commands.queue(params.id!, queueInput(body, null), context)) }),
    ),
    defineRoute(
      { method: 'get', path: '/api/devices/:id/commands/pending', summary: 'A device fetches its pending commands (highest priority, then oldest); they become sent', tag: 'commands', access: 'device', response: command.array() },
      async ({ params, context }) => {
        if (context.principal.kind === 'device' && context.principal.deviceId !== params.id) throw new DomainError('forbidden', 'a device token speaks only for its own device');
        return { data: (await commands.deliverPending(params.id!, context)).map(presentCommand) };
      },
    ),
    defineRoute(
      { method: 'post', path: '/api/devices/:id/commands/:command_id/result', summary: 'A device reports a result: executed or failed', tag: 'commands', access: 'device', body: commandResultBody, response: command },
      async ({ params, body, context }) => ({
        data: presentCommand(await commands.recordResult(params.id!, params.command_id!, { status: body.status, response: body.response ?? null }, context)),
      }),
    ),
    defineRoute(
      { method: 'get', path: '/api/commands', summary: 'Commands, newest first (filters: device_id, status, command_type, batch_id, dates)', tag: 'commands', access: 'user', query: listCommandsQuery, response: command.array(), list: true },
      ({ query, context }) => {
        const { rows, total } = listCommands(services.sql, {
          userId: ownerScope(context.principal),
          ...(query.device_id ? { deviceId: query.device_id } : {}),
          ...(query.status ? { status: query.status } : {}),
          ...(query.command_type ? { commandType: query.command_type } : {}),
          ...(query.batch_id ? { batchId: query.batch_id } : {}),
          ...(query.start_date ? { start: query.start_date } : {}),
          ...(query.end_date ? { end: query.end_date } : {}),
          limit: query.limit,
          offset: query.offset,
        });
        const batch = query.batch_id ? { batch: { batch_id: query.batch_id, by_status: batchStatusCounts(services.sql, query.batch_id, ownerScope(context.principal)) } } : {};
        return { data: rows.map(presentCommand), meta: { ...listMeta(total, query), ...batch } };
      },
    ),
    defineRoute(
      { method: 'get', path: '/api/commands/:id', summary: 'One command', tag: 'commands', access: 'user', response: command },
      ({ params, context }) => ({ data: presentCommand(visibleCommand(services, context.principal, params.id!)) }),
    ),
    defineRoute(
      { method: 'post', path: '/api/commands/:id/cancel', summary: 'Cancel a pending or sent command (409 otherwise)', tag: 'commands', access: 'user', response: command },
      async ({ params, context }) => ({ data: presentCommand(await commands.cancel(params.id!, context)) }),
    ),
    defineRoute(
      { method: 'post', path: '/api/devices/:id/firmware', summary: 'Start a firmware update: a queued firmware_update command', tag: 'commands', access: 'user', body: firmwareBody, response: command, status: 202 },
      async ({ params, body, context }) => ({ data: presentCommand(await commands.startFirmwareUpdate(params.id!, body, context)) }),
    ),
    defineRoute(
      { method: 'post', path: '/api/devices/:id/firmware/progress', summary: 'A device reports firmware progress (downloading, installing, done, failed)', tag: 'commands', access: 'device', body: firmwareProgressBody, response: z.object({ version: z.string(), status: z.string() }) },
      async ({ params, body, context }) => {
        await commands.reportFirmwareProgress(params.id!, { version: body.version, status: body.status, detail: body.detail ?? null }, context);
        return { data: { version: body.version, status: body.status } };
      },
    ),
    defineRoute(
      { method: 'post', path: '/api/groups/:id/commands', summary: 'Queue one command for every device of a group and its subgroups, as one batch', tag: 'commands', access: 'user', body: queueCommandBody, response: groupCommandAnswer, status: 202 },
      async ({ params, body, context }) => {
        const group = visibleGroup(services, context.principal, params.id!);
        const targets = deviceIds(services.sql, group.user_id, subtreeIds(groupSummaries(services.sql, group.user_id), group.id));
        const batchId = services.newId();
        const queued = await Promise.all(targets.map((deviceId) => commands.queueFor(deviceId, group.user_id, queueInput(body, batchId), context)));
        return { data: { batch_id: batchId, count: queued.length, commands: queued.map(presentCommand) } };
      },
    ),
  ];
}
