import { describe, expect, it } from 'vitest';
import { fold } from '../../src/domain/decider.js';
import type { DomainEvent, EventOfType } from '../../src/domain/events.js';
import { userDecider } from '../../src/domain/user.js';
import { spec } from '../helpers/decider-spec.js';

const user = spec(userDecider);

const registration: EventOfType<'user.registered'>['data'] = {
  user_id: 'u1',
  username: 'ada',
  email: 'ada@example.com',
  role: 'admin',
  password_hash: '$2b$04$hash',
  api_key_hash: 'key-hash',
  device_quota: 100,
};
const registered: EventOfType<'user.registered'> = { type: 'user.registered', data: registration };
const sessionData = { session_id: 's1', user_id: 'u1', expires_at: '2026-03-08T12:00:00.000Z' };
const started: EventOfType<'session.started'> = { type: 'session.started', data: sessionData };
const ended: EventOfType<'session.ended'> = { type: 'session.ended', data: { session_id: 's1', user_id: 'u1', reason: 'logout' } };
const foreign: DomainEvent = { type: 'group.created', data: { group_id: 'g1', user_id: 'u1', name: 'Lab', description: null, parent_id: null } };

describe('user decider: register_user', () => {
  it('registers a new user', () => {
    user.given([]).when({ type: 'register_user', data: registration }).then([registered]);
  });

  it('refuses a second registration of the same stream', () => {
    user.given([registered]).when({ type: 'register_user', data: { ...registration, username: 'other' } }).thenThrows('already_exists');
  });

  it('ignores events of other types, so a stream holding only foreign events is still new', () => {
    user.given([foreign]).when({ type: 'register_user', data: registration }).then([registered]);
  });
});

describe('user decider: start_session', () => {
  it('starts a session for a registered user', () => {
    user.given([registered]).when({ type: 'start_session', data: sessionData }).then([started]);
  });

  it('refuses a session for an unknown user', () => {
    user.given([]).when({ type: 'start_session', data: sessionData }).thenThrows('not_found');
  });

  it('refuses a session when the stream only holds events of other types', () => {
    user.given([foreign, started]).when({ type: 'start_session', data: sessionData }).thenThrows('not_found');
  });
});

describe('user decider: end_session', () => {
  it('ends an open session, naming the user from the state and the reason logout', () => {
    user.given([registered, started]).when({ type: 'end_session', data: { session_id: 's1' } }).then([ended]);
  });

  it('refuses to end a session twice', () => {
    user.given([registered, started, ended]).when({ type: 'end_session', data: { session_id: 's1' } }).thenThrows('conflict');
  });

  it('refuses to end a session that was never started', () => {
    user.given([registered, started]).when({ type: 'end_session', data: { session_id: 's2' } }).thenThrows('conflict');
  });

  it('refuses for an unknown user', () => {
    user.given([]).when({ type: 'end_session', data: { session_id: 's1' } }).thenThrows('not_found');
  });

  it('keeps the other sessions open when one ends', () => {
    const second: EventOfType<'session.started'> = { type: 'session.started', data: { ...sessionData, session_id: 's2' } };
    user.given([registered, started, second, ended]).when({ type: 'end_session', data: { session_id: 's2' } }).then([
      { type: 'session.ended', data: { session_id: 's2', user_id: 'u1', reason: 'logout' } },
    ]);
  });
});

describe('user decider: fold', () => {
  it('skips events of types it does not own', () => {
    const state = fold(userDecider, [foreign, registered, foreign, started]);
    expect(state).toEqual({ status: 'registered', user_id: 'u1', open_sessions: new Set(['s1']) });
  });

  it('starts from the initial state on an empty history', () => {
    expect(fold(userDecider, [])).toEqual({ status: 'none' });
  });
});
