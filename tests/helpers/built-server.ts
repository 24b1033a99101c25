import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '../..');

/** The build `npm start` runs first, done here only when a source is newer than it: a build takes from 7 s to 40 s on a busy machine. */
export function buildWhenStale(): void {
  const built = join(ROOT, 'dist/src/main.js');
  const builtAt = (() => {
    try {
      return statSync(built).mtimeMs;
    } catch {
      return 0;
    }
  })();
  const sources = readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' }).filter((file) => file.endsWith('.ts'));
  if (sources.some((file) => statSync(join(ROOT, 'src', file)).mtimeMs > builtAt)) execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
}

export type LogEntry = Record<string, unknown> & { msg?: string };

export interface BuiltServer {
  child: ChildProcess;
  logs: LogEntry[];
  /** Resolves with the first log entry (past or future) that matches. */
  waitForLog(match: (entry: LogEntry) => boolean, timeoutMs?: number): Promise<LogEntry>;
  exited: Promise<number | null>;
}

/** The built server (`node dist/src/main.js`) with `env`, its JSON log lines collected as they come. */
export function spawnBuilt(env: Record<string, string>): BuiltServer {
  const child = spawn(process.execPath, [join(ROOT, 'dist/src/main.js')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
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
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
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
  return { child, logs, waitForLog, exited };
}
