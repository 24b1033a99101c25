import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DomainError } from '../domain/errors.js';
import type { SqliteDatabase } from './database.js';
import { decodeSegment, PARTIAL_SUFFIX, type SegmentRow } from './segment.js';
import type { EventMatch, ReadAllFilter } from './types.js';

/**
 * The bulk of a fleet's log, readings and heartbeats, is what moves into segments. The other
 * telemetry events (configuration reports, firmware progress) are rare and read back for a
 * device's state as of a moment, so they stay live with everything else.
 */
export const ARCHIVED_TYPES: readonly string[] = ['readings.recorded', 'device.heartbeat'];

/** A sealed segment as the live database registers it; its file may be absent (cold storage) or deleted for good. */
export interface SegmentEntry {
  file: string;
  first_position: number;
  last_position: number;
  events: number;
  first_hash: string;
  last_hash: string;
  first_recorded_at: string;
  last_recorded_at: string;
  bytes: number;
  /**
   * Events per type, so reads and counts skip segments without opening them. Per stream they
   * are counted in archive_stream_counts, on disk: a year of a large fleet is tens of thousands
   * of segments holding thousands of streams each, too many to keep in memory.
   */
  types: Record<string, number>;
  deleted_at: string | null;
}

type EntryRow = Omit<SegmentEntry, 'types'> & { types: string };

/** Decoded segments kept for the next read: a page of events and its hashes read the same one again. */
const CACHED_SEGMENTS = 2;

/**
 * The archive's registry (a table in the live database, changed in the same transaction as the
 * cut) and its files under DATA_DIR/archive/. Reads from it are filtered here as the live log
 * filters in SQL; a segment whose file is absent answers 503 until it is brought back, one
 * deleted by LOG_DELETE_AFTER_DAYS is skipped, as gone for good.
 */
export class SegmentStore {
  private list: SegmentEntry[] = [];
  private readonly cache = new Map<string, SegmentRow[]>();

  constructor(
    private readonly db: SqliteDatabase,
    /** null: no archive directory (a log that is never cut, as in a rebuild's scratch copy). */
    readonly dir: string | null,
  ) {
    this.reload();
  }

  reload(): void {
    const rows = this.db.prepare<[], EntryRow>(`SELECT * FROM archive_segments ORDER BY first_position`).all();
    this.list = rows.map((row) => ({ ...row, types: JSON.parse(row.types) as Record<string, number> }));
    for (const file of this.cache.keys()) if (!this.list.some((entry) => entry.file === file && entry.deleted_at === null)) this.cache.delete(file);
  }

  entries(): readonly SegmentEntry[] {
    return this.list;
  }

  /** The last position any segment holds (0 before the first cut). */
  archivedUpTo(): number {
    return this.list.at(-1)?.last_position ?? 0;
  }

  isPresent(entry: SegmentEntry): boolean {
    return entry.deleted_at === null && this.dir !== null && existsSync(join(this.dir, entry.file));
  }

  /**
   * Clears what a crash left: a partial write, a segment whose cut never committed (its events
   * are still live, so it would be a second copy), the file of a segment marked deleted.
   */
  recover(): string[] {
    if (this.dir === null) return [];
    mkdirSync(this.dir, { recursive: true });
    const registered = new Map(this.list.map((entry) => [entry.file, entry]));
    const isStale = (file: string) => {
      if (file.endsWith(PARTIAL_SUFFIX)) return true;
      const entry = registered.get(file);
      return file.endsWith('.seg') && (entry === undefined || entry.deleted_at !== null);
    };
    const stale = readdirSync(this.dir).filter(isStale);
    for (const file of stale) rmSync(join(this.dir, file), { force: true });
    return stale;
  }

  /** The rows of a segment, exactly as the live log stored them. */
  rows(entry: SegmentEntry): SegmentRow[] {
    // Checked before the cache: a segment moved away is gone now, not after a restart.
    if (!this.isPresent(entry)) {
      this.cache.delete(entry.file);
      throw new DomainError('service_unavailable', `positions ${entry.first_position}–${entry.last_position} are archived in ${entry.file}, which is not in the archive directory; an operator must bring it back`);
    }
    const cached = this.cache.get(entry.file);
    if (cached) return cached;
    const { rows } = decodeSegment(readFileSync(join(this.dir!, entry.file)));
    this.cache.set(entry.file, rows);
    if (this.cache.size > CACHED_SEGMENTS) this.cache.delete(this.cache.keys().next().value!);
    return rows;
  }

  /** Segments (not deleted) that may hold an event the filter matches, in position order. */
  candidates(filter: Omit<ReadAllFilter, 'limit'>): SegmentEntry[] {
    // The usual read: recent positions, past every segment.
    if (filter.afterPosition >= this.archivedUpTo()) return [];
    const found = this.list.filter(
      (entry) =>
        entry.deleted_at === null &&
        entry.last_position > filter.afterPosition &&
        (!filter.types || holdsAny(entry.types, filter.types)) &&
        (!filter.since || entry.last_recorded_at >= filter.since) &&
        (!filter.until || entry.first_recorded_at <= filter.until),
    );
    if (!filter.streamIds || found.length === 0) return found;
    const holding = new Set(
      this.db
        .prepare<[string], { first_position: number }>(`SELECT DISTINCT first_position FROM archive_stream_counts WHERE stream_id IN (SELECT value FROM json_each(?))`)
        .all(JSON.stringify(filter.streamIds))
        .map((row) => row.first_position),
    );
    return found.filter((entry) => holding.has(entry.first_position));
  }

