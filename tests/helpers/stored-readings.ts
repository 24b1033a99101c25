import Database from 'better-sqlite3';
import { join } from 'node:path';
import { DATABASE_FILE } from '../../src/server.js';

/** Every reading value in a stopped server's log, read from the file itself: what was stored, once per time it was. */
export function storedReadingValues(dataDir: string): number[] {
  const db = new Database(join(dataDir, DATABASE_FILE), { readonly: true });
  try {
    return db
      .prepare<[], { value: number }>(
        `SELECT json_extract(r.value, '$.value') AS value FROM events, json_each(events.data, '$.readings') AS r WHERE events.type = 'readings.recorded' ORDER BY events.position`,
      )
      .all()
      .map((row) => row.value);
  } finally {
    db.close();
  }
}
