import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { configurationDiff } from '../../src/domain/configuration.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

/** The same JSON with every object's keys in reverse order, at every depth. */
function reorderKeys(value: Json): Json {
  if (Array.isArray(value)) return value.map(reorderKeys);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.keys(value).reverse().map((key) => [key, reorderKeys(value[key]!)]));
  return value;
}

/** The value at a dotted path (undefined when absent). */
function at(value: JsonObject, path: string): Json | undefined {
  let current: Json | undefined = value;
  for (const key of path.split('.')) {
    if (current === null || typeof current !== 'object' || Array.isArray(current) || !Object.hasOwn(current, key)) return undefined;
    current = current[key];
  }
  return current;
}

const safeKey = fc.string({ minLength: 1, maxLength: 6 }).filter((k) => !k.includes('.') && !['__proto__', 'constructor', 'prototype'].includes(k));
const jsonObject: fc.Arbitrary<JsonObject> = fc
  .letrec<{ value: Json; object: JsonObject }>((tie) => ({
    value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, fc.constant(null), fc.boolean(), fc.integer(), fc.string({ maxLength: 5 }), fc.array(tie('value'), { maxLength: 3 }), tie('object')),
    object: fc.dictionary(safeKey, tie('value'), { maxKeys: 4 }),
  }))
  .object;

describe('configurationDiff', () => {
  it('is empty when nothing was reported yet', () => {
    expect(configurationDiff({ interval: 60 }, null)).toEqual([]);
    expect(configurationDiff({}, null)).toEqual([]);
  });

  it('is empty for equal configurations, whatever the key order', () => {
    expect(configurationDiff({}, {})).toEqual([]);
    expect(configurationDiff({ a: 1, b: { c: [1, 2], d: null } }, { b: { d: null, c: [1, 2] }, a: 1 })).toEqual([]);
  });

  it('names a changed top-level value with both sides', () => {
    expect(configurationDiff({ interval: 60, unit: 'C' }, { interval: 30, unit: 'C' })).toEqual([{ path: 'interval', desired: 60, reported: 30 }]);
  });

  it('names nested differences by dotted path, sorted', () => {
    const desired = { network: { wifi: { ssid: 'lab', channel: 6 }, dhcp: true }, interval: 60, z: 1 };
    const reported = { network: { wifi: { ssid: 'guest', channel: 6 }, dhcp: false }, interval: 60, z: 2 };
    expect(configurationDiff(desired, reported)).toEqual([
      { path: 'network.dhcp', desired: true, reported: false },
      { path: 'network.wifi.ssid', desired: 'lab', reported: 'guest' },
      { path: 'z', desired: 1, reported: 2 },
    ]);
  });

  it('reports keys missing on either side with null for the absent side', () => {
    expect(configurationDiff({ a: 1, nested: { x: 1 } }, { b: 2, nested: { y: 'on' } })).toEqual([
      { path: 'a', desired: 1, reported: null },
      { path: 'b', desired: null, reported: 2 },
      { path: 'nested.x', desired: 1, reported: null },
      { path: 'nested.y', desired: null, reported: 'on' },
    ]);
  });

  it('compares arrays as whole values (order matters), and does not descend into them', () => {
    expect(configurationDiff({ list: [1, 2, 3] }, { list: [1, 2, 3] })).toEqual([]);
    expect(configurationDiff({ list: [1, 2, 3] }, { list: [3, 2, 1] })).toEqual([{ path: 'list', desired: [1, 2, 3], reported: [3, 2, 1] }]);
    expect(configurationDiff({ list: [{ a: 1 }] }, { list: [{ a: 2 }] })).toEqual([{ path: 'list', desired: [{ a: 1 }], reported: [{ a: 2 }] }]);
  });

  it('names the whole path when an object meets a scalar, an array or null', () => {
    expect(configurationDiff({ net: { dhcp: true } }, { net: 'dhcp' })).toEqual([{ path: 'net', desired: { dhcp: true }, reported: 'dhcp' }]);
    expect(configurationDiff({ net: { dhcp: true } }, { net: [true] })).toEqual([{ path: 'net', desired: { dhcp: true }, reported: [true] }]);
    expect(configurationDiff({ net: null }, { net: { dhcp: true } })).toEqual([{ path: 'net', desired: null, reported: { dhcp: true } }]);
  });

  it('tells values of different types apart (1 vs "1", 0 vs false, null vs absent)', () => {
    expect(configurationDiff({ a: 1, b: 0 }, { a: '1', b: false })).toEqual([
      { path: 'a', desired: 1, reported: '1' },
      { path: 'b', desired: 0, reported: false },
    ]);
    expect(configurationDiff({ a: null }, {}).map((d) => d.path)).toEqual(['a']);
  });

  it('an empty nested object on one side and a missing one on the other differ at that key', () => {
    expect(configurationDiff({ a: {} }, {})).toEqual([{ path: 'a', desired: {}, reported: null }]);
    expect(configurationDiff({ a: {} }, { a: {} })).toEqual([]);
  });

  it('property: a configuration never differs from itself or a copy', () => {
    fc.assert(
      fc.property(jsonObject, (config) => {
        expect(configurationDiff(config, config)).toEqual([]);
        expect(configurationDiff(config, JSON.parse(JSON.stringify(config)) as JsonObject)).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });

  it('property: every difference is real (the two sides differ at its path), paths are sorted, unique and none is a prefix of another', () => {
    fc.assert(
      fc.property(jsonObject, jsonObject, (desired, reported) => {
        const diff = configurationDiff(desired, reported);
        const paths = diff.map((d) => d.path);
        expect(new Set(paths).size).toBe(paths.length);
        for (const a of paths) for (const b of paths) if (a !== b) expect(b.startsWith(`${a}.`)).toBe(false);
        for (const d of diff) {
          const want = at(desired, d.path);
          const have = at(reported, d.path);
          expect(JSON.stringify(want)).not.toBe(JSON.stringify(have));
          expect(d.desired).toEqual(want ?? null);
          expect(d.reported).toEqual(have ?? null);
        }
        // Empty exactly when the two are equal as JSON (objects compared key by key).
        const sortedJson = (v: Json): string => JSON.stringify(v, (_k, x: unknown) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x));
        if (sortedJson(desired) === sortedJson(reported)) expect(diff).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it('property: a reported top-level key changed alone to a number shows up as exactly that path', () => {
    fc.assert(
      fc.property(jsonObject, safeKey, fc.integer(), (desired, key, value) => {
        fc.pre(JSON.stringify(desired[key]) !== JSON.stringify(value));
        const reported = { ...desired, [key]: value };
        expect(configurationDiff(desired, reported)).toEqual([{ path: key, desired: desired[key] ?? null, reported: value }]);
      }),
      { numRuns: 200 },
    );
  });

  it('property: key order inside top-level and nested objects never matters', () => {
    fc.assert(
      fc.property(jsonObject, (config) => {
        const withoutArrays = JSON.parse(JSON.stringify(config, (_k, v: unknown) => (Array.isArray(v) ? v.length : v))) as JsonObject;
        expect(configurationDiff(withoutArrays, reorderKeys(withoutArrays) as JsonObject)).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });

  it('property: key order inside objects within arrays does not matter either', () => {
    expect(configurationDiff({ peers: [{ host: 'a', port: 1 }] }, { peers: [{ port: 1, host: 'a' }] })).toEqual([]);
    fc.assert(
      fc.property(jsonObject, (config) => {
        expect(configurationDiff(config, reorderKeys(config) as JsonObject)).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });
});
