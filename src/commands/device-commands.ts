import { commandDecider, type CommandCommand } from '../domain/command.js';
import { DomainError, notFound } from '../domain/errors.js';
import { streams, type CommandPriority, type DomainEvent } from '../domain/events.js';
import { ConcurrencyError } from '../eventlog/index.js';
import { findCommand, openCommandsOf, overdueCommands, pendingCommands, type CommandRow } from '../projections/commands.js';
import { findDevice } from '../projections/devices.js';
import { visibleDevice, type DeviceNeed } from './devices.js';
import { handle, metadataFor } from './handle.js';
import { mayAccess, storeEvents, type Principal, type RequestContext, type Services } from './services.js';

export interface QueueInput {
  command_type: string;
  parameters: Record<string, unknown>;
  priority: CommandPriority;
  expires_in: number | null;
  timeout_seconds: number;
  retries: number;
  batch_id: string | null;
}

export const DEFAULT_TIMEOUT_SECONDS = 60;

type Alongside = ReadonlyArray<{ streamId: string; events: DomainEvent[] }>;

/**
 * What a device's result tells beyond the command: the configuration it now runs, or how
 * its firmware update ended. Appended with the result, in the same transaction.
 */
function resultConsequences(command: CommandRow, result: { status: 'executed' | 'failed'; response: Record<string, unknown> | null }): Alongside {
  const parameters = JSON.parse(command.parameters) as Record<string, unknown>;
  const device_id = command.device_id;
  const events: DomainEvent[] = [];
  if (command.command_type === 'update_configuration' && result.status === 'executed') {
    const reported = result.response?.configuration ?? parameters.configuration;
    if (reported !== null && typeof reported === 'object' && !Array.isArray(reported)) {
      events.push({ type: 'device.configuration_reported', data: { device_id, configuration: reported as Record<string, unknown>, source: 'command' } });
    }
  }
  if (command.command_type === 'firmware_update' && typeof parameters.version === 'string') {
    const detail = typeof result.response?.detail === 'string' ? result.response.detail : null;
    events.push({ type: 'device.firmware_progress', data: { device_id, version: parameters.version, status: result.status === 'executed' ? 'done' : 'failed', detail } });
  }
  return events.length > 0 ? [{ streamId: streams.telemetry(device_id), events }] : [];
}

/** A command as its owner, an admin or its device may use it, or a member whose role on its device's group reaches `need`. */
export function visibleCommand(services: Services, principal: Principal, commandId: string, need: DeviceNeed = 'own'): CommandRow {
  const command = findCommand(services.sql, commandId);
  if (!command) throw notFound('command');
  if (principal.kind === 'device' ? command.device_id === principal.deviceId : mayAccess(principal, command.user_id)) return command;
  if (principal.kind === 'device' || !findDevice(services.sql, command.device_id)) throw notFound('command');
  visibleDevice(services, principal, command.device_id, need);
  return command;
}

/** The command queue: users and rules queue, devices fetch and report, timers expire. */
export class DeviceCommands {
  constructor(private readonly services: Services) {}

  async queue(deviceId: string, input: QueueInput, context: RequestContext): Promise<CommandRow> {
    const device = visibleDevice(this.services, context.principal, deviceId, 'operator');
    if (context.principal.kind !== 'user') throw new DomainError('forbidden', 'a device cannot queue commands');
    return this.queueFor(device.id, device.user_id, input, context);
  }

  /**
   * Queues without an access check: for callers that already checked (configuration pushes,
   * firmware updates, rollouts, rules). Under the device's lock, as its deletion is, and only
   * while it exists: a command queued during a deletion is either refused (not_found) or among
   * those the deletion cancels, never left pending for a device that is gone.
   */
  async queueFor(deviceId: string, ownerId: string, input: QueueInput, context: RequestContext | null, alongside: Alongside = []): Promise<CommandRow> {
    const { services } = this;
    return services.locks.devices.run(deviceId, async () => {
      if (!findDevice(services.sql, deviceId)) throw notFound('device');
      const commandId = services.newId();
      const now = services.clock.now();
      const { expires_in, ...rest } = input;
      await handle(
        services,
        commandDecider,
        streams.command(commandId),
        {
          type: 'queue_command',
          data: { ...rest, command_id: commandId, device_id: deviceId, user_id: ownerId, expires_at: expires_in ? new Date(now.getTime() + expires_in * 1000).toISOString() : null },
        },
        context,
        { alongside: [...alongside] },
      );
      return findCommand(services.sql, commandId)!;
    });
  }

  /** For a fleet of devices: null for one deleted since the caller listed it; any other failure throws. */
  async queueUnlessDeleted(deviceId: string, ownerId: string, input: QueueInput, context: RequestContext | null): Promise<CommandRow | null> {
    try {
      return await this.queueFor(deviceId, ownerId, input, context);
    } catch (error) {
      if (error instanceof DomainError && error.code === 'not_found') return null;
      throw error;
    }
  }

