import { sql as raw } from 'kysely';
import { registrationKeyId, type EventOfType, type RecordedEvent } from '../domain/events.js';
import { ERASED, type PersonalKeys, type SecretBox } from '../eventlog/index.js';
import { nameKey } from './groups.js';
import type { Projection } from './projection.js';
import type { UsersTable } from './schema.js';
import { prepared, queryBuilder as q, type Sql } from './sql.js';

/** What opens sealed fields: the server's key, and each user's key for their personal data. */
export interface Keys {
  secrets: SecretBox;
  personal: PersonalKeys;
}

type Handlers = { [K in RecordedEvent['type']]?: (sql: Sql, event: Extract<RecordedEvent, { type: K }>, keys: Keys) => void };

const setUser = (sql: Sql, userId: string, values: Partial<Omit<UsersTable, 'id'>>) =>
  sql.run(q.updateTable('users').set(values).where('id', '=', userId));

function insertKey(sql: Sql, key: Omit<EventOfType<'api_key.created'>['data'], 'key_hash'> & { key_hash: string }, createdAt: string): void {
  sql.run(q.insertInto('api_keys').values({ id: key.key_id, user_id: key.user_id, name: key.name, scope: key.scope, key_hash: key.key_hash, created_at: createdAt, expires_at: key.expires_at, revoked_at: null, replaced_by: null }));
}

const handlers: Handlers = {
  'user.registered': (sql, event, { secrets, personal }) => {
    const { user_id, api_key_hash, ...user } = event.data;
    const username = personal.open(user_id, user.username, 'username');
    const email = personal.open(user_id, user.email, 'email');
    sql.run(
      q.insertInto('users').values({ id: user_id, ...user, username, email, username_key: nameKey(username), email_key: nameKey(email), created_at: event.recorded_at, disabled: 0, erased: 0 }),
    );
    if (api_key_hash === undefined) return;
    const keyHash = secrets.openIfSealed(api_key_hash, 'api_key_hash');
    insertKey(sql, { key_id: registrationKeyId(user_id), user_id, name: 'registration', scope: 'write', key_hash: keyHash, expires_at: null }, event.recorded_at);
  },
  'session.started': (sql, event) =>
    sql.run(q.insertInto('sessions').values({ id: event.data.session_id, user_id: event.data.user_id, started_at: event.recorded_at, expires_at: event.data.expires_at, ended_at: null })),
  'session.ended': (sql, event) => sql.run(q.updateTable('sessions').set({ ended_at: event.recorded_at }).where('id', '=', event.data.session_id)),
  'api_key.created': (sql, event, { secrets }) => insertKey(sql, { ...event.data, key_hash: secrets.open(event.data.key_hash, 'key_hash') }, event.recorded_at),
  'api_key.revoked': (sql, event) => sql.run(q.updateTable('api_keys').set({ revoked_at: event.recorded_at }).where('id', '=', event.data.key_id)),
  'api_key.rotated': (sql, event) =>
    sql.run(q.updateTable('api_keys').set({ expires_at: event.data.valid_until, replaced_by: event.data.replaced_by }).where('id', '=', event.data.key_id)),
  'user.quota_set': (sql, event) => setUser(sql, event.data.user_id, { device_quota: event.data.device_quota }),
  'user.disabled': (sql, event) => setUser(sql, event.data.user_id, { disabled: 1 }),
  'user.enabled': (sql, event) => setUser(sql, event.data.user_id, { disabled: 0 }),
  'user.role_changed': (sql, event) => setUser(sql, event.data.user_id, { role: event.data.role }),
  // As a replay without the destroyed key reads the registration: the same row either way.
  'user.erased': (sql, event) =>
    setUser(sql, event.data.user_id, { username: ERASED, email: ERASED, username_key: nameKey(ERASED), email_key: nameKey(ERASED), password_hash: '', disabled: 1, erased: 1 }),
};

/**
 * Users, sessions and API keys. The password hash stays sealed here too (login opens it); an API
 * key's lookup digest is opened, since keys are found by it.
 */
