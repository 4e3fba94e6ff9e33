// The main job: `npm run demo -- --duration 20` runs to completion with
// traffic on every backend and the failover visible in its summary, over
// each driver (`--driver af_xdp`), and serves its dashboard on loopback
// while it runs (the balancer's services and their traffic), not after.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { assertLabAvailable } from '../../lib/lab/index.js';
import type { DashboardSnapshot } from '../../lib/dashboard/index.js';
import { packageRoot } from '../../lib/native/binding.js';
import { VIP } from '../../demo/topology.js';

const run = promisify(execFile);

/**
 * Follows the demo's output to its dashboard URL, then reads the dashboard
 * while traffic runs: the page's status, the services of /snapshot.json and
 * how many TCP backends had flows (polled until all three have).
 */
async function watchDashboard(stdout: Readable): Promise<{ url: string; page: number; services: string[]; busyBackends: number }> {
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /▸ Dashboard: (\S+) /.exec(output);
      if (match) resolve(match[1]!);
    });
    stdout.once('end', () => reject(new Error(`the demo printed no dashboard URL:\n${output}`)));
  });
  const page = (await fetch(url)).status;
  let services: string[] = [];
  let busyBackends = 0;
  for (let i = 0; i < 80 && busyBackends < 3; i++) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    const answer = await fetch(`${url}snapshot.json`).catch(() => undefined);
    if (answer?.status !== 200) continue;
    const { stats } = (await answer.json()) as DashboardSnapshot;
    services = stats.services.map((s) => `${s.address}:${s.port}/${s.protocol}`);
    busyBackends = stats.services[0]?.backends.filter((b) => b.totalFlows > 0).length ?? 0;
  }
  return { url, page, services, busyBackends };
}

describe.each(['af_packet', 'af_xdp', 'dpdk'])('npm run demo -- --driver %s', (driver) => {
  it('balances real traffic on every backend and shows the failover', async () => {
    await assertLabAvailable();
    const dir = mkdtempSync(join(tmpdir(), 'l4lb-demo-'));
    try {
      const summaryFile = join(dir, 'summary.json');
      const demo = run('npm', ['run', 'demo', '--', '--driver', driver, '--duration', '20', '--summary-json', summaryFile, '--dashboard', '127.0.0.1:0'], {
        cwd: packageRoot,
        timeout: 90_000,
        maxBuffer: 16 * 1024 * 1024,
      });
      const dashboard = watchDashboard(demo.child.stdout!);
      const { stdout } = await demo;
      const seen = await dashboard;
      expect(seen.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      expect(seen.page).toBe(200);
      expect(seen.services).toEqual([`${VIP}:80/tcp`, `${VIP}:80/udp`]);
      expect(seen.busyBackends).toBe(3);
      await expect(fetch(seen.url)).rejects.toThrow(); // closed with the demo
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
