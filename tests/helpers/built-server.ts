import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '../..');

function isStale(): boolean {
  const built = join(ROOT, 'dist/src/main.js');
  const builtAt = (() => {
    try {
      return statSync(built).mtimeMs;
    } catch {
      return 0;
    }
  })();
  const sources = readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' }).filter((file) => file.endsWith('.ts'));
  return sources.some((file) => statSync(join(ROOT, 'src', file)).mtimeMs > builtAt);
}

const BUILD_LOCK = join(ROOT, 'dist', '.build-lock');
const BUILD_LOCK_GIVE_UP_MS = 180_000;
const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * The build `npm start` runs first, done here only when a source is newer than it: a build takes
 * from 7 s to 40 s on a busy machine. Test files in other workers may want it at the same time:
 * one builds (holding a lock directory) while the others wait, so none starts a half-written build.
 */
export function buildWhenStale(): void {
  const since = Date.now();
  for (;;) {
    if (!isStale()) return;
    try {
      mkdirSync(join(ROOT, 'dist'), { recursive: true });
      mkdirSync(BUILD_LOCK);
      break;
    } catch {
      // Another worker builds; a lock older than the longest build was left by one that died.
      if (Date.now() - since > BUILD_LOCK_GIVE_UP_MS) rmSync(BUILD_LOCK, { recursive: true, force: true });
      sleepSync(200);
    }
  }
  try {
    if (isStale()) execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
  } finally {
    rmSync(BUILD_LOCK, { recursive: true, force: true });
  }
}

export type LogEntry = Record<string, unknown> & { msg?: string };

export interface BuiltServer {
  /** http://, or https:// when the server said it listens with TLS. */
  url: string;
  child: ChildProcess;
  /** Its JSON log lines so far. */
  logs: LogEntry[];
  /** Resolves with the first log entry (past or future) that matches. */
  waitForLog(match: (entry: LogEntry) => boolean, timeoutMs?: number): Promise<LogEntry>;
  /** SIGTERM, then waits for the exit; removes the data directory. */
  stop(): Promise<void>;
}

/** The built server (`node dist/src/main.js`, as `npm start` runs it) on a free port with a fresh data directory, once it says it listens. */
export async function startBuiltServer(env: Record<string, string> = {}): Promise<BuiltServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'iot-built-'));
  const child = spawn(process.execPath, ['dist/src/main.js'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, PORT: '0', MQTT_PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, BCRYPT_ROUNDS: '4', LOG_LEVEL: 'info', ...env },
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const logs: LogEntry[] = [];
  const waiters = new Set<() => void>();
  let pending = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines.filter((l) => l.startsWith('{'))) logs.push(JSON.parse(line) as LogEntry);
    for (const wake of [...waiters]) wake();
  });
  const waitForLog = (match: (entry: LogEntry) => boolean, timeoutMs = 10_000) =>
    new Promise<LogEntry>((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`no matching log line within ${timeoutMs} ms; last: ${JSON.stringify(logs.slice(-3))}`)), timeoutMs);
      const check = () => {
        const found = logs.find(match);
        if (found) finish(null, found);
      };
      const finish = (error: Error | null, found?: LogEntry) => {
        clearTimeout(timer);
        waiters.delete(check);
        if (error) reject(error);
        else resolve(found!);
      };
      waiters.add(check);
      void exited.then((code) => finish(new Error(`the server exited (${code}) before the log line`)));
      check();
    });
  const listening = await waitForLog((entry) => entry.msg === 'listening' && typeof entry.port === 'number', 60_000);
  return {
    url: `${listening.tls === true ? 'https' : 'http'}://127.0.0.1:${String(listening.port)}`,
    child,
    logs,
    waitForLog,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
