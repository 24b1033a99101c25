import type { RecordedEvent } from '../domain/events.js';
import type { SqliteDatabase } from '../eventlog/index.js';
import type { Sql } from './sql.js';

/**
 * A read model: disposable, rebuilt from position 0 whenever its version changes.
 * apply() runs inside the runner's transaction together with the checkpoint, and never
 * performs side effects.
 */
export interface Projection {
  readonly name: string;
  readonly version: number;
  /** Tables it owns, in the order a digest reads them. */
  readonly tables: readonly string[];
  /**
   * For tables whose rows depend on where batches ended (content packed per batch): the rows of
   * the content in a canonical order, which a digest reads instead of the stored rows.
   */
  readonly canonicalRows?: Readonly<Record<string, (db: SqliteDatabase) => Iterable<unknown>>>;
  /** DDL creating its tables and indexes (idempotent). */
  readonly ddl: string;
  apply(sql: Sql, event: RecordedEvent): void;
  /** Writes what apply() gathered in memory (e.g. rollup deltas), still inside the batch's transaction. */
  afterBatch?(sql: Sql): void;
  /** Drops what it keeps in memory between events and batches: a batch rolled back, and the tables are the truth again. */
  forget?(): void;
}
