import type { Benchmark } from './lib.js';

export const telemetryBenchmarks: readonly Benchmark[] = [];
