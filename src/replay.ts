import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, loadConfig } from './config.js';
import { systemClock } from './domain/clock.js';
import { DataDirInUse, SqliteEventLog, archiveDirOf, claimDataDir, openDatabase } from './eventlog/index.js';
import { ProjectionRunner, createProjections } from './projections/index.js';
import { rebuildAndCompare } from './projections/rebuild.js';
import { DATABASE_FILE, createLogger } from './server.js';

/** npm run replay: rebuilds every read model from the log beside the live ones and compares digests. */
async function replay(): Promise<number> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  // It brings the live read models up to the log first: that must not race a running server's runner.
  const release = claimDataDir(config.dataDir);
  const db = openDatabase(join(config.dataDir, DATABASE_FILE));
  const log = new SqliteEventLog(db, systemClock, archiveDirOf(config.dataDir));
  const runner = new ProjectionRunner(db, log, createProjections(config), logger);
  runner.start();
  await runner.caughtUp();
  await runner.stop();
  const freshFile = join(config.dataDir, `replay-${Date.now()}.db`);
  try {
    const result = await rebuildAndCompare({ db, log }, freshFile, createProjections(config), logger);
    for (const name of Object.keys(result.live)) {
      const same = result.live[name] === result.rebuilt[name];
      console.log(`${same ? 'same     ' : 'DIFFERENT'} ${name} ${result.rebuilt[name]}`);
    }
    console.log(`${log.headPosition()} events replayed; ${result.differing.length} read model(s) differ`);
    return result.differing.length === 0 ? 0 : 2;
  } finally {
    db.close();
    release();
    for (const suffix of ['', '-wal', '-shm']) rmSync(freshFile + suffix, { force: true });
  }
}

replay().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof ConfigError || error instanceof DataDirInUse ? error.message : error);
    process.exit(1);
  },
);
