import {
  DummyDriver,
  Kysely,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
  type Compilable,
  type InferResult,
} from 'kysely';
import type { Statement } from 'better-sqlite3';
import type { SqliteDatabase } from '../eventlog/index.js';
import type { ReadModels } from './schema.js';

/**
 * Kysely builds and types the queries; better-sqlite3 runs them synchronously. Running
 * synchronously keeps a projection batch and its checkpoint in one short transaction, with
 * no async gap in which another query could slip into it on the single connection.
 */
export const queryBuilder = new Kysely<ReadModels>({
  dialect: {
    createAdapter: () => new SqliteAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (db) => new SqliteIntrospector(db),
    createQueryCompiler: () => new SqliteQueryCompiler(),
  },
});

type Row<Q extends Compilable> = InferResult<Q>[number];

export class Sql {
  private readonly cache = new Map<string, Statement>();

  constructor(readonly db: SqliteDatabase) {}

  all<Q extends Compilable>(query: Q): Row<Q>[] {
    const { sql, parameters } = query.compile();
    return this.prepare(sql).all(...bind(parameters)) as Row<Q>[];
  }

  first<Q extends Compilable>(query: Q): Row<Q> | undefined {
    const { sql, parameters } = query.compile();
    return this.prepare(sql).get(...bind(parameters)) as Row<Q> | undefined;
  }

  run(query: Compilable): number {
    const { sql, parameters } = query.compile();
    return this.prepare(sql).run(...bind(parameters)).changes;
  }

  transaction<T>(work: () => T): T {
    return this.db.transaction(work)();
  }

  private prepare(sql: string): Statement {
    let statement = this.cache.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.cache.set(sql, statement);
    }
    return statement;
  }
}

/** SQLite has no booleans or objects: store them as integers and JSON text. */
function bind(parameters: readonly unknown[]): unknown[] {
  return parameters.map((value) => {
    if (typeof value === 'boolean') return value ? 1 : 0;
    if (value !== null && typeof value === 'object' && !(value instanceof Buffer)) return JSON.stringify(value);
    return value;
  });
}
