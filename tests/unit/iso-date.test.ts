import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isoDate } from '../../src/api/schemas/common.js';

const digits = (length: number, max: number) => fc.integer({ min: 0, max }).map((n) => String(n).padStart(length, '0'));

/** Times in UTC milliseconds, each field anywhere its digits allow: most do not exist. */
const utcMilliseconds = fc
  .tuple(digits(4, 9999), digits(2, 19), digits(2, 39), digits(2, 29), digits(2, 69), digits(2, 69), digits(3, 999))
  .map(([y, mo, d, h, mi, s, ms]) => `${y}-${mo}-${d}T${h}:${mi}:${s}.${ms}Z`);

const roundTrips = (value: string) => {
  const time = Date.parse(value);
  return !Number.isNaN(time) && new Date(time).toISOString() === value;
};

describe('isoDate on times already in UTC milliseconds', () => {
  it('property: accepts exactly the times that exist, unchanged, as a Date round trip judges them', () => {
    fc.assert(
      fc.property(utcMilliseconds, (value) => {
        const parsed = isoDate.safeParse(value);
        expect(parsed.success).toBe(roundTrips(value));
        if (parsed.success) expect(parsed.data).toBe(value);
      }),
      { numRuns: 5_000 },
    );
  });

  it('knows leap years: Feb 29 of 2024 and 2000 exist, of 2026 and 1900 not', () => {
    expect(['2024-02-29', '2000-02-29', '2026-02-29', '1900-02-29'].map((d) => isoDate.safeParse(`${d}T12:00:00.000Z`).success)).toEqual([true, true, false, false]);
  });
});
