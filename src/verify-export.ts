import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { verifyExport } from './eventlog/export-verifier.js';
import { compareWithServer, type ExportedHash } from './tools/verify-against-server.js';

/**
 * npm run verify -- [--allow-gaps] [--server URL [--token T]] FILE: checks an NDJSON export of
 * the event log offline. Exits 0 for a chain without gaps, 1 for a line that fails, 2 for
 * missing positions (a deleted line, or a user's export) unless --allow-gaps accepts events
 * checked one by one, 3 when the export differs from what the server named by --server holds.
 * With --data-dir, checks a stopped server's log itself: 0 verified, 1 broken, 2 a segment missing
 * from the archive directory (the chain is proven only from after it).
 */
const USAGE = 'usage: npm run verify -- [--allow-gaps] [--server URL [--token TOKEN]] FILE.ndjson   (TOKEN may also come from the environment)\n   or: npm run verify -- --data-dir DIR   (a stopped server\'s data directory: archived segments and live log as one chain)';
const { values, positionals } = (() => {
  try {
    return parseArgs({ options: { 'allow-gaps': { type: 'boolean' }, server: { type: 'string' }, token: { type: 'string' }, 'data-dir': { type: 'string' } }, allowPositionals: true });
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
    process.exit(64);
  }
})();
const dataDir = values['data-dir'];
if (dataDir !== undefined) {
  // Loaded only for this: checking an export stays light (no SQLite).
  const { verifyDataDir } = await import('./tools/verify-data-dir.js');
  const { verdict, lines } = await verifyDataDir(dataDir).catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(1);
  });
  for (const line of lines) (verdict.ok ? console.log : console.error)(line);
  process.exit(verdict.ok ? (verdict.missing_segments?.some((s) => !s.deleted) ? 2 : 0) : 1);
}
const allowGaps = values['allow-gaps'] === true;
const file = positionals[0];
const token = values.token ?? process.env.TOKEN;
if (!file || (values.server !== undefined && !token)) {
  console.error(USAGE);
  process.exit(64);
}
const lines = readFileSync(file, 'utf8').split('\n');
const verdict = verifyExport(lines);
if (!verdict.ok) {
  console.error(`FAILED at line ${verdict.line} (position ${verdict.position ?? '?'}): ${verdict.reason}; ${verdict.checked} events checked before it`);
  process.exit(1);
}
const head = `head ${verdict.head_hash ?? '(none)'}`;
if (verdict.redacted > 0) console.log(`${verdict.redacted} event(s) written before secrets were sealed had them redacted: their hashes are taken from the chain, their content is not checked`);
const gap = `positions missing after ${verdict.first_gap_after}: each event matches its own hash, but the chain cannot be proven across a gap (an edited, re-hashed event passes alone)`;
if (verdict.first_gap_after === null) {
  const from = verdict.complete_chain ? 'complete chain from position 1' : 'a chain without gaps from its first line (compare its previous_hash with the server)';
  console.log(`ok: ${verdict.checked} events, ${head}, ${from}; the head matches GET /api/events/verify only if nothing was changed`);
} else if (allowGaps) {
  console.log(`ok with gaps: ${verdict.checked} events, ${head}; ${gap}`);
} else {
  console.error(`NOT PROVEN: ${verdict.checked} events, ${head}; ${gap}. A user's export always has gaps: pass --allow-gaps to accept events checked one by one.`);
  process.exit(2);
}
if (values.server !== undefined && token) {
  const exported = lines.filter((line) => line.trim() !== '').map((line): ExportedHash => {
    const { position, hash } = JSON.parse(line) as ExportedHash;
    return { position, hash };
  });
  const last = exported.at(-1);
  const comparison = await compareWithServer(values.server, token, exported, last ?? null).catch((error: unknown) => ({ ok: false, lines: [`the server could not be asked: ${error instanceof Error ? error.message : String(error)}`] }));
  for (const line of comparison.lines) (comparison.ok ? console.log : console.error)(line);
  process.exit(comparison.ok ? 0 : 3);
}
process.exit(0);
