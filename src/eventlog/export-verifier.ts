import { isCompactForm, upcast } from '../domain/events.js';
import { chainHash } from './hash.js';

/**
 * One line of an event export: the stored event plus the hash it chains from. Data stored in a
 * compact form (readings as columns) is exported as it reads, with the stored form beside it in
 * `stored_data`: the hash covers the stored form, and the verifier checks that it decodes to `data`.
 */
export interface ExportedEvent {
  position: number;
  stream_id: string;
  version: number;
  type: string;
  data: unknown;
  stored_data?: unknown;
  metadata: unknown;
  recorded_at: string;
  hash: string;
  previous_hash: string;
  /** Secret fields the server replaced (an event written before they were sealed): its own hash cannot be recomputed. */
  redacted?: string[];
}

/** An export line for an event read as stored (ReadAllFilter.asStored). */
export function exportedEvent(event: { type: string; data: unknown } & Omit<ExportedEvent, 'data' | 'stored_data' | 'previous_hash'>, previousHash: string): ExportedEvent {
  if (!isCompactForm(event.type, event.data)) return { ...event, previous_hash: previousHash };
  return { ...event, data: upcast(event.type, event.data), stored_data: event.data, previous_hash: previousHash };
}

export type ExportVerdict =
  | {
      ok: true;
      checked: number;
      head_hash: string | null;
      /** Every position from 1 to the head, chained. */
      complete_chain: boolean;
      /** The last position before the first missing one, or null when none is missing. */
      first_gap_after: number | null;
      /**
       * Lines whose secret fields were redacted: their hash is taken as given, pinned by the next
       * line's link, but their own content cannot be checked against it.
       */
      redacted: number;
    }
  | { ok: false; checked: number; line: number; position: number | null; reason: string };

/**
 * Checks an NDJSON export offline: every line's hash recomputed from its own fields and
 * previous_hash, and consecutive positions chained to each other. Only an export without gaps
 * proves the chain: the hash is unkeyed, so an edited event re-hashed from its own previous_hash
 * passes alone, and only the next event's link (or the head hash) gives it away. An export with
 * gaps (one user's events) shows each event consistent with itself, no more.
 */
export function verifyExport(lines: Iterable<string>): ExportVerdict {
  let checked = 0;
  let previous: ExportedEvent | null = null;
  let firstPosition: number | null = null;
  let firstGapAfter: number | null = null;
  let lineNumber = 0;
  let redacted = 0;
  for (const line of lines) {
    lineNumber += 1;
    if (line.trim() === '') continue;
    let event: ExportedEvent;
    try {
      event = JSON.parse(line) as ExportedEvent;
    } catch {
      return { ok: false, checked, line: lineNumber, position: null, reason: 'not JSON' };
    }
    const stored = 'stored_data' in event ? event.stored_data : event.data;
    if (stored !== event.data && JSON.stringify(upcast(event.type, stored)) !== JSON.stringify(event.data)) {
      return { ok: false, checked, line: lineNumber, position: event.position, reason: 'data does not match the stored form the hash covers' };
    }
    const recomputed = chainHash(event.previous_hash, {
      position: event.position,
      stream_id: event.stream_id,
      version: event.version,
      type: event.type,
      data: JSON.stringify(stored),
      metadata: JSON.stringify(event.metadata),
      recorded_at: event.recorded_at,
    });
    if (event.redacted && event.redacted.length > 0) redacted += 1;
    else if (recomputed !== event.hash) return { ok: false, checked, line: lineNumber, position: event.position, reason: 'hash does not match the event' };
    if (previous && event.position <= previous.position) return { ok: false, checked, line: lineNumber, position: event.position, reason: 'positions out of order' };
    if (previous && event.position === previous.position + 1 && event.previous_hash !== previous.hash) {
      return { ok: false, checked, line: lineNumber, position: event.position, reason: 'does not chain to the previous event' };
    }
    if (previous && event.position !== previous.position + 1) firstGapAfter ??= previous.position;
    firstPosition ??= event.position;
    previous = event;
    checked += 1;
  }
  const complete = firstGapAfter === null && (firstPosition === null || firstPosition === 1);
  return { ok: true, checked, head_hash: previous?.hash ?? null, complete_chain: complete, first_gap_after: firstGapAfter, redacted };
}
