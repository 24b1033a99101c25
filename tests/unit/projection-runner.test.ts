import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.js';
import type { DomainEvent } from '../../src/domain/events.js';
import { SqliteEventLog, openDatabase, type SqliteDatabase } from '../../src/eventlog/index.js';
import { ProjectionRunner, type Projection } from '../../src/projections/index.js';
import { LIVE_BATCH_SIZE, type RetryTimer } from '../../src/projections/runner.js';

const silent = pino({ level: 'silent' });

interface Recorder extends Projection {
  /** Every position apply() was called with, in call order. */
  calls: number[];
}

/** A tiny read model: one row per event it saw, keyed by position, so applying twice fails loudly. */
function recorder(name: string, version: number, failOn?: DomainEvent['type'] | (() => boolean)): Recorder {
  const calls: number[] = [];
  const fails = (event: DomainEvent) => (typeof failOn === 'function' ? failOn() : event.type === failOn);
  return {
    name,
    version,
    tables: [`${name}_seen`],
    ddl: `CREATE TABLE IF NOT EXISTS "${name}_seen" (position INTEGER PRIMARY KEY, type TEXT NOT NULL, projection_version INTEGER NOT NULL)`,
    calls,
    apply(sql, event) {
      calls.push(event.position);
      if (fails(event)) throw new Error(`cannot apply ${event.type}`);
      sql.db.prepare(`INSERT INTO "${name}_seen" (position, type, projection_version) VALUES (?, ?, ?)`).run(event.position, event.type, version);
    },
  };
}