  /** Archived rows matching the filter, in position order, a segment decoded only when reached. */
  *matching(filter: Omit<ReadAllFilter, 'limit'>, segments = this.candidates(filter)): Generator<SegmentRow> {
    const accepts = rowFilter(filter);
    for (const entry of segments) {
      for (const row of this.rows(entry)) if (accepts(row)) yield row;
    }
  }

  /** How many archived events match, from the registry's counts where whole segments match, otherwise by reading. */
  count(filter: Omit<ReadAllFilter, 'limit' | 'offset'>): number {
    const segments = this.candidates(filter);
    const countable = !filter.since && !filter.until && !(filter.types && filter.streamIds);
    // Whole segments are counted from the registry; the others (straddling the position, or any under a filter the counts cannot answer) are read.
    const isWhole = (entry: SegmentEntry) => countable && entry.first_position > filter.afterPosition;
    const whole = segments.filter(isWhole);
    const read = segments.filter((entry) => !isWhole(entry)).reduce((sum, entry) => sum + this.rows(entry).filter(rowFilter(filter)).length, 0);
    if (whole.length === 0) return read;
    if (filter.types) return read + whole.reduce((sum, entry) => sum + sumOf(entry.types, filter.types!), 0);
    if (!filter.streamIds) return read + whole.reduce((sum, entry) => sum + entry.events, 0);
    const counted = this.db
      .prepare<[string, number], { n: number | null }>(`SELECT sum(events) AS n FROM archive_stream_counts WHERE stream_id IN (SELECT value FROM json_each(?)) AND first_position > ?`)
      .get(JSON.stringify([...new Set(filter.streamIds)]), filter.afterPosition);
    return read + (counted?.n ?? 0);
  }

  /** A stream's archived events recorded at or before `until`, in version order. */
  streamRows(streamId: string, until: string): SegmentRow[] {
    return [...this.matching({ afterPosition: 0, streamIds: [streamId], until })];
  }

  /** The stream's last archived event after `afterPosition` at or before `until` matching `match`, newest segment first. */
  lastInStream(streamId: string, until: string, afterPosition: number, match?: EventMatch): SegmentRow | null {
    const accepts = rowFilter({ afterPosition, streamIds: [streamId], until, ...(match ? { types: match.types } : {}) });
    for (const entry of this.candidates({ afterPosition, streamIds: [streamId], until }).reverse()) {
      const found = this.rows(entry).findLast((row) => accepts(row) && (!match || fieldMatches(row.data, match)));
      if (found) return found;
    }
    return null;
  }

  /** The archived row at a position, if a present segment holds it. */
  rowAt(position: number): SegmentRow | null {
    const entry = this.list.find((e) => e.first_position <= position && position <= e.last_position && this.isPresent(e));
    return entry ? rowAtPosition(this.rows(entry), position) : null;
  }
}

/** Binary search: an export asks for the hash before each of a segment's 20,000 events. */
function rowAtPosition(rows: readonly SegmentRow[], position: number): SegmentRow | null {
  let low = 0;
  let high = rows.length - 1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    const row = rows[middle]!;
    if (row.position === position) return row;
    if (row.position < position) low = middle + 1;
    else high = middle - 1;
  }
  return null;
}

function holdsAny(counts: Record<string, number>, keys: readonly string[]): boolean {
  return keys.some((key) => Object.hasOwn(counts, key));
}

function sumOf(counts: Record<string, number>, keys: readonly string[]): number {
  return [...new Set(keys)].reduce((sum, key) => sum + (Object.hasOwn(counts, key) ? counts[key]! : 0), 0);
}

/** The live log's WHERE clause (position, streams, types, recorded_at) for an archived row. */
function rowFilter(filter: Omit<ReadAllFilter, 'limit'>): (row: SegmentRow) => boolean {
  const streams = filter.streamIds ? new Set(filter.streamIds) : null;
  const types = filter.types ? new Set(filter.types) : null;
  return (row) =>
    row.position > filter.afterPosition &&
    (streams === null || streams.has(row.stream_id)) &&
    (types === null || types.has(row.type)) &&
    (!filter.since || row.recorded_at >= filter.since) &&
    (!filter.until || row.recorded_at <= filter.until);
}

/** As the live log's json_extract test: the field present and not null, equal to the value when one is given. */
function fieldMatches(storedData: string, match: EventMatch): boolean {
  const value = (JSON.parse(storedData) as Record<string, unknown>)[match.field];
  return value !== undefined && value !== null && (match.equals === undefined || value === match.equals);
}
