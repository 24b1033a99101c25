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
    expect(state).toEqual({
      status: 'registered',
      user_id: 'u1',
      role: 'admin',
      disabled: false,
      erased: false,
      device_quota: 100,
      open_sessions: new Set(['s1']),
      keys: new Map([['u1', { name: 'registration', scope: 'write', revoked: false, expires_at: null }]]),
    });
  });

  it('starts from the initial state on an empty history', () => {
    expect(fold(userDecider, [])).toEqual({ status: 'none' });
  });
});

describe('user decider: API keys', () => {
  const newKey = { key_id: 'k1', name: 'ci', scope: 'read' as const, key_hash: 'sealed:v1:x', expires_at: null };
  const created: EventOfType<'api_key.created'> = { type: 'api_key.created', data: { ...newKey, user_id: 'u1' } };
  const revoked: EventOfType<'api_key.revoked'> = { type: 'api_key.revoked', data: { key_id: 'k1', user_id: 'u1' } };
  const replacement = { ...newKey, key_id: 'k2' };
  const now = '2026-03-01T12:00:00.000Z';
  const later = '2026-03-01T12:05:00.000Z';

  it('creates a key', () => {
    user.given([registered]).when({ type: 'create_api_key', data: newKey }).then([created]);
  });

  it('revokes a live key once; a second revocation or an unknown key is refused', () => {
    user.given([registered, created]).when({ type: 'revoke_api_key', data: { key_id: 'k1' } }).then([revoked]);
    user.given([registered, created, revoked]).when({ type: 'revoke_api_key', data: { key_id: 'k1' } }).thenThrows('conflict');
    user.given([registered]).when({ type: 'revoke_api_key', data: { key_id: 'k9' } }).thenThrows('not_found');
  });

  it('rotates: a new key, the old one valid until the grace ends, never past its own expiry', () => {
    user
      .given([registered, created])
      .when({ type: 'rotate_api_key', data: { key_id: 'k1', replacement, valid_until: later, now } })
      .then([
        { type: 'api_key.created', data: { ...replacement, user_id: 'u1' } },
        { type: 'api_key.rotated', data: { key_id: 'k1', user_id: 'u1', replaced_by: 'k2', valid_until: later } },
      ]);
    const expiring: EventOfType<'api_key.created'> = { type: 'api_key.created', data: { ...created.data, expires_at: '2026-03-01T12:01:00.000Z' } };
    user
      .given([registered, expiring])
      .when({ type: 'rotate_api_key', data: { key_id: 'k1', replacement, valid_until: later, now } })
      .then([
        { type: 'api_key.created', data: { ...replacement, user_id: 'u1' } },
        { type: 'api_key.rotated', data: { key_id: 'k1', user_id: 'u1', replaced_by: 'k2', valid_until: '2026-03-01T12:01:00.000Z' } },
      ]);
  });

  it('refuses to rotate a revoked or expired key', () => {
    user.given([registered, created, revoked]).when({ type: 'rotate_api_key', data: { key_id: 'k1', replacement, valid_until: later, now } }).thenThrows('conflict');
    const expired: EventOfType<'api_key.created'> = { type: 'api_key.created', data: { ...created.data, expires_at: now } };
    user.given([registered, expired]).when({ type: 'rotate_api_key', data: { key_id: 'k1', replacement, valid_until: later, now } }).thenThrows('conflict');
  });

  it('knows the registration key of a log written before keys had events, by the user id', () => {
    user.given([registered]).when({ type: 'revoke_api_key', data: { key_id: 'u1' } }).then([{ type: 'api_key.revoked', data: { key_id: 'u1', user_id: 'u1' } }]);
  });
});

describe('user decider: administration', () => {
  it('records a change, and nothing when the value is already so', () => {
    user.given([registered]).when({ type: 'set_quota', data: { device_quota: 5 } }).then([{ type: 'user.quota_set', data: { user_id: 'u1', device_quota: 5 } }]);
    user.given([registered]).when({ type: 'set_quota', data: { device_quota: 100 } }).then([]);
    user.given([registered]).when({ type: 'set_disabled', data: { disabled: true } }).then([{ type: 'user.disabled', data: { user_id: 'u1' } }]);
    user.given([registered, { type: 'user.disabled', data: { user_id: 'u1' } }]).when({ type: 'set_disabled', data: { disabled: false } }).then([{ type: 'user.enabled', data: { user_id: 'u1' } }]);
    user.given([registered]).when({ type: 'set_disabled', data: { disabled: false } }).then([]);
    user.given([registered]).when({ type: 'set_role', data: { role: 'user' } }).then([{ type: 'user.role_changed', data: { user_id: 'u1', role: 'user' } }]);
    user.given([registered]).when({ type: 'set_role', data: { role: 'admin' } }).then([]);
  });
});

describe('user decider: erasure', () => {
  const key: EventOfType<'api_key.created'> = { type: 'api_key.created', data: { key_id: 'k1', user_id: 'u1', name: 'ci', scope: 'write', key_hash: 'sealed:v1:x', expires_at: null } };

  it('ends every open session, revokes every live key, then records the erasure naming no personal data', () => {
    user
      .given([registered, started, key])
      .when({ type: 'erase_user' })
      .then([
        { type: 'session.ended', data: { session_id: 's1', user_id: 'u1', reason: 'erased' } },
        { type: 'api_key.revoked', data: { key_id: 'u1', user_id: 'u1' } },
        { type: 'api_key.revoked', data: { key_id: 'k1', user_id: 'u1' } },
        { type: 'user.erased', data: { user_id: 'u1' } },
      ]);
  });

  it('an erased user is gone: any later command answers not_found', () => {
    const erased: DomainEvent = { type: 'user.erased', data: { user_id: 'u1' } };
    user.given([registered, erased]).when({ type: 'erase_user' }).thenThrows('not_found');
    user.given([registered, erased]).when({ type: 'set_disabled', data: { disabled: false } }).thenThrows('not_found');
    user.given([registered, erased]).when({ type: 'start_session', data: sessionData }).thenThrows('not_found');
  });
});
