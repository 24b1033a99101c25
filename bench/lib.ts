/**
 * Benchmark helpers. Every figure is printed beside this machine's own limit for the same
 * work, measured in the same run, as a ratio: absolute numbers drift from machine to machine
 * and run to run, the ratio to a baseline measured alongside is what a target can speak to.
 *
 * A missed target is information, not a crash: results are collected and summarised, and the
 * runner exits 0 either way.
 */
import os from 'node:os';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

// ---------------------------------------------------------------------------------------------
// Timing

/**
 * One side of a comparison. setup and teardown are not timed; run is. A fresh state per round
 * (e.g. a new database file) keeps rounds comparable instead of each one starting where the
 * previous one left off.
 */
export interface Side<S> {
  setup(round: number): S | Promise<S>;
  /** May answer the milliseconds its work took, when part of its wall time is not the work (a load generator's reporting tick). */
  run(state: S): void | number | Promise<void | number>;
  teardown?(state: S): void | Promise<void>;
}

export interface Samples {
  /** Milliseconds per timed round, in the order they ran (warm-up excluded). */
  ms: number[];
  median: number;
  min: number;
  max: number;
}

export interface RoundOptions {
  warmup?: number;
  /** Timed rounds at most. */
  rounds?: number;
  /** Timed rounds at least, whatever the budget. */
  minRounds?: number;
  /** Once minRounds are done, no further round starts after this many ms (warm-up included). */
  budgetMs?: number;
}

export const defaultRounds = (): Required<RoundOptions> => {
  const rounds = Math.max(1, envInt('BENCH_ROUNDS', 5));
  return {
    warmup: envInt('BENCH_WARMUP', 1),
    rounds,
    minRounds: Math.min(rounds, 3),
    budgetMs: envInt('BENCH_BUDGET_S', 25) * 1000,
  };
};

/** Whether to start another timed round. */
function another(done: number, startedAt: number, { rounds, minRounds, budgetMs }: Required<RoundOptions>): boolean {
  return done < minRounds || (done < rounds && performance.now() - startedAt < budgetMs);
}

/** Times one side: warm-up rounds, then the median of N timed rounds. */
export async function timeRounds<S>(side: Side<S>, options: RoundOptions = {}): Promise<Samples> {
  const settings = { ...defaultRounds(), ...options };
  const startedAt = performance.now();
  for (let round = 0; round < settings.warmup; round++) await timeOnce(side, round);
  const ms: number[] = [];
  while (another(ms.length, startedAt, settings)) ms.push(await timeOnce(side, settings.warmup + ms.length));
  return summarise(ms);
}

/**
 * Times two sides round by round, alternating which goes first, so that a machine that gets
 * busier or quieter during the run shifts both medians alike instead of biasing the ratio.
 */
export async function timeInterleaved<A, B>(
  ours: Side<A>,
  baseline: Side<B>,
  options: RoundOptions = {},
): Promise<{ ours: Samples; baseline: Samples }> {
  const settings = { ...defaultRounds(), ...options };
  const startedAt = performance.now();
  const a: number[] = [];
  const b: number[] = [];
  for (let round = 0; round < settings.warmup || another(a.length, startedAt, settings); round++) {
    const oursFirst = round % 2 === 0;
    const first = oursFirst ? await timeOnce(ours, round) : await timeOnce(baseline, round);
    const second = oursFirst ? await timeOnce(baseline, round) : await timeOnce(ours, round);
    if (round < settings.warmup) continue;
    a.push(oursFirst ? first : second);
    b.push(oursFirst ? second : first);
  }
  return { ours: summarise(a), baseline: summarise(b) };
}

async function timeOnce<S>(side: Side<S>, round: number): Promise<number> {
  const state = await side.setup(round);
  collectGarbage();
  const start = performance.now();
  const reported = await side.run(state);
  const elapsed = typeof reported === 'number' ? reported : performance.now() - start;
  await side.teardown?.(state);
  return elapsed;
}

