import type { Logger } from 'pino';
import { ManualClock } from '../domain/clock.js';
import { SqliteEventLog, openDatabase, startCheckpointer, type EventLog, type SqliteDatabase } from '../eventlog/index.js';
import { digestReadModels } from './digest.js';
import type { Projection } from './projection.js';
import { ProjectionRunner } from './runner.js';

const PAGE = 5_000;

/**
 * Copies the log into a fresh database, lets a new runner build every read model from
 * position 0 there, and compares digests with the live read models.
 */
export async function rebuildAndCompare(
  live: { db: SqliteDatabase; log: EventLog },
  freshFile: string,
  /** Fresh instances for the rebuild; the same kinds as the live runner's. */
  projections: readonly Projection[],
  logger: Logger,
): Promise<{ differing: string[]; live: Record<string, string>; rebuilt: Record<string, string> }> {
  const rebuilt = await rebuiltDigests(live.log, freshFile, projections, logger);
  const current = digestReadModels(live.db, projections);
  return { differing: projections.map((p) => p.name).filter((name) => rebuilt[name] !== current[name]), live: current, rebuilt };
}

/** Every read model built from position 0 in a fresh database from a copy of the log: their digests. */
export async function rebuiltDigests(log: EventLog, freshFile: string, projections: readonly Projection[], logger: Logger): Promise<Record<string, string>> {
  const fresh = openDatabase(freshFile);
  const checkpointer = startCheckpointer(fresh);
  try {
    const copyLog = new SqliteEventLog(fresh, new ManualClock());
    const insert = fresh.prepare(
      `INSERT INTO events (position, stream_id, version, type, data, metadata, recorded_at, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    // Archived segments included: the copy is the whole log, as it was before any cut.
    for (let after = 0; ; ) {
      const rows = log.readRows({ afterPosition: after, limit: PAGE });
      if (rows.length === 0) break;
      fresh.transaction(() => rows.forEach((r) => insert.run(r.position, r.stream_id, r.version, r.type, r.data, r.metadata, r.recorded_at, r.hash)))();
      after = rows[rows.length - 1]!.position;
    }
    const reopened = new SqliteEventLog(fresh, new ManualClock());
    const runner = new ProjectionRunner(fresh, reopened, projections, logger);
    runner.start();
    try {
      await runner.caughtUp();
    } finally {
      // Also when a batch failed: no retry may run on once the file is closed.
      await runner.stop().catch(() => undefined);
    }
    copyLog.close();
    return digestReadModels(fresh, projections);
  } finally {
    await checkpointer.stop();
    fresh.close();
  }
}
