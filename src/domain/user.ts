import type { Decider } from './decider.js';
import { DomainError, conflict, notFound } from './errors.js';
import { registrationKeyId, type ApiKeyScope, type EventOfType, type Role } from './events.js';

export type UserEvent = EventOfType<
  | 'user.registered'
  | 'session.started'
  | 'session.ended'
  | 'api_key.created'
  | 'api_key.revoked'
  | 'api_key.rotated'
  | 'user.quota_set'
  | 'user.disabled'
  | 'user.enabled'
  | 'user.role_changed'
  | 'user.erased'
>;

type NewKey = Omit<EventOfType<'api_key.created'>['data'], 'user_id'>;

export type UserCommand =
  | { type: 'register_user'; data: EventOfType<'user.registered'>['data'] }
  | { type: 'start_session'; data: { session_id: string; user_id: string; expires_at: string } }
  | { type: 'end_session'; data: { session_id: string } }
  | { type: 'create_api_key'; data: NewKey }
  | { type: 'revoke_api_key'; data: { key_id: string } }
  | { type: 'rotate_api_key'; data: { key_id: string; replacement: NewKey; valid_until: string; now: string } }
  | { type: 'set_quota'; data: { device_quota: number } }
  | { type: 'set_disabled'; data: { disabled: boolean } }
  | { type: 'set_role'; data: { role: Role } }
  | { type: 'erase_user' };

export interface ApiKeyState {
  name: string;
  scope: ApiKeyScope;
  revoked: boolean;
  expires_at: string | null;
}

export type UserState =
  | { status: 'none' }
  | {
      status: 'registered';
      user_id: string;
      role: Role;
      disabled: boolean;
      erased: boolean;
      device_quota: number;
      open_sessions: ReadonlySet<string>;
      keys: ReadonlyMap<string, ApiKeyState>;
    };

type Registered = Extract<UserState, { status: 'registered' }>;

/** Keys a user may hold at once: enough for every integration, few enough that a script gone wrong stops. */
export const MAX_ACTIVE_KEYS = 50;

const withKey = (state: Registered, keyId: string, key: ApiKeyState): Registered => ({ ...state, keys: new Map(state.keys).set(keyId, key) });

function evolveRegistered(state: Registered, event: UserEvent): UserState {
  switch (event.type) {
    case 'user.registered':
      return state;
    case 'session.started':
      return { ...state, open_sessions: new Set(state.open_sessions).add(event.data.session_id) };
    case 'session.ended': {
      const open = new Set(state.open_sessions);
      open.delete(event.data.session_id);
      return { ...state, open_sessions: open };
    }
    case 'api_key.created':
      return withKey(state, event.data.key_id, { name: event.data.name, scope: event.data.scope, revoked: false, expires_at: event.data.expires_at });
    case 'api_key.revoked': {
      const key = state.keys.get(event.data.key_id);
      return key ? withKey(state, event.data.key_id, { ...key, revoked: true }) : state;
    }
    case 'api_key.rotated': {
      const key = state.keys.get(event.data.key_id);
      return key ? withKey(state, event.data.key_id, { ...key, expires_at: event.data.valid_until }) : state;
    }
    case 'user.quota_set':
      return { ...state, device_quota: event.data.device_quota };
    case 'user.disabled':
    case 'user.enabled':
      return { ...state, disabled: event.type === 'user.disabled' };
    case 'user.role_changed':
      return { ...state, role: event.data.role };
    case 'user.erased':
      return { ...state, erased: true, disabled: true };
  }
}

/** Everything the user could still authenticate with ends, then the erasure itself. */
function erase(state: Registered): UserEvent[] {
  const user_id = state.user_id;
  return [
    ...[...state.open_sessions].map((session_id): UserEvent => ({ type: 'session.ended', data: { session_id, user_id, reason: 'erased' } })),
    ...[...state.keys].filter(([, key]) => !key.revoked).map(([key_id]): UserEvent => ({ type: 'api_key.revoked', data: { key_id, user_id } })),
    { type: 'user.erased', data: { user_id } },
  ];
}

