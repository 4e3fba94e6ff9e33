// `l4lb lab up|down`: a small testbed of network namespaces for trying l4lb
// by hand, built with lib/lab (lab address ranges only, nothing in the
// host's own namespace), held until Ctrl-C and then removed.
//
//   client ── router ── balancer ──┬── backend1
//                                  ├── backend2   (one L2 segment, "lan")
//                                  └── backend3
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { type Host, Lab } from '../lab/index.js';
import { ExitCode, UsageError } from './exit-codes.js';
import { type CliIo, selfCommand } from './io.js';

export interface LabUpOptions {
  /** Prefix of the host names ('demo-' gives 'demo-client', ...). */
  name?: string;
  /** Start the small HTTP and UDP echo servers on the backends (default true). */
  servers?: boolean;
  /** Resolves the hold instead of a signal (tests). */
  signal?: AbortSignal;
}

/** The addresses of the testbed; docs/cli.md draws them. */
export const labPlan = {
  vip: '198.18.100.1',
  servicePort: 80,
  backendPort: 8080,
  client: { address: '198.18.0.10', prefixLength: 24 },
  routerToClient: '198.18.0.1',
  routerToBalancer: '198.18.2.1',
  balancerUplink: '198.18.2.2',
  balancerLan: '198.18.1.1',
  backends: ['198.18.1.11', '198.18.1.12', '198.18.1.13'],
} as const;

const tempPrefix = 'l4lb-lab-';

// Each backend answers HTTP with its name and echoes UDP, both on port 8080
// (UDP bound to its own address, as a real server should).
const serverScript = `
const http = require('node:http'), dgram = require('node:dgram');
const [name, address, port] = process.argv.slice(1);
http.createServer((req, res) => res.end(name + '\\n')).listen(Number(port), '0.0.0.0');
const udp = dgram.createSocket('udp4');
udp.on('message', (msg, from) => udp.send(msg, from.port, from.address));
udp.bind(Number(port), address, () => console.log('listening'));
`;

function validateName(name: string | undefined): string {
  if (name === undefined) return '';
  // Host names are at most 31 characters and the longest is 'backend3'.
  if (!/^[a-z][a-z0-9-]{0,19}$/.test(name)) {
    throw new UsageError('EUSAGE', `--name must be 1-20 lower-case letters, digits or '-', starting with a letter, got ${JSON.stringify(name)}`);
  }
  return name.endsWith('-') ? name : `${name}-`;
}

function balancerConfig(): string {
  const p = labPlan;
  return `# l4lb configuration for the lab's balancer host (see docs/config.md).
# Run it inside the balancer's namespace:  l4lb run THIS_FILE
balancer:
  interfaces: [eth0, eth1]      # eth0 toward the router, eth1 the backends' segment
services:
  - address: ${p.vip}
    port: ${p.servicePort}
    protocol: tcp
    method: nat
    scheduler: wrr
    healthCheck: { type: http, path: /, intervalMs: 1000 }
    backends:
${p.backends.map((a) => `      - { address: ${a}, port: ${p.backendPort} }`).join('\n')}
  - address: ${p.vip}
    port: ${p.servicePort}
    protocol: udp
    method: nat
    healthCheck: { type: none }
    backends:
${p.backends.map((a) => `      - { address: ${a}, port: ${p.backendPort} }`).join('\n')}
`;
}

async function buildLab(lab: Lab, prefix: string, servers: boolean): Promise<{ hosts: Array<{ host: Host; summary: string }> }> {
  const p = labPlan;
  const client = await lab.addHost(`${prefix}client`);
  const router = await lab.addRouter(`${prefix}router`);
  // The balancer's kernel must not forward VIP traffic itself: l4lb's data plane does.
  const balancer = await lab.addHost(`${prefix}balancer`, { sysctls: { 'net.ipv4.ip_forward': 0 } });
  const backends: Host[] = [];
  for (let i = 0; i < p.backends.length; i++) backends.push(await lab.addHost(`${prefix}backend${i + 1}`));

  await lab.connect({ host: client, name: 'eth0', addresses: [`${p.client.address}/24`] }, { host: router, name: 'eth0', addresses: [`${p.routerToClient}/24`] });
  await lab.connect({ host: router, name: 'eth1', addresses: [`${p.routerToBalancer}/24`] }, { host: balancer, name: 'eth0', addresses: [`${p.balancerUplink}/24`] });
  await lab.segment(`${prefix}lan`, [
    { host: balancer, name: 'eth1', addresses: [`${p.balancerLan}/24`] },
    ...backends.map((host, i) => ({ host, name: 'eth0', addresses: [`${p.backends[i]}/24`] })),
  ]);
  await client.addRoute('default', { via: p.routerToClient });
  await router.addRoute(`${p.vip}/32`, { via: p.balancerUplink });
  await router.addRoute('198.18.1.0/24', { via: p.balancerUplink });
  await balancer.addRoute('default', { via: p.routerToBalancer });
  for (const backend of backends) await backend.addRoute('default', { via: p.balancerLan });
  if (servers) {
    const started = backends.map((host, i) => host.spawn([process.execPath, '-e', serverScript, host.name, p.backends[i]!, String(p.backendPort)]));
    await Promise.all(started.map((child) => child.waitForLine(/listening/)));
  }
  const serving = servers ? `; HTTP and UDP echo on ${p.backendPort}` : '';
  return {
    hosts: [
      { host: client, summary: `eth0 ${p.client.address}/24, default via ${p.routerToClient}` },
      { host: router, summary: `eth0 ${p.routerToClient}/24, eth1 ${p.routerToBalancer}/24; ${p.vip} and 198.18.1.0/24 via ${p.balancerUplink}` },
      { host: balancer, summary: `eth0 ${p.balancerUplink}/24 (uplink), eth1 ${p.balancerLan}/24 (lan), default via ${p.routerToBalancer}` },
      ...backends.map((host, i) => ({ host, summary: `eth0 ${p.backends[i]}/24 (lan), default via ${p.balancerLan}${serving}` })),
    ],
  };
}

