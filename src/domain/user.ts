import type { Decider } from './decider.js';
import { DomainError, conflict, notFound } from './errors.js';
import type { EventOfType } from './events.js';

export type UserEvent = EventOfType<'user.registered' | 'session.started' | 'session.ended'>;

export type UserCommand =
  | { type: 'register_user'; data: EventOfType<'user.registered'>['data'] }
  | { type: 'start_session'; data: { session_id: string; user_id: string; expires_at: string } }
  | { type: 'end_session'; data: { session_id: string } };

export type UserState =
  | { status: 'none' }
  | { status: 'registered'; user_id: string; open_sessions: ReadonlySet<string> };

export const userDecider: Decider<UserCommand, UserState, UserEvent> = {
  eventTypes: new Set(['user.registered', 'session.started', 'session.ended']),
  initialState: () => ({ status: 'none' }),

  evolve(state, event) {
    switch (event.type) {
      case 'user.registered':
        return { status: 'registered', user_id: event.data.user_id, open_sessions: new Set() };
      case 'session.started':
      case 'session.ended': {
        if (state.status !== 'registered') return state;
        const open = new Set(state.open_sessions);
        if (event.type === 'session.started') open.add(event.data.session_id);
        else open.delete(event.data.session_id);
        return { ...state, open_sessions: open };
      }
    }
  },

  decide(command, state) {
    switch (command.type) {
      case 'register_user':
        if (state.status !== 'none') throw new DomainError('already_exists', 'user already exists');
        return [{ type: 'user.registered', data: command.data }];
      case 'start_session':
        if (state.status !== 'registered') throw notFound('user');
        return [{ type: 'session.started', data: command.data }];
      case 'end_session':
        if (state.status !== 'registered') throw notFound('user');
        if (!state.open_sessions.has(command.data.session_id)) throw conflict('session already ended');
        return [{ type: 'session.ended', data: { session_id: command.data.session_id, user_id: state.user_id, reason: 'logout' } }];
    }
  },
};
