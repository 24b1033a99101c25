import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeReadings, encodeReadings, type CodecReading } from '../../src/projections/chunk-codec.js';
import { decodeChunk, encodeChunk, type ChunkReading } from '../../src/projections/reading-chunks.js';

/** A raw-reading chunk's bytes decode to exactly the readings encoded, whatever they are. */

const text = fc.oneof(fc.constantFrom('C', '%', '', 'µg/m³', '\u0000'), fc.string({ maxLength: 8 }));
const value = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((v) => (Object.is(v, -0) ? 0 : v)),
  fc.integer({ min: -100_000, max: 100_000 }).map((n) => n / 100),
  fc.constantFrom(0.1, 0.3, 1e21, 5e-324, 2 ** 53, -(2 ** 52), 123.456789),
);
const quality = fc.oneof(
  { weight: 5, arbitrary: fc.constant({ qualityScore: 100, qualityReasons: [] as string[] }) },
  { weight: 1, arbitrary: fc.record({ qualityScore: fc.integer({ min: 0, max: 100 }), qualityReasons: fc.array(text, { maxLength: 3 }) }) },
);
const reading: fc.Arbitrary<CodecReading> = fc
  .record({ offset: fc.integer({ min: 0, max: 3_599_999 }), seq: fc.integer({ min: 0, max: 2 ** 40 }), value, unit: fc.option(text, { nil: null }), q: quality })
  .map(({ q, ...r }) => ({ ...r, ...q }));

describe('raw-reading chunk codec', () => {
  it('decodes any readings back exactly, in order, deflated or not', () => {
    fc.assert(
      fc.property(fc.array(reading, { maxLength: 80 }), fc.boolean(), (readings, deflate) => {
        expect(decodeReadings(encodeReadings(readings, deflate))).toStrictEqual(readings);
      }),
      { numRuns: 500 },
    );
  });

  it('round-trips chunks through their hour: ISO times, positions from the key', () => {
    const hour = '2026-03-01T10:00:00.000Z';
    fc.assert(
      fc.property(fc.array(reading, { minLength: 1, maxLength: 40 }), fc.integer({ min: 0, max: 2 ** 40 }), (readings, firstSeq) => {
        const chunk: ChunkReading[] = readings.map((r, i) => [new Date(Date.parse(hour) + r.offset).toISOString(), firstSeq + (i === 0 ? 0 : r.seq), r.value, r.unit, r.qualityScore, r.qualityReasons]);
        const rows = decodeChunk({ sensor_type: 's', hour, seq: firstSeq, readings: encodeChunk(firstSeq, chunk) });
        expect(rows.map((r): ChunkReading => [r.ts, r.seq, r.value, r.unit, r.quality_score, r.quality_reasons])).toStrictEqual(chunk);
      }),
      { numRuns: 300 },
    );
  });

  it('a sensor read each second on a two-decimal random walk costs about three bytes a reading', () => {
    let v = 21;
    const readings = Array.from({ length: 250 }, (_, i): CodecReading => {
      v = Math.round((v + Math.sin(i * 12.9898) * 0.05) * 100) / 100;
      return { offset: i * 1000, seq: i * 5, value: v, unit: 'C', qualityScore: 100, qualityReasons: [] };
    });
    expect(encodeReadings(readings).length / readings.length).toBeLessThan(3.5);
    // Deflated (as merged chunks are), the regular steps shrink further.
    expect(encodeReadings(readings, true).length / readings.length).toBeLessThan(1.5);
  });
});
