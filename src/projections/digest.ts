import { createHash } from 'node:crypto';
import type { SqliteDatabase } from '../eventlog/index.js';
import type { Projection } from './projection.js';

/**
 * A digest per read model: every row of its tables in a stable order (or, for tables packed
 * per batch, their content in a canonical order). Two databases with equal digests hold the
 * same read models.
 */
function storedRows(db: SqliteDatabase, table: string): Iterable<unknown> {
  const columns = db.prepare<[], { name: string }>(`SELECT name FROM pragma_table_info('${table}') ORDER BY name`).all().map((c) => `"${c.name}"`);
  return db.prepare(`SELECT ${columns.join(', ')} FROM "${table}" ORDER BY ${columns.join(', ')}`).raw().iterate();
}

export function digestReadModels(db: SqliteDatabase, projections: readonly Projection[]): Record<string, string> {
  const digests: Record<string, string> = {};
  for (const projection of projections) {
    const hash = createHash('sha256');
    for (const table of projection.tables) {
      hash.update(`${table}\n`);
      const rows = projection.canonicalRows?.[table]?.(db) ?? storedRows(db, table);
      for (const row of rows) hash.update(JSON.stringify(row)).update('\n');
    }
    digests[projection.name] = hash.digest('hex');
  }
  return digests;
}
