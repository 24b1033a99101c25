import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.js';
import type { DomainEvent, EventOfType, RecordedEvent } from '../../src/domain/events.js';
import {
  ConcurrencyError,
  GENESIS_HASH,
  STREAM_SCAN_WINDOW,
  SqliteEventLog,
  openDatabase,
  type AppendRequest,
  type AppendResult,
  type EventLog,
  type SqliteDatabase,
} from '../../src/eventlog/index.js';

/**
 * What the contract needs from a backend: a log, the clock it records with, a way to reopen
 * the same storage (a restart), and a count of committed events read through a separate
 * connection (to see what a commit made visible to everybody else).
 */
interface Harness {
  log: EventLog;
  clock: ManualClock;
  reopen(): EventLog;
  committedElsewhere(): number | Promise<number>;
  dispose(): void;
}

interface Backend {
  name: string;
  create(): Harness;
}

function sqliteBackend(): Harness {
  const dir = mkdtempSync(join(tmpdir(), 'eventlog-contract-'));
  const file = join(dir, 'log.db');
  const clock = new ManualClock('2026-02-01T00:00:00.000Z');
  let db: SqliteDatabase = openDatabase(file);
  const observer = new Database(file, { readonly: true, fileMustExist: true });
  const harness: Harness = {
    log: new SqliteEventLog(db, clock),
    clock,
    reopen() {
      harness.log.close();
      db.close();
      db = openDatabase(file);
      harness.log = new SqliteEventLog(db, clock);
      return harness.log;
    },
    committedElsewhere: () => observer.prepare<[], { n: number }>('SELECT count(*) AS n FROM events').get()!.n,
    dispose() {
      harness.log.close();
      observer.close();
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return harness;
}

/** Every backend runs the same suite; PostgreSQL joins by adding an entry. */
const backends: Backend[] = [{ name: 'sqlite', create: sqliteBackend }];

const deviceRegistered = (id: string): EventOfType<'device.registered'> => ({
  type: 'device.registered',
  data: {
    device_id: id,
    user_id: 'u1',
    token_hash: `hash-${id}`,
    name: `Device ${id}`,
    device_type: 'sensor',
    description: null,
    ip_address: null,
    mac_address: null,
    group_id: null,
    configuration: { nested: { list: [1, 2, 3] } },
    firmware_version: null,
  },
});
const deviceUpdated = (id: string, name: string): EventOfType<'device.updated'> => ({ type: 'device.updated', data: { device_id: id, changes: { name } } });
const groupCreated = (id: string): EventOfType<'group.created'> => ({
  type: 'group.created',
  data: { group_id: id, user_id: 'u1', name: `Group ${id}`, description: 'desc', parent_id: null },
});

const request = (streamId: string, events: DomainEvent[], expectedVersion: AppendRequest['expectedVersion'] = 'any'): AppendRequest => ({
  streamId,
  events,
  expectedVersion,
});

/** Runs an append so that a synchronous throw and a rejection look the same to the test. */
const attempt = (run: () => Promise<AppendResult>): Promise<AppendResult> => Promise.resolve().then(run);

async function everything(log: EventLog): Promise<RecordedEvent[]> {
  return log.readAll({ afterPosition: 0, limit: 1_000_000 });
}

describe.each(backends)('event log contract: $name', (backend) => {
  let h: Harness;
  beforeEach(() => {
    h = backend.create();
  });
  afterEach(() => h.dispose());

  describe('append and read', () => {
    it('starts empty', async () => {
      expect(h.log.headPosition()).toBe(0);
      expect(await everything(h.log)).toEqual([]);
      expect(await h.log.readStream('device-none')).toEqual([]);
      expect(await h.log.streamVersion('device-none')).toBe(0);
      expect(await h.log.countEvents({ afterPosition: 0 })).toBe(0);
    });

    it('appends to a new stream and reads it back with position, version, metadata, time and hash', async () => {
      const result = await h.log.append([
        { streamId: 'device-a', events: [deviceRegistered('a'), deviceUpdated('a', 'renamed')], expectedVersion: 'no_stream', metadata: { actor_type: 'user', actor_id: 'u1', request_id: 'r1' } },
      ]);
      expect(result).toEqual({ firstPosition: 1, lastPosition: 2, versions: [2], duplicate: false });
      expect(h.log.headPosition()).toBe(2);
      const stream = await h.log.readStream('device-a');
      expect(stream.map(({ hash: _hash, ...rest }) => rest)).toEqual([
        { ...deviceRegistered('a'), position: 1, stream_id: 'device-a', version: 1, metadata: { actor_type: 'user', actor_id: 'u1', request_id: 'r1' }, recorded_at: '2026-02-01T00:00:00.000Z' },
        { ...deviceUpdated('a', 'renamed'), position: 2, stream_id: 'device-a', version: 2, metadata: { actor_type: 'user', actor_id: 'u1', request_id: 'r1' }, recorded_at: '2026-02-01T00:00:00.000Z' },
      ]);
      for (const event of stream) expect(event.hash).toMatch(/^[0-9a-f]{64}$/);
      expect(stream[0]!.hash).not.toBe(stream[1]!.hash);
      expect(await h.log.streamVersion('device-a')).toBe(2);
    });

    it('reads a stream in version order, only its own events, and as of a time', async () => {
      await h.log.append([request('device-a', [deviceRegistered('a')])]);
      h.clock.advance(1_000);
      await h.log.append([request('group-g', [groupCreated('g')])]);
      await h.log.append([request('device-a', [deviceUpdated('a', 'second')])]);
      h.clock.advance(1_000);
      await h.log.append([request('device-a', [deviceUpdated('a', 'third')])]);

      const stream = await h.log.readStream('device-a');
      expect(stream.map((e) => [e.version, e.position, e.type])).toEqual([
        [1, 1, 'device.registered'],
        [2, 3, 'device.updated'],
        [3, 4, 'device.updated'],
      ]);
      const past = await h.log.readStream('device-a', { until: '2026-02-01T00:00:01.000Z' });
      expect(past.map((e) => e.version)).toEqual([1, 2]);
      expect(await h.log.readStream('device-a', { until: '2026-01-31T23:59:59.999Z' })).toEqual([]);
    });

    it('finds the last event of a stream matching types and a data field, as of a time, however far back', async () => {
      const heartbeat = (firmware: string | null): EventOfType<'device.heartbeat'> => ({ type: 'device.heartbeat', data: { device_id: 'a', device_status: null, firmware_version: firmware, metrics: null } });
      await h.log.append([request('telemetry-a', [heartbeat('1.0')])]);
      h.clock.advance(1_000);
      await h.log.append([request('telemetry-a', [heartbeat('2.0'), heartbeat(null)])]);
      const firmware = { types: ['device.heartbeat'] as const, field: 'firmware_version' };
      expect((await h.log.lastInStream('telemetry-a', '2030-01-01T00:00:00.000Z', firmware))?.data).toMatchObject({ firmware_version: '2.0' });
      expect((await h.log.lastInStream('telemetry-a', '2026-02-01T00:00:00.500Z', firmware))?.data).toMatchObject({ firmware_version: '1.0' });
      expect(await h.log.lastInStream('telemetry-a', '2030-01-01T00:00:00.000Z', { ...firmware, equals: '1.0' })).toMatchObject({ version: 1 });
      expect(await h.log.lastInStream('telemetry-a', '2030-01-01T00:00:00.000Z', { types: ['device.heartbeat'], field: 'device_status' })).toBeNull();
      // More than one scan window of non-matching events after the match.
      await h.log.append([request('telemetry-a', Array.from({ length: STREAM_SCAN_WINDOW + 5 }, () => heartbeat(null)))]);
      expect(await h.log.lastInStream('telemetry-a', '2030-01-01T00:00:00.000Z', firmware)).toMatchObject({ version: 2, data: { firmware_version: '2.0' } });
    });

    it('pages through readAll by position and filters by stream, type and time', async () => {
      for (let i = 1; i <= 7; i++) {
        await h.log.append([request(i % 2 === 0 ? 'group-even' : `device-${i}`, [i % 2 === 0 ? groupCreated(`g${i}`) : deviceRegistered(`d${i}`)])]);
        h.clock.advance(1_000);
      }
      const all = await everything(h.log);
      expect(all.map((e) => e.position)).toEqual([1, 2, 3, 4, 5, 6, 7]);

      const pages: number[][] = [];
      for (let after = 0; ; ) {
        const page = await h.log.readAll({ afterPosition: after, limit: 3 });
        if (page.length === 0) break;
        pages.push(page.map((e) => e.position));
        after = page[page.length - 1]!.position;
      }
      expect(pages).toEqual([[1, 2, 3], [4, 5, 6], [7]]);

      expect((await h.log.readAll({ afterPosition: 0, limit: 10, streamIds: ['group-even'] })).map((e) => e.position)).toEqual([2, 4, 6]);
      expect((await h.log.readAll({ afterPosition: 2, limit: 10, types: ['device.registered'] })).map((e) => e.position)).toEqual([3, 5, 7]);
      expect((await h.log.readAll({ afterPosition: 0, limit: 10, streamIds: [] })).length).toBe(0);
      expect((await h.log.readAll({ afterPosition: 0, limit: 10, until: '2026-02-01T00:00:02.000Z' })).map((e) => e.position)).toEqual([1, 2, 3]);
      expect(await h.log.countEvents({ afterPosition: 0 })).toBe(7);
      expect(await h.log.countEvents({ afterPosition: 0, streamIds: ['group-even'] })).toBe(3);
      expect(await h.log.countEvents({ afterPosition: 3, types: ['group.created'] })).toBe(2);
      // A user's streams can outnumber SQLite's 32,766 bound variables.
      const many = [...Array.from({ length: 40_000 }, (_, i) => `command-${i}`), 'group-even'];
      expect((await h.log.readAll({ afterPosition: 0, limit: 10, streamIds: many })).map((e) => e.position)).toEqual([2, 4, 6]);
      expect(await h.log.countEvents({ afterPosition: 0, streamIds: many })).toBe(3);
    });

    it('ends a page once it holds maxBytes of data, never before its first event', async () => {
      for (let i = 1; i <= 6; i++) await h.log.append([request(`device-${i}`, [deviceRegistered(`d${i}`)])]);
      const [first] = await h.log.readAll({ afterPosition: 0, limit: 1 });
      const size = JSON.stringify(first!.data).length;
      expect((await h.log.readAll({ afterPosition: 0, limit: 10, maxBytes: 1 })).map((e) => e.position)).toEqual([1]);
      expect((await h.log.readAll({ afterPosition: 2, limit: 10, maxBytes: size * 2 + 1 })).map((e) => e.position)).toEqual([3, 4, 5]);
      expect((await h.log.readAll({ afterPosition: 0, limit: 4, maxBytes: 1_000_000 })).map((e) => e.position)).toEqual([1, 2, 3, 4]);
    });
  });

  describe('expected version', () => {
    async function expectConflict(append: Promise<AppendResult>, streamId: string, actual: number): Promise<void> {
      const error = await append.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ConcurrencyError);
      expect((error as ConcurrencyError).streamId).toBe(streamId);
      expect((error as ConcurrencyError).actual).toBe(actual);
    }

    it("'no_stream' succeeds on a new stream and conflicts on an existing one", async () => {
      await h.log.append([request('device-a', [deviceRegistered('a')], 'no_stream')]);
      await expectConflict(h.log.append([request('device-a', [deviceUpdated('a', 'x')], 'no_stream')]), 'device-a', 1);
      expect(await h.log.streamVersion('device-a')).toBe(1);
    });

    it("'stream_exists' conflicts on a new stream and succeeds on an existing one", async () => {
      await expectConflict(h.log.append([request('device-a', [deviceRegistered('a')], 'stream_exists')]), 'device-a', 0);
      expect(h.log.headPosition()).toBe(0);
      await h.log.append([request('device-a', [deviceRegistered('a')])]);
      const result = await h.log.append([request('device-a', [deviceUpdated('a', 'x')], 'stream_exists')]);
      expect(result.versions).toEqual([2]);
    });

    it('an exact version succeeds only when it is the current version', async () => {
      await h.log.append([request('device-a', [deviceRegistered('a'), deviceUpdated('a', 'b')])]);
      await expectConflict(h.log.append([request('device-a', [deviceUpdated('a', 'c')], 1)]), 'device-a', 2);
      await expectConflict(h.log.append([request('device-a', [deviceUpdated('a', 'c')], 3)]), 'device-a', 2);
      await expectConflict(h.log.append([request('device-new', [deviceRegistered('new')], 1)]), 'device-new', 0);
      expect(h.log.headPosition()).toBe(2);
      const result = await h.log.append([request('device-a', [deviceUpdated('a', 'c')], 2)]);
      expect(result).toEqual({ firstPosition: 3, lastPosition: 3, versions: [3], duplicate: false });
    });

    it('an exact version of 0 means the stream does not exist yet', async () => {
      const result = await h.log.append([request('device-a', [deviceRegistered('a')], 0)]);
      expect(result.versions).toEqual([1]);
      await expectConflict(h.log.append([request('device-a', [deviceUpdated('a', 'x')], 0)]), 'device-a', 1);
    });

    it("'any' appends whatever the stream's version", async () => {
      expect((await h.log.append([request('device-a', [deviceRegistered('a')], 'any')])).versions).toEqual([1]);
      expect((await h.log.append([request('device-a', [deviceUpdated('a', 'x')], 'any')])).versions).toEqual([2]);
    });

    it('appends racing in the same tick: the conflicting one fails alone, the others commit gaplessly', async () => {
      const first = h.log.append([request('device-a', [deviceRegistered('a')], 'no_stream')]);
      const second = h.log.append([request('device-a', [deviceRegistered('a')], 'no_stream')]);
      const third = h.log.append([request('group-g', [groupCreated('g')], 'no_stream')]);
      const fourth = h.log.append([request('device-a', [deviceUpdated('a', 'x')], 1)]);
      const outcomes = await Promise.allSettled([first, second, third, fourth]);
      expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
      expect((outcomes[1] as PromiseRejectedResult).reason).toBeInstanceOf(ConcurrencyError);
      expect((outcomes[0] as PromiseFulfilledResult<AppendResult>).value).toMatchObject({ firstPosition: 1, lastPosition: 1 });
      expect((outcomes[2] as PromiseFulfilledResult<AppendResult>).value).toMatchObject({ firstPosition: 2, lastPosition: 2 });
      expect((outcomes[3] as PromiseFulfilledResult<AppendResult>).value).toMatchObject({ firstPosition: 3, lastPosition: 3, versions: [2] });
      expect((await everything(h.log)).map((e) => [e.position, e.stream_id, e.version])).toEqual([
        [1, 'device-a', 1],
        [2, 'group-g', 1],
        [3, 'device-a', 2],
      ]);
    });
  });

  describe('multi-stream appends', () => {
    it('appends to several streams in one call with consecutive positions and a version per stream', async () => {
      await h.log.append([request('group-g', [groupCreated('g')])]);
      const result = await h.log.append([
        request('device-a', [deviceRegistered('a'), deviceUpdated('a', 'x')], 'no_stream'),
        request('group-g', [{ type: 'group.updated', data: { group_id: 'g', changes: { name: 'G2' } } }], 1),
      ]);
      expect(result).toEqual({ firstPosition: 2, lastPosition: 4, versions: [2, 2], duplicate: false });
      expect((await everything(h.log)).map((e) => [e.position, e.stream_id, e.version])).toEqual([
        [1, 'group-g', 1],
        [2, 'device-a', 1],
        [3, 'device-a', 2],
        [4, 'group-g', 2],
      ]);
    });

    it('is atomic: a conflict on the second stream stores nothing from the first', async () => {
      await h.log.append([request('group-g', [groupCreated('g')])]);
      const error = await h.log
        .append([request('device-a', [deviceRegistered('a')], 'no_stream'), request('group-g', [{ type: 'group.deleted', data: { group_id: 'g', user_id: 'u1' } }], 'no_stream')])
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConcurrencyError);
      expect((error as ConcurrencyError).streamId).toBe('group-g');
      expect(await h.log.readStream('device-a')).toEqual([]);
      expect(h.log.headPosition()).toBe(1);
      expect(await h.log.countEvents({ afterPosition: 0 })).toBe(1);
      // The position the failed append would have taken is not lost.
      expect((await h.log.append([request('device-a', [deviceRegistered('a')], 'no_stream')])).firstPosition).toBe(2);
    });
  });

  describe('idempotency', () => {
    it('appends once per key and repeats the first result with duplicate: true', async () => {
      const first = await h.log.append([request('device-a', [deviceRegistered('a')])], { idempotencyKey: 'k1' });
      h.clock.advance(5_000);
      const again = await h.log.append([request('device-a', [deviceUpdated('a', 'other payload')])], { idempotencyKey: 'k1' });
      expect(first).toEqual({ firstPosition: 1, lastPosition: 1, versions: [1], duplicate: false });
      expect(again).toEqual({ ...first, duplicate: true });
      const stored = await everything(h.log);
      expect(stored).toHaveLength(1);
      expect(stored[0]!.metadata.idempotency_key).toBe('k1');
      expect(h.log.headPosition()).toBe(1);
    });

    it('holds when the repeat arrives in the same tick', async () => {
      const [a, b] = await Promise.all([
        h.log.append([request('device-a', [deviceRegistered('a')])], { idempotencyKey: 'k2' }),
        h.log.append([request('device-a', [deviceRegistered('a')])], { idempotencyKey: 'k2' }),
      ]);
      expect(a.duplicate).toBe(false);
      expect(b).toEqual({ ...a, duplicate: true });
      expect(await h.log.countEvents({ afterPosition: 0 })).toBe(1);
    });

    it('does not let different keys interfere, and a repeat does not emit on committed$', async () => {
      const emitted: number[] = [];
      const subscription = h.log.committed$.subscribe((events) => emitted.push(...events.map((e) => e.position)));
      await h.log.append([request('device-a', [deviceRegistered('a')])], { idempotencyKey: 'k1' });
      await h.log.append([request('device-b', [deviceRegistered('b')])], { idempotencyKey: 'k2' });
      await h.log.append([request('device-a', [deviceRegistered('a')])], { idempotencyKey: 'k1' });
      subscription.unsubscribe();
      expect(emitted).toEqual([1, 2]);
    });

    it('a failed append does not consume its key', async () => {
      await h.log.append([request('device-a', [deviceRegistered('a')])]);
      await expect(h.log.append([request('device-a', [deviceUpdated('a', 'x')], 'no_stream')], { idempotencyKey: 'k3' })).rejects.toBeInstanceOf(ConcurrencyError);
      const retried = await h.log.append([request('device-a', [deviceUpdated('a', 'x')], 1)], { idempotencyKey: 'k3' });
      expect(retried).toEqual({ firstPosition: 2, lastPosition: 2, versions: [2], duplicate: false });
    });
  });

  describe('validation at append', () => {
    it('refuses a payload with a wrong field type and stores nothing', async () => {
      const bad = { type: 'user.registered', data: { ...{ user_id: 'u1', username: 'a', email: 'a@b.c', role: 'user', password_hash: 'h', api_key_hash: 'k' }, device_quota: 'ten' } };
      await expect(attempt(() => h.log.append([request('user-u1', [bad as unknown as DomainEvent])]))).rejects.toThrow(/device_quota/);
      expect(h.log.headPosition()).toBe(0);
      expect(await h.log.countEvents({ afterPosition: 0 })).toBe(0);
    });

    it('refuses a payload missing a required field', async () => {
      const bad = { type: 'group.created', data: { group_id: 'g', user_id: 'u1', description: null, parent_id: null } };
      await expect(attempt(() => h.log.append([request('group-g', [bad as unknown as DomainEvent])]))).rejects.toThrow(/name/);
      expect(await h.log.countEvents({ afterPosition: 0 })).toBe(0);
    });

    it('refuses an unknown event type and stores nothing', async () => {
      const unknown = { type: 'device.exploded', data: { device_id: 'a' } } as unknown as DomainEvent;
      await expect(attempt(() => h.log.append([request('device-a', [unknown])]))).rejects.toThrow(/device.exploded/);
      expect(await h.log.countEvents({ afterPosition: 0 })).toBe(0);
    });

    it('refuses the whole call when one event of several is invalid, without failing appends in the same tick', async () => {
      const bad = { type: 'device.updated', data: { device_id: 'a', changes: { name: 42 } } } as unknown as DomainEvent;
      const good = h.log.append([request('group-g', [groupCreated('g')])]);
      const refused = attempt(() => h.log.append([request('device-a', [deviceRegistered('a')]), request('device-a', [bad])]));
      await expect(refused).rejects.toThrow();
      expect((await good).firstPosition).toBe(1);
      expect((await everything(h.log)).map((e) => e.stream_id)).toEqual(['group-g']);
    });
  });

  describe('committed$', () => {
    it('emits every committed event once, in position order, only after the commit is visible elsewhere', async () => {
      const seen: RecordedEvent[] = [];
      const visibleAtEmission: Array<Promise<number>> = [];
      const lastEmitted: number[] = [];
      const subscription = h.log.committed$.subscribe((events) => {
        seen.push(...events);
        lastEmitted.push(events[events.length - 1]!.position);
        visibleAtEmission.push(Promise.resolve(h.committedElsewhere()));
      });
      await h.log.append([request('device-a', [deviceRegistered('a')])]);
      await Promise.allSettled([
        h.log.append([request('device-b', [deviceRegistered('b'), deviceUpdated('b', 'x')])]),
        h.log.append([request('device-a', [deviceRegistered('a')], 'no_stream')]), // conflicts: never emitted
        h.log.append([request('group-g', [groupCreated('g')])]),
      ]);
      await h.log.append([request('device-a', [deviceUpdated('a', 'y')], 1)]);
      subscription.unsubscribe();

      expect(seen.map((e) => e.position)).toEqual([1, 2, 3, 4, 5]);
      expect(seen).toEqual(await everything(h.log));
      const visible = await Promise.all(visibleAtEmission);
      visible.forEach((count, index) => expect(count).toBeGreaterThanOrEqual(lastEmitted[index]!));
    });

    it('emits nothing for a failed append', async () => {
      await h.log.append([request('device-a', [deviceRegistered('a')])]);
      let emissions = 0;
      const subscription = h.log.committed$.subscribe(() => emissions++);
      await expect(h.log.append([request('device-a', [deviceRegistered('a')], 'no_stream')])).rejects.toBeInstanceOf(ConcurrencyError);
      subscription.unsubscribe();
      expect(emissions).toBe(0);
    });
  });

  describe('positions and the hash chain', () => {
    it('keeps positions gapless across successes, conflicts and refusals', async () => {
      const attempts: Array<Promise<AppendResult>> = [];
      for (let i = 0; i < 20; i++) {
        const stream = `device-${i % 4}`;
        if (i % 5 === 3) attempts.push(attempt(() => h.log.append([request(stream, [{ type: 'nope' } as unknown as DomainEvent])])));
        attempts.push(h.log.append([request(stream, [deviceRegistered(String(i))], i % 3 === 0 ? 'no_stream' : 'any')]));
        if (i % 7 === 0) await Promise.allSettled(attempts);
      }
      await Promise.allSettled(attempts);
      const positions = (await everything(h.log)).map((e) => e.position);
      expect(positions).toEqual(positions.map((_, index) => index + 1));
      expect(h.log.headPosition()).toBe(positions.length);
      const versions = new Map<string, number[]>();
      for (const e of await everything(h.log)) versions.set(e.stream_id, [...(versions.get(e.stream_id) ?? []), e.version]);
      for (const list of versions.values()) expect(list).toEqual(list.map((_, index) => index + 1));
    });

    it('verifies an untouched log, reporting the last hash as head_hash', async () => {
      expect(await h.log.verify()).toEqual({ ok: true, checked: 0, head_hash: GENESIS_HASH });
      await h.log.append([request('device-a', [deviceRegistered('a'), deviceUpdated('a', 'x')])]);
      await h.log.append([request('group-g', [groupCreated('g')])]);
      const all = await everything(h.log);
      expect(await h.log.verify()).toEqual({ ok: true, checked: 3, head_hash: all[2]!.hash });
    });

    it('continues positions, versions and the hash chain after reopening the same storage', async () => {
      await h.log.append([request('device-a', [deviceRegistered('a'), deviceUpdated('a', 'x')])]);
      const before = await everything(h.log);
      const reopened = h.reopen();
      expect(reopened.headPosition()).toBe(2);
      expect(await reopened.streamVersion('device-a')).toBe(2);
      h.clock.advance(60_000);
      const result = await reopened.append([request('device-a', [deviceUpdated('a', 'y')], 2)]);
      expect(result).toEqual({ firstPosition: 3, lastPosition: 3, versions: [3], duplicate: false });
      const after = await everything(reopened);
      expect(after.slice(0, 2)).toEqual(before);
      const verified = await reopened.verify();
      expect(verified).toEqual({ ok: true, checked: 3, head_hash: after[2]!.hash });
    });

    it('remembers idempotency keys across a reopen', async () => {
      const first = await h.log.append([request('device-a', [deviceRegistered('a')])], { idempotencyKey: 'persisted' });
      const reopened = h.reopen();
      expect(await reopened.append([request('device-a', [deviceRegistered('a')])], { idempotencyKey: 'persisted' })).toEqual({ ...first, duplicate: true });
      expect(reopened.headPosition()).toBe(1);
    });
  });
});
