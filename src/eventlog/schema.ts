import type { SqliteDatabase } from './database.js';

/** Migrations are frozen in time: add a new entry, never edit an old one. */
const migrations: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS events (
     position    INTEGER PRIMARY KEY,
     stream_id   TEXT    NOT NULL,
     version     INTEGER NOT NULL,
     type        TEXT    NOT NULL,
     data        TEXT    NOT NULL,
     metadata    TEXT    NOT NULL,
     recorded_at TEXT    NOT NULL,
     hash        TEXT    NOT NULL,
     UNIQUE (stream_id, version)
   );
   CREATE INDEX IF NOT EXISTS events_type ON events (type, position);
   CREATE TABLE IF NOT EXISTS idempotency_keys (
     key    TEXT PRIMARY KEY,
     result TEXT NOT NULL
   ) WITHOUT ROWID;`,
  // Sealed segments of telemetry events moved out of the live log (see archive.ts).
  `CREATE TABLE IF NOT EXISTS archive_segments (
     file              TEXT    PRIMARY KEY,
     first_position    INTEGER NOT NULL,
     last_position     INTEGER NOT NULL,
     events            INTEGER NOT NULL,
     first_hash        TEXT    NOT NULL,
     last_hash         TEXT    NOT NULL,
     first_recorded_at TEXT    NOT NULL,
     last_recorded_at  TEXT    NOT NULL,
     bytes             INTEGER NOT NULL,
     types             TEXT    NOT NULL,
     deleted_at        TEXT
   ) WITHOUT ROWID;
   CREATE TABLE IF NOT EXISTS archive_stream_counts (
     stream_id      TEXT    NOT NULL,
     first_position INTEGER NOT NULL,
     events         INTEGER NOT NULL,
     PRIMARY KEY (stream_id, first_position)
   ) WITHOUT ROWID;
   CREATE TABLE IF NOT EXISTS archive_links (
     position      INTEGER PRIMARY KEY,
     previous_hash TEXT    NOT NULL
   ) WITHOUT ROWID;
   CREATE TABLE IF NOT EXISTS archived_streams (
     stream_id TEXT    PRIMARY KEY,
     version   INTEGER NOT NULL
   ) WITHOUT ROWID;`,
];

export function migrateEventLog(db: SqliteDatabase): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied INTEGER NOT NULL)`);
  const applied = db.prepare<[], { name: string }>(`SELECT name FROM schema_migrations WHERE name LIKE 'eventlog-%'`).all().length;
  migrations.slice(applied).forEach((sql, index) => {
    db.transaction(() => {
      db.exec(sql);
      db.prepare(`INSERT INTO schema_migrations (name, applied) VALUES (?, ?)`).run(`eventlog-${applied + index + 1}`, Date.now());
    })();
  });
}