  /**
   * Hands a device its pending commands, highest priority first then oldest, marking each
   * sent: the first `limit` of the queue; `waiting` is how many were pending before. A command
   * cancelled or expired meanwhile is skipped; any other failure (nothing could be stored)
   * fails the delivery, or the device would be told of no commands while some were pending.
   */
  async deliverPending(deviceId: string, context: RequestContext, limit: number): Promise<{ sent: CommandRow[]; waiting: number }> {
    const { services } = this;
    return services.locks.devices.run(`commands:${deviceId}`, async () => {
      const queue = pendingCommands(services.sql, deviceId);
      const taken = queue.slice(0, limit);
      const now = services.clock.now().toISOString();
      const outcomes = await Promise.allSettled(taken.map((command) => this.transition(command.id, { type: 'mark_sent', data: { now } }, context)));
      const failure = outcomes.find((outcome) => outcome.status === 'rejected' && !(outcome.reason instanceof DomainError && outcome.reason.code === 'conflict'));
      if (failure?.status === 'rejected') throw failure.reason;
      const sent = taken.filter((_, index) => outcomes[index]!.status === 'fulfilled');
      return { sent: sent.map((command) => findCommand(services.sql, command.id)!), waiting: queue.length };
    });
  }

  async recordResult(deviceId: string, commandId: string, result: { status: 'executed' | 'failed'; response: Record<string, unknown> | null }, context: RequestContext): Promise<CommandRow> {
    const principal = context.principal;
    if (principal.kind !== 'device' || principal.deviceId !== deviceId) throw new DomainError('forbidden', 'only the device itself reports results');
    const command = findCommand(this.services.sql, commandId);
    if (!command || command.device_id !== deviceId) throw notFound('command');
    await this.transition(commandId, { type: 'record_result', data: { device_id: deviceId, ...result } }, context, resultConsequences(command, result));
    return findCommand(this.services.sql, commandId)!;
  }

  /** A firmware update is a firmware_update command; its progress is the device's firmware state. */
  async startFirmwareUpdate(deviceId: string, firmware: { version: string; url: string; checksum: string }, context: RequestContext): Promise<CommandRow> {
    const device = visibleDevice(this.services, context.principal, deviceId);
    if (context.principal.kind !== 'user') throw new DomainError('forbidden', 'a device cannot start its own firmware update');
    const queued: Alongside = [{ streamId: streams.telemetry(device.id), events: [{ type: 'device.firmware_progress', data: { device_id: device.id, version: firmware.version, status: 'queued', detail: null } }] }];
    return this.queueFor(device.id, device.user_id, { command_type: 'firmware_update', parameters: firmware, priority: 'high', expires_in: null, timeout_seconds: 3600, retries: 0, batch_id: null }, context, queued);
  }

  async reportFirmwareProgress(deviceId: string, progress: { version: string; status: 'downloading' | 'installing' | 'done' | 'failed'; detail: string | null }, context: RequestContext): Promise<void> {
    const principal = context.principal;
    if (principal.kind !== 'device' || principal.deviceId !== deviceId) throw new DomainError('forbidden', 'only the device itself reports its firmware progress');
    const result = await storeEvents(this.services, [
      { streamId: streams.telemetry(deviceId), expectedVersion: 'any', events: [{ type: 'device.firmware_progress', data: { device_id: deviceId, ...progress } }], metadata: metadataFor(context) },
    ]);
    await this.services.runner.waitFor(result.lastPosition);
  }

  async cancel(commandId: string, context: RequestContext): Promise<CommandRow> {
    const command = visibleCommand(this.services, context.principal, commandId, 'operator');
    if (context.principal.kind !== 'user') throw new DomainError('forbidden', 'a device cannot cancel commands');
    await this.transition(command.id, { type: 'cancel_command', data: { reason: 'user' } }, context);
    return findCommand(this.services.sql, commandId)!;
  }

  /** An aborted batch's commands that were not yet sent are cancelled. */
  async cancelBatch(commandIds: readonly string[]): Promise<void> {
    await Promise.allSettled(commandIds.map((id) => this.transition(id, { type: 'cancel_command', data: { reason: 'batch_aborted' } }, null)));
  }

  /** A deleted device's open commands are cancelled. */
  async cancelAllOf(deviceId: string, context: RequestContext): Promise<void> {
    await Promise.allSettled(openCommandsOf(this.services.sql, deviceId).map((c) => this.transition(c.id, { type: 'cancel_command', data: { reason: 'device_deleted' } }, context)));
  }

  /** Timer: expires and times out what is overdue; returns how many commands changed. */
  async checkDeadlines(): Promise<number> {
    const now = this.services.clock.now().toISOString();
    const overdue = overdueCommands(this.services.sql, now);
    const outcomes = await Promise.allSettled(overdue.map((c) => this.transition(c.id, { type: 'check_deadlines', data: { now } }, null)));
    return outcomes.filter((o) => o.status === 'fulfilled' && o.value).length;
  }

  private async transition(commandId: string, command: CommandCommand, context: RequestContext | null, alongside: Alongside = []): Promise<boolean> {
    try {
      const handled = await handle(this.services, commandDecider, streams.command(commandId), command, context, { alongside: [...alongside] });
      return handled.events.length > 0;
    } catch (error) {
      if (error instanceof ConcurrencyError) throw new DomainError('conflict', 'the command changed concurrently');
      throw error;
    }
  }
}
