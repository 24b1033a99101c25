import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyExport, type ExportedEvent } from '../../src/eventlog/export-verifier.js';
import { chainHash } from '../../src/eventlog/hash.js';
import { buildWhenStale } from '../helpers/built-server.js';
import { client, registerUser } from '../helpers/client.js';
import { createDevice, createGroup, uniqueName, type Data } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/**
 * The offline verifier (npm run verify) on real exports: GET /api/events/export as an admin
 * (the whole chain) and as a user (their events, each checked alone). Any edit of a line is
 * found at that line; reordering lines is found; the CLI exits 0 / 1.
 */

const ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'src', 'verify-export.js');

type Field = 'data' | 'type' | 'hash' | 'previous_hash' | 'position' | 'stream_id' | 'version' | 'metadata' | 'recorded_at';

/** One field of one exported event changed, keeping the line valid JSON. */
function edit(line: string, field: Field): string {
  const event = JSON.parse(line) as ExportedEvent;
  const flip = (hex: string) => (hex[0] === 'a' ? 'b' : 'a') + hex.slice(1);
  switch (field) {
    case 'data':
      return JSON.stringify({ ...event, data: { ...(event.data as object), injected: 1 } });
    case 'type':
      return JSON.stringify({ ...event, type: event.type === 'group.created' ? 'group.deleted' : 'group.created' });
    case 'hash':
      return JSON.stringify({ ...event, hash: flip(event.hash) });
    case 'previous_hash':
      return JSON.stringify({ ...event, previous_hash: flip(event.previous_hash) });
    case 'position':
      return JSON.stringify({ ...event, position: event.position + 1000 });
    case 'stream_id':
      return JSON.stringify({ ...event, stream_id: `${event.stream_id}x` });
    case 'version':
      return JSON.stringify({ ...event, version: event.version + 1 });
    case 'metadata':
      return JSON.stringify({ ...event, metadata: { ...(event.metadata as object), actor_id: 'mallory' } });
    case 'recorded_at':
      return JSON.stringify({ ...event, recorded_at: new Date(Date.parse(event.recorded_at) + 1).toISOString() });
  }
}