export const usersProjection = (keys: Keys): Projection => ({
  name: 'users',
  version: 4,
  tables: ['users', 'sessions', 'api_keys'],
  ddl: `
    CREATE TABLE IF NOT EXISTS users (
      id TEXT PRIMARY KEY, username TEXT NOT NULL, email TEXT NOT NULL, role TEXT NOT NULL,
      device_quota INTEGER NOT NULL, password_hash TEXT NOT NULL, created_at TEXT NOT NULL,
      username_key TEXT NOT NULL, email_key TEXT NOT NULL, disabled INTEGER NOT NULL, erased INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS users_username ON users (username_key);
    CREATE INDEX IF NOT EXISTS users_email ON users (email_key);
    CREATE TABLE IF NOT EXISTS sessions (
      id TEXT PRIMARY KEY, user_id TEXT NOT NULL, started_at TEXT NOT NULL, expires_at TEXT NOT NULL, ended_at TEXT);
    CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
    CREATE TABLE IF NOT EXISTS api_keys (
      id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL, scope TEXT NOT NULL, key_hash TEXT NOT NULL,
      created_at TEXT NOT NULL, expires_at TEXT, revoked_at TEXT, replaced_by TEXT);
    CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys (user_id, created_at);
    CREATE INDEX IF NOT EXISTS api_keys_hash ON api_keys (key_hash);`,

  apply(sql, event) {
    const handler = handlers[event.type] as ((sql: Sql, event: RecordedEvent, keys: Keys) => void) | undefined;
    handler?.(sql, event, keys);
  },
});

export type UserRow = NonNullable<ReturnType<typeof findUserById>>;

const userColumns = ['id', 'username', 'email', 'role', 'device_quota', 'password_hash', 'created_at', 'disabled', 'erased'] as const;

const userById = prepared((id: string) => q.selectFrom('users').select(userColumns).where('id', '=', id));
export const findUserById = (sql: Sql, id: string) => userById.first(sql, id);

/** Login accepts a username or an email in either field, case-insensitively. */
export const findUserByLogin = (sql: Sql, login: string) =>
  sql.first(
    q
      .selectFrom('users')
      .select(userColumns)
      .where((eb) => eb.or([eb('username_key', '=', nameKey(login)), eb('email_key', '=', nameKey(login))])),
  );

export const listUsers = (sql: Sql, limit: number, offset: number) => ({
  rows: sql.all(q.selectFrom('users').select(userColumns).orderBy(raw`rowid`).limit(limit).offset(offset)),
  total: countUsers(sql),
});

export const erasedUserIds = (sql: Sql): string[] => sql.all(q.selectFrom('users').select('id').where('erased', '=', 1)).map((row) => row.id);

/** Admins who can still act: the last of them may not be demoted or disabled. */
export const countActiveAdmins = (sql: Sql): number =>
  sql.first(q.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).where('role', '=', 'admin').where('disabled', '=', 0))?.n ?? 0;

export type ApiKeyRow = NonNullable<ReturnType<typeof findApiKey>>;

const apiKeyColumns = ['id', 'user_id', 'name', 'scope', 'created_at', 'expires_at', 'revoked_at', 'replaced_by'] as const;

/** By the key's keyed digest, or its plain SHA-256 for a key made before keyed digests. */
const apiKeyByHash = prepared((keyed: string, legacy: string) => q.selectFrom('api_keys').select(apiKeyColumns).where('key_hash', 'in', [keyed, legacy]));
export const findApiKeyByHash = (sql: Sql, digests: { keyed: string; legacy: string }) => apiKeyByHash.first(sql, digests.keyed, digests.legacy);

export const findApiKey = (sql: Sql, id: string) => sql.first(q.selectFrom('api_keys').select(apiKeyColumns).where('id', '=', id));

/** In the order they were made (rowid: several share a creation time). */
export const listApiKeys = (sql: Sql, userId: string) => sql.all(q.selectFrom('api_keys').select(apiKeyColumns).where('user_id', '=', userId).orderBy(raw`rowid`));

export const isUsernameOrEmailTaken = (sql: Sql, username: string, email: string) =>
  sql.first(
    q
      .selectFrom('users')
      .select(['username', 'email'])
      .where((eb) => eb.or([eb('username_key', '=', nameKey(username)), eb('email_key', '=', nameKey(email))])),
  );

export const countUsers = (sql: Sql): number =>
  sql.first(q.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')))?.n ?? 0;

const sessionById = prepared((id: string) => q.selectFrom('sessions').selectAll().where('id', '=', id));
export const findSession = (sql: Sql, id: string) => sessionById.first(sql, id);
