import { Subject } from 'rxjs';
import type { Statement } from 'better-sqlite3';
import type { Clock } from '../domain/clock.js';
import { parseEvent, storedForm, streams, upcast, type DomainEvent, type RecordedEvent } from '../domain/events.js';
import type { SqliteDatabase } from './database.js';
import { ConcurrencyError } from './errors.js';
import { GENESIS_HASH, chainHash } from './hash.js';
import { migrateEventLog } from './schema.js';
import { ARCHIVED_TYPES, SegmentStore, type SegmentEntry } from './segment-store.js';
import type { AppendOptions, AppendRequest, AppendResult, EventLog, EventMatch, ExpectedVersion, ReadAllFilter, StoredRow, VerifyResult } from './types.js';

interface PendingAppend {
  requests: readonly AppendRequest[];
  options: AppendOptions;
  resolve: (result: AppendResult) => void;
  reject: (error: unknown) => void;
}

const VERIFY_PAGE = 5_000;
const MAX_CACHED_VERSIONS = 100_000;

/** Versions of a stream read per step when looking back for a matching event (about 10 ms each). */
export const STREAM_SCAN_WINDOW = 20_000;

/**
 * The event log on SQLite. Appends that arrive in the same tick are written in one
 * transaction (each in its own savepoint, so one conflict fails only its own request),
 * then published on committed$ in position order.
 */
export class SqliteEventLog implements EventLog {
  readonly committed$ = new Subject<readonly RecordedEvent[]>();
  private head: { position: number; hash: string };
  private readonly versions = new Map<string, number>();
  private readonly inTransaction: <T>(work: () => T) => T;
  private queue: PendingAppend[] = [];
  private flushScheduled = false;
  private readonly statements: {
    insert: Statement<[number, string, number, string, string, string, string, string]>;
    streamVersion: Statement<[string, string], { version: number | null }>;
    readStream: Statement<[string, string], StoredRow>;
    hashAt: Statement<[number], { hash: string }>;
    linkTo: Statement<[number], { previous_hash: string }>;
    findKey: Statement<[string], { result: string }>;
    saveKey: Statement<[string, string]>;
  };

  readonly archive: SegmentStore;