export function summarise(ms: number[]): Samples {
  if (ms.length === 0) throw new Error('no timed rounds');
  const sorted = [...ms].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { ms, median, min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

let gc: (() => void) | undefined | null = null;
/** A full GC before each timed round, so one round does not pay for the previous one's garbage. Says whether one ran. */
export function collectGarbage(): boolean {
  if (gc === null) {
    try {
      setFlagsFromString('--expose-gc');
      gc = runInNewContext('gc') as () => void;
    } catch {
      gc = undefined;
    }
  }
  gc?.();
  return gc !== undefined;
}

// ---------------------------------------------------------------------------------------------
// Results

/** A target on ratio = ours / baseline throughput (higher is better). */
export interface Target {
  minRatio: number;
}

export type Verdict = 'PASS' | 'FAIL' | 'info' | 'ERROR';

export interface Result {
  benchmark: string;
  name: string;
  unit: string;
  /** Throughput in unit (work per second), from the median round. */
  ours: number;
  baseline: number;
  ratio: number;
  target?: Target;
  verdict: Verdict;
  oursSamples?: Samples;
  baselineSamples?: Samples;
  note?: string;
}

const COLUMNS = [44, 30, 30, 6, 7, 5] as const;

export class Reporter {
  readonly results: Result[] = [];
  private current = '';

  section(benchmark: string, description: string): void {
    this.current = benchmark;
    console.log(`\n== ${benchmark}: ${description}`);
    console.log(row(['name', 'ours', 'baseline', 'ratio', 'target', '']));
    console.log(COLUMNS.map((width) => '-'.repeat(width)).join('-|-'));
  }

  /** Records and prints a throughput comparison: `work` units done per timed round. */
  throughput(
    name: string,
    work: number,
    unit: string,
    samples: { ours: Samples; baseline: Samples },
    target?: Target,
    note?: string,
  ): Result {
    const ours = work / (samples.ours.median / 1000);
    const baseline = work / (samples.baseline.median / 1000);
    const ratio = ours / baseline;
    const verdict: Verdict = target ? (ratio >= target.minRatio ? 'PASS' : 'FAIL') : 'info';
    const result: Result = {
      benchmark: this.current,
      name,
      unit,
      ours,
      baseline,
      ratio,
      verdict,
      oursSamples: samples.ours,
      baselineSamples: samples.baseline,
      ...(target ? { target } : {}),
      ...(note ? { note } : {}),
    };
    this.results.push(result);
    console.log(
      row([
        name,
        `${rate(ours, unit)} ${spread(samples.ours)}`,
        `${rate(baseline, unit)} ${spread(samples.baseline)}`,
        percent(ratio),
        target ? `>=${percent(target.minRatio)}` : '-',
        verdict,
      ]),
    );
    if (note) console.log(`${' '.repeat(4)}${note}`);
    return result;
  }

  /**
   * Prints where ours' time goes: the baseline, components timed alone on the same work, and
   * the remainder nobody timed alone. All as shares of the baseline and of ours, measured in
   * this run. Informational: not collected as results.
   */
  breakdown(work: string, oursMs: number, baselineMs: number, components: ReadonlyArray<{ name: string; ms: number }>, restLabel: string): void {
    const explained = components.reduce((sum, component) => sum + component.ms, 0);
    const lines = [
      { name: 'baseline (the same rows, plain)', ms: baselineMs },
      ...components,
      { name: restLabel, ms: oursMs - baselineMs - explained },
      { name: 'ours, total', ms: oursMs },
    ];
    console.log(`    where ours' time goes (median ms per ${work}; components timed alone on the same data):`);
    for (const line of lines) {
      console.log(
        `      ${line.name.padEnd(70)} ${line.ms.toFixed(0).padStart(6)} ms  ${percent(line.ms / baselineMs).padStart(5)} of baseline  ${percent(line.ms / oursMs).padStart(5)} of ours`,
      );
    }
  }

  /** A benchmark that threw: reported, counted, and the run goes on. */
  error(benchmark: string, error: unknown): void {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    this.results.push({ benchmark, name: '(crashed)', unit: '', ours: NaN, baseline: NaN, ratio: NaN, verdict: 'ERROR', note: message });
    console.log(`!! ${benchmark} crashed:\n${message}`);
  }

  summary(): void {
    const count = (verdict: Verdict) => this.results.filter((result) => result.verdict === verdict).length;
    console.log('\n== summary');
    for (const result of this.results.filter((r) => r.verdict === 'FAIL' || r.verdict === 'ERROR')) {
      const detail =
        result.verdict === 'ERROR'
          ? 'crashed (see above)'
          : `${percent(result.ratio)} of baseline, target >=${percent(result.target!.minRatio)}`;
      console.log(`${result.verdict.padEnd(5)} ${result.benchmark} / ${result.name}: ${detail}`);
    }
    console.log(`${count('PASS')} passed, ${count('FAIL')} failed, ${count('info')} informational, ${count('ERROR')} crashed`);
    console.log('(targets are information, not a gate: this process exits 0 either way)');
  }
}

function row(cells: readonly string[]): string {
  return cells.map((cell, index) => cell.padEnd(COLUMNS[index] ?? 0)).join(' | ').trimEnd();
}

function rate(value: number, unit: string): string {
  return `${Math.round(value).toLocaleString('en-US')} ${unit}`;
}

/** Half the min-max range of the timed rounds, relative to the median: how noisy the figure is. */
function spread(samples: Samples): string {
  if (samples.ms.length < 2) return `n=1`;
  return `±${Math.round(((samples.max - samples.min) / 2 / samples.median) * 100)}% n=${samples.ms.length}`;
}

export function percent(ratio: number): string {
  return `${(ratio * 100).toFixed(ratio < 0.1 ? 1 : 0)}%`;
}

// ---------------------------------------------------------------------------------------------
// Environment

export interface Benchmark {
  /** Matched by the runner's filter argument (substring, case-insensitive). */
  name: string;
  description: string;
  run(reporter: Reporter): Promise<void>;
}

/** A fresh directory under os.tmpdir(), removed by the returned function. */
export function tempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(os.tmpdir(), `${prefix}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function machineDescription(): string {
  const cpus = os.cpus();
  return `${cpus[0]?.model ?? 'unknown cpu'} x${cpus.length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}, ${os.platform()} ${os.release()}, tmpdir ${os.tmpdir()}`;
}

export function envInt(name: string, fallback: number): number {
  const value = Number.parseInt(process.env[name] ?? '', 10);
  return Number.isFinite(value) && value >= 0 ? value : fallback;
}

/**
 * The layout telemetry had before chunks and minute blocks, a row per raw reading and per rollup
 * bucket: what the baselines insert when a target speaks of plain inserts of the same rows.
 */
export const ROW_PER_READING_DDL = `
  CREATE TABLE readings (
    device_id TEXT NOT NULL, sensor_type TEXT NOT NULL, ts TEXT NOT NULL, seq INTEGER NOT NULL, value REAL NOT NULL,
    unit TEXT, quality_score INTEGER NOT NULL, quality_reasons TEXT NOT NULL, PRIMARY KEY (device_id, ts, seq)) WITHOUT ROWID;
  CREATE TABLE rollups (
    device_id TEXT NOT NULL, sensor_type TEXT NOT NULL, bucket TEXT NOT NULL, bucket_start TEXT NOT NULL,
    count INTEGER NOT NULL, sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL, sum_sq REAL NOT NULL,
    PRIMARY KEY (device_id, bucket, bucket_start, sensor_type)) WITHOUT ROWID;`;

// ---------------------------------------------------------------------------------------------
// The server in its own process

export async function freePort(): Promise<number> {
  const probe = createNetServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** The node flags `npm start` runs the server with (package.json's start script), so its memory is measured as deployed. */
function startFlags(): string[] {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { scripts?: { start?: string } };
  return (pkg.scripts?.start ?? '').split(/\s+/).filter((word) => word.startsWith('--'));
}

export interface ServerProcess {
  url: string;
  pid: number;
  close(): Promise<void>;
}

/**
 * The built server as `npm start` runs it, alone in its own process so that its memory is its
 * own, on a free port with a temporary data directory; resolves once it answers its health.
 * Given `dataDir`, it serves that directory instead and leaves it in place when closed: a
 * server restarted on what an earlier one stored.
 */
export async function spawnServer(prefix: string, env: Record<string, string>, dataDir?: string): Promise<ServerProcess> {
  const { dir, remove } = dataDir === undefined ? tempDir(prefix) : { dir: dataDir, remove: () => undefined };
  const port = await freePort();
  const child = spawn(process.execPath, [...startFlags(), fileURLToPath(new URL('../src/main.js', import.meta.url))], {
    env: { ...process.env, PORT: String(port), MQTT_PORT: '0', HOST: '127.0.0.1', DATA_DIR: dir, LOG_LEVEL: 'silent', BCRYPT_ROUNDS: '4', ...env },
    stdio: 'ignore',
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const close = async () => {
    child.kill('SIGTERM');
    await exited;
    remove();
  };
  const url = `http://127.0.0.1:${port}`;
  for (let waited = 0; !(await fetch(`${url}/api/health`).then((r) => r.ok, () => false)); waited += 50) {
    if (waited > 30_000 || child.exitCode !== null) {
      await close();
      throw new Error('the server process did not start');
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { url, pid: child.pid!, close };
}
