import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export type SqliteDatabase = Database.Database;

/*
 * WRITE_TRANSACTION: every transaction that writes begins IMMEDIATE. The checkpointer's worker
 * takes the write lock for a moment when it starts the WAL over (a RESTART checkpoint); a
 * deferred transaction that has read and then wants to write would get SQLITE_BUSY at once
 * (SQLite calls no busy handler for that upgrade), while an IMMEDIATE one waits its turn.
 */

/** One file for the log and the read models, so a projection batch and its checkpoint commit together. */
export function openDatabase(file: string): SqliteDatabase {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = OFF');
  db.pragma('busy_timeout = 5000');
  // Projection batches touch pages all over the read models; a larger cache keeps them from spilling mid-transaction.
  db.pragma('cache_size = -65536');
  return db;
}