const isActive = (key: ApiKeyState, now: string | null): boolean => !key.revoked && (key.expires_at === null || now === null || key.expires_at > now);

function liveKey(state: Registered, keyId: string, now: string | null): ApiKeyState {
  const key = state.keys.get(keyId);
  if (!key) throw notFound('API key');
  if (key.revoked) throw conflict('the API key is already revoked');
  if (!isActive(key, now)) throw conflict('the API key has expired');
  return key;
}

function decideRegistered(command: Exclude<UserCommand, { type: 'register_user' }>, state: Registered): UserEvent[] {
  const user_id = state.user_id;
  switch (command.type) {
    case 'start_session':
      return [{ type: 'session.started', data: command.data }];
    case 'end_session':
      if (!state.open_sessions.has(command.data.session_id)) throw conflict('session already ended');
      return [{ type: 'session.ended', data: { session_id: command.data.session_id, user_id, reason: 'logout' } }];
    case 'create_api_key': {
      const active = [...state.keys.values()].filter((key) => !key.revoked).length;
      if (active >= MAX_ACTIVE_KEYS) throw conflict(`at most ${MAX_ACTIVE_KEYS} API keys may be active at once; revoke one first`);
      return [{ type: 'api_key.created', data: { ...command.data, user_id } }];
    }
    case 'revoke_api_key':
      liveKey(state, command.data.key_id, null);
      return [{ type: 'api_key.revoked', data: { key_id: command.data.key_id, user_id } }];
    case 'rotate_api_key': {
      const old = liveKey(state, command.data.key_id, command.data.now);
      // The grace never extends the old key's life past the expiry it already had.
      const validUntil = old.expires_at !== null && old.expires_at < command.data.valid_until ? old.expires_at : command.data.valid_until;
      return [
        { type: 'api_key.created', data: { ...command.data.replacement, user_id } },
        { type: 'api_key.rotated', data: { key_id: command.data.key_id, user_id, replaced_by: command.data.replacement.key_id, valid_until: validUntil } },
      ];
    }
    case 'set_quota':
      return state.device_quota === command.data.device_quota ? [] : [{ type: 'user.quota_set', data: { user_id, device_quota: command.data.device_quota } }];
    case 'set_disabled':
      if (state.disabled === command.data.disabled) return [];
      return [{ type: command.data.disabled ? 'user.disabled' : 'user.enabled', data: { user_id } }];
    case 'set_role':
      return state.role === command.data.role ? [] : [{ type: 'user.role_changed', data: { user_id, role: command.data.role } }];
    case 'erase_user':
      return erase(state);
  }
}

export const userDecider: Decider<UserCommand, UserState, UserEvent> = {
  eventTypes: new Set([
    'user.registered',
    'session.started',
    'session.ended',
    'api_key.created',
    'api_key.revoked',
    'api_key.rotated',
    'user.quota_set',
    'user.disabled',
    'user.enabled',
    'user.role_changed',
    'user.erased',
  ]),
  initialState: () => ({ status: 'none' }),

  evolve(state, event) {
    if (event.type === 'user.registered') {
      const { user_id, role, device_quota, api_key_hash } = event.data;
      const keys = new Map<string, ApiKeyState>();
      if (api_key_hash !== undefined) keys.set(registrationKeyId(user_id), { name: 'registration', scope: 'write', revoked: false, expires_at: null });
      return { status: 'registered', user_id, role, disabled: false, erased: false, device_quota, open_sessions: new Set(), keys };
    }
    return state.status === 'registered' ? evolveRegistered(state, event) : state;
  },

  decide(command, state) {
    if (command.type === 'register_user') {
      if (state.status !== 'none') throw new DomainError('already_exists', 'user already exists');
      return [{ type: 'user.registered', data: command.data }];
    }
    // An erased user is gone: nothing more happens to them.
    if (state.status !== 'registered' || state.erased) throw notFound('user');
    return decideRegistered(command, state);
  },
};
