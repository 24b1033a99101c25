import type { Observable } from 'rxjs';
import type { DomainEvent, EventMetadata, EventType, RecordedEvent } from '../domain/events.js';
import type { HashedFields } from './hash.js';

/** An event exactly as the log stores it: the fields its hash covers, and the hash. */
export interface StoredRow extends HashedFields {
  hash: string;
}

/**
 * How a writer states what it believes about a stream: enforced atomically by the store,
 * never silently downgraded to "no check".
 */
export type ExpectedVersion = 'any' | 'no_stream' | 'stream_exists' | number;

export interface AppendRequest {
  streamId: string;
  events: readonly DomainEvent[];
  expectedVersion: ExpectedVersion;
  metadata?: EventMetadata;
}

export interface AppendOptions {
  /** Appends at most once per key; a repeat answers the first append's result. */
  idempotencyKey?: string;
}

export interface AppendResult {
  /** Positions of the events appended (or, for a repeat, appended the first time). */
  firstPosition: number;
  lastPosition: number;
  /** The stream version after the append, per stream in request order. */
  versions: number[];
  duplicate: boolean;
}

export interface ReadAllFilter {
  afterPosition: number;
  limit: number;
  /** Matching events to skip first (after afterPosition). */
  offset?: number;
  streamIds?: readonly string[];
  types?: readonly string[];
  /** Only events recorded at or after this instant (ISO). */
  since?: string;
  /** Only events recorded at or before this instant (ISO). */
  until?: string;
  /** Data exactly as stored, not upcast to the current shape (for exports that get verified). */
  asStored?: boolean;
  /** Ends the page once the events read hold this many bytes of stored data (always at least one event). */
  maxBytes?: number;
}

/** An archived segment verification could not read: absent from the archive directory, or deleted for good. */
export interface UnreadSegment {
  segment: string;
  first_position: number;
  last_position: number;
  deleted: boolean;
}

export type VerifyResult =
  /** With segments unread: the chain is proven whole from `proven_from` on; before it, live events are checked against the links the cuts recorded. */
  | { ok: true; checked: number; head_hash: string; proven_from?: number; missing_segments?: UnreadSegment[] }
  | { ok: false; checked: number; first_bad_position: number; reason: string };

/**
 * The append-only log. Backends (SQLite now, PostgreSQL later) implement this contract;
 * the contract test suite in tests/unit/eventlog runs against each.
 */
export interface EventLog {
  append(requests: readonly AppendRequest[], options?: AppendOptions): Promise<AppendResult>;
  readStream(streamId: string, options?: { until?: string }): Promise<RecordedEvent[]>;
  /**
   * The last event of a stream recorded at or before `until` (ISO), if any; with `matching`,
   * the last of those types whose data field is present (and equals the value, when given).
   */
  lastInStream(streamId: string, until: string, matching?: EventMatch): Promise<RecordedEvent | null>;
  readAll(filter: ReadAllFilter): Promise<RecordedEvent[]>;
  /** As readAll, the rows exactly as stored (to copy or verify them), archived ones included. */
  readRows(filter: ReadAllFilter): StoredRow[];
  countEvents(filter: Omit<ReadAllFilter, 'limit' | 'offset'>): Promise<number>;
  streamVersion(streamId: string): Promise<number>;
  /** The chain hash stored at a position (the genesis hash for 0). */
  hashAt(position: number): Promise<string>;
  headPosition(): number;
  verify(): Promise<VerifyResult>;
  /** Committed events in position order, emitted only after their transaction committed. */
  readonly committed$: Observable<readonly RecordedEvent[]>;
  close(): void;
}

/** Events of some types whose data holds a field (not null), or holds it with a given value. */
export interface EventMatch {
  types: readonly EventType[];
  field: string;
  equals?: string;
}
