import { existsSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DomainError } from '../../src/domain/errors.js';
import { streams } from '../../src/domain/events.js';
import { applyLogRetention, archiveBefore, type CutStep } from '../../src/eventlog/index.js';
import { verifyDataDir } from '../../src/tools/verify-data-dir.js';
import { appendFleet, archivedLog, everythingRead, type ArchivedLogHarness, type FleetEntry } from '../helpers/archive-fixtures.js';

const HOUR = 3_600_000;
const fleet = (count: number): FleetEntry[] =>
  Array.from({ length: count }, (_, i) => ({ kind: (['readings', 'readings', 'heartbeat', 'configuration', 'group'] as const)[i % 5]!, device: i % 3, value: i % 50, advanceMs: HOUR }));
const at = (hours: number) => new Date(Date.parse('2026-01-01T00:00:00.000Z') + hours * HOUR).toISOString();
const archiveFiles = (harness: ArchivedLogHarness) => readdirSync(join(harness.dir, 'archive'));

class Crash extends Error {}

describe('archiving the log', () => {
  let harness: ArchivedLogHarness;
  afterEach(() => {
    harness.log.close();
    harness.db.close();
    rmSync(harness.dir, { recursive: true, force: true });
  });

  it.each<CutStep>(['rows_chosen', 'partial_written', 'renamed', 'committed'])('recovers from a crash after %s: both copies or the cut, never neither, and a later cut completes', async (crashAt) => {
    harness = archivedLog();
    await appendFleet(harness, fleet(40));
    const end = harness.clock.now().toISOString();
    const before = await everythingRead(harness.log, end);
    await expect(
      archiveBefore(harness.log, at(30), (step) => {
        if (step === crashAt) throw new Crash(step);
      }),
    ).rejects.toBeInstanceOf(Crash);
    harness.reopen();
    expect(archiveFiles(harness).filter((file) => !file.endsWith('.seg'))).toEqual([]);
    expect(await everythingRead(harness.log, end)).toEqual(before);
    expect(await harness.log.verify()).toMatchObject({ ok: true, checked: harness.log.headPosition() });
    await archiveBefore(harness.log, at(30));
    expect(harness.log.archive.entries()).toHaveLength(1);
    expect(archiveFiles(harness)).toEqual([harness.log.archive.entries()[0]!.file]);
    expect(await everythingRead(harness.log, end)).toEqual(before);
  });

  it('loses and duplicates nothing when devices go on sending during the cut', async () => {
    harness = archivedLog();
    await appendFleet(harness, fleet(300));
    const sending = appendFleet(harness, fleet(300).map((entry) => ({ ...entry, advanceMs: 1 })));
    const cut = await archiveBefore(harness.log, at(250));
    await sending;
    expect(cut.events).toBeGreaterThan(100);
    const positions = (await harness.log.readAll({ afterPosition: 0, limit: 10_000 })).map((event) => event.position);
    expect(positions).toEqual(Array.from({ length: harness.log.headPosition() }, (_, i) => i + 1));
    expect(await harness.log.verify()).toMatchObject({ ok: true, checked: harness.log.headPosition() });
  });

  it('answers 503 naming the segment for reads of a segment moved away, verifies around it, and reads it again once back', async () => {
    harness = archivedLog();
    await appendFleet(harness, fleet(40));
    const end = harness.clock.now().toISOString();
    const before = await everythingRead(harness.log, end);
    await archiveBefore(harness.log, at(20));
    const [segment] = harness.log.archive.entries();
    const path = join(harness.dir, 'archive', segment!.file);
    renameSync(path, `${path}.cold`);
    const refusal = await harness.log.readAll({ afterPosition: 0, limit: 100 }).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(DomainError);
    expect(refusal).toMatchObject({ code: 'service_unavailable', message: expect.stringContaining(segment!.file) });
    // Reads that cannot touch it still answer: later positions, kinds never archived.
    expect(await harness.log.readAll({ afterPosition: segment!.last_position, limit: 5 })).toHaveLength(5);
    expect((await harness.log.readAll({ afterPosition: 0, limit: 100, types: ['group.deleted'] })).length).toBeGreaterThan(0);
    const verdict = await harness.log.verify();
    expect(verdict).toMatchObject({ ok: true, missing_segments: [{ segment: segment!.file, deleted: false }] });
    expect((verdict as { proven_from: number }).proven_from).toBeGreaterThan(segment!.first_position);
    renameSync(`${path}.cold`, path);
    expect(await everythingRead(harness.log, end)).toEqual(before);
    expect(await harness.log.verify()).toEqual({ ok: true, checked: harness.log.headPosition(), head_hash: expect.any(String) });
  });

  it('finds an edit of a live event next to a missing segment, through the links its cut recorded', async () => {
    harness = archivedLog();
    await appendFleet(harness, fleet(40));
    await archiveBefore(harness.log, at(20));
    const [segment] = harness.log.archive.entries();
    rmSync(join(harness.dir, 'archive', segment!.file));
    const kept = harness.db.prepare<[number, number], { position: number }>(`SELECT position FROM events WHERE position > ? AND position < ? ORDER BY position LIMIT 1`).get(segment!.first_position, segment!.last_position)!;
    harness.db.prepare(`UPDATE events SET data = replace(data, 'g', 'h') WHERE position = ?`).run(kept.position);
    expect(await harness.log.verify()).toMatchObject({ ok: false, first_bad_position: kept.position });
  });

  it('deletes segments past LOG_DELETE_AFTER_DAYS for good: an event says so, reads skip them, verification says from where it proves', async () => {
    harness = archivedLog();
    await appendFleet(harness, fleet(60));
    await archiveBefore(harness.log, at(20));
    await archiveBefore(harness.log, at(40));
    const [old, recent] = harness.log.archive.entries();
    expect(harness.log.dropSegments(at(30))).toBe(1);
    expect(archiveFiles(harness)).toEqual([recent!.file]);
    const events = await harness.log.readAll({ afterPosition: 0, limit: 1_000 });
    expect(events.some((event) => event.position >= old!.first_position && event.position <= old!.last_position && event.type === 'readings.recorded')).toBe(false);
    expect(events.filter((event) => event.type === 'log.segment_deleted').map((event) => event.data)).toEqual([{ segment: old!.file, first_position: old!.first_position, last_position: old!.last_position, events: old!.events }]);
    const verdict = await harness.log.verify();
    expect(verdict).toMatchObject({ ok: true, missing_segments: [{ segment: old!.file, deleted: true }] });
    expect((verdict as { proven_from: number }).proven_from).toBeGreaterThan(old!.last_position);
    // A restart finds nothing to recover and the recent segment still reads.
    harness.reopen();
    expect(archiveFiles(harness)).toEqual([recent!.file]);
    expect(await harness.log.readStream(streams.telemetry('d1'))).not.toHaveLength(0);
    expect(existsSync(join(harness.dir, 'archive', old!.file))).toBe(false);
  });

  it('npm run verify -- --data-dir checks a stopped server\'s segments and live log as one chain, and names a missing segment', async () => {
    harness = archivedLog();
    await appendFleet(harness, fleet(40));
    await archiveBefore(harness.log, at(20));
    const [segment] = harness.log.archive.entries();
    const whole = await verifyDataDir(harness.dir);
    expect(whole.verdict).toMatchObject({ ok: true, checked: harness.log.headPosition() });
    expect(whole.lines[0]).toMatch(/^ok: \d+ events \(1 archived segment/);
    renameSync(join(harness.dir, 'archive', segment!.file), join(harness.dir, segment!.file));
    const missing = await verifyDataDir(harness.dir);
    expect(missing.verdict).toMatchObject({ ok: true, missing_segments: [{ segment: segment!.file, deleted: false }] });
    expect(missing.lines.join('\n')).toContain(`MISSING from ${join(harness.dir, 'archive')}: ${segment!.file}`);
    expect(missing.lines.join('\n')).toMatch(/proven whole from position \d+/);
  });

  it('applies LOG_ARCHIVE_AFTER_DAYS and LOG_DELETE_AFTER_DAYS as the server\'s job does, day after day', async () => {
    harness = archivedLog();
    const day = (n: number) => new Date(Date.parse('2026-01-01T00:00:00.000Z') + n * 24 * HOUR);
    const policy = { archiveAfterDays: 2, deleteAfterDays: 4 };
    await appendFleet(harness, fleet(48));
    // Day 1: nothing is two days old yet.
    expect(await applyLogRetention(harness.log, day(1), policy)).toMatchObject({ segments: 0, deleted: 0 });
    // Day 4: the first two days' readings and heartbeats are archived, none deleted yet.
    const archived = await applyLogRetention(harness.log, day(4), policy);
    expect(archived).toMatchObject({ segments: 1, events: 29, deleted: 0 });
    // Day 7: the last heartbeat (day 2) is archived too, and both segments, their newest event more than four days old, go for good.
    expect(await applyLogRetention(harness.log, day(7), policy)).toMatchObject({ segments: 1, events: 1, deleted: 2 });
    expect(archiveFiles(harness)).toEqual([]);
    expect(await harness.log.verify()).toMatchObject({ ok: true, missing_segments: [{ deleted: true }, { deleted: true }] });
  });
});
