import { defineConfig } from 'vitest/config';

/** The slow tier: soak tests that drive the built server (npm run build first) for tens of seconds. */
export default defineConfig({
  test: {
    include: ['tests/soak/**/*.soak.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 60_000,
    maxWorkers: 1,
  },
});
