import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assessQuality, emptyStats } from '../../src/domain/quality.js';
import { initialState, obey, step, type Random } from '../../src/tools/simulator/sensors.js';

/** A seeded generator (mulberry32), so a failing case can be replayed. */
const seeded = (seed: number): Random => {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
};

const NOW = new Date('2026-03-01T12:00:00.000Z');

describe('simulated sensors', () => {
  it('stay plausible: two hours of readings at any rate are never scored out of range', () => {
    fc.assert(
      fc.property(fc.integer(), fc.constantFrom(0.5, 1, 5), (seed, seconds) => {
        const random = seeded(seed);
        const state = initialState(random, seed % 2 === 0);
        const faults: string[] = [];
        for (let t = 0; t < 7200; t += seconds) {
          for (const reading of step(state, random, seconds)) {
            const { reasons } = assessQuality({ ...reading, timestamp: NOW.toISOString() }, emptyStats, NOW);
            if (!Number.isFinite(reading.value) || reasons.includes('out_of_range')) faults.push(`${reading.sensor_type} ${reading.value} at ${t} s`);
          }
        }
        expect(faults).toEqual([]);
      }),
      { numRuns: 20 },
    );
  });

  it('overheat past 25 °C when told to, and cool down once a fan_on command arrives', () => {
    const random = seeded(7);
    const state = initialState(random, true);
    const temperature = () => step(state, random, 1).find((r) => r.sensor_type === 'temperature')!.value;
    let hottest = 0;
    for (let t = 0; t < 30; t++) hottest = Math.max(hottest, temperature());
    expect(hottest).toBeGreaterThan(25);
    expect(obey(state, 'fan_on', {})).toMatchObject({ done: 'fan_on' });
    let last = 0;
    for (let t = 0; t < 60; t++) last = temperature();
    expect(last).toBeLessThan(23);
  });

  it('follow a set_target command, within sane bounds', () => {
    const random = seeded(3);
    const state = initialState(random);
    obey(state, 'set_target', { celsius: 30 });
    expect(state.target).toBe(30);
    obey(state, 'set_target', { celsius: 1e9 });
    expect(state.target).toBe(35);
    obey(state, 'set_target', { celsius: 'hot' });
    expect(state.target).toBe(35);
  });
});
