import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, buildWhenStale, startBuiltServer, type BuiltServer } from '../helpers/built-server.js';

const run = promisify(execFile);
const SCRIPT = join(ROOT, 'docs/walkthrough.sh');

/** The README's walk-through, run as a newcomer would: against the built server, twice in a row. */
describe('the walk-through (docs/walkthrough.sh)', () => {
  let server: BuiltServer;

  beforeAll(async () => {
    buildWhenStale();
    server = await startBuiltServer();
  }, 180_000);
  afterAll(() => server?.stop());

  const walk = (env: Record<string, string> = {}) => run('bash', [SCRIPT], { cwd: ROOT, env: { ...process.env, URL: server.url, ...env }, timeout: 60_000 });

  it('runs to the end, then again on the same server (log in instead of register, the old device replaced)', async () => {
    const first = await walk();
    expect(first.stdout).toContain('logged in as alice (admin)');
    expect(first.stdout).toContain('"status": "executed"');
    expect(first.stdout).toMatch(/walk-through complete\n$/);
    const second = await walk();
    expect(second.stdout).toMatch(/walk-through complete\n$/);
    // The first run's device was removed, so the second still finds exactly its own two readings.
    expect(second.stdout).toContain('{"sensor_type":"pressure","value":1.9,"unit":"bar","quality_score":100}');
  }, 120_000);

  it('stops at the first failing step with its answer on stderr and a non-zero exit', async () => {
    const failed = await walk({ PASSWORD: 'not the password' }).then(
      () => null,
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
    expect(failed).not.toBeNull();
    expect(failed!.code).toBe(22);
    expect(failed!.stderr).toContain('"code":"already_exists"');
    expect(failed!.stdout).not.toContain('walk-through complete');
  }, 60_000);

  const readmeBlock = (): string | undefined => /## Walk-through[\s\S]*?```sh\n([\s\S]*?)```/.exec(readFileSync(join(ROOT, 'README.md'), 'utf8'))?.[1];

  it('is what the README shows: every line of its walk-through block is in the script', () => {
    const block = readmeBlock();
    expect(block, 'README has a "## Walk-through" section with a sh block').toBeDefined();
    const script = readFileSync(SCRIPT, 'utf8');
    const lines = block!.split('\n').filter((line) => line.trim() !== '' && !line.trim().startsWith('#'));
    expect(lines.length).toBeGreaterThan(10);
    for (const line of lines) expect(script, `README line not in the script: ${line}`).toContain(line);
  });

  it('runs as the README shows it, pasted alone, twice', async () => {
    const paste = () => run('bash', ['-c', readmeBlock()!], { cwd: ROOT, env: { ...process.env, URL: server.url, USERNAME: 'bob' }, timeout: 60_000 });
    expect((await paste()).stdout).toContain('"status": "executed"');
    expect((await paste()).stdout).toContain('"name": "boiler overheat"');
  }, 120_000);
});
