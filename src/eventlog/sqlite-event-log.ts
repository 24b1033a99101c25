import { Subject } from 'rxjs';
import type { Statement } from 'better-sqlite3';
import type { Clock } from '../domain/clock.js';
import { parseEvent, storedForm, upcast, type RecordedEvent } from '../domain/events.js';
import type { SqliteDatabase } from './database.js';
import { ConcurrencyError } from './errors.js';
import { GENESIS_HASH, chainHash, type HashedFields } from './hash.js';
import { migrateEventLog } from './schema.js';
import type { AppendOptions, AppendRequest, AppendResult, EventLog, EventMatch, ExpectedVersion, ReadAllFilter, VerifyResult } from './types.js';

interface StoredRow extends HashedFields {
  hash: string;
}

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
    streamVersion: Statement<[string], { version: number | null }>;
    readStream: Statement<[string, string], StoredRow>;
    readPage: Statement<[number, number], StoredRow>;
    findKey: Statement<[string], { result: string }>;
    saveKey: Statement<[string, string]>;
  };

  constructor(
    private readonly db: SqliteDatabase,
    private readonly clock: Clock,
  ) {
    migrateEventLog(db);
    this.statements = {
      insert: db.prepare(
        `INSERT INTO events (position, stream_id, version, type, data, metadata, recorded_at, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      streamVersion: db.prepare(`SELECT max(version) AS version FROM events WHERE stream_id = ?`),
      readStream: db.prepare(`SELECT * FROM events WHERE stream_id = ? AND recorded_at <= ? ORDER BY version`),
      readPage: db.prepare(`SELECT * FROM events WHERE position > ? ORDER BY position LIMIT ?`),
      findKey: db.prepare(`SELECT result FROM idempotency_keys WHERE key = ?`),
      saveKey: db.prepare(`INSERT INTO idempotency_keys (key, result) VALUES (?, ?)`),
    };
    const transaction = db.transaction((work: () => unknown) => work());
    this.inTransaction = <T>(work: () => T) => transaction(work) as T;
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

  private appendNow({ requests, options }: PendingAppend, committed: RecordedEvent[]): AppendResult {
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
    return this.statements.readStream.all(streamId, options.until ?? '9999').map((row) => toRecorded(row));
  }

  async lastInStream(streamId: string, until: string, matching?: EventMatch): Promise<RecordedEvent | null> {
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
    const { where, params } = whereClause(filter);
    const sql = `SELECT * FROM events WHERE ${where} ORDER BY position LIMIT ? OFFSET ?`;
    const rows: StoredRow[] = [];
    let bytes = 0;
    for (const row of this.db.prepare<Array<string | number>, StoredRow>(sql).iterate(...params, filter.limit, filter.offset ?? 0)) {
      rows.push(row);
      bytes += row.data.length;
      if (filter.maxBytes !== undefined && bytes >= filter.maxBytes) break;
    }
    return rows.map((row) => toRecorded(row, filter.asStored === true));
  }

  async countEvents(filter: Omit<ReadAllFilter, 'limit' | 'offset'>): Promise<number> {
    const { where, params } = whereClause(filter);
    return this.db.prepare<Array<string | number>, { n: number }>(`SELECT count(*) AS n FROM events WHERE ${where}`).get(...params)?.n ?? 0;
  }

  async streamVersion(streamId: string): Promise<number> {
    return this.currentVersion(streamId);
  }

  /** Stream versions of recent appends, so a busy stream is not looked up on every append. */
  private currentVersion(streamId: string): number {
    const cached = this.versions.get(streamId);
    if (cached !== undefined) return cached;
    return this.statements.streamVersion.get(streamId)?.version ?? 0;
  }

  private rememberVersion(streamId: string, version: number): void {
    if (this.versions.size >= MAX_CACHED_VERSIONS) this.versions.clear();
    this.versions.set(streamId, version);
  }

  async hashAt(position: number): Promise<string> {
    if (position <= 0) return GENESIS_HASH;
    return this.db.prepare<[number], { hash: string }>(`SELECT hash FROM events WHERE position = ?`).get(position)?.hash ?? GENESIS_HASH;
  }

  headPosition(): number {
    return this.head.position;
  }

  async verify(): Promise<VerifyResult> {
    let previous = GENESIS_HASH;
    let checked = 0;
    for (;;) {
      const page = this.statements.readPage.all(checked, VERIFY_PAGE);
      for (const row of page) {
        const expectedPosition = checked + 1;
        if (row.position !== expectedPosition) {
          return { ok: false, checked, first_bad_position: expectedPosition, reason: 'missing or reordered event' };
        }
        if (chainHash(previous, row) !== row.hash) {
          return { ok: false, checked, first_bad_position: row.position, reason: 'hash does not match' };
        }
        previous = row.hash;
        checked += 1;
      }
      if (page.length < VERIFY_PAGE) break;
      // Let requests through between pages: a long log must not stall the server.
      await new Promise((resolve) => setImmediate(resolve));
    }
    // Rows cut from the end chain fine; the head this process appended up to says they existed.
    if (checked < this.head.position) {
      return { ok: false, checked, first_bad_position: checked + 1, reason: 'the log ends before its last appended event' };
    }
    return { ok: true, checked, head_hash: previous };
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
