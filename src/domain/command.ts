import type { Decider } from './decider.js';
import { DomainError, conflict, notFound } from './errors.js';
import type { CommandPriority, EventOfType } from './events.js';

export type CommandEvent = EventOfType<
  'command.queued' | 'command.sent' | 'command.executed' | 'command.failed' | 'command.retried' | 'command.expired' | 'command.cancelled'
>;
export type CommandStatus = 'pending' | 'sent' | 'executed' | 'failed' | 'expired' | 'cancelled';
export const terminalStatuses: ReadonlySet<CommandStatus> = new Set(['executed', 'failed', 'expired', 'cancelled']);

/** Highest first; the queue order is priority, then age. */
export const priorityRank: Record<CommandPriority, number> = { critical: 3, high: 2, normal: 1, low: 0 };

export type CommandCommand =
  | { type: 'queue_command'; data: EventOfType<'command.queued'>['data'] }
  | { type: 'mark_sent'; data: { now: string } }
  /** From the device: only its own commands, only once. */
  | { type: 'record_result'; data: { device_id: string; status: 'executed' | 'failed'; response: Record<string, unknown> | null } }
  | { type: 'cancel_command'; data: { reason: 'user' | 'device_deleted' | 'batch_aborted' } }
  /** A timer: expiry of pending or sent commands, the response timeout of sent ones. */
  | { type: 'check_deadlines'; data: { now: string } };

export type CommandState =
  | { status: 'none' }
  | {
      status: CommandStatus;
      command_id: string;
      device_id: string;
      expires_at: string | null;
      timeout_seconds: number;
      retries: number;
      attempt: number;
      sent_at: string | null;
    };

export const commandDecider: Decider<CommandCommand, CommandState, CommandEvent> = {
  eventTypes: new Set(['command.queued', 'command.sent', 'command.executed', 'command.failed', 'command.retried', 'command.expired', 'command.cancelled']),
  initialState: () => ({ status: 'none' }),

  evolve(state, event) {
    if (event.type === 'command.queued') {
      const { command_id, device_id, expires_at, timeout_seconds, retries } = event.data;
      return { status: 'pending', command_id, device_id, expires_at, timeout_seconds, retries, attempt: 0, sent_at: null };
    }
    if (state.status === 'none') return state;
    switch (event.type) {
      case 'command.sent':
        return { ...state, status: 'sent', attempt: event.data.attempt, sent_at: event.data.sent_at };
      case 'command.retried':
        return { ...state, status: 'pending', sent_at: null };
      case 'command.executed':
        return { ...state, status: 'executed' };
      case 'command.failed':
        return { ...state, status: 'failed' };
      case 'command.expired':
        return { ...state, status: 'expired' };
      case 'command.cancelled':
        return { ...state, status: 'cancelled' };
    }
  },

  decide(command, state) {
    if (command.type === 'queue_command') {
      if (state.status !== 'none') throw new DomainError('already_exists', 'command already exists');
      return [{ type: 'command.queued', data: command.data }];
    }
    if (state.status === 'none') throw notFound('command');
    const { command_id, device_id } = state;
    switch (command.type) {
      case 'mark_sent':
        if (state.status !== 'pending') throw conflict(`the command is already ${state.status}; only pending commands can be sent`);
        return [{ type: 'command.sent', data: { command_id, device_id, attempt: state.attempt + 1, sent_at: command.data.now } }];
      case 'record_result':
        if (command.data.device_id !== device_id) throw notFound('command');
        if (state.status !== 'sent' && state.status !== 'pending') throw conflict(`the command is already ${state.status}`);
        return command.data.status === 'executed'
          ? [{ type: 'command.executed', data: { command_id, device_id, response: command.data.response } }]
          : [{ type: 'command.failed', data: { command_id, device_id, response: command.data.response, reason: 'device' } }];
      case 'cancel_command':
        if (state.status !== 'pending' && state.status !== 'sent') throw conflict(`the command is already ${state.status}; only pending or sent commands can be cancelled`);
        return [{ type: 'command.cancelled', data: { command_id, device_id, reason: command.data.reason } }];
      case 'check_deadlines':
        return deadlineEvents(state, command.data.now);
    }
  },
};

/** What a timer check finds: expired, timed out (retried while retries remain), or nothing. */
function deadlineEvents(state: Exclude<CommandState, { status: 'none' }>, now: string): CommandEvent[] {
  const { command_id, device_id } = state;
  if (state.status !== 'pending' && state.status !== 'sent') return [];
  if (state.expires_at !== null && state.expires_at <= now) return [{ type: 'command.expired', data: { command_id, device_id } }];
  if (state.status !== 'sent' || state.sent_at === null) return [];
  if (Date.parse(state.sent_at) + state.timeout_seconds * 1000 > Date.parse(now)) return [];
  if (state.attempt <= state.retries) return [{ type: 'command.retried', data: { command_id, device_id, attempt: state.attempt } }];
  return [{ type: 'command.failed', data: { command_id, device_id, response: null, reason: 'timeout' } }];
}
