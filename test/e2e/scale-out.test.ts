// Two balancers behind an ECMP router: each announces the VIP over BGP
// through its BIRD, the router (BIRD with merged paths in its kernel table,
// an L4 multipath hash) spreads the clients' flows over both. Killing one
// balancer mid-stream withdraws its path (its BIRD dies with it), the router
// moves its flows to the other, which picks the same backends (one hashKey,
// Maglev): every dr stream continues byte for byte.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Host, Lab, LabProcess } from '../../lib/lab/index.js';
import { type LabRealServer, setupLabRealServer } from '../../lib/realserver/lab.js';
import { createLab, fixture } from './support.js';
import { BalancerProcess, VIP, backendAddresses, backendNames, type Topology } from './topologies.js';

let lab: Lab | undefined;
const balancers: BalancerProcess[] = [];
const processes: LabProcess[] = [];
const realServers: LabRealServer[] = [];
let directory: string | undefined;
afterEach(async () => {
  for (const b of balancers.splice(0)) await b.close().catch(() => undefined);
  for (const p of processes.splice(0)) await p.stop();
  for (const r of realServers.splice(0)) await r.down().catch(() => undefined);
  await lab?.destroy();
  lab = undefined;
  if (directory) rmSync(directory, { recursive: true, force: true });
  directory = undefined;
});

const uplinks = ['198.18.3.1', '198.18.3.2'];

interface ScaleOut {
  client: Host;
  router: Host;
  balancers: Host[];
  backends: Host[];
}

async function scaleOutTopology(lab: Lab): Promise<ScaleOut> {
  const client = await lab.addHost('client');
  const router = await lab.addRouter('router', { sysctls: { 'net.ipv4.fib_multipath_hash_policy': 1 } });
  const balancerHosts = [await lab.addHost('lb1'), await lab.addHost('lb2')];
  const backends = await Promise.all(backendNames.map((name) => lab.addHost(name)));
  await lab.connect({ host: client, name: 'eth0', addresses: ['198.18.0.10/24'] }, { host: router, name: 'eth0', addresses: ['198.18.0.254/24'] });
  await lab.segment('up', [
    { host: router, name: 'eth1', addresses: ['198.18.3.254/24'] },
    ...balancerHosts.map((host, i) => ({ host, name: 'eth0', addresses: [`${uplinks[i]}/24`] })),
  ]);
  await lab.segment('lan', [
    { host: router, name: 'eth2', addresses: ['198.18.1.254/24'] },
    ...balancerHosts.map((host, i) => ({ host, name: 'eth1', addresses: [`198.18.1.${10 + i}/24`] })),
    ...backends.map((host, i) => ({ host, name: 'eth0', addresses: [`${backendAddresses[i]}/24`] })),
  ]);
  await client.addRoute('default', { via: '198.18.0.254' });
  for (const host of balancerHosts) await host.addRoute('default', { via: '198.18.3.254' });
  // Direct server return: the backends answer the client through the router.
  for (const host of backends) await host.addRoute('default', { via: '198.18.1.254' });
  return { client, router, balancers: balancerHosts, backends };
}

/** The router's BIRD: a session with each balancer, their routes merged into one multipath kernel route. */
function startRouterBird(router: Host): string {
  directory = mkdtempSync(join(tmpdir(), 'l4lb-ecmp-'));
  const config = join(directory, 'router.conf');
  const socket = join(directory, 'router.ctl');
  const sessions = uplinks.map((address, i) =>
    [`protocol bgp lb${i + 1} {`, '  local as 65000;', `  neighbor ${address} as 65001;`, '  hold time 9; keepalive time 3; connect delay time 1; connect retry time 2;', '  ipv4 { import all; export none; };', '}'].join('\n'),
  );
  writeFileSync(config, ['log stderr all;', 'router id 198.18.3.254;', 'protocol device {}', 'protocol kernel { ipv4 { export all; }; merge paths on; }', ...sessions, ''].join('\n'));
  processes.push(router.spawn(['bird', '-f', '-c', config, '-s', socket]));
  return socket;
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const nextHops = async (router: Host) => (await router.exec(['ip', 'route', 'show', `${VIP}/32`])).stdout.match(/via 198\.18\.3\.\d+/g)?.sort() ?? [];

describe('scale-out: two balancers behind an ECMP router', () => {
  it('spreads flows over both; killing one mid-stream moves its flows to the other and every dr stream continues', async () => {
    lab = await createLab();
    const topology = await scaleOutTopology(lab);
    startRouterBird(topology.router);
    for (const host of topology.backends) {
      realServers.push(await setupLabRealServer(host, { vip: VIP, method: 'dr', interface: 'eth0' }));
      const echo = host.spawnNode(fixture('servers/tcp-echo.mjs'), ['0.0.0.0', '7']);
      processes.push(echo);
    }
    const hashKey = randomBytes(16).toString('hex');
    for (const [i, host] of topology.balancers.entries()) {
      const view: Topology = { lab, client: topology.client, balancer: host, backends: topology.backends, interfaces: ['eth0', 'eth1'] };
      const balancer = await BalancerProcess.start(view, {
        options: {
          driver: 'af_packet',
          workers: 1,
          hashKey: hashKey as never,  // hexadecimal through JSON (demo/balancer.ts)
          bgp: { localAs: 65001, routerId: uplinks[i]!, neighbours: [{ address: '198.18.3.254', as: 65000 }] },
        },
        services: [
          {
            service: { address: VIP, port: 7, method: 'dr', scheduler: 'maglev', healthCheck: { type: 'tcp', intervalMs: 200, timeoutMs: 300, rise: 1, fall: 2 } },
            backends: backendAddresses.map((address) => ({ address, port: 7 })),
          },
        ],
      });
      balancers.push(balancer);
      await balancer.waitUntilUp();
    }
    await waitFor('the VIP through both balancers', 20_000, async () => (await nextHops(topology.router)).length === 2);
    expect(await nextHops(topology.router)).toEqual(['via 198.18.3.1', 'via 198.18.3.2']);

    const streams = topology.client.spawnNode(fixture('servers/tcp-streams.mjs'), [VIP, '7', '24', '7000', '50']);
    processes.push(streams);
    await streams.waitForLine(/"event":"open"/, 10_000);
    await new Promise((r) => setTimeout(r, 1500));
    const active = await Promise.all(balancers.map(async (b) => (await b.stats()).flows.active));
    expect(active.every((n) => n > 0), `flows per balancer: ${active}`).toBe(true);

    // Balancer 2 dies without a word; its BIRD goes with it, the router withdraws its path.
    balancers[1]!.process.child.kill('SIGKILL');
    await balancers[1]!.process.exited;
    balancers.pop();
    await waitFor('the path of the killed balancer withdrawn', 15_000, async () => (await nextHops(topology.router)).length === 1);
    expect(await nextHops(topology.router)).toEqual(['via 198.18.3.1']);

    await streams.waitForLine(/"event":"done"/, 30_000);
    const done = JSON.parse(streams.log.split('\n').find((l) => l.includes('"event":"done"'))!) as { streams: number; intact: number; broken: unknown[] };
    expect(done.broken).toEqual([]);
    expect(done.intact).toBe(24);
    // The survivor picked up the moved flows mid-stream.
    expect((await balancers[0]!.stats()).flows.active).toBeGreaterThan(active[0]!);
    const { stdout } = await topology.router.exec(['sh', '-c', 'pgrep -a -x bird || true']);
    expect(stdout.split('\n').filter((l) => l.includes(`/run/l4lb/bird-`)).length).toBe(1);
  }, 120_000);
});