describe('offline export verification', () => {
  let server: TestServer;
  const api = client(() => server.url);
  let adminToken: string;
  let userToken: string;
  let full: string[];
  let headHash: string;
  let dir: string;
  let cli: { available: boolean; note: string };

  const exportOf = async (token: string, query = ''): Promise<string[]> => {
    const answer = await api.get<string>(`/api/events/export?format=ndjson${query}`, { token });
    expect(answer.status).toBe(200);
    return String(answer.body ?? '')
      .split('\n')
      .filter((l) => l !== '');
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'verify-export-'));
    // The CLI runs from dist: built when missing or older than the sources, once for all workers.
    try {
      buildWhenStale();
      cli = { available: existsSync(CLI), note: 'dist up to date' };
    } catch (error) {
      cli = { available: false, note: `the build failed: ${String(error)}` };
    }

    server = await startTestServer();
    adminToken = (await registerUser(api, uniqueName('vadmin'))).token;
    const user = await registerUser(api, uniqueName('vuser'));
    userToken = user.token;
    const other = await registerUser(api, uniqueName('vother'));
    const group = await createGroup(api, user.token);
    const device = await createDevice(api, user.token, { group_id: group.id, configuration: { interval: 5 } });
    await createDevice(api, other.token);
    expect((await api.post(`/api/devices/${device.id}/data`, { sensor_readings: [{ sensor_type: 'temperature', value: 21.5, unit: 'C' }] }, { token: device.credentials.auth_token })).status).toBe(201);
    expect((await api.put(`/api/devices/${device.id}`, { configuration: { interval: 10, label: 'Ünïcödé ✓ "quoted"' } }, { token: user.token })).status).toBe(200);
    expect((await api.post(`/api/devices/${device.id}/commands`, { command_type: 'reboot', parameters: { nested: { list: [1, null, 'x'] } } }, { token: user.token })).status).toBe(202);
    server.clock.advance(1234);
    expect((await api.post(`/api/devices/${device.id}/heartbeat`, { metrics: { cpu: 0.5 } }, { token: device.credentials.auth_token })).status).toBe(200);

    full = await exportOf(adminToken);
    const verified = await api.get<Data<{ ok: boolean; head_hash: string; checked: number }>>('/api/events/verify', { token: adminToken });
    expect(verified.body.data.ok).toBe(true);
    expect(verified.body.data.checked).toBe(full.length);
    headHash = verified.body.data.head_hash;
  }, 150_000);
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('an untouched admin export verifies as a complete chain ending at the head hash', () => {
    expect(full.length).toBeGreaterThan(10);
    expect(verifyExport(full)).toEqual({ ok: true, checked: full.length, head_hash: headHash, complete_chain: true, first_gap_after: null, redacted: 0 });
    // Blank lines (a trailing newline, CRLF-free padding) are skipped.
    expect(verifyExport(['', ...full, '', ''])).toMatchObject({ ok: true, checked: full.length });
  });

  it("a user's export verifies event by event (ok, not a complete chain)", async () => {
    const mine = await exportOf(userToken);
    expect(mine.length).toBeGreaterThan(3);
    expect(mine.length).toBeLessThan(full.length);
    expect(verifyExport(mine)).toMatchObject({ ok: true, checked: mine.length, complete_chain: false });
    const index = 2;
    const tampered = [...mine];
    tampered[index] = edit(tampered[index]!, 'data');
    expect(verifyExport(tampered)).toMatchObject({ ok: false, line: index + 1 });
  });

  it('readings read in today\'s shape, the stored columns beside them; an edit of either is found', () => {
    const index = full.findIndex((line) => (JSON.parse(line) as ExportedEvent).type === 'readings.recorded');
    const event = JSON.parse(full[index]!) as ExportedEvent & { data: { device_id: string; readings: Array<{ value: number }> } };
    expect(event.data.readings).toEqual([{ sensor_type: 'temperature', value: 21.5, unit: 'C', timestamp: expect.any(String), quality_score: 100, quality_reasons: [] }]);
    expect(event.stored_data).toMatchObject({ device_id: event.data.device_id, columns: { sensors: [['temperature', 'C']], values: [215], scale: 1 } });
    const lines = (changed: ExportedEvent) => full.map((line, i) => (i === index ? JSON.stringify(changed) : line));
    const shown = { ...event, data: { ...event.data, readings: [{ ...event.data.readings[0]!, value: 99 }] } };
    expect(verifyExport(lines(shown))).toMatchObject({ ok: false, line: index + 1, reason: 'data does not match the stored form the hash covers' });
    const stored = event.stored_data as { columns: { values: number[] } };
    const restored = { ...event, stored_data: { ...stored, columns: { ...stored.columns, values: [990] } }, data: shown.data };
    expect(verifyExport(lines(restored))).toMatchObject({ ok: false, line: index + 1, reason: 'hash does not match the event' });
  });

  it('a range export (after_position) verifies, not as a complete chain', async () => {
    const tail = await exportOf(adminToken, '&after_position=5');
    expect(tail).toEqual(full.slice(5));
    expect(verifyExport(tail)).toMatchObject({ ok: true, checked: full.length - 5, head_hash: headHash, complete_chain: false });
    const head = await exportOf(adminToken, '&before_position=6');
    expect(head).toEqual(full.slice(0, 5));
    expect(verifyExport(head)).toMatchObject({ ok: true, checked: 5, complete_chain: true });
  });

  it('editing any field of any line is found at that line (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: full.length - 1 }),
        fc.constantFrom<Field>('data', 'type', 'hash', 'previous_hash', 'position', 'stream_id', 'version', 'metadata', 'recorded_at'),
        (index, field) => {
          const lines = [...full];
          lines[index] = edit(lines[index]!, field);
          const verdict = verifyExport(lines);
          expect(verdict.ok).toBe(false);
          if (!verdict.ok) {
            expect(verdict.line).toBe(index + 1);
            expect(verdict.checked).toBe(index);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('reordering lines is found (fast-check)', () => {
    fc.assert(
      fc.property(
        fc
          .tuple(fc.integer({ min: 0, max: full.length - 1 }), fc.integer({ min: 0, max: full.length - 1 }))
          .filter(([a, b]) => a !== b)
          .map(([a, b]) => [Math.min(a, b), Math.max(a, b)] as const),
        ([i, j]) => {
          const lines = [...full];
          [lines[i], lines[j]] = [lines[j]!, lines[i]!];
          const verdict = verifyExport(lines);
          expect(verdict.ok).toBe(false);
          if (!verdict.ok) {
            expect(verdict.line).toBeGreaterThan(i + 1);
            expect(verdict.line).toBeLessThanOrEqual(j + 1);
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it('a line that is not JSON is refused at that line', () => {
    const lines = [...full];
    lines[3] = lines[3]!.slice(0, -2);
    expect(verifyExport(lines)).toMatchObject({ ok: false, line: 4, position: null, reason: 'not JSON' });
  });

  it('a deleted line breaks the complete chain; a cut end shows as a different head hash', () => {
    for (const index of [0, 1, Math.floor(full.length / 2)]) {
      const lines = full.filter((_, i) => i !== index);
      expect(verifyExport(lines)).toMatchObject({ complete_chain: false, first_gap_after: index === 0 ? null : index });
    }
    const cut = verifyExport(full.slice(0, -1));
    expect(cut.ok && cut.head_hash).not.toBe(headHash);
    // An event moved to another position (its line re-hashed from a forged previous_hash) is still caught by the chain.
    const moved = [...full];
    const event = JSON.parse(moved[4]!) as ExportedEvent;
    moved[4] = JSON.stringify({ ...event, previous_hash: '0'.repeat(64) });
    expect(verifyExport(moved)).toMatchObject({ ok: false, line: 5 });
  });

  it('an empty export verifies as nothing checked', () => {
    expect(verifyExport([])).toEqual({ ok: true, checked: 0, head_hash: null, complete_chain: true, first_gap_after: null, redacted: 0 });
  });

  it('the CLI (node dist/src/verify-export.js FILE) exits 0 on an untouched export, 1 on a tampered line, 2 on missing positions unless --allow-gaps', (context) => {
    if (!cli.available) context.skip(`dist/src/verify-export.js unavailable (${cli.note})`);
    const good = join(dir, 'good.ndjson');
    writeFileSync(good, `${full.join('\n')}\n`);
    const ok = spawnSync(process.execPath, [CLI, good], { encoding: 'utf8' });
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`ok: ${full.length} events, head ${headHash}`);
    expect(ok.stdout).toContain('complete chain');

    const bad = join(dir, 'bad.ndjson');
    const lines = [...full];
    lines[6] = edit(lines[6]!, 'data');
    writeFileSync(bad, `${lines.join('\n')}\n`);
    const failed = spawnSync(process.execPath, [CLI, bad], { encoding: 'utf8' });
    expect(failed.status).toBe(1);
    expect(failed.stderr).toContain('FAILED at line 7');

    // An edited event re-hashed from its own previous_hash, the next line deleted so no link
    // breaks: every line matches its hash and the head is unchanged. Only the gap shows.
    const forged = [...full];
    const victim = JSON.parse(forged[6]!) as ExportedEvent;
    const rewritten = { ...victim, metadata: { ...(victim.metadata as object), actor_id: 'mallory' } };
    const rehashed = { ...rewritten, hash: chainHash(rewritten.previous_hash, { ...rewritten, data: JSON.stringify(rewritten.data), metadata: JSON.stringify(rewritten.metadata) }) };
    forged.splice(6, 2, JSON.stringify(rehashed));
    expect(verifyExport(forged)).toMatchObject({ ok: true, head_hash: headHash, first_gap_after: victim.position });
    const forgedFile = join(dir, 'forged.ndjson');
    writeFileSync(forgedFile, `${forged.join('\n')}\n`);
    const refused = spawnSync(process.execPath, [CLI, forgedFile], { encoding: 'utf8' });
    expect(refused.status, refused.stdout).toBe(2);
    expect(refused.stderr).toContain(`NOT PROVEN`);
    expect(refused.stderr).toContain(`positions missing after ${victim.position}`);
    const allowed = spawnSync(process.execPath, [CLI, '--allow-gaps', forgedFile], { encoding: 'utf8' });
    expect(allowed.status, allowed.stderr).toBe(0);
    expect(allowed.stdout).toContain('ok with gaps');

    const usage = spawnSync(process.execPath, [CLI], { encoding: 'utf8' });
    expect(usage.status).not.toBe(0);
    expect(usage.status).not.toBe(1);
  });

  /** The CLI without blocking this process, which serves the server it asks. */
  const cliRun = (args: string[], env: Record<string, string> = {}) =>
    new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env } }, (error, stdout, stderr) => resolve({ status: error ? Number(error.code) : 0, stdout, stderr }));
    });

  it('--server compares an export with the running server: the head for an admin, every exported event for anyone, and catches a forgery --allow-gaps lets through', async (context) => {
    if (!cli.available) context.skip(`dist/src/verify-export.js unavailable (${cli.note})`);
    const adminFile = join(dir, 'admin.ndjson');
    writeFileSync(adminFile, `${(await exportOf(adminToken)).join('\n')}\n`);
    const admin = await cliRun(['--server', server.url, '--token', adminToken, adminFile]);
    expect(admin.status, admin.stderr).toBe(0);
    expect(admin.stdout).toContain("the export ends at the server's head, with the same hash");

    const userFile = join(dir, 'user.ndjson');
    const mine = await exportOf(userToken);
    writeFileSync(userFile, `${mine.join('\n')}\n`);
    // The token from the environment, as an auditor's shell would hold it.
    const user = await cliRun(['--allow-gaps', '--server', server.url, userFile], { TOKEN: userToken });
    expect(user.status, user.stderr).toBe(0);
    expect(user.stdout).toContain(`the server holds the same ${mine.length} events`);
    expect(user.stdout).toContain('only by an admin');

    // Re-hashed from its own previous_hash, the edit passes offline with --allow-gaps; the server's event at that position tells.
    const forged = [...mine];
    const at = forged.findIndex((line) => (JSON.parse(line) as ExportedEvent).type === 'device.updated');
    const victim = JSON.parse(forged[at]!) as ExportedEvent;
    const rewritten = { ...victim, metadata: { ...(victim.metadata as object), actor_id: 'mallory' } };
    // The next line goes too, as a forger would drop it: its link to the edited event would break.
    forged.splice(at, 2, JSON.stringify({ ...rewritten, hash: chainHash(rewritten.previous_hash, { ...rewritten, data: JSON.stringify(rewritten.data), metadata: JSON.stringify(rewritten.metadata) }) }));
    const forgedFile = join(dir, 'forged-user.ndjson');
    writeFileSync(forgedFile, `${forged.join('\n')}\n`);
    const offline = await cliRun(['--allow-gaps', forgedFile]);
    expect(offline.status, offline.stderr).toBe(0);
    const caught = await cliRun(['--allow-gaps', '--server', server.url, '--token', userToken, forgedFile]);
    expect(caught.status).toBe(3);
    expect(caught.stderr).toContain(`DIFFERENT: the server's event at position ${victim.position}`);

    // A token the server refuses is no proof either; no token at all is a usage error.
    const refused = await cliRun(['--allow-gaps', '--server', server.url, '--token', adminToken.slice(0, -2) + 'xx', userFile]);
    expect(refused.status).toBe(3);
    expect(refused.stderr).toContain('the server answered 401');
    expect((await cliRun(['--server', server.url, userFile], { TOKEN: '' })).status).toBe(64);
  });
});
