// Real TCP and UDP through the AF_PACKET data plane in method nat.
import { afterEach, describe, expect, it } from 'vitest';
import type { Lab } from '../../lib/lab/index.js';
import { createLab } from './support.js';
import { BalancerProcess, VIP, backendAddresses, routedTopology, runJson, startBackends } from './topologies.js';

let lab: Lab | undefined;
let balancer: BalancerProcess | undefined;
afterEach(async () => {
  await balancer?.close();
  balancer = undefined;
  await lab?.destroy();
  lab = undefined;
});

interface LoadResult {
  requests: number;
  perBackend: Record<string, number>;
  failures: number;
  firstError: string | null;
}

describe('nat through AF_PACKET workers', () => {
  it('balances 200 new HTTP connections round-robin, carries 50 MB intact and echoes UDP', async () => {
    lab = await createLab();
    const topology = await routedTopology(lab);
    await startBackends(topology);
    balancer = await BalancerProcess.start(topology, {
      options: { workers: 1 },
      services: [
        {
          service: { address: VIP, port: 80, protocol: 'tcp', method: 'nat', scheduler: 'rr', healthCheck: { type: 'tcp', intervalMs: 200, rise: 1 } },
          backends: backendAddresses.map((address) => ({ address, port: 8080 })),
        },
        {
          service: { address: VIP, port: 53, protocol: 'udp', method: 'nat', scheduler: 'rr', healthCheck: { type: 'none' } },
          backends: backendAddresses.map((address) => ({ address, port: 8080 })),
        },
      ],
    });
    await balancer.waitUntilUp();

    const load = await runJson<LoadResult>(topology.client, 'servers/http-load.mjs', [VIP, 80, 200, 4]);
    expect(load.failures, load.firstError ?? '').toBe(0);
    // rr: each of three backends gets a third, within ±2 of 66.7.
    for (const name of ['b1', 'b2', 'b3']) expect(Math.abs((load.perBackend[name] ?? 0) - 200 / 3)).toBeLessThanOrEqual(2);

    const download = await runJson<{ received: number; intact: boolean }>(topology.client, 'servers/http-download.mjs', [VIP, 80, 50 * 1024 * 1024]);
    expect(download).toMatchObject({ received: 50 * 1024 * 1024, intact: true });

    const udp = await runJson<{ perBackend: Record<string, number>; failures: number; mismatched: number }>(topology.client, 'servers/udp-ask.mjs', [VIP, 53, 30]);
    expect(udp).toMatchObject({ failures: 0, mismatched: 0 });
    expect(Object.values(udp.perBackend).reduce((a, b) => a + b, 0)).toBe(30);

    const stats = await balancer.stats();
    expect(stats.drops['no-neighbour'] ?? 0).toBe(0);
    expect(stats.services[0]!.totalFlows).toBeGreaterThanOrEqual(201);
  });
});