const group = (n: number): DomainEvent => ({ type: 'group.created', data: { group_id: `g${n}`, user_id: 'u1', name: `G${n}`, description: null, parent_id: null } });
const groupDeleted = (n: number): DomainEvent => ({ type: 'group.deleted', data: { group_id: `g${n}`, user_id: 'u1' } });

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('projection runner', () => {
  let dir: string;
  let file: string;
  let db: SqliteDatabase;
  let log: SqliteEventLog;
  let counter = 0;
  const clock = new ManualClock();

  const open = (): void => {
    db = openDatabase(file);
    log = new SqliteEventLog(db, clock);
  };
  const reopen = (): void => {
    log.close();
    db.close();
    open();
  };
  const append = async (count: number): Promise<number> => {
    let last = 0;
    for (let i = 0; i < count; i++) last = (await log.append([{ streamId: `group-${++counter}`, events: [group(counter)], expectedVersion: 'no_stream' }])).lastPosition;
    return last;
  };
  const seen = (name: string): Array<{ position: number; projection_version: number }> =>
    db.prepare<[], { position: number; projection_version: number }>(`SELECT position, projection_version FROM "${name}_seen" ORDER BY position`).all();
  const checkpoint = (name: string) =>
    db.prepare<[string], { name: string; version: number; position: number }>('SELECT name, version, position FROM projection_checkpoints WHERE name = ?').get(name);
  /** Retries wait for the test to run them, and say how long the runner asked to wait. */
  let retries: Array<{ delayMs: number; retry: () => void; cancelled: boolean }> = [];
  const heldRetries: RetryTimer = (delayMs, retry) => {
    const held = { delayMs, retry, cancelled: false };
    retries.push(held);
    return () => void (held.cancelled = true);
  };
  const run = (projections: Projection[]): ProjectionRunner => {
    const runner = new ProjectionRunner(db, log, projections, silent, heldRetries);
    runner.start();
    return runner;
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'runner-'));
    file = join(dir, 'iot.db');
    counter = 0;
    retries = [];
    open();
  });
  afterEach(() => {
    log.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('applies every event once and keeps its checkpoint in projection_checkpoints', async () => {
    const projection = recorder('alpha', 1);
    const runner = run([projection]);
    await append(3);
    await runner.waitFor(3);
    expect(projection.calls).toEqual([1, 2, 3]);
    expect(seen('alpha').map((r) => r.position)).toEqual([1, 2, 3]);
    expect(checkpoint('alpha')).toEqual({ name: 'alpha', version: 1, position: 3 });
    expect(runner.position()).toBe(3);
    expect(runner.lag()).toBe(0);
    await runner.stop();
  });

  it('resolves waitFor only once the position is applied and checkpointed', async () => {
    const projection = recorder('alpha', 1);
    const runner = run([projection]);
    let resolved = false;
    const observed = runner.waitFor(2).then(() => {
      resolved = true;
      return { rows: seen('alpha').map((r) => r.position), checkpoint: checkpoint('alpha')?.position };
    });
    await append(1);
    await runner.waitFor(1);
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(resolved).toBe(false);
    await append(1);
    expect(await observed).toEqual({ rows: [1, 2], checkpoint: 2 });
    // A position already reached resolves at once.
    await expect(runner.waitFor(0)).resolves.toBeUndefined();
    await runner.stop();
  });

  it('rebuilds a projection from position 0 when its version changes', async () => {
    const v1 = recorder('alpha', 1);
    let runner = run([v1]);
    await append(3);
    await runner.waitFor(3);
    await runner.stop();
    db.prepare(`INSERT INTO alpha_seen (position, type, projection_version) VALUES (99, 'stale', 1)`).run();
    reopen();

    const v2 = recorder('alpha', 2);
    runner = run([v2]);
    await runner.waitFor(3);
    expect(v2.calls).toEqual([1, 2, 3]);
    expect(seen('alpha')).toEqual([
      { position: 1, projection_version: 2 },
      { position: 2, projection_version: 2 },
      { position: 3, projection_version: 2 },
    ]);
    expect(checkpoint('alpha')).toEqual({ name: 'alpha', version: 2, position: 3 });
    await runner.stop();
  });

  it('after reopening the database, catches up only on events past the checkpoint, then follows live', async () => {
    const first = recorder('alpha', 1);
    let runner = run([first]);
    await append(3);
    await runner.waitFor(3);
    await runner.stop();
    reopen();
    await append(2); // committed while no runner is listening

    const second = recorder('alpha', 1);
    runner = run([second]);
    await runner.waitFor(5);
    expect(second.calls).toEqual([4, 5]);
    const head = await append(1);
    await runner.waitFor(head);
    expect(second.calls).toEqual([4, 5, 6]);
    expect(seen('alpha').map((r) => r.position)).toEqual(range(1, 6));
    expect(checkpoint('alpha')).toEqual({ name: 'alpha', version: 1, position: 6 });
    await runner.stop();
  });

  it('builds a new projection from 0 without re-applying to one that is up to date', async () => {
    const alpha = recorder('alpha', 1);
    let runner = run([alpha]);
    await append(3);
    await runner.waitFor(3);
    await runner.stop();
    reopen();

    const alphaAgain = recorder('alpha', 1);
    const beta = recorder('beta', 1);
    runner = run([alphaAgain, beta]);
    await runner.waitFor(3);
    expect(alphaAgain.calls).toEqual([]);
    expect(beta.calls).toEqual([1, 2, 3]);
    await append(1);
    await runner.waitFor(4);
    expect(alphaAgain.calls).toEqual([4]);
    expect(beta.calls).toEqual([1, 2, 3, 4]);
    expect(checkpoint('beta')).toEqual({ name: 'beta', version: 1, position: 4 });
    await runner.stop();
  });

  it('has no gap and no duplicate when appends race a catch-up longer than one batch', async () => {
    await append(1_200);
    const projection = recorder('alpha', 1);
    const runner = run([projection]);
    const racing: Array<Promise<unknown>> = [];
    for (let i = 0; i < 40; i++) {
      racing.push(log.append([{ streamId: `group-live-${i}`, events: [group(10_000 + i)], expectedVersion: 'no_stream' }]));
      if (i % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(racing);
    await runner.waitFor(log.headPosition());
    expect(log.headPosition()).toBe(1_240);
    expect(projection.calls).toEqual(range(1, 1_240));
    expect(checkpoint('alpha')?.position).toBe(1_240);
    await runner.stop();
  });

  it('reads a gap a live batch at a time and applies it as one catch-up batch', async () => {
    await append(1_200);
    const limits: number[] = [];
    const readAll = log.readAll.bind(log);
    log.readAll = (filter) => {
      limits.push(filter.limit);
      return readAll(filter);
    };
    const projection = recorder('alpha', 1);
    const batches: number[] = [];
    const runner = run([{ ...projection, afterBatch: () => void batches.push(projection.calls.length) }]);
    await runner.waitFor(1_200);
    expect(Math.max(...limits)).toBeLessThanOrEqual(LIVE_BATCH_SIZE);
    expect(batches).toEqual([1_200]);
    expect(projection.calls).toEqual(range(1, 1_200));
    await runner.stop();
  });

  it('stays at the last good checkpoint when a projection cannot apply an event: writers wait, a start hears the cause', async () => {
    const projection = recorder('alpha', 1, 'group.deleted');
    const runner = run([projection]);
    await append(2);
    await runner.waitFor(2);
    const bad = await log.append([{ streamId: 'group-1', events: [groupDeleted(1)], expectedVersion: 1 }]);
    let settled = false;
    const waiting = runner.waitFor(bad.lastPosition).finally(() => (settled = true));
    await expect.poll(() => runner.stalled()).toMatchObject({ position: 2, attempts: 1, error: expect.objectContaining({ message: 'cannot apply group.deleted' }) as Error });
    expect(checkpoint('alpha')?.position).toBe(2);
    expect(seen('alpha').map((r) => r.position)).toEqual([1, 2]);
    await append(1);
    expect(runner.position()).toBe(2);

    // It never skips the event: each retry fails the same way, each waiting twice as long as the last.
    retries.shift()!.retry();
    await expect.poll(() => runner.stalled()?.attempts).toBe(2);
    retries.shift()!.retry();
    await expect.poll(() => runner.stalled()?.attempts).toBe(3);
    expect(retries.map((r) => r.delayMs)).toEqual([4_000]);
    expect(runner.position()).toBe(2);
    expect(settled).toBe(false);
    // A start or a replay hears the cause itself; stopping cancels the retry that was due, and the writer still waiting hears 503.
    await expect(runner.caughtUp()).rejects.toThrow('cannot apply group.deleted');
    await runner.stop();
    expect(retries.map((r) => r.cancelled)).toEqual([true]);
    await expect(waiting).rejects.toMatchObject({ code: 'service_unavailable', message: expect.stringMatching(/stalled at position 2/) as string, retryAfterSeconds: 5 });
  });

  it('resumes from its checkpoint once a failed batch succeeds on a retry, having forgotten what the failure left in memory', async () => {
    let failing = false;
    const projection = recorder('alpha', 1, () => failing);
    let forgotten = 0;
    const runner = run([{ ...projection, forget: () => void (forgotten += 1) }]);
    await append(2);
    await runner.waitFor(2);
    failing = true;
    // More than a live batch: the retry drains in two, yielding between them.
    const head = await append(LIVE_BATCH_SIZE + 2);
    const waiting = runner.waitFor(head);
    await expect.poll(() => forgotten).toBe(1);
    expect(retries.map((r) => r.delayMs)).toEqual([1_000]);

    failing = false;
    retries.shift()!.retry();
    // Stopping now waits for the retry under way, which must not run on a closed database.
    await runner.stop();
    await waiting;
    expect(runner.stalled()).toBeUndefined();
    expect(seen('alpha').map((r) => r.position)).toEqual(range(1, head));
    expect(checkpoint('alpha')?.position).toBe(head);
    expect(retries).toEqual([]);
  });

  it('resumes following the log live after a retry succeeds, and the writer that waited through the stall is answered', async () => {
    let failing = true;
    const runner = run([recorder('alpha', 1, () => failing)]);
    await append(1);
    const waiting = runner.waitFor(1);
    await expect.poll(() => runner.stalled()).toBeDefined();
    failing = false;
    retries.shift()!.retry();
    await waiting;
    expect(runner.stalled()).toBeUndefined();
    await append(1);
    await runner.waitFor(2);
    expect(seen('alpha').map((r) => r.position)).toEqual([1, 2]);
    await runner.stop();
  });

  it('once the server is stopping, a writer that waits after a stall hears 503 at once instead of waiting for a retry the stop cancels', async () => {
    let failing = false;
    const runner = run([recorder('alpha', 1, () => failing)]);
    await append(1);
    await runner.waitFor(1);
    runner.beginStop();
    failing = true;
    const stored = await append(1);
    await expect(runner.waitFor(stored)).rejects.toMatchObject({ code: 'service_unavailable' });
    // Stored after the stall began (its check passed before): it would otherwise wait until stop().
    const later = await append(1);
    await expect(runner.waitFor(later)).rejects.toMatchObject({ code: 'service_unavailable' });
    await runner.stop();
  });

  it('stops at once when it never started (a projection whose tables could not be made)', async () => {
    const broken: Projection = { ...recorder('alpha', 1), ddl: 'CREATE TABLE (' };
    await append(1);
    const runner = new ProjectionRunner(db, log, [broken], silent, heldRetries);
    expect(() => runner.start()).toThrow();
    await runner.stop();
  });
});
