import { describe, expect, it } from 'vitest';
import { commandDecider, priorityRank, terminalStatuses, type CommandCommand, type CommandEvent, type CommandState } from '../../src/domain/command.js';
import { fold } from '../../src/domain/decider.js';
import type { DomainEvent, EventOfType } from '../../src/domain/events.js';
import { spec } from '../helpers/decider-spec.js';

const command = spec(commandDecider);

const T0 = '2026-03-01T12:00:00.000Z';
/** T0 plus `seconds`. */
const at = (seconds: number): string => new Date(Date.parse(T0) + seconds * 1000).toISOString();

const queuedData = (over: Partial<EventOfType<'command.queued'>['data']> = {}): EventOfType<'command.queued'>['data'] => ({
  command_id: 'c1',
  device_id: 'd1',
  user_id: 'u1',
  command_type: 'reboot',
  parameters: { delay: 5 },
  priority: 'normal',
  expires_at: null,
  timeout_seconds: 30,
  retries: 0,
  batch_id: null,
  ...over,
});
const queued = (over: Partial<EventOfType<'command.queued'>['data']> = {}): EventOfType<'command.queued'> => ({ type: 'command.queued', data: queuedData(over) });
const sent = (attempt: number, seconds: number): EventOfType<'command.sent'> => ({
  type: 'command.sent',
  data: { command_id: 'c1', device_id: 'd1', attempt, sent_at: at(seconds) },
});
const executed = (response: Record<string, unknown> | null = { ok: true }): EventOfType<'command.executed'> => ({
  type: 'command.executed',
  data: { command_id: 'c1', device_id: 'd1', response },
});
const failed = (reason: 'device' | 'timeout', response: Record<string, unknown> | null = null): EventOfType<'command.failed'> => ({
  type: 'command.failed',
  data: { command_id: 'c1', device_id: 'd1', response, reason },
});
const retried = (attempt: number): EventOfType<'command.retried'> => ({ type: 'command.retried', data: { command_id: 'c1', device_id: 'd1', attempt } });
const expired: EventOfType<'command.expired'> = { type: 'command.expired', data: { command_id: 'c1', device_id: 'd1' } };
const cancelled = (reason: 'user' | 'device_deleted' | 'batch_aborted' = 'user'): EventOfType<'command.cancelled'> => ({
  type: 'command.cancelled',
  data: { command_id: 'c1', device_id: 'd1', reason },
});

const markSent = (seconds: number): CommandCommand => ({ type: 'mark_sent', data: { now: at(seconds) } });
const result = (status: 'executed' | 'failed', response: Record<string, unknown> | null = null, device_id = 'd1'): CommandCommand => ({
  type: 'record_result',
  data: { device_id, status, response },
});
const cancel = (reason: 'user' | 'device_deleted' | 'batch_aborted' = 'user'): CommandCommand => ({ type: 'cancel_command', data: { reason } });
const checkAt = (seconds: number): CommandCommand => ({ type: 'check_deadlines', data: { now: at(seconds) } });

/** Histories ending in each status, for the refusal tables. */
const pending: DomainEvent[] = [queued()];
const sentOnce: DomainEvent[] = [queued(), sent(1, 0)];
const terminal: Record<'executed' | 'failed (device)' | 'failed (timeout)' | 'expired' | 'cancelled', DomainEvent[]> = {
  executed: [queued(), sent(1, 0), executed()],
  'failed (device)': [queued(), sent(1, 0), failed('device', { error: 'E42' })],
  'failed (timeout)': [queued(), sent(1, 0), failed('timeout')],
  expired: [queued({ expires_at: at(60) }), expired],
  cancelled: [queued(), cancelled()],
};
const foreign: DomainEvent[] = [
  { type: 'device.heartbeat', data: { device_id: 'd1', device_status: null, firmware_version: null, metrics: null } },
  { type: 'group.deleted', data: { group_id: 'g1', user_id: 'u1' } },
];

describe('command decider: queue_command', () => {
  it('queues a new command with everything it was given', () => {
    command.given([]).when({ type: 'queue_command', data: queuedData() }).then([queued()]);
  });

  it('queues with expiry, retries, a batch and any priority', () => {
    for (const priority of ['low', 'normal', 'high', 'critical'] as const) {
      const data = queuedData({ priority, expires_at: at(60), retries: 2, batch_id: 'b1' });
      command.given([]).when({ type: 'queue_command', data }).then([{ type: 'command.queued', data }]);
    }
  });

  it('refuses to queue over an existing command, whatever its status', () => {
    for (const history of [pending, sentOnce, ...Object.values(terminal)]) {
      command.given(history).when({ type: 'queue_command', data: queuedData() }).thenThrows('already_exists');
    }
  });

  it('skips events of other types in the stream', () => {
    command.given(foreign).when({ type: 'queue_command', data: queuedData() }).then([queued()]);
    command.given([...foreign, queued(), foreign[0]!]).when(markSent(1)).then([sent(1, 1)]);
  });
});

