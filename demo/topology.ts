// Lab topologies for the demo and the balancer e2e tests: a client, a
// balancer running l4lb with the AF_PACKET driver, and three backends.
//
//   routed (nat, fullnat, ipip, gre):
//     client 198.18.0.10 ── eth0 198.18.0.1 [balancer] eth1 198.18.1.1 ── lan ── b1 .1.2, b2 .1.3, b3 .1.4
//     optional second uplink: client 198.18.2.10 ── eth2 198.18.2.1 (the client reaches the VIP through it
//     while the balancer's default route points at eth0)
//   dr (the LVS DR picture):
//     client 198.18.0.10 ── router 198.18.0.254 / 198.18.1.254 ── lan ── balancer .1.1, b1 .1.2, b2 .1.3, b3 .1.4
//     VIP on the backends' lo, ARP suppressed there; the router ARPs for the VIP on the lan and the
//     balancer answers; backends reply straight to the router.
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { BackendOptions, DriverName, LoadBalancerOptions, LoadBalancerRates, LoadBalancerStats, ServiceOptions } from '../lib/index.js';
import type { Host, Lab, LabProcess } from '../lib/lab/index.js';

/** Files of the demo (servers, balancer process), by path relative to demo/. */
export const demoFile = (relative: string): string => fileURLToPath(new URL(relative, import.meta.url));

export const VIP = '198.18.100.100';
export const backendAddresses = ['198.18.1.2', '198.18.1.3', '198.18.1.4'];
export const backendNames = ['b1', 'b2', 'b3'];

// veth links as a user gets them: MTU 1500 and the kernel's default
// offloads (local TCP stacks hand the links 64 KiB aggregates; the balancer
// passes them on with their GSO metadata).
const link = { mtu: 1500 };

/** The drivers the e2e suite runs over (describe.each). */
export const drivers = ['af_packet', 'af_xdp', 'dpdk'] as const satisfies readonly DriverName[];

/**
 * What the balancer's links need for a driver: AF_XDP serves one receive
 * queue per worker, so its veths get a queue per worker.
 */
export interface BalancerLinks {
  driver?: DriverName;
  workers?: number;
}

function balancerQueues(links: BalancerLinks): { queues?: number } {
  return links.driver === 'af_xdp' && (links.workers ?? 1) > 1 ? { queues: links.workers } : {};
}

export interface Topology {
  lab: Lab;
  client: Host;
  balancer: Host;
  backends: Host[];
  router?: Host;
  /** The balancer's interfaces, in port order. */
  interfaces: string[];
}

export async function routedTopology(lab: Lab, options: { secondUplink?: boolean; backendGateway?: boolean } & BalancerLinks = {}): Promise<Topology> {
  const queues = balancerQueues(options);
  const client = await lab.addHost('client');
  const balancer = await lab.addHost('balancer');
  const backends = await Promise.all(backendNames.map((name) => lab.addHost(name)));
  await lab.connect({ host: client, name: 'eth0', addresses: ['198.18.0.10/24'] }, { host: balancer, name: 'eth0', addresses: ['198.18.0.1/24'], ...queues }, link);
  await lab.segment(
    'lan',
    [{ host: balancer, name: 'eth1', addresses: ['198.18.1.1/24'], ...queues }, ...backends.map((host, i) => ({ host, name: 'eth0', addresses: [`${backendAddresses[i]}/24`] }))],
    link,
  );
  const interfaces = ['eth0', 'eth1'];
  if (options.secondUplink) {
    await lab.connect({ host: client, name: 'eth1', addresses: ['198.18.2.10/24'] }, { host: balancer, name: 'eth2', addresses: ['198.18.2.1/24'], ...queues }, link);
    // The client reaches the VIP through the second uplink only, from its
    // first address, which the balancer's routing table places behind eth0...
    await client.setSysctl('net.ipv4.conf.all.rp_filter', 0);
    await client.setSysctl('net.ipv4.conf.eth1.rp_filter', 0);
    await client.addRoute(`${VIP}/32`, { via: '198.18.2.1', src: '198.18.0.10' });
    interfaces.push('eth2');
  } else {
    await client.addRoute(`${VIP}/32`, { via: '198.18.0.1' });
  }
  // ...and the balancer's default route points at the first uplink.
  await balancer.addRoute('default', { via: '198.18.0.10' });
  if (options.backendGateway ?? true) {
    for (const host of backends) await host.addRoute('default', { via: '198.18.1.1' });
  }
  return { lab, client, balancer, backends, interfaces };
}

