import fc from 'fast-check';
import { SqliteError } from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.js';
import type { DomainEvent, EventMetadata } from '../../src/domain/events.js';
import { SqliteEventLog, openDatabase, type SqliteDatabase, type VerifyResult } from '../../src/eventlog/index.js';

/** Stream ids that differ in more than one byte, so a one-byte edit never lands on another stream's key. */
const STREAMS = ['device-alpha', 'group-bravo', 'user-charlie', 'device-delta'] as const;

const text = fc.string({ unit: 'grapheme', maxLength: 10 });
const id = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 });
const nullableText = fc.option(text, { nil: null });
const iso = fc.date({ min: new Date('2000-01-01T00:00:00.000Z'), max: new Date('2100-01-01T00:00:00.000Z'), noInvalidDate: true }).map((d) => d.toISOString());
const json = fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 });

const event: fc.Arbitrary<DomainEvent> = fc.oneof(
  fc
    .record({ user_id: id, username: text, email: text, role: fc.constantFrom('admin' as const, 'user' as const), password_hash: text, api_key_hash: text, device_quota: fc.nat() })
    .map((data): DomainEvent => ({ type: 'user.registered', data })),
  fc.record({ session_id: id, user_id: id, expires_at: iso }).map((data): DomainEvent => ({ type: 'session.started', data })),
  fc
    .record({
      device_id: id,
      user_id: id,
      token_hash: text,
      name: text,
      device_type: text,
      description: nullableText,
      ip_address: nullableText,
      mac_address: nullableText,
      group_id: nullableText,
      configuration: json,
      firmware_version: nullableText,
    })
    .map((data): DomainEvent => ({ type: 'device.registered', data })),
  fc
    .record({ device_id: id, changes: fc.record({ name: text, description: nullableText, configuration: json }, { requiredKeys: [] }) })
    .map((data): DomainEvent => ({ type: 'device.updated', data })),
  fc
    .record({ group_id: id, user_id: id, name: text, description: nullableText, parent_id: nullableText })
    .map((data): DomainEvent => ({ type: 'group.created', data })),
  fc.record({ group_id: id, user_id: id }).map((data): DomainEvent => ({ type: 'group.deleted', data })),
);

const metadata: fc.Arbitrary<EventMetadata> = fc.record(
  { actor_type: fc.constantFrom('user' as const, 'device' as const, 'system' as const), actor_id: text, request_id: text, correlation_id: text },
  { requiredKeys: [] },
);

const history = fc.array(
  fc.record({
    streamId: fc.constantFrom(...STREAMS),
    events: fc.array(event, { minLength: 1, maxLength: 3 }),
    metadata,
    advanceMs: fc.nat({ max: 10 * 24 * 3600 * 1000 }),
    idempotencyKey: fc.option(fc.string({ minLength: 1, maxLength: 4 }), { nil: undefined }),
  }),
  { minLength: 1, maxLength: 10 },
);

const TEXT_COLUMNS = ['data', 'metadata', 'type', 'stream_id', 'recorded_at', 'hash'] as const;
type TextColumn = (typeof TEXT_COLUMNS)[number];

type HistoryEntry = typeof history extends fc.Arbitrary<Array<infer E>> ? E : never;

async function buildLog(entries: readonly HistoryEntry[]): Promise<{ db: SqliteDatabase; log: SqliteEventLog }> {
  const db = openDatabase(':memory:');
  const clock = new ManualClock('2026-01-01T00:00:00.000Z');
  const log = new SqliteEventLog(db, clock);
  for (const entry of entries) {
    clock.advance(entry.advanceMs);
    await log.append(
      [{ streamId: entry.streamId, events: entry.events, expectedVersion: 'any', metadata: entry.metadata }],
      entry.idempotencyKey !== undefined ? { idempotencyKey: entry.idempotencyKey } : {},
    );
  }
  return { db, log };
}

/** The log is untouched: verify() passes and names the last row's hash. */
async function expectIntact(db: SqliteDatabase, log: SqliteEventLog): Promise<number> {
  const last = db.prepare<[], { position: number; hash: string }>('SELECT position, hash FROM events ORDER BY position DESC LIMIT 1').get()!;
  expect(await log.verify()).toEqual({ ok: true, checked: last.position, head_hash: last.hash });
  return last.position;
}

