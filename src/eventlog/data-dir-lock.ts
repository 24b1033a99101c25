import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const LOCK_FILE = 'server.lock';

/** The database in a data directory: the log and the read models, in one file. */
export const DATABASE_FILE = 'iot.db';

/** Said to whoever starts a second server (or a replay) on a directory in use: an answer, not a crash. */
export class DataDirInUse extends Error {}

/**
 * One server per data directory. A second would append to the same log with its own idea of
 * the head and of each stream's version, and its writes would fail or race the first's. The
 * claim is an exclusive SQLite lock on a file of its own, held while the server runs: the
 * operating system drops it when the process dies, so a restart after kill -9 claims it again.
 * Returns the release.
 */
export function claimDataDir(dir: string): () => void {
  mkdirSync(dir, { recursive: true });
  // No busy wait: a second server should hear at once that the directory is taken.
  const lock = new Database(join(dir, LOCK_FILE), { timeout: 0 });
  try {
    lock.pragma('locking_mode = EXCLUSIVE');
    lock.exec('BEGIN EXCLUSIVE');
  } catch (error) {
    lock.close();
    throw new DataDirInUse(`the data directory ${dir} is in use by another server`, { cause: error });
  }
  return () => lock.close();
}
