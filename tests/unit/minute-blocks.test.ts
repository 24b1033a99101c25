import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addToBlock, blockStartOf, decodeBlock, emptyBlock, encodeBlock, minutesOf, minutesUsed } from '../../src/projections/minute-blocks.js';

const sameBits = (a: Float64Array, b: Float64Array) => a.length === b.length && a.every((x, i) => Object.is(x, b[i]));

describe('minute blocks', () => {
  it('a block is the quarter of the hour a time falls in', () => {
    expect(blockStartOf('2026-03-01T10:14:59.999Z')).toBe('2026-03-01T10:00:00.000Z');
    expect(blockStartOf('2026-03-01T10:15:00.000Z')).toBe('2026-03-01T10:15:00.000Z');
    expect(blockStartOf('2026-03-01T10:59:30.000Z')).toBe('2026-03-01T10:45:00.000Z');
  });

  it('given readings in two minutes of a block, when stored and read back, then only those minutes come back with their totals', () => {
    const block = emptyBlock();
    addToBlock(block, '2026-03-01T10:30:05.000Z', 2.5);
    addToBlock(block, '2026-03-01T10:30:40.000Z', -1);
    addToBlock(block, '2026-03-01T10:44:00.000Z', 7);

    const stored = encodeBlock(block);

    expect(stored.length).toBe(1 + 5 * 8 + 1 + 8); // all five totals of the busy minute, the value of the other
    expect(minutesUsed(block)).toBe(2);
    expect(decodeBlock(stored)).toEqual(block);
    expect(minutesOf('2026-03-01T10:30:00.000Z', stored)).toEqual([
      { bucket_start: '2026-03-01T10:30:00.000Z', count: 2, sum: 1.5, min: -1, max: 2.5, sum_sq: 7.25 },
      { bucket_start: '2026-03-01T10:44:00.000Z', count: 1, sum: 7, min: 7, max: 7, sum_sq: 49 },
    ]);
  });

  it('given any readings folded into a block, when stored and read back, then every total is the same to the bit', () => {
    const reading = fc.record({ minute: fc.integer({ min: 0, max: 14 }), value: fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constantFrom(0, -0, 1e308, -5e-324)) });
    fc.assert(
      fc.property(fc.array(reading, { maxLength: 40 }), (readings) => {
        const block = emptyBlock();
        for (const { minute, value } of readings) addToBlock(block, `2026-03-01T10:${String(15 + minute).padStart(2, '0')}:07.000Z`, value);
        const stored = encodeBlock(block);
        expect(sameBits(decodeBlock(stored), block)).toBe(true);
        expect(minutesUsed(block)).toBe(new Set(readings.map((r) => r.minute)).size);
      }),
      { numRuns: 300 },
    );
  });

  it('given a minute of one reading, when stored, then it takes its value alone: nine bytes, not forty-one', () => {
    const block = emptyBlock();
    addToBlock(block, '2026-03-01T10:31:00.000Z', -0);
    addToBlock(block, '2026-03-01T10:32:00.000Z', 3);

    expect(encodeBlock(block).length).toBe(2 * (1 + 8));
    expect(minutesOf('2026-03-01T10:30:00.000Z', encodeBlock(block))).toEqual([
      { bucket_start: '2026-03-01T10:31:00.000Z', count: 1, sum: 0, min: -0, max: -0, sum_sq: 0 },
      { bucket_start: '2026-03-01T10:32:00.000Z', count: 1, sum: 3, min: 3, max: 3, sum_sq: 9 },
    ]);
  });
});
