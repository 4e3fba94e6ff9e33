// Shared set-up for the e2e tier. These tests need root (network namespaces);
// when they cannot run they fail with the reason, never skip (DESIGN.md §5).
import { fileURLToPath } from 'node:url';
import { Lab, assertLabAvailable } from '../../lib/lab/index.js';

export const fixture = (relative: string): string => fileURLToPath(new URL(`../fixtures/${relative}`, import.meta.url));

export async function createLab(): Promise<Lab> {
  try {
    await assertLabAvailable();
  } catch (error) {
    throw new Error(
      `the e2e tier needs network namespaces (run as root, with iproute2 installed): ${(error as Error).message}`,
      { cause: error },
    );
  }
  return Lab.create();
}
