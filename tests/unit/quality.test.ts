import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assessQuality, emptyStats, rangesOf, updateStats, type SensorStats } from '../../src/domain/quality.js';

const NOW = new Date('2026-03-01T12:00:00.000Z');
const ago = (ms: number): string => new Date(NOW.getTime() - ms).toISOString();
const MINUTE = 60_000;
const HOUR_MS = 60 * MINUTE;

/** Steady history: 20 samples around 20.0 with a spread of 0.1, the last one a minute ago. */
const steady: SensorStats = { count: 20, mean: 20, variance: 0.01, last_timestamp: ago(MINUTE) };

const fold = (values: readonly number[], start: SensorStats = emptyStats): SensorStats =>
  values.reduce((stats, value, i) => updateStats(stats, value, ago((values.length - i) * 1000)), start);

describe('assessQuality', () => {
  describe('given no history', () => {
    it('when a fresh, plausible reading arrives, then it scores 100 with no reasons', () => {
      expect(assessQuality({ sensor_type: 'temperature', value: 21.5, timestamp: NOW.toISOString() }, emptyStats, NOW)).toEqual({ score: 100, reasons: [] });
    });

    it('when a temperature of 500 arrives, then it is out_of_range and loses 50', () => {
      expect(assessQuality({ sensor_type: 'temperature', value: 500, timestamp: NOW.toISOString() }, emptyStats, NOW)).toEqual({ score: 50, reasons: ['out_of_range'] });
    });

    it.each([
      ['temperature', -91],
      ['humidity', -0.5],
      ['humidity', 100.5],
      ['battery', 101],
      ['pressure', 200],
      ['co2', 10_001],
      ['Temperature', 151],
    ])('when %s is %d, then it is out_of_range', (sensor_type, value) => {
      expect(assessQuality({ sensor_type, value, timestamp: NOW.toISOString() }, emptyStats, NOW).reasons).toEqual(['out_of_range']);
    });

    it.each([
      ['temperature', -90],
      ['temperature', 150],
      ['humidity', 0],
      ['humidity', 100],
    ])('when %s is on the edge of its range (%d), then it is still plausible', (sensor_type, value) => {
      expect(assessQuality({ sensor_type, value, timestamp: NOW.toISOString() }, emptyStats, NOW)).toEqual({ score: 100, reasons: [] });
    });

    it('when a sensor type has no known range, then no value is out of range', () => {
      expect(assessQuality({ sensor_type: 'vibration', value: 1e12, timestamp: NOW.toISOString() }, emptyStats, NOW)).toEqual({ score: 100, reasons: [] });
    });

    it("when the device's configuration gives a sensor its own range, then that range replaces the default", () => {
      const ranges = rangesOf({ Pressure: { min: 0, max: 6 }, flow: { min: 0, max: 120 }, broken: { min: 'x' } });
      const at = NOW.toISOString();
      expect(assessQuality({ sensor_type: 'pressure', value: 1.9, timestamp: at }, emptyStats, NOW).reasons).toEqual(['out_of_range']);
      expect(assessQuality({ sensor_type: 'pressure', value: 1.9, timestamp: at }, emptyStats, NOW, ranges)).toEqual({ score: 100, reasons: [] });
      expect(assessQuality({ sensor_type: 'pressure', value: 1013, timestamp: at }, emptyStats, NOW, ranges).reasons).toEqual(['out_of_range']);
      expect(assessQuality({ sensor_type: 'flow', value: 121, timestamp: at }, emptyStats, NOW, ranges).reasons).toEqual(['out_of_range']);
      expect(assessQuality({ sensor_type: 'temperature', value: 500, timestamp: at }, emptyStats, NOW, ranges).reasons).toEqual(['out_of_range']);
      expect([...ranges.keys()]).toEqual(['pressure', 'flow']);
      expect(rangesOf(null).size + rangesOf([1]).size + rangesOf('x').size).toBe(0);
    });

    it('when the reading is more than an hour old at receipt, then it is stale and loses 10', () => {
      expect(assessQuality({ sensor_type: 'temperature', value: 20, timestamp: ago(2 * 60 * MINUTE) }, emptyStats, NOW)).toEqual({ score: 90, reasons: ['stale'] });
    });

    it('when the reading is 59 minutes old, then it is not stale', () => {
      expect(assessQuality({ sensor_type: 'temperature', value: 20, timestamp: ago(59 * MINUTE) }, emptyStats, NOW)).toEqual({ score: 100, reasons: [] });
    });

    it('when a huge value arrives, then no jump is claimed (there is no spread to compare with)', () => {
      expect(assessQuality({ sensor_type: 'vibration', value: 1e9, timestamp: NOW.toISOString() }, emptyStats, NOW).reasons).not.toContain('jump');
    });
  });

  describe('given a steady history', () => {
    it('when a value within the spread arrives, then it scores 100', () => {
      expect(assessQuality({ sensor_type: 'temperature', value: 20.3, timestamp: NOW.toISOString() }, steady, NOW)).toEqual({ score: 100, reasons: [] });
    });

    it('when a value far beyond the recent spread arrives, then it is a jump and loses 30', () => {
      expect(assessQuality({ sensor_type: 'temperature', value: 25, timestamp: NOW.toISOString() }, steady, NOW)).toEqual({ score: 70, reasons: ['jump'] });
    });

    it('when there are fewer than 5 samples, then no jump is claimed', () => {
      expect(assessQuality({ sensor_type: 'temperature', value: 25, timestamp: NOW.toISOString() }, { ...steady, count: 4 }, NOW).reasons).toEqual([]);
    });

    it('when the reading is older than the newest one seen, then it is out_of_order and loses 10', () => {
      expect(assessQuality({ sensor_type: 'temperature', value: 20, timestamp: ago(2 * MINUTE) }, steady, NOW)).toEqual({ score: 90, reasons: ['out_of_order'] });
    });

    it('when the reading has the same time as the newest one seen, then it is not out_of_order', () => {
      expect(assessQuality({ sensor_type: 'temperature', value: 20, timestamp: ago(MINUTE) }, steady, NOW).reasons).toEqual([]);
    });

    it('when everything is wrong at once, then the penalties add up and the score stops at 0', () => {
      const quality = assessQuality({ sensor_type: 'temperature', value: 900, timestamp: ago(3 * 60 * MINUTE) }, steady, NOW);
      expect(quality.score).toBe(0);
      expect([...quality.reasons].sort()).toEqual(['jump', 'out_of_order', 'out_of_range', 'stale']);
    });
  });

  it('always answers an integer score in 0..100, lower with every reason', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('temperature', 'humidity', 'pressure', 'vibration'),
        fc.double({ min: -1e6, max: 1e6, noNaN: true }),
        fc.integer({ min: -10 * MINUTE, max: 5 * 60 * MINUTE }),
        fc.record({ count: fc.nat(100), mean: fc.double({ min: -1e3, max: 1e3, noNaN: true }), variance: fc.double({ min: 0, max: 1e3, noNaN: true }) }),
        (sensor_type, value, age, partial) => {
          const quality = assessQuality({ sensor_type, value, timestamp: ago(age) }, { ...partial, last_timestamp: ago(30 * MINUTE) }, NOW);
          expect(Number.isInteger(quality.score)).toBe(true);
          expect(quality.score).toBeGreaterThanOrEqual(0);
          expect(quality.score).toBeLessThanOrEqual(100);
          expect(quality.score === 100).toBe(quality.reasons.length === 0);
          expect(new Set(quality.reasons).size).toBe(quality.reasons.length);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('updateStats', () => {
  it('given no history, when one value arrives, then the mean is that value with no variance', () => {
    expect(updateStats(emptyStats, 21.5, NOW.toISOString())).toEqual({ count: 1, mean: 21.5, variance: 0, last_timestamp: NOW.toISOString() });
  });

  it('given one value, when a second arrives, then mean and (population) variance are the plain ones', () => {
    const stats = updateStats(updateStats(emptyStats, 10, ago(MINUTE)), 20, NOW.toISOString());
    expect(stats.count).toBe(2);
    expect(stats.mean).toBeCloseTo(15, 12);
    expect(stats.variance).toBeCloseTo(25, 12);
  });

  it('given a few samples (≤ 20), then the mean and variance equal the plain population mean and variance', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: -1000, max: 1000, noNaN: true }), { minLength: 1, maxLength: 20 }), (values) => {
        const stats = fold(values);
        const mean = values.reduce((a, b) => a + b, 0) / values.length;
        const variance = values.reduce((a, v) => a + (v - mean) ** 2, 0) / values.length;
        expect(stats.count).toBe(values.length);
        expect(Math.abs(stats.mean - mean)).toBeLessThanOrEqual(1e-9 * 1000);
        expect(Math.abs(stats.variance - variance)).toBeLessThanOrEqual(1e-6 * Math.max(1, variance));
      }),
      { numRuns: 200 },
    );
  });

  it('given a long steady history, when the level shifts, then the mean follows the new level', () => {
    const before = fold(Array.from({ length: 200 }, () => 0));
    const after = fold(Array.from({ length: 100 }, () => 10), before);
    expect(after.count).toBe(300);
    // A plain mean would be 3.3; a weighted one has moved almost all the way.
    expect(after.mean).toBeGreaterThan(9);
    expect(after.variance).toBeGreaterThanOrEqual(0);
  });

  it('given a newest time, when an older reading arrives, then last_timestamp stays the newest', () => {
    const stats = updateStats(updateStats(emptyStats, 1, NOW.toISOString()), 2, ago(HOUR_MS));
    expect(stats.last_timestamp).toBe(NOW.toISOString());
    expect(updateStats(stats, 3, new Date(NOW.getTime() + 1000).toISOString()).last_timestamp).toBe(new Date(NOW.getTime() + 1000).toISOString());
  });

  it('never answers a negative variance', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 80 }), (values) => {
        expect(fold(values).variance).toBeGreaterThanOrEqual(0);
      }),
      { numRuns: 200 },
    );
  });
});