describe('command decider: an unknown command', () => {
  it.each<[string, CommandCommand]>([
    ['mark_sent', markSent(0)],
    ['record_result', result('executed')],
    ['cancel_command', cancel()],
    ['check_deadlines', checkAt(0)],
  ])('refuses %s with not_found', (_name, when) => {
    command.given([]).when(when).thenThrows('not_found');
    command.given(foreign).when(when).thenThrows('not_found');
  });
});

describe('command decider: mark_sent', () => {
  it('sends a pending command as attempt 1 at the given time', () => {
    command.given(pending).when(markSent(5)).then([sent(1, 5)]);
  });

  it('sends a retried command as the next attempt', () => {
    command
      .given([queued({ retries: 2 }), sent(1, 0), retried(1)])
      .when(markSent(40))
      .then([sent(2, 40)]);
    command
      .given([queued({ retries: 2 }), sent(1, 0), retried(1), sent(2, 40), retried(2)])
      .when(markSent(80))
      .then([sent(3, 80)]);
  });

  it('refuses to send a command already sent', () => {
    command.given(sentOnce).when(markSent(1)).thenThrows('conflict');
  });

  it.each(Object.entries(terminal))('refuses to send a command that is %s', (_name, history) => {
    command.given(history).when(markSent(1)).thenThrows('conflict');
  });
});

describe('command decider: record_result', () => {
  it('records executed from sent, with the response', () => {
    command.given(sentOnce).when(result('executed', { ok: true })).then([executed({ ok: true })]);
  });

  it('records executed from pending (a result before the fetch marked it sent)', () => {
    command.given(pending).when(result('executed', null)).then([executed(null)]);
  });

  it('records failed (reason device) from sent and from pending, with the response', () => {
    command.given(sentOnce).when(result('failed', { error: 'E42' })).then([failed('device', { error: 'E42' })]);
    command.given(pending).when(result('failed', null)).then([failed('device', null)]);
  });

  it('records a result for a retried (pending again) command', () => {
    command.given([queued({ retries: 1 }), sent(1, 0), retried(1)]).when(result('executed', { late: true })).then([executed({ late: true })]);
  });

  it('refuses a second result: executed then executed or failed', () => {
    command.given(terminal.executed).when(result('executed')).thenThrows('conflict');
    command.given(terminal.executed).when(result('failed')).thenThrows('conflict');
  });

  it('refuses a second result: failed then executed or failed', () => {
    command.given(terminal['failed (device)']).when(result('executed')).thenThrows('conflict');
    command.given(terminal['failed (device)']).when(result('failed')).thenThrows('conflict');
    command.given(terminal['failed (timeout)']).when(result('executed')).thenThrows('conflict');
  });

  it('refuses a result for an expired or cancelled command', () => {
    command.given(terminal.expired).when(result('executed')).thenThrows('conflict');
    command.given(terminal.cancelled).when(result('failed')).thenThrows('conflict');
  });

  it('answers not_found to another device, whatever the status (no existence leak)', () => {
    for (const history of [pending, sentOnce, ...Object.values(terminal)]) {
      command.given(history).when(result('executed', null, 'd2')).thenThrows('not_found');
    }
  });
});

describe('command decider: cancel_command', () => {
  it('cancels a pending command', () => {
    command.given(pending).when(cancel()).then([cancelled('user')]);
  });

  it('cancels a sent command', () => {
    command.given(sentOnce).when(cancel()).then([cancelled('user')]);
  });

  it('records why: a deleted device, an aborted batch', () => {
    command.given(pending).when(cancel('device_deleted')).then([cancelled('device_deleted')]);
    command.given(sentOnce).when(cancel('batch_aborted')).then([cancelled('batch_aborted')]);
  });

  it('cancels a command waiting for its retry', () => {
    command.given([queued({ retries: 1 }), sent(1, 0), retried(1)]).when(cancel()).then([cancelled('user')]);
  });

  it.each(Object.entries(terminal))('refuses to cancel a command that is %s', (_name, history) => {
    command.given(history).when(cancel()).thenThrows('conflict');
  });
});

