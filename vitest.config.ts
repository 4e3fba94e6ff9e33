import { defineConfig } from 'vitest/config';

// Three tiers (DESIGN.md §5): unit (no addon, no privileges), native (the addon
// through the memory port), e2e (network namespaces; root required, and in CI
// these must run, never skip).
export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      { test: { name: 'native', include: ['test/native/**/*.test.ts'], testTimeout: 120_000 } },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // Namespaces, veth pairs and CPU are shared: run e2e files one at a time.
          fileParallelism: false,
        },
      },
    ],
  },
});
