import fc from 'fast-check';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.js';
import { commandDecider, priorityRank, terminalStatuses, type CommandCommand, type CommandState, type CommandStatus } from '../../src/domain/command.js';
import { fold } from '../../src/domain/decider.js';
import { DomainError } from '../../src/domain/errors.js';
import { streams, type CommandPriority } from '../../src/domain/events.js';
import { SqliteEventLog, openDatabase, type SqliteDatabase } from '../../src/eventlog/index.js';
import { commandsProjection, findCommand, overdueCommands, pendingCommands } from '../../src/projections/commands.js';
import { ProjectionRunner, Sql } from '../../src/projections/index.js';

/**
 * The command lifecycle on the real decider, log and commands read model (the queue query
 * and the overdue query the timer uses), driven by random interleavings of queue, fetch,
 * result, cancel and clock ticks over two devices.
 */

const DEVICES = ['dev-a', 'dev-b'] as const;
const PRIORITIES: readonly CommandPriority[] = ['low', 'normal', 'high', 'critical'];
const TERMINAL_EVENTS = new Set(['command.executed', 'command.failed', 'command.expired', 'command.cancelled']);

type Action =
  | { kind: 'queue'; device: 0 | 1; priority: CommandPriority; expiresIn: number | null; timeout: number; retries: number }
  | { kind: 'fetch'; device: 0 | 1 }
  | { kind: 'result'; command: number; status: 'executed' | 'failed'; otherDevice: boolean }
  | { kind: 'cancel'; command: number }
  | { kind: 'tick'; ms: number };

const device = fc.constantFrom<0 | 1>(0, 1);
const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .record({
        device,
        priority: fc.constantFrom(...PRIORITIES),
        expiresIn: fc.option(fc.integer({ min: 1, max: 120 }), { nil: null, freq: 2 }),
        timeout: fc.integer({ min: 1, max: 60 }),
        retries: fc.integer({ min: 0, max: 2 }),
      })
      .map((r): Action => ({ kind: 'queue', ...r })),
  },
  { weight: 3, arbitrary: device.map((d): Action => ({ kind: 'fetch', device: d })) },
  {
    weight: 3,
    arbitrary: fc
      .record({ command: fc.nat({ max: 30 }), status: fc.constantFrom<'executed' | 'failed'>('executed', 'failed'), otherDevice: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }) })
      .map((r): Action => ({ kind: 'result', ...r })),
  },
  { weight: 2, arbitrary: fc.nat({ max: 30 }).map((c): Action => ({ kind: 'cancel', command: c })) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 90_000 }).map((ms): Action => ({ kind: 'tick', ms })) },
);

interface Tracked {
  id: string;
  device: string;
  priority: CommandPriority;
  /** Queue order: the age that breaks ties between equal priorities. */
  seq: number;
}

class Sim {
  readonly clock = new ManualClock('2026-03-01T12:00:00.000Z');
  readonly db: SqliteDatabase = openDatabase(':memory:');
  readonly log = new SqliteEventLog(this.db, this.clock);
  readonly runner = new ProjectionRunner(this.db, this.log, [commandsProjection], pino({ level: 'silent' }));
  readonly sql = new Sql(this.db);
  readonly commands: Tracked[] = [];

  constructor() {
    this.runner.start();
  }

  async history(id: string) {
    return this.log.readStream(streams.command(id));
  }

  async state(id: string): Promise<CommandState> {
    return fold(commandDecider, await this.history(id));
  }

  /** What the command handler does: load, fold, decide, append with the expected version. */
  async exec(id: string, command: CommandCommand): Promise<{ events: string[] } | { error: string }> {
    const history = await this.history(id);
    let decided;
    try {
      decided = commandDecider.decide(command, fold(commandDecider, history));
    } catch (error) {
      if (error instanceof DomainError) return { error: error.code };
      throw error;
    }
    if (decided.length > 0) {
      const appended = await this.log.append([{ streamId: streams.command(id), events: decided, expectedVersion: history.length === 0 ? 'no_stream' : history.length }]);
      await this.runner.waitFor(appended.lastPosition);
    }
    return { events: decided.map((e) => e.type) };
  }

  /** The model's queue for a device: pending commands, priority (critical first), then age. */
  async expectedQueue(deviceId: string): Promise<string[]> {
    const mine: Tracked[] = [];
    for (const c of this.commands) if (c.device === deviceId && (await this.state(c.id)).status === 'pending') mine.push(c);
    return mine.sort((a, b) => priorityRank[b.priority] - priorityRank[a.priority] || a.seq - b.seq).map((c) => c.id);
  }

  /** A device fetching: the queue as the read model orders it, each marked sent in that order. */
  async fetch(deviceId: string): Promise<void> {
    const queue = pendingCommands(this.sql, deviceId);
    expect(queue.map((c) => c.id)).toEqual(await this.expectedQueue(deviceId));
    for (let i = 1; i < queue.length; i++) {
      const [before, after] = [queue[i - 1]!, queue[i]!];
      expect(before.priority_rank > after.priority_rank || (before.priority_rank === after.priority_rank && before.queued_position < after.queued_position)).toBe(true);
    }
    const now = this.clock.now().toISOString();
    for (const c of queue) expect(await this.exec(c.id, { type: 'mark_sent', data: { now } })).toEqual({ events: ['command.sent'] });
  }

