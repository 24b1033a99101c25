import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isoOfMs, msOfIso } from '../../src/domain/iso-millis.js';

const digits = (length: number, max: number) => fc.integer({ min: 0, max }).map((n) => String(n).padStart(length, '0'));
/** Times in the normalised form, each field anywhere its digits allow: many do not exist. */
const anyFields = fc
  .tuple(digits(4, 9999), digits(2, 19), digits(2, 39), digits(2, 29), digits(2, 69), digits(2, 69), digits(3, 999))
  .map(([y, mo, d, h, mi, s, ms]) => `${y}-${mo}-${d}T${h}:${mi}:${s}.${ms}Z`);
const MIN = Date.parse('0000-01-01T00:00:00.000Z');
const MAX = Date.parse('9999-12-31T23:59:59.999Z');

describe('ISO times to milliseconds and back', () => {
  it('accepts exactly what Date reads and writes back unchanged, with the same milliseconds', () => {
    fc.assert(
      fc.property(fc.array(anyFields, { minLength: 1, maxLength: 5 }), (texts) => {
        for (const text of texts) {
          const time = Date.parse(text);
          const exists = Number.isFinite(time) && new Date(time).toISOString() === text;
          expect(msOfIso(text)).toBe(exists ? time : null);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('writes any millisecond as toISOString does (one day and across days)', () => {
    fc.assert(
      fc.property(fc.integer({ min: MIN - 5 * 86_400_000, max: MAX + 5 * 86_400_000 }), fc.array(fc.integer({ min: -90_000_000, max: 90_000_000 }), { maxLength: 5 }), (ms, steps) => {
        for (const t of [ms, ...steps.map((step) => ms + step)]) expect(isoOfMs(t)).toBe(new Date(t).toISOString());
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses other forms', () => {
    for (const text of ['2026-03-01T12:00:00Z', '2026-03-01T12:00:00.000+00:00', '2026-02-30T12:00:00.000Z', '2026-03-01T24:00:00.000Z', '2026-03-01T12:00:60.000Z', '2026-03-01 12:00:00.000Z', '+02026-03-01T12:00:00.000Z', '2026-03-01T1a:00:00.000Z']) {
      expect(msOfIso(text), text).toBeNull();
    }
  });
});
