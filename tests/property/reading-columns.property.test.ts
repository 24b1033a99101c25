import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { eventSchemas, storedForm, upcast, type StoredReading } from '../../src/domain/events.js';
import { toColumns } from '../../src/domain/reading-columns.js';

/**
 * readings.recorded is stored with its readings as columns and read back as objects: for any
 * readings the catalogue accepts, what is read equals what was appended, in the same order,
 * through the JSON text the log keeps (and hashes).
 */

const MIN_MS = Date.parse('0000-01-01T00:00:00.000Z');
const MAX_MS = Date.parse('9999-12-31T23:59:59.999Z');
const timestamp = fc.integer({ min: MIN_MS, max: MAX_MS }).map((ms) => new Date(ms).toISOString());
// JSON has no -0, NaN or infinities; the log never kept them either.
const value = fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }).map((v) => (Object.is(v, -0) ? 0 : v)), fc.integer(), fc.constantFrom(21.37, 0.1, 1e21, 5e-324));
const text = fc.oneof(fc.constantFrom('temperature', 'humidity', 'C', '%', '', '\u0000', '0', '__proto__'), fc.string({ maxLength: 12 }));
const quality = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ quality_score: 100, quality_reasons: [] as string[] }) },
  { weight: 1, arbitrary: fc.record({ quality_score: fc.integer({ min: 0, max: 100 }), quality_reasons: fc.array(text, { maxLength: 3 }) }) },
);
const reading: fc.Arbitrary<StoredReading> = fc
  .record({ sensor_type: text, value, unit: fc.option(text, { nil: null }), timestamp, q: quality })
  .map(({ q, ...r }) => ({ ...r, ...q }));

/** What devices send: rows of the same sensors in order, each row at one time, often a second apart. */
const rows: fc.Arbitrary<StoredReading[]> = fc
  .record({
    sensors: fc.uniqueArray(fc.record({ sensor_type: text, unit: fc.option(text, { nil: null }) }), { minLength: 1, maxLength: 6, selector: (s) => `${s.sensor_type}|${s.unit}` }),
    start: fc.integer({ min: Date.parse('2020-01-01T00:00:00.000Z'), max: Date.parse('2030-01-01T00:00:00.000Z') }),
    steps: fc.array(fc.oneof(fc.constant(1000), fc.integer({ min: -5000, max: 5000 })), { minLength: 1, maxLength: 60 }),
    values: fc.array(value, { minLength: 360, maxLength: 360 }),
    q: quality,
  })
  .map(({ sensors, start, steps, values, q }) => {
    let t = start;
    return steps.flatMap((step, row) => {
      t += row === 0 ? 0 : step;
      const at = new Date(t).toISOString();
      return sensors.map((s, i) => ({ ...s, value: values[(row * sensors.length + i) % values.length]!, timestamp: at, ...(row === 0 && i === 0 ? q : { quality_score: 100, quality_reasons: [] }) }));
    });
  });

/** Appended, stored as the log stores it (JSON text), read back through the upcaster. */
function throughTheLog(readings: StoredReading[], device_status: Record<string, unknown> | null = null) {
  const data = eventSchemas['readings.recorded'].parse({ device_id: 'd1', readings, device_status });
  const text = JSON.stringify(storedForm({ type: 'readings.recorded', data }));
  return { data, text, read: upcast('readings.recorded', JSON.parse(text)) };
}

describe('readings.recorded stored as columns', () => {
  it('reads back exactly what was appended, for any readings (order, units, quality, times)', () => {
    fc.assert(
      fc.property(fc.array(reading, { minLength: 1, maxLength: 40 }), (readings) => {
        const { data, read } = throughTheLog(readings);
        expect(read).toStrictEqual(data);
      }),
      { numRuns: 300 },
    );
  });

  it('reads back rows of sensors (the compact row form), deflated or not, in the catalogue key order', () => {
    fc.assert(
      fc.property(rows, fc.option(fc.dictionary(text, fc.jsonValue()).map((status) => JSON.parse(JSON.stringify(status)) as Record<string, unknown>), { nil: null }), (readings, status) => {
        const { data, read } = throughTheLog(readings, status);
        expect(read).toStrictEqual(data);
        expect(JSON.stringify(read)).toBe(JSON.stringify(data));
      }),
      { numRuns: 150 },
    );
  });

  it('keeps device_id and device_status as plain fields, and is far shorter than objects', () => {
    const readings = Array.from({ length: 10 }, (_, row) =>
      ['temperature', 'humidity', 'pressure', 'co2', 'battery'].map((sensor_type, i) => ({
        sensor_type,
        value: Math.round((20 + i * 7 + row * 0.13) * 100) / 100,
        unit: 'u',
        timestamp: new Date(Date.parse('2026-03-01T12:00:00.000Z') + row * 1000).toISOString(),
        quality_score: 100,
        quality_reasons: [],
      })),
    ).flat();
    const { data, text } = throughTheLog(readings, { battery: 80 });
    const stored = JSON.parse(text) as Record<string, unknown>;
    expect(stored).toMatchObject({ device_id: 'd1', device_status: { battery: 80 } });
    expect(stored).not.toHaveProperty('readings');
    expect(text.length).toBeLessThan(JSON.stringify(data).length / 8);
  });

  it('deflates a large submission, and still reads it back', () => {
    const readings = Array.from({ length: 1000 }, (_, i) => ({
      sensor_type: `s${i % 7}`,
      value: Math.round(Math.sin(i / 50) * 10_000) / 100,
      unit: null,
      timestamp: new Date(Date.parse('2026-03-01T12:00:00.000Z') + i * 997).toISOString(),
      quality_score: i % 13 === 0 ? 70 : 100,
      quality_reasons: i % 13 === 0 ? ['out_of_range'] : [],
    }));
    const { data, text, read } = throughTheLog(readings);
    expect(JSON.parse(text)).toHaveProperty('deflated');
    expect(text.length).toBeLessThan(JSON.stringify(toColumns(readings)).length * 0.8);
    expect(read).toStrictEqual(data);
  });

  it('reads the older object forms as before', () => {
    const old = { device_id: 'd1', readings: [{ sensor_type: 't', value: 1, timestamp: '2026-03-01T12:00:00.000Z' }] };
    expect(upcast('readings.recorded', old)).toEqual({ device_id: 'd1', device_status: null, readings: [{ sensor_type: 't', value: 1, unit: null, timestamp: '2026-03-01T12:00:00.000Z', quality_score: 100, quality_reasons: [] }] });
  });
});