  /** A timer run: every command the overdue query names gets check_deadlines, and only those decide something. */
  async tick(ms: number): Promise<void> {
    this.clock.advance(ms);
    const now = this.clock.now().toISOString();
    const overdue = new Set(overdueCommands(this.sql, now).map((c) => c.id));
    for (const c of this.commands) {
      const state = await this.state(c.id);
      const outcome = await this.exec(c.id, { type: 'check_deadlines', data: { now } });
      if (!('events' in outcome)) throw new Error(`check_deadlines refused: ${JSON.stringify(outcome)}`);
      expect(outcome.events.length > 0, `${c.id} in ${state.status}: overdue query ${overdue.has(c.id)}, decider ${JSON.stringify(outcome.events)}`).toBe(overdue.has(c.id));
      if (state.status === 'pending') expect(outcome.events.every((t) => t === 'command.expired')).toBe(true);
    }
  }

  /** Every command's stream: at most one terminal event, and nothing after it; the read model agrees with the fold. */
  async checkInvariants(): Promise<void> {
    for (const c of this.commands) {
      const types = (await this.history(c.id)).map((e) => e.type);
      const terminalAt = types.findIndex((t) => TERMINAL_EVENTS.has(t));
      expect(types.filter((t) => TERMINAL_EVENTS.has(t)).length, types.join(',')).toBeLessThanOrEqual(1);
      if (terminalAt >= 0) expect(terminalAt, `events after the terminal one: ${types.join(',')}`).toBe(types.length - 1);
      expect(types[0]).toBe('command.queued');
      const state = await this.state(c.id);
      expect(findCommand(this.sql, c.id)?.status).toBe(state.status);
    }
  }

  async close(): Promise<void> {
    await this.runner.stop();
    this.log.close();
    this.db.close();
  }
}

async function play(sim: Sim, actions: readonly Action[]): Promise<void> {
  for (const a of actions) {
    switch (a.kind) {
      case 'queue': {
        const id = `cmd-${sim.commands.length}`;
        const now = sim.clock.now();
        const data = {
          command_id: id,
          device_id: DEVICES[a.device],
          user_id: 'u1',
          command_type: 'reboot',
          parameters: {},
          priority: a.priority,
          expires_at: a.expiresIn === null ? null : new Date(now.getTime() + a.expiresIn * 1000).toISOString(),
          timeout_seconds: a.timeout,
          retries: a.retries,
          batch_id: null,
        };
        expect(await sim.exec(id, { type: 'queue_command', data })).toEqual({ events: ['command.queued'] });
        sim.commands.push({ id, device: DEVICES[a.device], priority: a.priority, seq: sim.commands.length });
        break;
      }
      case 'fetch':
        await sim.fetch(DEVICES[a.device]);
        break;
      case 'result': {
        const target = sim.commands[a.command % Math.max(1, sim.commands.length)];
        if (!target) break;
        const before = (await sim.state(target.id)).status as CommandStatus;
        const from = a.otherDevice ? DEVICES.find((d) => d !== target.device)! : target.device;
        const outcome = await sim.exec(target.id, { type: 'record_result', data: { device_id: from, status: a.status, response: { n: 1 } } });
        if (a.otherDevice) expect(outcome).toEqual({ error: 'not_found' });
        else if (before === 'pending' || before === 'sent') expect(outcome).toEqual({ events: [`command.${a.status}`] });
        else expect(outcome).toEqual({ error: 'conflict' });
        break;
      }
      case 'cancel': {
        const target = sim.commands[a.command % Math.max(1, sim.commands.length)];
        if (!target) break;
        const before = (await sim.state(target.id)).status as CommandStatus;
        const outcome = await sim.exec(target.id, { type: 'cancel_command', data: { reason: 'user' } });
        expect(outcome).toEqual(before === 'pending' || before === 'sent' ? { events: ['command.cancelled'] } : { error: 'conflict' });
        break;
      }
      case 'tick':
        await sim.tick(a.ms);
        break;
    }
    await sim.checkInvariants();
  }
}

describe('command lifecycle (fast-check)', () => {
  it('any interleaving keeps each command in at most one terminal state, never left, with the queue in priority-then-age order', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 40 }), async (actions) => {
        const sim = new Sim();
        try {
          await play(sim, actions);
          // Drain: fetch everything and let every deadline pass, until no command is open.
          for (let round = 0; round < 6; round++) {
            for (const d of DEVICES) await sim.fetch(d);
            await sim.tick(3_600_000);
            await sim.checkInvariants();
          }
          for (const c of sim.commands) {
            const state = await sim.state(c.id);
            expect(terminalStatuses.has(state.status as CommandStatus), `${c.id} ended ${state.status}`).toBe(true);
            const types = (await sim.history(c.id)).map((e) => e.type);
            expect(types.filter((t) => TERMINAL_EVENTS.has(t))).toHaveLength(1);
            expect(TERMINAL_EVENTS.has(types[types.length - 1]!)).toBe(true);
          }
        } finally {
          await sim.close();
        }
      }),
      { numRuns: 250 },
    );
  });

  it('a retried command keeps its age: it goes back ahead of younger commands of the same priority', async () => {
    const sim = new Sim();
    try {
      await play(sim, [
        { kind: 'queue', device: 0, priority: 'normal', expiresIn: null, timeout: 10, retries: 1 },
        { kind: 'fetch', device: 0 },
        { kind: 'queue', device: 0, priority: 'normal', expiresIn: null, timeout: 10, retries: 0 },
        { kind: 'queue', device: 0, priority: 'low', expiresIn: null, timeout: 10, retries: 0 },
        { kind: 'tick', ms: 10_000 },
      ]);
      expect((await sim.state('cmd-0')).status).toBe('pending');
      expect(pendingCommands(sim.sql, 'dev-a').map((c) => c.id)).toEqual(['cmd-0', 'cmd-1', 'cmd-2']);
    } finally {
      await sim.close();
    }
  });
});