function expectBrokenAt(result: VerifyResult, position: number): void {
  expect(result).toMatchObject({ ok: false, first_bad_position: position, checked: position - 1 });
}

/** Runs a raw UPDATE; a tamper that would break a unique key is not a possible edit, so the case is skipped. */
function tamper(run: () => void): void {
  try {
    run();
  } catch (error) {
    if (error instanceof SqliteError && error.code.startsWith('SQLITE_CONSTRAINT')) fc.pre(false);
    throw error;
  }
}

const RUNS = 150;

describe('the hash chain catches any edit of the stored log', () => {
  it('flipping any bit of any byte of a text column of any row is reported at that row', async () => {
    await fc.assert(
      fc.asyncProperty(history, fc.nat(), fc.constantFrom(...TEXT_COLUMNS), fc.nat(), fc.integer({ min: 1, max: 255 }), async (entries, rowSeed, column: TextColumn, byteSeed, mask) => {
        const { db, log } = await buildLog(entries);
        try {
          const rows = await expectIntact(db, log);
          const position = (rowSeed % rows) + 1;
          const bytes = db.prepare<[number], { b: Buffer }>(`SELECT CAST(${column} AS BLOB) AS b FROM events WHERE position = ?`).get(position)!.b;
          const before = db.prepare<[number], { v: string }>(`SELECT ${column} AS v FROM events WHERE position = ?`).get(position)!.v;
          const index = byteSeed % bytes.length;
          bytes[index] = bytes[index]! ^ mask;
          tamper(() => db.prepare(`UPDATE events SET ${column} = CAST(? AS TEXT) WHERE position = ?`).run(bytes, position));
          const after = db.prepare<[number], { v: string }>(`SELECT ${column} AS v FROM events WHERE position = ?`).get(position)!.v;
          expect(after).not.toBe(before);
          expectBrokenAt(await log.verify(), position);
        } finally {
          db.close();
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('flipping any bit of the version of any row is reported at that row', async () => {
    await fc.assert(
      fc.asyncProperty(history, fc.nat(), fc.integer({ min: 0, max: 30 }), async (entries, rowSeed, bit) => {
        const { db, log } = await buildLog(entries);
        try {
          const rows = await expectIntact(db, log);
          const position = (rowSeed % rows) + 1;
          const version = db.prepare<[number], { version: number }>('SELECT version FROM events WHERE position = ?').get(position)!.version;
          tamper(() => db.prepare('UPDATE events SET version = ? WHERE position = ?').run(version ^ (1 << bit), position));
          expectBrokenAt(await log.verify(), position);
        } finally {
          db.close();
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('deleting any row but the last is reported at its position', async () => {
    await fc.assert(
      fc.asyncProperty(history, fc.nat(), async (entries, rowSeed) => {
        const { db, log } = await buildLog(entries);
        try {
          const rows = await expectIntact(db, log);
          fc.pre(rows >= 2);
          const position = (rowSeed % (rows - 1)) + 1;
          db.prepare('DELETE FROM events WHERE position = ?').run(position);
          expectBrokenAt(await log.verify(), position);
        } finally {
          db.close();
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('deleting the last row is reported at its position', async () => {
    await fc.assert(
      fc.asyncProperty(history, async (entries) => {
        const { db, log } = await buildLog(entries);
        try {
          const rows = await expectIntact(db, log);
          db.prepare('DELETE FROM events WHERE position = ?').run(rows);
          expectBrokenAt(await log.verify(), rows);
        } finally {
          db.close();
        }
      }),
      { numRuns: 20 },
    );
  });

  it('swapping the positions of any two rows is reported at the earlier one', async () => {
    await fc.assert(
      fc.asyncProperty(history, fc.nat(), fc.nat(), async (entries, aSeed, bSeed) => {
        const { db, log } = await buildLog(entries);
        try {
          const rows = await expectIntact(db, log);
          const a = (aSeed % rows) + 1;
          const b = (bSeed % rows) + 1;
          fc.pre(a !== b);
          db.transaction(() => {
            db.prepare('UPDATE events SET position = -1 WHERE position = ?').run(a);
            db.prepare('UPDATE events SET position = ? WHERE position = ?').run(a, b);
            db.prepare('UPDATE events SET position = ? WHERE position = -1').run(b);
          })();
          expectBrokenAt(await log.verify(), Math.min(a, b));
        } finally {
          db.close();
        }
      }),
      { numRuns: RUNS },
    );
  });
});
