import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { SqliteDatabase } from './database.js';

/**
 * WAL pages the writing connection lets pile up before it checkpoints on its own while the
 * background checkpointer runs: a safety net for when it falls behind, so the WAL stays bounded
 * (256 MiB). Not lower: in a rebuild the checkpointer trails by a few batches, and at 64 MiB
 * every fourth commit copied the WAL back itself, on the event loop (a sixth of a rebuild's
 * commit time).
 */
export const WRITER_CHECKPOINT_PAGES = 65_536;
/** Once the checkpointer is gone the writer checkpoints alone, and sooner: each copy stays short. */
export const WRITER_ALONE_CHECKPOINT_PAGES = 16_384;
/** Past this, a WAL that was checkpointed and reset is truncated back: disk is returned. */
const WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;
const DEFAULT_EVERY_MS = 100;

export interface CheckpointResult {
  busy: number;
  log: number;
  checkpointed: number;
}

export interface Checkpointer {
  /** Runs a checkpoint at once (besides the periodic ones) and answers what SQLite reported. */
  checkpointNow(): Promise<CheckpointResult>;
  /** Stops the worker and closes its connection; the writer's own safety net stays. */
  stop(): Promise<void>;
}

/**
 * WAL frames past which the worker starts the WAL over (RESTART: it waits for the commit under
 * way and holds the next one back while it copies the few frames PASSIVE left). A writer that
 * commits many times a second never finds the WAL wholly copied back, so SQLite never starts it
 * over on its own: it grew past the size limit, and the commit that finally did start it over
 * cut the file back on the event loop (100-150 ms on a shared disk, every few seconds at 1,000
 * readings/s).
 */
const RESTART_FRAMES = 4_096;

/*
 * CommonJS evaluated in the worker: a worker file of its own would not exist when the sources run
 * untranspiled (the tests), and this is all it does. PASSIVE never waits for the writer.
 */
const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
const checkpoint = () => {
  const result = db.pragma('wal_checkpoint(PASSIVE)')[0];
  if (result.log <= workerData.restartFrames) return result;
  return db.pragma('wal_checkpoint(RESTART)')[0];
};
const timer = setInterval(() => {
  try { checkpoint(); } catch (error) { parentPort.postMessage({ background: String(error) }); }
}, workerData.everyMs);
parentPort.on('message', (message) => {
  if (message === 'checkpoint') {
    try { parentPort.postMessage({ result: checkpoint() }); } catch (error) { parentPort.postMessage({ error: String(error) }); }
    return;
  }
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

/**
 * Moves WAL checkpoints off the event loop. SQLite otherwise checkpoints inside whichever commit
 * crosses the threshold: that request copies megabytes back into the database file and waits for
 * an fsync, which costs ingestion about a tenth of its throughput and shows in the tail latency.
 * A second connection in a worker thread checkpoints every `everyMs` instead, on the other core.
 * Durability is unchanged: a committed transaction is in the WAL either way.
 */
export function startCheckpointer(db: SqliteDatabase, options: { everyMs?: number; restartFrames?: number; onError?: (message: string) => void } = {}): Checkpointer {
  if (db.memory) return { checkpointNow: () => Promise.resolve({ busy: 0, log: 0, checkpointed: 0 }), stop: () => Promise.resolve() };
  db.pragma(`wal_autocheckpoint = ${WRITER_CHECKPOINT_PAGES}`);
  db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
  const worker = new Worker(workerSource, {
    eval: true,
    workerData: { driver: createRequire(import.meta.url).resolve('better-sqlite3'), file: db.name, everyMs: options.everyMs ?? DEFAULT_EVERY_MS, restartFrames: options.restartFrames ?? RESTART_FRAMES },
  });
  // The event loop may exit while the worker runs: it only serves the writer.
  worker.unref();
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  const waiting: Array<{ resolve: (result: CheckpointResult) => void; reject: (error: Error) => void }> = [];
  let stopping = false;
  const answer = (settle: (asked: (typeof waiting)[number]) => void) => {
    const asked = waiting.shift();
    if (waiting.length === 0 && !stopping) worker.unref();
    if (asked) settle(asked);
  };
  worker.on('message', (message: { result?: CheckpointResult; error?: string; background?: string }) => {
    const { result, error, background } = message;
    if (background !== undefined) options.onError?.(background);
    else if (result) answer((asked) => asked.resolve(result));
    else answer((asked) => asked.reject(new Error(error ?? 'checkpoint failed')));
  });
  // A worker that dies (it cannot open the file, say) leaves the writer's own checkpoints in charge.
  worker.on('error', (error) => options.onError?.(error.message));
  let running = true;
  void exited.then(() => {
    running = false;
    if (db.open) db.pragma(`wal_autocheckpoint = ${WRITER_ALONE_CHECKPOINT_PAGES}`);
    waiting.splice(0).forEach((w) => w.reject(new Error('the checkpointer stopped')));
  });
  return {
    checkpointNow: () =>
      new Promise((resolve, reject) => {
        if (!running) return reject(new Error('the checkpointer stopped'));
        // Held while an answer is awaited, as while it stops.
        worker.ref();
        waiting.push({ resolve, reject });
        worker.postMessage('checkpoint');
      }),
    stop: async () => {
      // Held while it closes: otherwise a process with nothing else to do exits before it has.
      stopping = true;
      worker.ref();
      worker.postMessage('stop');
      await exited;
    },
  };
}