export async function drTopology(lab: Lab, links: BalancerLinks = {}): Promise<Topology> {
  const client = await lab.addHost('client');
  const router = await lab.addRouter('router');
  const balancer = await lab.addHost('balancer');
  const backends = await Promise.all(backendNames.map((name) => lab.addHost(name)));
  await lab.connect({ host: client, name: 'eth0', addresses: ['198.18.0.10/24'] }, { host: router, name: 'eth0', addresses: ['198.18.0.254/24'] }, link);
  await lab.segment(
    'lan',
    [
      { host: router, name: 'eth1', addresses: ['198.18.1.254/24'] },
      { host: balancer, name: 'eth1', addresses: ['198.18.1.1/24'], ...balancerQueues(links) },
      ...backends.map((host, i) => ({ host, name: 'eth0', addresses: [`${backendAddresses[i]}/24`] })),
    ],
    link,
  );
  await client.addRoute('default', { via: '198.18.0.254' });
  // The VIP is on the lan: the router ARPs for it there.
  await router.addRoute(`${VIP}/32`, { dev: 'eth1' });
  await balancer.addRoute('default', { via: '198.18.1.254' });
  for (const host of backends) await host.addRoute('default', { via: '198.18.1.254' });
  return { lab, client, router, balancer, backends, interfaces: ['eth1'] };
}

/** Starts each backend's HTTP + UDP server (demo/servers/backend.mjs) bound to `address` (default: every address). */
export async function startBackends(topology: Topology, options: { bind?: string; port?: number; udpBind?: string } = {}): Promise<LabProcess[]> {
  return Promise.all(
    topology.backends.map(async (host, i) => {
      const args = [backendNames[i]!, options.bind ?? '0.0.0.0', String(options.port ?? 8080)];
      if (options.udpBind) args.push(options.udpBind);
      const server = host.spawnNode(demoFile('servers/backend.mjs'), args);
      await server.waitForLine(/"listening"/);
      return server;
    }),
  );
}

export interface BalancerSpec {
  options: Partial<LoadBalancerOptions>;
  services: Array<{ service: ServiceOptions; backends: BackendOptions[] }>;
}

/** A LoadBalancer in the balancer host, driven through demo/balancer.ts. */
export class BalancerProcess {
  #nextId = 1;
  readonly #pending = new Map<number, (answer: Record<string, unknown>) => void>();

  private constructor(readonly process: LabProcess) {
    // Answers carry the id of their request, so that requests may overlap
    // (the demo's loop and its dashboard) and the bounded log may be cut.
    createInterface({ input: process.child.stdout! }).on('line', (line) => {
      if (!line.startsWith('{"event":"stats","id":') && !line.startsWith('{"event":"rates","id":')) return;
      const answer = JSON.parse(line) as Record<string, unknown>;
      const resolve = this.#pending.get(answer.id as number);
      this.#pending.delete(answer.id as number);
      resolve?.(answer);
    });
  }

  static async start(topology: Topology, spec: BalancerSpec): Promise<BalancerProcess> {
    const full = { options: { interfaces: topology.interfaces, driver: 'af_packet', ...spec.options }, services: spec.services };
    const child = topology.balancer.spawn([process.execPath, '--import', 'tsx', demoFile('balancer.ts'), JSON.stringify(full)], { stdin: 'pipe' });
    await child.waitForLine(/"event":"ready"/, 30_000);
    return new BalancerProcess(child);
  }

  #request(command: string, timeoutMs = 5000): Promise<Record<string, unknown>> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`balancer did not answer "${command}":\n${this.process.log.slice(-2000)}`));
      }, timeoutMs);
      this.#pending.set(id, (answer) => {
        clearTimeout(timer);
        resolve(answer);
      });
      this.process.child.stdin!.write(`${command} ${id}\n`);
    });
  }

  async stats(): Promise<LoadBalancerStats> {
    return (await this.#request('stats')).stats as LoadBalancerStats;
  }

  /** lb.rates({ windowMs }) of the balancer. */
  async rates(windowMs = 10_000): Promise<LoadBalancerRates> {
    return (await this.#request(`rates ${windowMs}`)).rates as LoadBalancerRates;
  }

  /** Waits until every backend of every service is up (health checks passed). */
  async waitUntilUp(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const stats = await this.stats();
      if (stats.services.every((s) => s.backends.every((b) => b.state === 'up' && b.nextHopResolved))) return;
      if (Date.now() > deadline) {
        const states = stats.services.map((s) => s.backends.map((b) => `${b.address}:${b.port} ${b.state}${b.nextHopResolved ? '' : ' unresolved'}`));
        const events = this.process.log.split('\n').filter((l) => !l.includes('"event":"stats"')).join('\n').slice(-2000);
        throw new Error(`backends not up in time: ${JSON.stringify(states)}\n${events}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async close(): Promise<void> {
    this.process.child.stdin!.write('close\n');
    await Promise.race([this.process.exited, new Promise((r) => setTimeout(r, 10_000))]);
    await this.process.stop();
  }
}

