import { readFileSync } from 'node:fs';
import { verifyExport } from './eventlog/export-verifier.js';

/** npm run verify -- FILE: checks an NDJSON export of the event log offline. */
const file = process.argv[2];
if (!file) {
  console.error('usage: npm run verify -- FILE.ndjson');
  process.exit(64);
}
const verdict = verifyExport(readFileSync(file, 'utf8').split('\n'));
if (verdict.ok) {
  console.log(`ok: ${verdict.checked} events, head ${verdict.head_hash ?? '(none)'}${verdict.complete_chain ? ', complete chain from position 1' : ', with gaps (each event checked alone)'}`);
  process.exit(0);
}
console.error(`FAILED at line ${verdict.line} (position ${verdict.position ?? '?'}): ${verdict.reason}; ${verdict.checked} events checked before it`);
process.exit(1);
