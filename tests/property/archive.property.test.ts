import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import { archiveBefore } from '../../src/eventlog/index.js';
import { createProjections } from '../../src/projections/index.js';
import { rebuiltDigests } from '../../src/projections/rebuild.js';
import { appendFleet, archivedLog, everythingRead, fleetEntry } from '../helpers/archive-fixtures.js';

/**
 * Given a log of readings, heartbeats and events that stay live, when it is cut at any points
 * in time (one or several cuts), then every read of it answers as before the cuts, a replay
 * builds the same read models, and the log with its segments verifies as one chain.
 */
const replayed = async (harness: ReturnType<typeof archivedLog>, name: string) =>
  rebuiltDigests(harness.log, join(harness.dir, `${name}.db`), createProjections(loadConfig({ DATA_DIR: harness.dir, JWT_SECRET: 'x'.repeat(32) })), pino({ level: 'silent' }));
describe('archiving the log at random points', () => {
  it('changes nothing any reader sees, nor what a replay builds, and the chain verifies across segments and live log', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fleetEntry, { minLength: 1, maxLength: 40 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 3 }), async (entries, cuts) => {
        const harness = archivedLog();
        try {
          await appendFleet(harness, entries);
          const end = harness.clock.now().toISOString();
          const before = await everythingRead(harness.log, end);
          const modelsBefore = await replayed(harness, 'before');
          const start = Date.parse('2026-01-01T00:00:00.000Z');
          for (const share of [...cuts].sort()) await archiveBefore(harness.log, new Date(start + share * (Date.parse(end) + 1 - start)).toISOString());
          expect(await everythingRead(harness.log, end)).toEqual(before);
          expect(await replayed(harness, 'after')).toEqual(modelsBefore);
          const verdict = await harness.log.verify();
          expect(verdict).toMatchObject({ ok: true, checked: harness.log.headPosition() });
          expect(verdict).not.toHaveProperty('missing_segments');
        } finally {
          harness.log.close();
          harness.db.close();
          rmSync(harness.dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 25 },
    );
  });

  it('archives every reading and heartbeat older than the cut, and nothing else', async () => {
    const harness = archivedLog();
    try {
      await appendFleet(harness, Array.from({ length: 30 }, (_, i) => ({ kind: (['readings', 'heartbeat', 'configuration', 'group'] as const)[i % 4]!, device: i % 3, value: i, advanceMs: 3_600_000 })));
      const cut = new Date(Date.parse('2026-01-01T00:00:00.000Z') + 20.5 * 3_600_000).toISOString();
      const result = await archiveBefore(harness.log, cut);
      const live = harness.db.prepare<[], { type: string; recorded_at: string }>(`SELECT type, recorded_at FROM events`).all();
      expect(live.filter((row) => (row.type === 'readings.recorded' || row.type === 'device.heartbeat') && row.recorded_at < cut)).toEqual([]);
      expect(result.events).toBe(10);
      expect(live.filter((row) => row.type === 'device.configuration_reported' || row.type === 'group.deleted')).toHaveLength(14);
      expect(readdirSync(join(harness.dir, 'archive'))).toHaveLength(result.segments);
    } finally {
      harness.log.close();
      harness.db.close();
      rmSync(harness.dir, { recursive: true, force: true });
    }
  });
});
