// Real servers for lab topologies: one call turns a lab host into a real
// server for a method, the way the e2e tests (and the demo) need it, with its
// record kept beside the lab rather than in /run.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { Host } from '../lab/lab.js';
import type { DecapsulatorStats } from './decapsulator.js';
import type { UpOptions } from './options.js';
import { type DownResult, type UpResult, down, up } from './realserver.js';

export interface LabRealServer {
  readonly host: Host;
  readonly result: UpResult;
  /** The userspace decapsulator's counters (undefined for dr or kernel decapsulation). */
  stats(): DecapsulatorStats | undefined;
  /** Undoes the set-up (stops the decapsulator); idempotent. Call it before destroying the lab. */
  down(): Promise<DownResult>;
}

/**
 * Sets `host` up as a real server for `options.vip` with `options.method`
 * (VIP on lo, ARP suppression, decapsulation, optional return through the
 * tunnel), inside the host's namespace.
 */
export async function setupLabRealServer(host: Host, options: Omit<UpOptions, 'netns' | 'dryRun' | 'stateDir'>): Promise<LabRealServer> {
  const stateDir = mkdtempSync(join(tmpdir(), 'l4lb-realserver-'));
  let result: UpResult;
  try {
    result = await up({ ...options, netns: host.netns, stateDir });
  } catch (error) {
    rmSync(stateDir, { recursive: true, force: true });
    throw error;
  }
  let finished: DownResult | undefined;
  return {
    host,
    result,
    stats: () => result.decapsulator?.stats(),
    async down() {
      if (!finished) {
        finished = await down({ vip: result.vip, netns: host.netns, stateDir, ...(options.runner ? { runner: options.runner } : {}) });
        rmSync(stateDir, { recursive: true, force: true });
      }
      return finished;
    },
  };
}
