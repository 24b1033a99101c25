import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WRITER_ALONE_CHECKPOINT_PAGES, WRITER_CHECKPOINT_PAGES } from '../../src/eventlog/checkpointer.js';
import { ManualClock } from '../../src/domain/clock.js';
import { SqliteEventLog, openDatabase, startCheckpointer, type SqliteDatabase } from '../../src/eventlog/index.js';

describe('background checkpointer', () => {
  let dir: string;
  let db: SqliteDatabase;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'checkpointer-'));
    db = openDatabase(join(dir, 'data.db'));
    db.exec('CREATE TABLE t (n INTEGER PRIMARY KEY, payload TEXT NOT NULL)');
  });

  afterEach(() => {
    if (db.open) db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const writePages = (rows: number) => {
    const insert = db.prepare<[string]>('INSERT INTO t (payload) VALUES (?)');
    db.transaction(() => {
      for (let i = 0; i < rows; i++) insert.run('x'.repeat(2_000));
    })();
  };

  /** The largest the WAL file gets while a writer commits for `ms`, each commit a few pages, with no pause the checkpointer could use. */
  const walHighWater = async (restartFrames: number, ms: number): Promise<number> => {
    const checkpointer = startCheckpointer(db, { everyMs: 5, restartFrames });
    let highest = 0;
    try {
      for (const until = Date.now() + ms; Date.now() < until; ) {
        for (let i = 0; i < 20; i++) writePages(4);
        highest = Math.max(highest, statSync(join(dir, 'data.db-wal')).size);
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    } finally {
      await checkpointer.stop();
    }
    return highest;
  };

  it('given a writer that never pauses, when the WAL passes its frame limit, then the worker starts it over, so the WAL stays small', async () => {
    // Measured here: about 6 MB with the restart, 128 MB without it (the WAL only ever grows)
    const bound = 32 * 1024 * 1024;
    expect(await walHighWater(256, 1_500)).toBeLessThan(bound);
  });

  it('given the worker starting the WAL over again and again, when the log appends (reading, then writing, in one transaction), then no append fails busy', async () => {
    const log = new SqliteEventLog(db, new ManualClock('2026-03-01T00:00:00.000Z'));
    const checkpointer = startCheckpointer(db, { everyMs: 1, restartFrames: 8 });
    try {
      for (let round = 0; round < 150; round++) {
        // The idempotency key is looked up before the insert: a read, then a write.
        const appends = Array.from({ length: 10 }, (_, i) =>
          log.append([{ streamId: `s-${i}`, expectedVersion: 'any', events: [{ type: 'group.deleted', data: { group_id: `g${round}`, user_id: 'u' } }] }], { idempotencyKey: `k-${round}-${i}` }),
        );
        await Promise.all(appends);
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      expect(log.headPosition()).toBe(1_500);
    } finally {
      await checkpointer.stop();
      log.close();
    }
  });

  it('given commits in the WAL, when asked, then the worker copies every frame back into the database', async () => {
    // hours of periodic checkpoints: only the one asked for runs during the test
    const checkpointer = startCheckpointer(db, { everyMs: 3_600_000 });
    try {
      writePages(500);
      const result = await checkpointer.checkpointNow();
      expect(result.log).toBeGreaterThan(200);
      expect(result.checkpointed).toBe(result.log);
      expect(result.busy).toBe(0);
    } finally {
      await checkpointer.stop();
    }
  });

  it('leaves the writer only its safety net: it checkpoints itself past a large WAL, not at every 1,000 pages', async () => {
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(1_000);
    const checkpointer = startCheckpointer(db, { everyMs: 3_600_000 });
    try {
      expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(WRITER_CHECKPOINT_PAGES);
      const databaseBytes = () => statSync(join(dir, 'data.db')).size;
      writePages(5_000); // ~10 MB, ~2,500 pages: the default would have checkpointed inside this commit
      expect(databaseBytes()).toBeLessThan(1_000_000);
      await checkpointer.checkpointNow();
      expect(databaseBytes()).toBeGreaterThan(9_000_000);
    } finally {
      await checkpointer.stop();
    }
  });

  it('given the worker is gone, then the writer checkpoints sooner on its own, so no single copy grows long', async () => {
    const checkpointer = startCheckpointer(db, { everyMs: 3_600_000 });
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(WRITER_CHECKPOINT_PAGES);
    await checkpointer.stop();
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(WRITER_ALONE_CHECKPOINT_PAGES);
  });

  it('given it stopped, when the writer closes, then its connection was the last and the WAL is folded away', async () => {
    const checkpointer = startCheckpointer(db, { everyMs: 3_600_000 });
    writePages(50);
    await checkpointer.stop();
    db.close();
    expect(existsSync(join(dir, 'data.db-wal'))).toBe(false);
    await expect(checkpointer.checkpointNow()).rejects.toThrow();
  });

  it('does nothing for an in-memory database, which has no WAL', async () => {
    const memory = openDatabase(':memory:');
    const checkpointer = startCheckpointer(memory);
    await expect(checkpointer.checkpointNow()).resolves.toEqual({ busy: 0, log: 0, checkpointed: 0 });
    await checkpointer.stop();
    memory.close();
  });
});
