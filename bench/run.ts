/**
 * Runs the registered benchmarks in sequence.
 *
 *   npm run bench                      every benchmark
 *   npm run bench -- storage           only those whose name contains "storage"
 *   node dist/bench/run.js eventlog    only those whose name contains "eventlog" (several filters: any of them)
 *   node dist/bench/run.js --list      the names
 *
 * Environment: BENCH_ROUNDS (timed rounds at most, default 5; at least 3 or BENCH_ROUNDS if fewer),
 * BENCH_WARMUP (default 1), BENCH_BUDGET_S (no new round after this many seconds per comparison,
 * default 25), BENCH_BREAKDOWN=0 (skip the where-the-time-goes lines).
 * Exits 0 even when a target is missed or a benchmark crashes: the summary says so.
 */
import os from 'node:os';
import { eventlogAppend } from './eventlog-append.js';
import { mqttIngest } from './mqtt.js';
import { realtimeBenchmarks } from './realtime.js';
import { rebuildBenchmarks } from './rebuild.js';
import { storageBenchmarks } from './storage.js';
import { telemetryBenchmarks } from './telemetry.js';
import { Reporter, defaultRounds, machineDescription, type Benchmark } from './lib.js';

/** Add a benchmark here. */
const benchmarks: readonly Benchmark[] = [eventlogAppend, ...telemetryBenchmarks, mqttIngest, ...realtimeBenchmarks, ...rebuildBenchmarks, ...storageBenchmarks];

async function main(args: string[]): Promise<void> {
  if (args.includes('--list')) {
    for (const benchmark of benchmarks) console.log(`${benchmark.name}: ${benchmark.description}`);
    return;
  }
  const filters = args.filter((arg) => !arg.startsWith('-')).map((arg) => arg.toLowerCase());
  const selected = benchmarks.filter(
    (benchmark) => filters.length === 0 || filters.some((filter) => benchmark.name.toLowerCase().includes(filter)),
  );
  if (selected.length === 0) {
    console.log(`no benchmark matches ${filters.join(', ')}; available: ${benchmarks.map((b) => b.name).join(', ')}`);
    return;
  }

  const { warmup, rounds, minRounds, budgetMs } = defaultRounds();
  console.log(`machine: ${machineDescription()}, load average ${loadAverage()}`);
  console.log(
    `each figure: median of ${minRounds}-${rounds} timed rounds (more while within ${budgetMs / 1000} s) after ${warmup} warm-up, ours and baseline interleaved;`,
  );
  console.log(`ratio = ours / baseline throughput; ±x% = half the min-max spread of the n rounds`);

  const reporter = new Reporter();
  const started = Date.now();
  for (const benchmark of selected) {
    reporter.section(benchmark.name, benchmark.description);
    try {
      await benchmark.run(reporter);
    } catch (error) {
      reporter.error(benchmark.name, error);
    }
  }
  reporter.summary();
  console.log(`total ${((Date.now() - started) / 1000).toFixed(1)} s, load average now ${loadAverage()}`);
}

/** Other work on the machine widens the spread; interleaving keeps the ratio fair, not the absolute figures. */
function loadAverage(): string {
  return os.loadavg().map((load) => load.toFixed(2)).join(' ');
}

main(process.argv.slice(2))
  .catch((error: unknown) => console.error(error))
  .finally(() => {
    process.exitCode = 0;
  });
