import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeSegmentFile } from './segment.js';
import type { SqliteEventLog } from './sqlite-event-log.js';

/** Where a data directory keeps its sealed segments. */
export const archiveDirOf = (dataDir: string): string => join(dataDir, 'archive');

/**
 * A segment's size: a day of a busy fleet is many segments, each compressed off the main thread
 * and decoded whole when read, so it stays a few megabytes (about 2 MB compressed at most).
 */
export const SEGMENT_LIMITS = { events: 20_000, bytes: 16 * 1024 * 1024 };

/** The durable steps of a cut, in order: a test stops at each, as a crash would. */
export type CutStep = 'rows_chosen' | 'partial_written' | 'renamed' | 'committed';

export interface CutResult {
  segments: number;
  events: number;
  bytes: number;
}

const cutting = new WeakSet<SqliteEventLog>();

/**
 * Moves the events of the archived kinds recorded before `before` out of the live log into
 * sealed segments under the log's archive directory, a segment at a time: written whole and
 * fsynced first, then removed from the live log in one transaction with their anchor event.
 * A crash between leaves both (recovery removes the unregistered file), never neither.
 * Ingestion goes on meanwhile: the rows cut are old and immutable, and compression runs off
 * the main thread. One cut at a time per log; a failed write leaves a temporary file that the
 * next start removes.
 */
export async function archiveBefore(log: SqliteEventLog, before: string, step: (name: CutStep) => void = () => undefined): Promise<CutResult> {
  const dir = log.archive.dir;
  if (dir === null) throw new Error('this log has no archive directory');
  if (cutting.has(log)) return { segments: 0, events: 0, bytes: 0 };
  cutting.add(log);
  const result: CutResult = { segments: 0, events: 0, bytes: 0 };
  try {
    for (;;) {
      const rows = log.archivableRows(before, SEGMENT_LIMITS);
      if (rows.length === 0) return result;
      step('rows_chosen');
      const written = await writeSegmentFile(dir, rows, step);
      try {
        log.sealSegment(rows, written);
      } catch (error) {
        // Not committed: the events are still live, and a second copy must not stay.
        rmSync(written.path, { force: true });
        throw error;
      }
      step('committed');
      result.segments += 1;
      result.events += rows.length;
      result.bytes += written.bytes;
      await new Promise((resolve) => setImmediate(resolve));
    }
  } finally {
    cutting.delete(log);
  }
}

const DAY_MS = 24 * 3600 * 1000;

/** LOG_ARCHIVE_AFTER_DAYS and LOG_DELETE_AFTER_DAYS applied once at `now`: what was cut, how many segments deleted. */
export async function applyLogRetention(log: SqliteEventLog, now: Date, policy: { archiveAfterDays: number; deleteAfterDays: number | null }): Promise<CutResult & { deleted: number }> {
  const cut = await archiveBefore(log, new Date(now.getTime() - policy.archiveAfterDays * DAY_MS).toISOString());
  const deleted = policy.deleteAfterDays === null ? 0 : log.dropSegments(new Date(now.getTime() - policy.deleteAfterDays * DAY_MS).toISOString());
  return { ...cut, deleted };
}
