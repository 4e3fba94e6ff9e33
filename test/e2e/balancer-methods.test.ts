// Every forwarding method through the AF_PACKET workers, with one and two
// workers: 200 HTTP requests on new TCP connections with byte-exact bodies,
// a 50 MB download and a 50 MB upload intact, UDP echo from the VIP, and
// round-robin shares. The links keep the kernel's default offloads, so the
// TCP stacks on both sides hand the balancer 64 KiB aggregates.
import { afterEach, describe, expect, it } from 'vitest';
import type { Method } from '../../lib/index.js';
import type { Lab } from '../../lib/lab/index.js';
import { setupLabRealServer, type LabRealServer } from '../../lib/realserver/lab.js';
import { createLab } from './support.js';
import { BalancerProcess, VIP, backendAddresses, drTopology, drivers, routedTopology, runJson, startBackends, type BalancerLinks, type Topology } from './topologies.js';

let lab: Lab | undefined;
let balancer: BalancerProcess | undefined;
let realServers: LabRealServer[] = [];
afterEach(async () => {
  await balancer?.close();
  balancer = undefined;
  for (const server of realServers) await server.down();
  realServers = [];
  await lab?.destroy();
  lab = undefined;
});

interface Case {
  name: string;
  method: Method;
  localAddresses?: string[];
  returnThroughTunnel?: boolean;
}

const cases: Case[] = [
  { name: 'nat', method: 'nat' },
  { name: 'fullnat with the host address as source', method: 'fullnat', localAddresses: ['198.18.1.1'] },
  { name: 'fullnat with a dedicated source address', method: 'fullnat', localAddresses: ['198.18.1.100'] },
  { name: 'dr', method: 'dr' },
  { name: 'ipip', method: 'ipip' },
  { name: 'gre, replies returned through the tunnel', method: 'gre', returnThroughTunnel: true },
];

async function build(c: Case, balancer: BalancerLinks): Promise<{ topology: Topology; backendPort: number }> {
  lab = await createLab();
  if (c.method === 'dr') {
    const topology = await drTopology(lab, balancer);
    realServers = await Promise.all(topology.backends.map((host) => setupLabRealServer(host, { vip: VIP, method: 'dr', interface: 'eth0' })));
    await startBackends(topology, { port: 80, udpBind: VIP });
    return { topology, backendPort: 80 };
  }
  // fullnat backends need no route back through the balancer.
  const topology = await routedTopology(lab, { backendGateway: c.method !== 'fullnat', ...balancer });
  if (c.method === 'ipip' || c.method === 'gre') {
    realServers = await Promise.all(
      topology.backends.map((host) =>
        setupLabRealServer(host, {
          vip: VIP,
          method: c.method as 'ipip' | 'gre',
          interface: 'eth0',
          ...(c.returnThroughTunnel ? { returnThroughTunnel: { balancer: '198.18.1.1' } } : {}),
        }),
      ),
    );
    await startBackends(topology, { port: 80, udpBind: VIP });
    return { topology, backendPort: 80 };
  }
  await startBackends(topology, { port: 8080 });
  return { topology, backendPort: 8080 };
}

describe.each(drivers.flatMap((driver) => [1, 2].map((workers) => ({ driver, workers }))))('forwarding methods through $driver, $workers worker(s)', ({ driver, workers }) => {
  for (const c of cases) {
    it(`${c.name}: 200 HTTP connections, 50 MB down and up intact, UDP echo, rr shares`, async () => {
      const { topology, backendPort } = await build(c, { driver, workers });
      balancer = await BalancerProcess.start(topology, {
        options: { driver, workers, ...(c.localAddresses ? { localAddresses: c.localAddresses } : {}) },
        services: ['tcp', 'udp'].map((protocol) => ({
          service: {
            address: VIP,
            port: 80,
            protocol: protocol as 'tcp' | 'udp',
            method: c.method,
            scheduler: 'rr',
            healthCheck: protocol === 'tcp' ? { type: 'tcp', intervalMs: 200, rise: 1 } : { type: 'none' },
          },
          backends: backendAddresses.map((address) => ({ address, port: backendPort })),
        })),
      });
      await balancer.waitUntilUp();

      const load = await runJson<{ perBackend: Record<string, number>; failures: number; firstError: string | null }>(topology.client, 'servers/http-load.mjs', [VIP, 80, 200, 4]);
      expect(load.failures, load.firstError ?? '').toBe(0);
      // rr: every backend within ±4 of a third (two workers each keep their own rotation).
      for (const name of ['b1', 'b2', 'b3']) expect(Math.abs((load.perBackend[name] ?? 0) - 200 / 3), JSON.stringify(load.perBackend)).toBeLessThanOrEqual(4);

      const download = await runJson<{ received: number; intact: boolean }>(topology.client, 'servers/http-download.mjs', [VIP, 80, 50 * 1024 * 1024]);
      expect(download).toMatchObject({ received: 50 * 1024 * 1024, intact: true });
      const upload = await runJson<{ received: number; intact: boolean }>(topology.client, 'servers/http-upload.mjs', [VIP, 80, 50 * 1024 * 1024]);
      expect(upload).toMatchObject({ received: 50 * 1024 * 1024, intact: true });

      const udp = await runJson<{ perBackend: Record<string, number>; failures: number; mismatched: number }>(topology.client, 'servers/udp-ask.mjs', [VIP, 80, 30]);
      expect(udp).toMatchObject({ failures: 0, mismatched: 0 });

      const stats = await balancer.stats();
      expect(stats.services.find((s) => s.protocol === 'tcp')!.totalFlows).toBeGreaterThanOrEqual(201);
      if (driver === 'af_packet') {
        // The upload came as aggregates (the client's stack, default offloads);
        // tunnels cut them, the others passed them on whole.
        expect(stats.counters.aggregates).toBeGreaterThan(0);
        if (c.method === 'ipip' || c.method === 'gre') expect(stats.counters.aggregatesSegmented).toBeGreaterThan(0);
        expect(stats.interfaces.map((i) => i.mode)).toEqual(topology.interfaces.map(() => 'tpacket_v2'));
      } else {
        // A frame is one UMEM buffer (dpdk: one mbuf over net_af_xdp's UMEM):
        // with an XDP program on a veth, the kernel stops handing it
        // aggregates (the peer segments first), and the local stacks'
        // partial checksums are completed by the core.
        expect(stats.counters.aggregates).toBe(0);
        expect(stats.counters.partialChecksumsCompleted).toBeGreaterThan(0);
        expect(stats.interfaces.map((i) => i.mode)).toEqual(topology.interfaces.map(() => (driver === 'dpdk' ? 'dpdk_af_xdp' : 'xdp_native')));
      }
      // Cut segments always fit; the only frames too big for a tunnel are
      // full-size segments of the client's, each answered with "fragmentation
      // needed" (path MTU discovery) unless rate limited.
      expect(stats.drops['too-big'] ?? 0).toBeLessThanOrEqual((stats.counters.icmpFragNeededSent ?? 0) + (stats.counters.icmpRateLimited ?? 0));
      if (c.returnThroughTunnel) expect(stats.counters.repliesViaTunnel).toBeGreaterThan(0);
      for (const server of realServers) {
        const decap = server.stats();
        if (decap) expect(decap.decapsulated).toBeGreaterThan(0);
      }
    });
  }
});
