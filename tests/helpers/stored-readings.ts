import Database from 'better-sqlite3';
import { join } from 'node:path';
import { upcast } from '../../src/domain/events.js';
import { DATABASE_FILE } from '../../src/server.js';

/** The readings.recorded rows of a stopped server's log, read from the file itself and decoded from their stored form. */
export function storedRecordings(dataDir: string): Array<{ position: number; device_id: string; values: number[] }> {
  const db = new Database(join(dataDir, DATABASE_FILE), { readonly: true, fileMustExist: true });
  try {
    return db
      .prepare<[], { position: number; data: string }>(`SELECT position, data FROM events WHERE type = 'readings.recorded' ORDER BY position`)
      .all()
      .map((row) => {
        const data = upcast('readings.recorded', JSON.parse(row.data)) as { device_id: string; readings: Array<{ value: number }> };
        return { position: row.position, device_id: data.device_id, values: data.readings.map((r) => r.value) };
      });
  } finally {
    db.close();
  }
}

/** Every reading value in a stopped server's log, read from the file itself: what was stored, once per time it was. */
export function storedReadingValues(dataDir: string): number[] {
  return storedRecordings(dataDir).flatMap((recording) => recording.values);
}
