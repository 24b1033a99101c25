import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock } from '../domain/clock.js';
import { DATABASE_FILE, SqliteEventLog, archiveDirOf, claimDataDir, openDatabase } from '../eventlog/index.js';
import type { VerifyResult } from '../eventlog/index.js';

/**
 * The log of a stopped server's data directory, its archived segments and live database checked
 * as one chain. The directory is claimed as a server would claim it: opening the log removes
 * what a crashed cut left, which must not race a running server's cut.
 */
export async function verifyDataDir(dataDir: string): Promise<{ verdict: VerifyResult; lines: string[] }> {
  const file = join(dataDir, DATABASE_FILE);
  if (!existsSync(file)) return { verdict: { ok: false, checked: 0, first_bad_position: 1, reason: `no database at ${file}` }, lines: [`no database at ${file}`] };
  const release = claimDataDir(dataDir);
  const db = openDatabase(file);
  const log = new SqliteEventLog(db, systemClock, archiveDirOf(dataDir));
  try {
    const verdict = await log.verify();
    return { verdict, lines: describe(verdict, log.archive.entries().length, archiveDirOf(dataDir)) };
  } finally {
    log.close();
    db.close();
    release();
  }
}

function describe(verdict: VerifyResult, segments: number, archiveDir: string): string[] {
  if (!verdict.ok) return [`FAILED at position ${verdict.first_bad_position}: ${verdict.reason}; ${verdict.checked} events checked before it`];
  const lines = [`ok: ${verdict.checked} events (${segments} archived segment(s) and the live log as one chain), head ${verdict.head_hash}`];
  for (const missing of verdict.missing_segments ?? []) {
    lines.push(`${missing.deleted ? 'deleted for good' : `MISSING from ${archiveDir}`}: ${missing.segment} (positions ${missing.first_position}-${missing.last_position})`);
  }
  if (verdict.proven_from !== undefined) lines.push(`the chain is proven whole from position ${verdict.proven_from}; live events before it are checked against the hashes their cuts recorded`);
  return lines;
}
