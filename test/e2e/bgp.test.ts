// Route announcement with BIRD: the client's namespace plays the upstream
// router, running a BIRD with a BGP session to the balancer's. The VIP is
// announced while its service has a backend up, withdrawn when none is, and
// withdrawn when the balancer closes, which also stops its BIRD.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Lab, LabProcess } from '../../lib/lab/index.js';
import { createLab } from './support.js';
import { BalancerProcess, VIP, backendAddresses, routedTopology, startBackends, type Topology } from './topologies.js';

let lab: Lab | undefined;
let balancer: BalancerProcess | undefined;
let router: LabProcess | undefined;
let directory: string | undefined;
afterEach(async () => {
  await balancer?.close();
  balancer = undefined;
  await router?.stop();
  router = undefined;
  await lab?.destroy();
  lab = undefined;
  if (directory) rmSync(directory, { recursive: true, force: true });
  directory = undefined;
});

/** A BIRD in the client's namespace, peering with the balancer (AS 65001) from AS 65000. */
async function startRouter(topology: Topology): Promise<string> {
  directory = mkdtempSync(join(tmpdir(), 'l4lb-bgp-'));
  const config = join(directory, 'router.conf');
  const socket = join(directory, 'router.ctl');
  writeFileSync(
    config,
    [
      'log stderr all;',
      'router id 198.18.0.10;',
      'protocol device {}',
      'protocol bgp balancer {',
      '  local as 65000;',
      '  neighbor 198.18.0.1 as 65001;',
      '  hold time 9; keepalive time 3; connect delay time 1; connect retry time 2;',
      '  ipv4 { import all; export none; };',
      '}',
      '',
    ].join('\n'),
  );
  router = topology.client.spawn(['bird', '-f', '-c', config, '-s', socket]);
  return socket;
}

/** The router's route to the VIP as BIRD shows it ('' when it has none). */
async function routeAtRouter(topology: Topology, socket: string): Promise<string> {
  // birdc exits with status 1 ("Network not found") when there is no route.
  const { stdout } = await topology.client.exec(['sh', '-c', `birdc -s ${socket} show route all ${VIP}/32 || true`]);
  return stdout.includes(`${VIP}/32`) ? stdout : '';
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('route announcement with BIRD', () => {
  it('announces the VIP while a backend is up, withdraws it when none is and when the balancer closes', async () => {
    lab = await createLab();
    const topology = await routedTopology(lab);
    const socket = await startRouter(topology);
    let servers = await startBackends(topology, { port: 8080 });
    balancer = await BalancerProcess.start(topology, {
      options: {
        workers: 1,
        bgp: { localAs: 65001, routerId: '198.18.0.1', neighbours: [{ address: '198.18.0.10', as: 65000 }], communities: ['65001:80'], med: { up: 10 } },
      },
      services: [
        {
          service: { address: VIP, port: 80, method: 'nat', healthCheck: { type: 'tcp', intervalMs: 200, timeoutMs: 300, rise: 1, fall: 2 } },
          backends: backendAddresses.map((address) => ({ address, port: 8080 })),
        },
      ],
    });
    await balancer.waitUntilUp();

    // Announced, from the balancer, with its MED and community.
    await waitFor('the announcement', 20_000, async () => (await routeAtRouter(topology, socket)) !== '');
    const route = await routeAtRouter(topology, socket);
    expect(route).toMatch(/via 198\.18\.0\.1 on eth0/);
    expect(route).toMatch(/BGP\.med: 10/);
    expect(route).toMatch(/BGP\.community: \(65001,80\)/);
    const stats = await balancer.stats();
    expect(stats.bgp?.routes).toEqual([{ prefix: `${VIP}/32`, state: 'announced', med: 10 }]);
    await waitFor('the session in stats()', 5000, async () => (await balancer!.stats()).bgp?.neighbours[0]?.state === 'Established');

    // Every backend down: withdrawn.
    for (const server of servers) await server.stop();
    await waitFor('the withdrawal', 10_000, async () => (await routeAtRouter(topology, socket)) === '');
    expect((await balancer.stats()).bgp?.routes).toEqual([{ prefix: `${VIP}/32`, state: 'withdrawn' }]);

    // Back up: announced again.
    servers = await startBackends(topology, { port: 8080 });
    await waitFor('the announcement again', 10_000, async () => (await routeAtRouter(topology, socket)) !== '');

    // close(): withdrawn, and the balancer's BIRD is gone.
    await balancer.close();
    balancer = undefined;
    await waitFor('the withdrawal at close', 10_000, async () => (await routeAtRouter(topology, socket)) === '');
    const { stdout } = await topology.balancer.exec(['sh', '-c', 'pgrep -x bird -a || true']);
    expect(stdout.split('\n').filter((l) => l.includes('/run/l4lb/bird-'))).toEqual([]);
    for (const server of servers) await server.stop();
  }, 90_000);
});
