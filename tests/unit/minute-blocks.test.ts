import { describe, expect, it } from 'vitest';
import { addToBlock, blockStartOf, decodeBlock, emptyBlock, encodeBlock, minutesOf } from '../../src/projections/minute-blocks.js';

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

    expect(stored.length).toBe(2 * 6 * 8);
    expect(decodeBlock(stored)).toEqual(block);
    expect(minutesOf('2026-03-01T10:30:00.000Z', stored)).toEqual([
      { bucket_start: '2026-03-01T10:30:00.000Z', count: 2, sum: 1.5, min: -1, max: 2.5, sum_sq: 7.25 },
      { bucket_start: '2026-03-01T10:44:00.000Z', count: 1, sum: 7, min: 7, max: 7, sum_sq: 49 },
    ]);
  });
});