describe('command decider: check_deadlines', () => {
  it('expires a pending command once expires_at is reached (inclusive), not before', () => {
    const history = [queued({ expires_at: at(60) })];
    command.given(history).when(checkAt(59)).thenNothing();
    command.given(history).when(checkAt(60)).then([expired]);
    command.given(history).when(checkAt(61)).then([expired]);
  });

  it('expires a sent command once expires_at is reached', () => {
    const history = [queued({ expires_at: at(20), timeout_seconds: 300 }), sent(1, 5)];
    command.given(history).when(checkAt(19)).thenNothing();
    command.given(history).when(checkAt(20)).then([expired]);
  });

  it('prefers expiry when the expiry and the response timeout are both due', () => {
    command
      .given([queued({ expires_at: at(40), timeout_seconds: 30, retries: 3 }), sent(1, 0)])
      .when(checkAt(100))
      .then([expired]);
  });

  it('fails a sent command with reason timeout after timeout_seconds (inclusive) when no retries are left', () => {
    command.given(sentOnce).when(checkAt(29)).thenNothing();
    command.given(sentOnce).when(checkAt(30)).then([failed('timeout')]);
    command.given(sentOnce).when(checkAt(3600)).then([failed('timeout')]);
  });

  it('re-queues a timed-out command while attempt <= retries, then fails it', () => {
    const base = [queued({ retries: 2 }), sent(1, 0)];
    command.given(base).when(checkAt(30)).then([retried(1)]);
    const second = [...base, retried(1), sent(2, 40)];
    command.given(second).when(checkAt(69)).thenNothing();
    command.given(second).when(checkAt(70)).then([retried(2)]);
    const third = [...second, retried(2), sent(3, 100)];
    command.given(third).when(checkAt(130)).then([failed('timeout')]);
  });

  it('never times out a pending command (not sent yet, or re-queued and waiting)', () => {
    command.given(pending).when(checkAt(10 * 24 * 3600)).thenNothing();
    command.given([queued({ retries: 1 }), sent(1, 0), retried(1)]).when(checkAt(10 * 24 * 3600)).thenNothing();
  });

  it('does nothing to a pending command without expiry, or whose expiry lies ahead', () => {
    command.given(pending).when(checkAt(1)).thenNothing();
    command.given([queued({ expires_at: at(3600) })]).when(checkAt(3599)).thenNothing();
  });

  it.each(Object.entries(terminal))('does nothing to a command that is %s, even long past every deadline', (_name, history) => {
    command.given(history).when(checkAt(365 * 24 * 3600)).thenNothing();
  });
});

describe('command decider: fold', () => {
  const states = (history: readonly DomainEvent[]): CommandState => fold(commandDecider, history);

  it('tracks status, attempt and sent_at through a retry', () => {
    expect(states([queued({ retries: 1, expires_at: at(600) })])).toEqual({
      status: 'pending',
      command_id: 'c1',
      device_id: 'd1',
      expires_at: at(600),
      timeout_seconds: 30,
      retries: 1,
      attempt: 0,
      sent_at: null,
    });
    expect(states([queued({ retries: 1 }), sent(1, 3)])).toMatchObject({ status: 'sent', attempt: 1, sent_at: at(3) });
    expect(states([queued({ retries: 1 }), sent(1, 3), retried(1)])).toMatchObject({ status: 'pending', attempt: 1, sent_at: null });
  });

  it('folds each terminal event to its status', () => {
    expect(states(terminal.executed).status).toBe('executed');
    expect(states(terminal['failed (device)']).status).toBe('failed');
    expect(states(terminal['failed (timeout)']).status).toBe('failed');
    expect(states(terminal.expired).status).toBe('expired');
    expect(states(terminal.cancelled).status).toBe('cancelled');
  });

  it('ignores transitions before the command was queued', () => {
    expect(states([sent(1, 0), executed()])).toEqual({ status: 'none' });
  });

  it('names the terminal statuses and ranks priorities critical > high > normal > low', () => {
    expect([...terminalStatuses].sort()).toEqual(['cancelled', 'executed', 'expired', 'failed']);
    expect(priorityRank.critical).toBeGreaterThan(priorityRank.high);
    expect(priorityRank.high).toBeGreaterThan(priorityRank.normal);
    expect(priorityRank.normal).toBeGreaterThan(priorityRank.low);
  });

  it('decides events every one of which the decider folds', () => {
    const decided: CommandEvent[] = commandDecider.decide(markSent(1), states(pending));
    for (const event of decided) expect(commandDecider.eventTypes.has(event.type)).toBe(true);
  });
});
