import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');
/** The repository's files: git's list, or, outside a git checkout, the tree less what is built or installed. */
function repositoryFiles(): string[] {
  try {
    return execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n');
  } catch {
    return readdirSync(ROOT, { recursive: true, encoding: 'utf8' }).filter((file) => !/^(node_modules|dist|data|\.git)(\/|$)/.test(file));
  }
}
const tracked = repositoryFiles().filter((file) => file !== '' && existsSync(join(ROOT, file)) && statSync(join(ROOT, file)).isFile());
const markdown = tracked.filter((file) => file.endsWith('.md'));
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');

/** The anchor GitHub gives a heading. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');

const anchorsOf = (file: string): Set<string> => new Set([...read(file).matchAll(/^#{1,6}\s+(.+)$/gm)].map(([, heading]) => slug(heading!)));

describe('the docs', () => {
  it('point nowhere outside the repository', () => {
    const outside = /\.\.\/shared|\b(API|DESIGN|STYLE)\.md\b/;
    const offenders = tracked.filter((file) => /\.(ts|md|json|sh)$/.test(file) && file !== 'tests/unit/docs.test.ts' && outside.test(read(file)));
    expect(offenders).toEqual([]);
  });

  it('link only to files and headings that exist', () => {
    const broken: string[] = [];
    for (const file of markdown) {
      // Links outside code blocks: [text](target)
      const text = read(file).replace(/```[\s\S]*?```/g, '');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/i.test(target!)) continue;
        const [path, anchor] = target!.split('#') as [string, string | undefined];
        const resolved = path === '' ? file : relative(ROOT, join(ROOT, dirname(file), path));
        if (!existsSync(join(ROOT, resolved))) broken.push(`${file}: ${target} (no ${resolved})`);
        else if (anchor && resolved.endsWith('.md') && !anchorsOf(resolved).has(anchor)) broken.push(`${file}: ${target} (no heading #${anchor})`);
      }
    }
    expect(broken).toEqual([]);
  });

  it("document every environment variable the server reads in the README's configuration table", () => {
    const config = read('src/config.ts');
    const schema = /const envSchema = z\.object\(\{([\s\S]*?)\n\}\)/.exec(config)?.[1] ?? '';
    const variables = [...schema.matchAll(/^\s+([A-Z][A-Z0-9_]+):/gm)].map(([, name]) => name!);
    expect(variables.length).toBeGreaterThan(10);
    // A row may name several that go together (`TLS_CERT_FILE`, `TLS_KEY_FILE`).
    const rows = read('README.md').split('\n').filter((line) => line.startsWith('| `'));
    expect(variables.filter((name) => !rows.some((row) => row.split('|')[1]!.includes(`\`${name}\``)))).toEqual([]);
  });
});
