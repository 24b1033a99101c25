import type { SecretBox } from '../eventlog/index.js';
import { nameKey } from './groups.js';
import type { Projection } from './projection.js';
import { prepared, queryBuilder as q, type Sql } from './sql.js';

/**
 * Users and sessions. The password hash stays sealed here too (login opens it); the API key's
 * lookup digest is opened, since keys are found by it.
 */
export const usersProjection = (secrets: SecretBox): Projection => ({
  name: 'users',
  version: 2,
  tables: ['users', 'sessions'],
  ddl: `
    CREATE TABLE IF NOT EXISTS users (
      id TEXT PRIMARY KEY, username TEXT NOT NULL, email TEXT NOT NULL, role TEXT NOT NULL,
      device_quota INTEGER NOT NULL, password_hash TEXT NOT NULL, api_key_hash TEXT NOT NULL, created_at TEXT NOT NULL,
      username_key TEXT NOT NULL, email_key TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS users_username ON users (username_key);
    CREATE INDEX IF NOT EXISTS users_email ON users (email_key);
    CREATE INDEX IF NOT EXISTS users_api_key ON users (api_key_hash);
    CREATE TABLE IF NOT EXISTS sessions (
      id TEXT PRIMARY KEY, user_id TEXT NOT NULL, started_at TEXT NOT NULL, expires_at TEXT NOT NULL, ended_at TEXT);
    CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);`,

  apply(sql, event) {
    switch (event.type) {
      case 'user.registered': {
        const { user_id, api_key_hash, ...user } = event.data;
        const apiKeyLookup = secrets.openIfSealed(api_key_hash, 'api_key_hash');
        sql.run(q.insertInto('users').values({ id: user_id, ...user, api_key_hash: apiKeyLookup, username_key: nameKey(user.username), email_key: nameKey(user.email), created_at: event.recorded_at }));
        return;
      }
      case 'session.started':
        sql.run(
          q.insertInto('sessions').values({
            id: event.data.session_id,
            user_id: event.data.user_id,
            started_at: event.recorded_at,
            expires_at: event.data.expires_at,
            ended_at: null,
          }),
        );
        return;
      case 'session.ended':
        sql.run(q.updateTable('sessions').set({ ended_at: event.recorded_at }).where('id', '=', event.data.session_id));
        return;
      default:
        return;
    }
  },
});

export type UserRow = NonNullable<ReturnType<typeof findUserById>>;

const userColumns = ['id', 'username', 'email', 'role', 'device_quota', 'password_hash', 'api_key_hash', 'created_at'] as const;

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

export const findUserByApiKeyHash = (sql: Sql, digests: { keyed: string; legacy: string }) =>
  sql.first(q.selectFrom('users').select(userColumns).where('api_key_hash', 'in', [digests.keyed, digests.legacy]));

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
