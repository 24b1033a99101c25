import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.js';
import { streams } from '../../src/domain/events.js';
import { SqliteEventLog, openDatabase, type SqliteDatabase } from '../../src/eventlog/index.js';
import { decodeSegment, encodeSegment, segmentHeader, writeSegmentFile, type SegmentRow } from '../../src/eventlog/segment.js';

/**
 * Sealed segments hold events exactly as the log stored them: they come back byte for byte, their
 * header names their ends, an edit inside is found, and a file is written whole or not at all.
 */

describe('sealed segments', () => {
  let db: SqliteDatabase;
  let rows: SegmentRow[];
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'segment-'));
    db = openDatabase(join(dir, 'log.db'));
    const clock = new ManualClock('2026-03-01T12:00:00.000Z');
    const log = new SqliteEventLog(db, clock);
    for (let i = 0; i < 40; i++) {
      clock.advance(1000);
      const device = `d${i % 3}`;
      const readings = [{ sensor_type: 'temperature', value: 20 + i / 10, unit: 'C', timestamp: clock.now().toISOString(), quality_score: 100, quality_reasons: [] }];
      await log.append([{ streamId: streams.telemetry(device), expectedVersion: 'any', events: [{ type: 'readings.recorded', data: { device_id: device, readings, device_status: null } }], metadata: { actor_type: 'device', actor_id: device } }]);
    }
    rows = db.prepare<[], SegmentRow>('SELECT position, stream_id, version, type, data, metadata, recorded_at, hash FROM events ORDER BY position').all();
  });
  afterAll(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('any ordered selection of a log\'s rows comes back exactly, with its ends in the header', () => {
    fc.assert(
      fc.property(fc.subarray(rows, { minLength: 1 }), (chosen) => {
        const { header, rows: back } = decodeSegment(encodeSegment(chosen));
        expect(back).toEqual(chosen);
        expect(header).toEqual({ format: 1, events: chosen.length, first_position: chosen[0]!.position, last_position: chosen.at(-1)!.position, first_hash: chosen[0]!.hash, last_hash: chosen.at(-1)!.hash });
      }),
      { numRuns: 50 },
    );
  });

  it('an edited event (its data changed, its hash kept) is found when its predecessor is in the segment', () => {
    const edited = rows.map((row, i) => (i === 10 ? { ...row, data: row.data.replace('"device_status":null', '"device_status":{}') } : row));
    expect(edited[10]!.data).not.toBe(rows[10]!.data);
    expect(() => decodeSegment(encodeSegment(edited))).toThrow(/hash of position 11/);
  });

  it('a header that does not match its rows, or a damaged block, is refused', () => {
    const bytes = encodeSegment(rows);
    const header = segmentHeader(bytes);
    const body = bytes.subarray(bytes.indexOf(0x0a) + 1);
    const lying = Buffer.concat([Buffer.from(`${JSON.stringify({ ...header, events: header.events - 1 })}\n`), body]);
    expect(() => decodeSegment(lying)).toThrow(/do not match its header/);
    const damaged = Buffer.from(bytes);
    damaged[damaged.length - 5] = damaged[damaged.length - 5]! ^ 0xff;
    expect(() => decodeSegment(damaged)).toThrow();
    expect(() => encodeSegment([])).toThrow();
    expect(() => encodeSegment([rows[1]!, rows[0]!])).toThrow(/order/);
  });

  it('a segment file is named by its ends, complete, and leaves no temporary file', async () => {
    const archive = mkdtempSync(join(dir, 'archive-'));
    const written = await writeSegmentFile(archive, rows.slice(5, 20));
    expect(written.path.endsWith('segment-000000000006-000000000020.seg')).toBe(true);
    expect(readdirSync(archive)).toEqual(['segment-000000000006-000000000020.seg']);
    expect(existsSync(`${written.path}.partial`)).toBe(false);
    expect(decodeSegment(readFileSync(written.path)).rows).toEqual(rows.slice(5, 20));
  });
});
