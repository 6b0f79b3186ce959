import { defineConfig } from 'vitest/config';

/**
 * The unit suite alone, for mutation testing (stryker.config.json): no root,
 * no kernel, no PostgreSQL, so that every mutant is judged by tests that run
 * anywhere and fast. The security path's decisions are unit-tested for that.
 */
export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts'],
    testTimeout: 10_000,
    pool: 'forks',
  },
});