function waitForStop(signal: AbortSignal | undefined): { stopped: Promise<string>; keepAlive: NodeJS.Timeout } {
  // Signal handlers alone do not keep Node's event loop alive.
  const keepAlive = setInterval(() => {}, 1 << 30);
  const stopped = new Promise<string>((resolve) => {
    // Installed for good: lib/lab re-raises the signal after its own
    // teardown, and that second delivery must find a handler, or it would
    // kill this process before the summary is printed.
    for (const name of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(name, () => resolve(name));
    signal?.addEventListener('abort', () => resolve('abort'), { once: true });
  });
  return { stopped, keepAlive };
}

export async function labUpCommand(options: LabUpOptions, io: CliIo): Promise<number> {
  const prefix = validateName(options.name);
  const lab = await Lab.create();
  const directory = mkdtempSync(join(tmpdir(), `${tempPrefix}${process.pid}-`));
  let keepAlive: NodeJS.Timeout | undefined;
  try {
    io.stdout(`building lab ${lab.prefix}${prefix}* ...\n`);
    const { hosts } = await buildLab(lab, prefix, options.servers !== false);
    const configFile = join(directory, 'l4lb.yaml');
    writeFileSync(configFile, balancerConfig());
    const l4lb = selfCommand();
    const socket = join(directory, 'l4lb.sock');
    const width = Math.max(...hosts.map((h) => h.host.name.length));
    const netns = (name: string) => hosts.find((h) => h.host.name === `${prefix}${name}`)!.host.netns;
    io.stdout(
      [
        `lab is up (namespaces ${lab.prefix}*):`,
        ...hosts.map(({ host, summary }) => `  ${host.name.padEnd(width)}  ${host.netns}\n  ${''.padEnd(width)}    ${summary}`),
        `VIP ${labPlan.vip}:${labPlan.servicePort} (tcp and udp) -> backends ${labPlan.backends.join(', ')} port ${labPlan.backendPort}`,
        '',
        `enter a host:      ip netns exec ${netns('client')} bash`,
        `balancer config:   ${configFile}`,
        `run the balancer:  ip netns exec ${netns('balancer')} ${l4lb} run ${configFile} --socket ${socket}`,
        `then try:          ip netns exec ${netns('client')} curl -s http://${labPlan.vip}/`,
        `and look:          ${l4lb} status --socket ${socket}`,
        'Ctrl-C removes the lab.',
        '',
      ].join('\n'),
    );
    const wait = waitForStop(options.signal);
    keepAlive = wait.keepAlive;
    const reason = await wait.stopped;
    io.stdout(`removing the lab (${reason})\n`);
  } finally {
    clearInterval(keepAlive);
    await lab.destroy();
    rmSync(directory, { recursive: true, force: true });
  }
  io.stdout('lab removed\n');
  return ExitCode.success;
}

/** `lab down`: every lab namespace on this machine (`Lab.cleanup({ all: true })`) and the lab's temporary files. */
export async function labDownCommand(io: CliIo): Promise<number> {
  const removed = await Lab.cleanup({ all: true });
  for (const entry of readdirSync(tmpdir())) {
    if (entry.startsWith(tempPrefix)) rmSync(join(tmpdir(), entry), { recursive: true, force: true });
  }
  io.stdout(removed.length === 0 ? 'no lab namespaces found\n' : `removed ${removed.length} namespace${removed.length === 1 ? '' : 's'}:\n${removed.map((n) => `  ${n}\n`).join('')}`);
  return ExitCode.success;
}
