// The main job: `npm run demo -- --duration 20` runs to completion with
// traffic on every backend and the failover visible in its summary, over
// each driver (`--driver af_xdp`).
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { assertLabAvailable } from '../../lib/lab/index.js';
import { packageRoot } from '../../lib/native/binding.js';

const run = promisify(execFile);

describe.each(['af_packet', 'af_xdp', 'dpdk'])('npm run demo -- --driver %s', (driver) => {
  it('balances real traffic on every backend and shows the failover', async () => {
    await assertLabAvailable();
    const dir = mkdtempSync(join(tmpdir(), 'l4lb-demo-'));
    try {
      const summaryFile = join(dir, 'summary.json');
      const { stdout } = await run('npm', ['run', 'demo', '--', '--driver', driver, '--duration', '20', '--summary-json', summaryFile], {
        cwd: packageRoot,
        timeout: 90_000,
        maxBuffer: 16 * 1024 * 1024,
      });
      expect(stdout).toContain('▸ Building the lab');
      expect(stdout).toMatch(/^t=\d+s /m); // plain mode: stdout is not a terminal
      expect(stdout).toContain(`Summary (nat, ${driver}`);
      const summary = JSON.parse(readFileSync(summaryFile, 'utf8')) as {
        backends: Array<{ name: string; flows: number; packets: number; state: string }>;
        failover: { markedDownAfterStopS: number | null; b2FlowsWhileDown: number | null; backUp: boolean };
        http: { ok: Record<string, number> };
      };
      for (const backend of summary.backends) {
        expect(backend.flows, backend.name).toBeGreaterThan(0);
        expect(backend.packets, backend.name).toBeGreaterThan(0);
        expect(backend.state, backend.name).toBe('up');
      }
      expect(summary.failover.markedDownAfterStopS).not.toBeNull();
      expect(summary.failover.markedDownAfterStopS!).toBeLessThanOrEqual(3);
      expect(summary.failover.b2FlowsWhileDown).toBe(0);
      expect(summary.failover.backUp).toBe(true);
      expect(Object.keys(summary.http.ok).sort()).toEqual(['b1', 'b2', 'b3']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