  constructor(
    private readonly db: SqliteDatabase,
    private readonly clock: Clock,
    /** Where sealed segments live (DATA_DIR/archive); without one the log is never cut. */
    archiveDir: string | null = null,
  ) {
    migrateEventLog(db);
    this.archive = new SegmentStore(db, archiveDir);
    this.archive.recover();
    this.statements = {
      insert: db.prepare(
        `INSERT INTO events (position, stream_id, version, type, data, metadata, recorded_at, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      streamVersion: db.prepare(`SELECT max(coalesce((SELECT max(version) FROM events WHERE stream_id = ?), 0), coalesce((SELECT version FROM archived_streams WHERE stream_id = ?), 0)) AS version`),
      readStream: db.prepare(`SELECT * FROM events WHERE stream_id = ? AND recorded_at <= ? ORDER BY version`),
      hashAt: db.prepare(`SELECT hash FROM events WHERE position = ?`),
      linkTo: db.prepare(`SELECT previous_hash FROM archive_links WHERE position = ?`),
      findKey: db.prepare(`SELECT result FROM idempotency_keys WHERE key = ?`),
      saveKey: db.prepare(`INSERT INTO idempotency_keys (key, result) VALUES (?, ?)`),
    };
    const transaction = db.transaction((work: () => unknown) => work());
    // IMMEDIATE (see WRITE_TRANSACTION in database.ts); nested calls are savepoints either way.
    this.inTransaction = <T>(work: () => T) => transaction.immediate(work) as T;
    const last = db.prepare<[], { position: number; hash: string }>(`SELECT position, hash FROM events ORDER BY position DESC LIMIT 1`).get();
    this.head = last ?? { position: 0, hash: GENESIS_HASH };
  }

  append(requests: readonly AppendRequest[], options: AppendOptions = {}): Promise<AppendResult> {
    // Validate before queuing, so a bad payload fails alone and synchronously with its caller.
    const validated = requests.map(
      (request): AppendRequest => ({
        streamId: request.streamId,
        expectedVersion: request.expectedVersion,
        events: request.events.map((event) => parseEvent(event.type, event.data)),
        ...(request.metadata ? { metadata: request.metadata } : {}),
      }),
    );
    return new Promise((resolve, reject) => {
      this.queue.push({ requests: validated, options, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.queue;
    this.queue = [];
    const committed: RecordedEvent[] = [];
    const outcomes: Array<{ ok: true; result: AppendResult } | { ok: false; error: unknown }> = [];
    const headBefore = this.head;
    try {
      this.inTransaction(() => {
        // A lone append needs no savepoint: if it fails, the whole transaction is its own.
        if (batch.length === 1) outcomes.push({ ok: true, result: this.appendNow(batch[0]!, committed) });
        else for (const pending of batch) outcomes.push(this.appendInSavepoint(pending, committed));
      });
    } catch (error) {
      this.head = headBefore;
      this.versions.clear();
      batch.forEach((pending) => pending.reject(error));
      return;
    }
    if (committed.length > 0) this.committed$.next(committed);
    batch.forEach((pending, index) => {
      const outcome = outcomes[index]!;
      if (outcome.ok) pending.resolve(outcome.result);
      else pending.reject(outcome.error);
    });
  }

  private appendInSavepoint(
    pending: PendingAppend,
    committed: RecordedEvent[],
  ): { ok: true; result: AppendResult } | { ok: false; error: unknown } {
    const headBefore = this.head;
    const committedBefore = committed.length;
    try {
      return { ok: true, result: this.inTransaction(() => this.appendNow(pending, committed)) };
    } catch (error) {
      this.head = headBefore;
      // The savepoint rolled back versions this append had cached.
      for (const event of committed.splice(committedBefore)) this.versions.delete(event.stream_id);
      for (const request of pending.requests) this.versions.delete(request.streamId);
      return { ok: false, error };
    }
  }

  private appendNow({ requests, options }: Pick<PendingAppend, 'requests' | 'options'>, committed: RecordedEvent[]): AppendResult {
    if (options.idempotencyKey !== undefined) {
      const previous = this.statements.findKey.get(options.idempotencyKey);
      if (previous) return { ...(JSON.parse(previous.result) as AppendResult), duplicate: true };
    }
    const firstPosition = this.head.position + 1;
    const recordedAt = this.clock.now().toISOString();
    const versions = requests.map((request) => this.appendStream(request, recordedAt, options, committed));
    const result: AppendResult = { firstPosition, lastPosition: this.head.position, versions, duplicate: false };
    if (options.idempotencyKey !== undefined) this.statements.saveKey.run(options.idempotencyKey, JSON.stringify(result));
    return result;
  }

  private appendStream(request: AppendRequest, recordedAt: string, options: AppendOptions, committed: RecordedEvent[]): number {
    let version = this.currentVersion(request.streamId);
    checkExpected(request.streamId, request.expectedVersion, version);
    const metadata = { ...request.metadata, ...(options.idempotencyKey ? { idempotency_key: options.idempotencyKey } : {}) };
    const metadataJson = JSON.stringify(metadata);
    for (const event of request.events) {
      version += 1;
      const row = {
        position: this.head.position + 1,
        stream_id: request.streamId,
        version,
        type: event.type,
        data: JSON.stringify(storedForm(event)),
        metadata: metadataJson,
        recorded_at: recordedAt,
      };
      const hash = chainHash(this.head.hash, row);
      this.statements.insert.run(row.position, row.stream_id, row.version, row.type, row.data, row.metadata, row.recorded_at, hash);
      this.head = { position: row.position, hash };
      // Fields written out: on Node 20 a spread plus extra properties costs more than the insert.
      committed.push({ type: event.type, data: event.data, position: row.position, stream_id: row.stream_id, version, metadata, recorded_at: recordedAt, hash } as RecordedEvent);
    }
    this.rememberVersion(request.streamId, version);
    return version;
  }

  async readStream(streamId: string, options: { until?: string } = {}): Promise<RecordedEvent[]> {
    const until = options.until ?? '9999';
    const live = this.statements.readStream.all(streamId, until);
    const archived = this.archive.entries().length > 0 ? this.archive.streamRows(streamId, until) : [];
    return (archived.length > 0 ? [...mergeByPosition(archived.values(), live.values())] : live).map((row) => toRecorded(row));
  }

  async lastInStream(streamId: string, until: string, matching?: EventMatch): Promise<RecordedEvent | null> {
    const live = await this.lastLiveInStream(streamId, until, matching);
    // An archived event is older than every live one of the archived types, not than a live one of another type.
    if (this.archive.entries().length === 0 || (live && ARCHIVED_TYPES.includes(live.type))) return live;
    const archived = this.archive.lastInStream(streamId, until, live?.position ?? 0, matching);
    return archived ? toRecorded(archived) : live;
  }

  private async lastLiveInStream(streamId: string, until: string, matching?: EventMatch): Promise<RecordedEvent | null> {
    if (!matching) {
      const row = this.db.prepare<[string, string], StoredRow>(`SELECT * FROM events WHERE stream_id = ? AND recorded_at <= ? ORDER BY version DESC LIMIT 1`).get(streamId, until);
      return row ? toRecorded(row) : null;
    }
    const find = this.db.prepare<[{ stream: string; until: string; types: string; path: string; equals: string | null; low: number; high: number }], StoredRow>(
      `SELECT * FROM events WHERE stream_id = @stream AND version BETWEEN @low AND @high AND recorded_at <= @until
         AND type IN (SELECT value FROM json_each(@types)) AND json_extract(data, @path) IS NOT NULL AND (@equals IS NULL OR json_extract(data, @path) = @equals)
       ORDER BY version DESC LIMIT 1`,
    );
    const query = { stream: streamId, until, types: JSON.stringify(matching.types), path: `$.${matching.field}`, equals: matching.equals ?? null };
    // A device's telemetry stream can hold millions of events and the match may be far back or
    // absent: walk it a window of versions at a time, letting other requests in between.
    for (let high = this.currentVersion(streamId); high > 0; high -= STREAM_SCAN_WINDOW) {
      const row = find.get({ ...query, low: high - STREAM_SCAN_WINDOW + 1, high });
      if (row) return toRecorded(row);
      await new Promise((resolve) => setImmediate(resolve));
    }
    return null;
  }

  async readAll(filter: ReadAllFilter): Promise<RecordedEvent[]> {
    return this.readRows(filter).map((row) => toRecorded(row, filter.asStored === true));
  }

  /**
   * Rows exactly as stored, live and archived alike, in position order. Where no segment may
   * hold a match (the usual case: recent positions, or kinds that are never archived) it is one
   * query; otherwise archived rows are merged in, the offset skipped over both.
   */
  readRows(filter: ReadAllFilter): StoredRow[] {
    return this.rowsOf(filter, 'refuse');
  }

  /** `absent`: whether a segment missing from the archive directory is refused (503) or passed over (to verify around it). */
  private rowsOf(filter: ReadAllFilter, absent: 'refuse' | 'skip'): StoredRow[] {
    const { where, params } = whereClause(filter);
    const segments = this.archive.candidates(filter).filter((entry) => absent === 'refuse' || this.archive.isPresent(entry));
    const archived = segments.length > 0;
    const sql = `SELECT * FROM events WHERE ${where} ORDER BY position${archived ? '' : ' LIMIT ? OFFSET ?'}`;
    const statement = this.db.prepare<Array<string | number>, StoredRow>(sql);
    const source = archived ? mergeByPosition(this.archive.matching(filter, segments), statement.iterate(...params)) : statement.iterate(...params, filter.limit, filter.offset ?? 0);
    const rows: StoredRow[] = [];
    let skip = archived ? (filter.offset ?? 0) : 0;
    let bytes = 0;
    for (const row of source) {
      if (skip > 0) {
        skip -= 1;
        continue;
      }
      rows.push(row);
      bytes += row.data.length;
      if (rows.length >= filter.limit || (filter.maxBytes !== undefined && bytes >= filter.maxBytes)) break;
    }
    return rows;
  }

  async countEvents(filter: Omit<ReadAllFilter, 'limit' | 'offset'>): Promise<number> {
    const { where, params } = whereClause(filter);
    const live = this.db.prepare<Array<string | number>, { n: number }>(`SELECT count(*) AS n FROM events WHERE ${where}`).get(...params)?.n ?? 0;
    return live + this.archive.count(filter);
  }

  async streamVersion(streamId: string): Promise<number> {
    return this.currentVersion(streamId);
  }

  /** Stream versions of recent appends, so a busy stream is not looked up on every append. */
  private currentVersion(streamId: string): number {
    const cached = this.versions.get(streamId);
    if (cached !== undefined) return cached;
    return this.statements.streamVersion.get(streamId, streamId)?.version ?? 0;
  }

  private rememberVersion(streamId: string, version: number): void {
    if (this.versions.size >= MAX_CACHED_VERSIONS) this.versions.clear();
    this.versions.set(streamId, version);
  }

  async hashAt(position: number): Promise<string> {
    if (position <= 0) return GENESIS_HASH;
    // Prepared once: an export asks this for every event it writes.
    const live = this.statements.hashAt.get(position)?.hash;
    if (live !== undefined) return live;
    // Archived: the link recorded for the live event after it, else its segment.
    const link = this.statements.linkTo.get(position + 1)?.previous_hash;
    return link ?? this.archive.rowAt(position)?.hash ?? GENESIS_HASH;
  }

  headPosition(): number {
    return this.head.position;
  }

  /**
   * Walks the whole chain, archived segments and live log as one, in pages that let requests
   * through. A segment that is absent or deleted leaves a stretch unproven: the live events in
   * it are checked against the links its cut recorded, and the answer says from where the chain
   * is proven whole and which segments it could not read.
   */
  async verify(): Promise<VerifyResult> {
    const links = this.recordedLinks();
    const unreadable = this.archive.entries().filter((entry) => !this.archive.isPresent(entry));
    let previous = GENESIS_HASH;
    let checked = 0;
    let expected = 1;
    let provenFrom = 1;
    for (let after = 0; ; ) {
      const page = this.rowsOf({ afterPosition: after, limit: VERIFY_PAGE }, 'skip');
      for (const row of page) {
        if (row.position !== expected) {
          const link = links.get(row.position);
          if (link === undefined || !coveredBy(unreadable, expected, row.position - 1)) {
            return { ok: false, checked, first_bad_position: expected, reason: 'missing or reordered event' };
          }
          previous = link;
          provenFrom = row.position;
        }
        if (chainHash(previous, row) !== row.hash) return { ok: false, checked, first_bad_position: row.position, reason: 'hash does not match' };
        previous = row.hash;
        expected = row.position + 1;
        checked += 1;
      }
      if (page.length < VERIFY_PAGE) break;
      after = page[page.length - 1]!.position;
      // Let requests through between pages: a long log must not stall the server.
      await new Promise((resolve) => setImmediate(resolve));
    }
    // Rows cut from the end chain fine; the head this process appended up to says they existed.
    if (expected <= this.head.position) {
      return { ok: false, checked, first_bad_position: expected, reason: 'the log ends before its last appended event' };
    }
    const missing = unreadable.map((entry) => ({ segment: entry.file, first_position: entry.first_position, last_position: entry.last_position, deleted: entry.deleted_at !== null }));
    return { ok: true, checked, head_hash: previous, ...(missing.length > 0 ? { proven_from: provenFrom, missing_segments: missing } : {}) };
  }

  /** The links every cut recorded in its anchor event (hashed with it, so they cannot be changed unseen). */
  private recordedLinks(): Map<number, string> {
    const anchors = this.db.prepare<[], { data: string }>(`SELECT data FROM events WHERE type = 'log.archived' ORDER BY position`).all();
    return new Map(anchors.flatMap((anchor) => (JSON.parse(anchor.data) as { links: Array<[number, string]> }).links));
  }

  /** The oldest live events of the archived kinds recorded before `before`: at most a segment's worth, in position order. */
  archivableRows(before: string, limits: { events: number; bytes: number }): StoredRow[] {
    const rows: StoredRow[] = [];
    let bytes = 0;
    const candidates = this.db.prepare<[number, string], StoredRow>(`SELECT * FROM events WHERE position > ? AND type IN (SELECT value FROM json_each(?)) ORDER BY position`);
    for (const row of candidates.iterate(this.archive.archivedUpTo(), JSON.stringify(ARCHIVED_TYPES))) {
      if (row.recorded_at >= before || rows.length >= limits.events || bytes >= limits.bytes) break;
      rows.push(row);
      bytes += row.data.length;
    }
    return rows;
  }

  /**
   * The cut, in one transaction: the rows written to the segment file leave the live log, the
   * segment is registered, and an anchor event records the hash each remaining event chains
   * from. The rows are immutable, so appends meanwhile change nothing here; if one is not found
   * as written, nothing is committed and the file is left for recovery to remove.
   */
  sealSegment(rows: readonly StoredRow[], written: { file: string; bytes: number }): RecordedEvent {
    const positions = new Set(rows.map((row) => row.position));
    const links = rows.filter((row) => !positions.has(row.position + 1)).map((row): [number, string] => [row.position + 1, row.hash]);
    const first = rows[0]!;
    const last = rows[rows.length - 1]!;
    const anchor = parseEvent('log.archived', { segment: written.file, first_position: first.position, last_position: last.position, events: rows.length, first_hash: first.hash, last_hash: last.hash, links });
    const committed = this.commitHousekeeping([anchor], () => {
      const remove = this.db.prepare<[number, string]>(`DELETE FROM events WHERE position = ? AND hash = ?`);
      for (const row of rows) if (remove.run(row.position, row.hash).changes !== 1) throw new Error(`archive: position ${row.position} is not in the live log as written to ${written.file}`);
      const link = this.db.prepare<[number, string]>(`INSERT OR REPLACE INTO archive_links (position, previous_hash) VALUES (?, ?)`);
      for (const [position, hash] of links) link.run(position, hash);
      const version = this.db.prepare<[string, number]>(`INSERT INTO archived_streams (stream_id, version) VALUES (?, ?) ON CONFLICT (stream_id) DO UPDATE SET version = max(version, excluded.version)`);
      for (const row of rows) version.run(row.stream_id, row.version);
      this.db
        .prepare(`INSERT INTO archive_segments (file, first_position, last_position, events, first_hash, last_hash, first_recorded_at, last_recorded_at, bytes, types, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)`)
        .run(written.file, first.position, last.position, rows.length, first.hash, last.hash, first.recorded_at, last.recorded_at, written.bytes, JSON.stringify(countsBy(rows, 'type')));
      const count = this.db.prepare<[string, number, number]>(`INSERT INTO archive_stream_counts (stream_id, first_position, events) VALUES (?, ?, ?)`);
      for (const [streamId, events] of Object.entries(countsBy(rows, 'stream_id'))) count.run(streamId, first.position, events);
    });
    return committed[0]!;
  }

  /** Segments whose newest event was recorded before `before`, deleted for good; each deletion is an event. */
  dropSegments(before: string): number {
    const due = this.archive.entries().filter((entry) => entry.deleted_at === null && entry.last_recorded_at < before);
    if (due.length === 0) return 0;
    const events = due.map((entry) => parseEvent('log.segment_deleted', { segment: entry.file, first_position: entry.first_position, last_position: entry.last_position, events: entry.events }));
    this.commitHousekeeping(events, () => {
      const mark = this.db.prepare<[string, string]>(`UPDATE archive_segments SET deleted_at = ? WHERE file = ?`);
      for (const entry of due) mark.run(this.clock.now().toISOString(), entry.file);
      // One pass over the counts for every segment deleted: they are keyed by stream first.
      this.db.prepare<[string]>(`DELETE FROM archive_stream_counts WHERE first_position IN (SELECT value FROM json_each(?))`).run(JSON.stringify(due.map((entry) => entry.first_position)));
    });
    // Marked first: a crash before the files go leaves them for recovery to remove.
    this.archive.recover();
    return due.length;
  }

  /** Changes to the archive's registry and the events recording them, committed together, then published. */
  private commitHousekeeping(events: readonly DomainEvent[], change: () => void): RecordedEvent[] {
    const committed: RecordedEvent[] = [];
    const headBefore = this.head;
    try {
      this.inTransaction(() => {
        change();
        this.appendNow({ requests: [{ streamId: streams.log(), expectedVersion: 'any', events, metadata: { actor_type: 'system' } }], options: {} }, committed);
      });
    } catch (error) {
      this.head = headBefore;
      this.versions.clear();
      throw error;
    } finally {
      this.archive.reload();
    }
    this.committed$.next(committed);
    return committed;
  }

  close(): void {
    this.committed$.complete();
  }
}

function whereClause(filter: Omit<ReadAllFilter, 'limit'>): { where: string; params: Array<string | number> } {
  const conditions = ['position > ?'];
  const params: Array<string | number> = [filter.afterPosition];
  // One JSON parameter, not one per value: a user's streams can outnumber SQLite's 32,766 variables.
  const oneOf = (column: string, values: readonly string[]) => {
    conditions.push(`${column} IN (SELECT value FROM json_each(?))`);
    params.push(JSON.stringify(values));
  };
  if (filter.streamIds) oneOf('stream_id', filter.streamIds);
  if (filter.types) oneOf('type', filter.types);
  if (filter.since) {
    conditions.push('recorded_at >= ?');
    params.push(filter.since);
  }
  if (filter.until) {
    conditions.push('recorded_at <= ?');
    params.push(filter.until);
  }
  return { where: conditions.join(' AND '), params };
}

function checkExpected(streamId: string, expected: ExpectedVersion, actual: number): void {
  const ok =
    expected === 'any' ||
    (expected === 'no_stream' && actual === 0) ||
    (expected === 'stream_exists' && actual > 0) ||
    expected === actual;
  if (!ok) throw new ConcurrencyError(streamId, expected, actual);
}

function toRecorded(row: StoredRow, asStored = false): RecordedEvent {
  return {
    position: row.position,
    stream_id: row.stream_id,
    version: row.version,
    type: row.type,
    data: asStored ? JSON.parse(row.data) : upcast(row.type, JSON.parse(row.data)),
    metadata: JSON.parse(row.metadata),
    recorded_at: row.recorded_at,
    hash: row.hash,
  } as RecordedEvent;
}

/** Two position-ordered sources as one; stopping early closes both (a SQLite iterator holds its statement). */
function* mergeByPosition<T extends { position: number }>(left: Iterator<T>, right: Iterator<T>): Generator<T> {
  try {
    let a = left.next();
    let b = right.next();
    while (!a.done || !b.done) {
      if (b.done || (!a.done && a.value.position < b.value.position)) {
        yield a.value as T;
        a = left.next();
      } else {
        yield b.value;
        b = right.next();
      }
    }
  } finally {
    left.return?.();
    right.return?.();
  }
}

/** Whether every position from `first` to `last` lies in one of the segments (given in position order). */
function coveredBy(segments: readonly SegmentEntry[], first: number, last: number): boolean {
  let next = first;
  for (const segment of segments) {
    if (segment.first_position <= next && next <= segment.last_position) next = segment.last_position + 1;
  }
  return next > last;
}

function countsBy(rows: readonly StoredRow[], field: 'stream_id' | 'type'): Record<string, number> {
  const counts = Object.create(null) as Record<string, number>;
  for (const row of rows) counts[row[field]] = (counts[row[field]] ?? 0) + 1;
  return counts;
}
