import type { Benchmark } from './lib.js';

export const realtimeBenchmarks: readonly Benchmark[] = [];
