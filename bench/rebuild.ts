import type { Benchmark } from './lib.js';

export const rebuildBenchmarks: readonly Benchmark[] = [];
