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

  firstCompiled({ sql, parameters }: { sql: string; parameters: readonly unknown[] }): unknown {
    return this.prepare(sql).get(...bind(parameters));
  }

  allCompiled({ sql, parameters }: { sql: string; parameters: readonly unknown[] }): unknown[] {
    return this.prepare(sql).all(...bind(parameters));
  }

  runRaw(sqlText: string, parameters: readonly unknown[]): number {
    return this.prepare(sqlText).run(...bind(parameters)).changes;
  }

  runCompiled({ sql, parameters }: { sql: string; parameters: readonly unknown[] }): number {
    return this.prepare(sql).run(...bind(parameters)).changes;
  }

  /** IMMEDIATE: see WRITE_TRANSACTION in eventlog/database.ts. */
  transaction<T>(work: () => T): T {
    return this.db.transaction(work).immediate();
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

const slot = (index: number): string => `\u0000arg${index}\u0000`;

/**
 * A query for the hot paths: built and compiled once with placeholder arguments, then
 * only bound per call (Kysely compiles on every call otherwise). Its arguments must reach
 * the query unchanged, as parameters.
 */
export function prepared<A extends string[], Q extends Compilable>(build: (...args: A) => Q) {
  let plan: { sql: string; parameters: readonly unknown[]; slots: Array<number | null> } | undefined;
  const bound = (args: A) => {
    if (!plan) {
      const { sql, parameters } = build(...(args.map((_, i) => slot(i)) as A)).compile();
      const slots = parameters.map((p) => (typeof p === 'string' && p.startsWith('\u0000arg') ? Number(p.slice(4, -1)) : null));
      if (slots.filter((s) => s !== null).length !== args.length) throw new Error('a prepared query must pass each argument through as a parameter');
      plan = { sql, parameters, slots };
    }
    const { slots, parameters } = plan;
    return { sql: plan.sql, parameters: parameters.map((p, i) => (slots[i] === null ? p : args[slots[i]!])) };
  };
  return {
    first: (db: Sql, ...args: A): Row<Q> | undefined => db.firstCompiled(bound(args)) as Row<Q> | undefined,
    all: (db: Sql, ...args: A): Row<Q>[] => db.allCompiled(bound(args)) as Row<Q>[],
    run: (db: Sql, ...args: A): number => db.runCompiled(bound(args)),
  };
}
