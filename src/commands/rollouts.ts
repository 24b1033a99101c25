import { notFound } from '../domain/errors.js';
import { streams, type EventOfType } from '../domain/events.js';
import { activeBatches, findBatch, type BatchRow } from '../projections/batches.js';
import { commandsOfBatch } from '../projections/commands.js';
import { findDevice } from '../projections/devices.js';
import type { DeviceCommands, QueueInput } from './device-commands.js';
import { metadataFor } from './handle.js';
import { storeEvents, type RequestContext, type Services } from './services.js';

type BatchCommand = EventOfType<'batch.started'>['data']['command'];

const MINUTE_MS = 60_000;

/**
 * Group commands rolled out at a rate (devices per minute) and stopped once more than a
 * share of them failed. Progress is derived from the commands read model on every tick,
 * so a restart resumes where it was.
 */
export class Rollouts {
  constructor(
    private readonly services: Services,
    private readonly commands: DeviceCommands,
  ) {}

  async start(
    group: { id: string; user_id: string },
    deviceIds: readonly string[],
    command: BatchCommand,
    pacing: { per_minute: number | null; abort_failure_percent: number | null },
    context: RequestContext,
  ): Promise<BatchRow> {
    const batchId = this.services.newId();
    const result = await storeEvents(this.services, [
      {
        streamId: streams.batch(batchId),
        expectedVersion: 'no_stream',
        events: [{ type: 'batch.started', data: { batch_id: batchId, user_id: group.user_id, group_id: group.id, device_ids: [...deviceIds], command, ...pacing } }],
        metadata: metadataFor(context),
      },
    ]);
    await this.services.runner.waitFor(result.lastPosition);
    await this.advance(findBatch(this.services.sql, batchId)!, context);
    return findBatch(this.services.sql, batchId)!;
  }

  /** Timer: every active batch queues what its rate allows, aborts or completes. */
  async tick(): Promise<void> {
    for (const batch of activeBatches(this.services.sql)) await this.advance(batch, null);
  }

  /** One advance at a time per batch: the start and a tick must not both queue the same devices. */
  private advance(batch: BatchRow, context: RequestContext | null): Promise<void> {
    return this.services.locks.owners.run(`batch:${batch.id}`, async () => {
      const current = findBatch(this.services.sql, batch.id);
      if (current?.status === 'active') await this.advanceNow(current, context);
    });
  }

  private async advanceNow(batch: BatchRow, context: RequestContext | null): Promise<void> {
    const { sql, clock } = this.services;
    const queued = commandsOfBatch(sql, batch.id);
    const inStatus = (...statuses: string[]) => queued.filter((c) => statuses.includes(c.status)).length;
    const failed = inStatus('failed', 'expired');
    if (batch.abort_failure_percent !== null && queued.length > 0 && (failed / queued.length) * 100 > batch.abort_failure_percent) {
      return this.finish(batch, 'aborted', `${failed} of ${queued.length} commands failed, above ${batch.abort_failure_percent}%`, queued.filter((c) => c.status === 'pending').map((c) => c.id));
    }
    const done = new Set(queued.map((c) => c.device_id));
    const remaining = (JSON.parse(batch.device_ids) as string[]).filter((id) => !done.has(id) && findDevice(sql, id)?.user_id === batch.user_id);
    const elapsed = clock.now().getTime() - Date.parse(batch.started_at);
    const allowed = batch.per_minute === null ? Infinity : 1 + Math.floor((batch.per_minute * elapsed) / MINUTE_MS) - queued.length;
    const command = JSON.parse(batch.command) as BatchCommand;
    const input: QueueInput = { ...command, batch_id: batch.id };
    for (const deviceId of remaining.slice(0, Math.max(0, allowed))) await this.commands.queueUnlessDeleted(deviceId, batch.user_id, input, context);
    const open = inStatus('pending', 'sent');
    if (remaining.length === 0 && open === 0) await this.finish(batch, 'completed', null, []);
  }

  private async finish(batch: BatchRow, outcome: 'completed' | 'aborted', reason: string | null, toCancel: readonly string[]): Promise<void> {
    const result = await storeEvents(this.services, [
      { streamId: streams.batch(batch.id), expectedVersion: 'stream_exists', events: [{ type: 'batch.finished', data: { batch_id: batch.id, outcome, reason } }], metadata: { actor_type: 'system' } },
    ]);
    await this.services.runner.waitFor(result.lastPosition);
    await this.commands.cancelBatch(toCancel);
  }
}

export function visibleBatch(services: Services, userId: string | null, batchId: string): BatchRow {
  const batch = findBatch(services.sql, batchId);
  if (!batch || (userId !== null && batch.user_id !== userId)) throw notFound('batch');
  return batch;
}
