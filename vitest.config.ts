import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // The paper-model fixtures are large; their first export takes minutes (then cached).
    hookTimeout: 900_000,
    testTimeout: 60_000,
    pool: 'forks',
  },
});
