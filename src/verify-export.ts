import { readFileSync } from 'node:fs';
import { verifyExport } from './eventlog/export-verifier.js';

/**
 * npm run verify -- [--allow-gaps] FILE: checks an NDJSON export of the event log offline.
 * Exits 0 for a chain without gaps, 1 for a line that fails, 2 for missing positions (a deleted
 * line, or a user's export) unless --allow-gaps accepts events checked one by one.
 */
const args = process.argv.slice(2);
const allowGaps = args.includes('--allow-gaps');
const file = args.find((arg) => !arg.startsWith('--'));
if (!file) {
  console.error('usage: npm run verify -- [--allow-gaps] FILE.ndjson');
  process.exit(64);
}
const verdict = verifyExport(readFileSync(file, 'utf8').split('\n'));
if (!verdict.ok) {
  console.error(`FAILED at line ${verdict.line} (position ${verdict.position ?? '?'}): ${verdict.reason}; ${verdict.checked} events checked before it`);
  process.exit(1);
}
const head = `head ${verdict.head_hash ?? '(none)'}`;
if (verdict.redacted > 0) console.log(`${verdict.redacted} event(s) written before secrets were sealed had them redacted: their hashes are taken from the chain, their content is not checked`);
if (verdict.first_gap_after === null) {
  const from = verdict.complete_chain ? 'complete chain from position 1' : 'a chain without gaps from its first line (compare its previous_hash with the server)';
  console.log(`ok: ${verdict.checked} events, ${head}, ${from}; the head matches GET /api/events/verify only if nothing was changed`);
  process.exit(0);
}
const gap = `positions missing after ${verdict.first_gap_after}: each event matches its own hash, but the chain cannot be proven across a gap (an edited, re-hashed event passes alone)`;
if (allowGaps) {
  console.log(`ok with gaps: ${verdict.checked} events, ${head}; ${gap}`);
  process.exit(0);
}
console.error(`NOT PROVEN: ${verdict.checked} events, ${head}; ${gap}. A user's export always has gaps: pass --allow-gaps to accept events checked one by one.`);
process.exit(2);
