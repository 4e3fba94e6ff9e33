// npm run demo [-- --method nat|fullnat|dr|ipip|gre] [--driver af_packet|af_xdp|dpdk] [--duration SECONDS] [--plain]
//                 [--dashboard [ADDRESS:]PORT | --no-dashboard]
//
// Builds a lab (client, balancer, three backends with HTTP and UDP servers),
// runs l4lb with one service over the AF_PACKET (or AF_XDP) driver, drives real traffic
// from the client and shows each backend's share live, in the terminal and
// on the dashboard (http://127.0.0.1:8080/ by default: this process serves
// it on the host's loopback from the balancer's stats() and rates(), which
// run in the balancer's namespace). A third of the way in
// it stops one backend's server: the health check marks it down and traffic
// shifts; two thirds in it restarts it and the backend comes back. Ctrl-C at
// any moment tears everything down (the lab removes its namespaces on
// SIGINT and SIGTERM).
import { writeFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { type Dashboard, serveDashboard } from '../lib/dashboard/index.js';
import { parseDashboardAddress, type DashboardListen } from '../lib/dashboard/options.js';
import type { DriverName, LoadBalancerStats, Method } from '../lib/index.js';
import { Lab, type LabProcess } from '../lib/lab/index.js';
import { setupLabRealServer, type LabRealServer } from '../lib/realserver/lab.js';
import { BalancerProcess, VIP, backendAddresses, backendNames, demoFile, drTopology, routedTopology, startBackends, type Topology } from './topology.js';

const program = new Command('npm run demo --')
  .description('l4lb balancing real traffic in network namespaces, with a backend failover midway')
  .addOption(new Option('--method <method>', 'forwarding method').choices(['nat', 'fullnat', 'dr', 'ipip', 'gre']).default('nat'))
  .addOption(new Option('--driver <driver>', 'data-plane driver').choices(['af_packet', 'af_xdp', 'dpdk']).default('af_packet'))
  .option('--duration <seconds>', 'how long traffic runs', (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 9 || n > 3600) throw new InvalidArgumentError('an integer from 9 to 3600');
    return n;
  }, 60)
  .option('--dashboard <[address:]port>', 'serve the live dashboard there (a port alone: on 127.0.0.1)', (v) => {
    const listen = parseDashboardAddress(v);
    if (typeof listen === 'string') throw new InvalidArgumentError(listen);
    return listen;
  }, { host: '127.0.0.1', port: 8080 })
  .option('--no-dashboard', 'no dashboard')
  .option('--plain', 'plain text, one line per second (default when stdout is not a terminal)')
  .option('--summary-json <file>', 'also write the summary as JSON')
  .parse();
const options = program.opts<{ method: Method; driver: DriverName; duration: number; dashboard: DashboardListen | false; plain?: boolean; summaryJson?: string }>();
const plain = options.plain === true || !process.stdout.isTTY;
const method = options.method;
const driver = options.driver;
const started = Date.now();
const elapsed = () => (Date.now() - started) / 1000;

function progress(step: string): void {
  process.stdout.write(`▸ ${step}\n`);
}

interface TrafficCounts {
  http: { ok: Record<string, number>; failed: number };
  udp: { ok: Record<string, number>; failed: number };
}

interface Event {
  at: number;
  text: string;
}

function lastTraffic(traffic: LabProcess): TrafficCounts {
  const lines = traffic.log.trim().split('\n').filter((l) => l.startsWith('{'));
  return lines.length ? (JSON.parse(lines[lines.length - 1]!) as TrafficCounts) : { http: { ok: {}, failed: 0 }, udp: { ok: {}, failed: 0 } };
}

const pct = (part: number, whole: number) => (whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : '-');

let lab: Lab | undefined;
let balancer: BalancerProcess | undefined;
let dashboard: Dashboard | undefined;
let realServers: LabRealServer[] = [];

async function main(): Promise<void> {
  progress(`Building the lab: client, balancer and three backends (method ${method})`);
  lab = await Lab.create();
  const topology: Topology = method === 'dr' ? await drTopology(lab, { driver }) : await routedTopology(lab, { backendGateway: method !== 'fullnat', driver });
  const tunnelled = method === 'dr' || method === 'ipip' || method === 'gre';
  if (tunnelled) {
    progress(`Setting the backends up as ${method} real servers (VIP on lo, ARP suppressed${method === 'dr' ? '' : ', userspace decapsulation'})`);
    realServers = await Promise.all(
      topology.backends.map((host) => setupLabRealServer(host, { vip: VIP, method: method as 'dr' | 'ipip' | 'gre', interface: 'eth0' })),
    );
  }
  const backendPort = tunnelled ? 80 : 8080;
  progress('Starting HTTP and UDP servers on the backends');
  const startServer = (i: number) =>
    topology.backends[i]!.spawnNode(demoFile('servers/backend.mjs'), [backendNames[i]!, '0.0.0.0', String(backendPort), ...(tunnelled ? [VIP] : [])]);
  const servers = await startBackends(topology, { port: backendPort, ...(tunnelled ? { udpBind: VIP } : {}) });

  progress(`Starting l4lb (${driver === 'af_xdp' ? 'AF_XDP' : 'AF_PACKET'} driver) in the balancer namespace`);
  balancer = await BalancerProcess.start(topology, {
    options: { driver, workers: 1, ...(method === 'fullnat' ? { localAddresses: ['198.18.1.100'] } : {}) },
    services: [
      {
        service: { address: VIP, port: 80, protocol: 'tcp', method, scheduler: 'rr', healthCheck: { type: 'http', path: '/', intervalMs: 500, timeoutMs: 400, rise: 2, fall: 2 } },
        backends: backendAddresses.map((address) => ({ address, port: backendPort })),
      },
      {
        service: { address: VIP, port: 80, protocol: 'udp', method, scheduler: 'rr', healthCheck: { type: 'none' } },
        backends: backendAddresses.map((address) => ({ address, port: backendPort })),
      },
    ],
  });
  if (options.dashboard) {
    const source = balancer;
    try {
      dashboard = await serveDashboard({ stats: () => source.stats(), rates: ({ windowMs }) => source.rates(windowMs) }, options.dashboard);
      progress(`Dashboard: ${dashboard.url} (live until the demo ends)`);
    } catch (error) {
      progress(`No dashboard: ${(error as Error).message}`);
    }
  }
  progress('Waiting for the health checks to bring the backends up');
  await balancer.waitUntilUp(30_000);
  progress(`Sending traffic from the client to ${VIP}:80 for ${options.duration} s`);
  const traffic = topology.client.spawnNode(demoFile('traffic.mjs'), [VIP, '80', '60', '4']);
  const trafficStart = Date.now();
  const t = () => (Date.now() - trafficStart) / 1000;

  const events: Event[] = [];
  const failAt = options.duration * 0.35;
  const restoreAt = options.duration * 0.65;
  let stopped = false;
  let restored = false;
  let logOffset = balancer.process.log.length;
  let previous: LoadBalancerStats | undefined;
  let previousAt = Date.now();
  let stats = await balancer.stats();
  const flowsAtDown: number[] = [];
  const flowsAtRestore: number[] = [];

  while (t() < options.duration) {
    await new Promise((r) => setTimeout(r, 1000));
    if (!stopped && t() >= failAt) {
      stopped = true;
      await servers[1]!.stop();
      events.push({ at: t(), text: 'b2: its server was stopped (demo)' });
    }
    if (stopped && !restored && t() >= restoreAt) {
      restored = true;
      flowsAtRestore.push(...(await balancer.stats()).services[0]!.backends.map((b) => b.totalFlows));
      servers[1] = startServer(1);
      await servers[1].waitForLine(/"listening"/);
      events.push({ at: t(), text: 'b2: its server was restarted (demo)' });
    }
    for (const line of balancer.process.log.slice(logOffset).split('\n')) {
      if (!line.includes('"event":"backend-state"')) continue;
      const e = JSON.parse(line) as { backend: string; state: string; reason: string };
      const name = backendNames[backendAddresses.indexOf(e.backend.split(':')[0]!)] ?? e.backend;
      events.push({ at: t(), text: `${name}: ${e.state} (${e.reason})` });
      if (name === 'b2' && e.state === 'down' && stopped && flowsAtDown.length === 0) {
        flowsAtDown.push(...(await balancer.stats()).services[0]!.backends.map((b) => b.totalFlows));
      }
    }
    logOffset = balancer.process.log.length;
    previous = stats;
    stats = await balancer.stats();
    const seconds = (Date.now() - previousAt) / 1000;
    previousAt = Date.now();
    render(stats, previous, seconds, lastTraffic(traffic), events, t());
  }
  await traffic.stop();
  stats = await balancer.stats();
  const summary = summarize(stats, lastTraffic(traffic), events, flowsAtDown, flowsAtRestore);
  process.stdout.write(`\n${summary.text}\n`);
  if (options.summaryJson) writeFileSync(options.summaryJson, JSON.stringify(summary.data, null, 2));
}

function render(stats: LoadBalancerStats, previous: LoadBalancerStats | undefined, seconds: number, traffic: TrafficCounts, events: Event[], t: number): void {
  const tcp = stats.services[0]!;
  const before = previous?.services[0];
  const totalFlows = tcp.backends.reduce((n, b) => n + b.totalFlows, 0);
  const totalPackets = stats.services.reduce((n, s) => n + s.backends.reduce((m, b) => m + b.packets, 0), 0);
  const drops = Object.entries(stats.drops).filter(([, n]) => n > 0);
  const cps = before ? (tcp.totalFlows - before.totalFlows) / seconds : 0;
  const pps = previous ? (stats.packets - previous.packets) / seconds : 0;
  const httpOk = Object.values(traffic.http.ok).reduce((a, b) => a + b, 0);
  const udpOk = Object.values(traffic.udp.ok).reduce((a, b) => a + b, 0);
  if (plain) {
    const parts = tcp.backends.map((b, i) => `${backendNames[i]} ${b.state} ${b.totalFlows}`);
    process.stdout.write(
      `t=${t.toFixed(0)}s  ${parts.join(' | ')}  ${cps.toFixed(0)} conn/s ${pps.toFixed(0)} pps  drops ${drops.length ? drops.map(([r, n]) => `${r}=${n}`).join(',') : 'none'}  ingress-path ${stats.repliesIngressPath}\n`,
    );
    return;
  }
  const lines = [
    `l4lb demo — method ${method}, driver ${driver} — VIP ${VIP}:80 — ${t.toFixed(0)} s of ${options.duration} s   (Ctrl-C stops and tears down)`,
    ...(dashboard ? [`dashboard  ${dashboard.url}`] : []),
    '',
    'backend             state   flows   share    packets   share',
    ...tcp.backends.map((b, i) => {
      const packets = stats.services.reduce((n, s) => n + s.backends[i]!.packets, 0);
      return `${(backendNames[i] + ' ' + b.address).padEnd(19)} ${b.state.padEnd(5)} ${String(b.totalFlows).padStart(7)} ${pct(b.totalFlows, totalFlows).padStart(7)} ${String(packets).padStart(10)} ${pct(packets, totalPackets).padStart(7)}`;
    }),
    '',
    `rates      ${cps.toFixed(0)} connections/s, ${pps.toFixed(0)} packets/s through the balancer`,
    `drops      ${drops.length ? drops.map(([r, n]) => `${r}=${n}`).join('  ') : 'none'}`,
    `symmetry   ${method === 'nat' || method === 'fullnat' ? `${stats.repliesIngressPath} replies left on their flow's ingress path` : `replies bypass the balancer in ${method}`}`,
    `client     ${httpOk} HTTP answers (${traffic.http.failed} failed), ${udpOk} UDP answers (${traffic.udp.failed} lost)`,
    '',
    'events',
    ...events.slice(-6).map((e) => `  ${e.at.toFixed(1).padStart(5)} s  ${e.text}`),
  ];
  process.stdout.write(`\x1b[2J\x1b[H${lines.join('\n')}\n`);
}

function summarize(stats: LoadBalancerStats, traffic: TrafficCounts, events: Event[], atDown: number[], atRestore: number[]) {
  const tcp = stats.services[0]!;
  const down = events.find((e) => e.text.startsWith('b2: down'));
  const up = events.find((e, i) => e.text.startsWith('b2: up') && down !== undefined && i > events.indexOf(down));
  // New connections b2 received between being marked down and its restart: the failover at work.
  const b2DuringOutage = atRestore.length && atDown.length ? atRestore[1]! - atDown[1]! : undefined;
  const data = {
    method,
    driver,
    backends: tcp.backends.map((b, i) => ({ name: backendNames[i], address: b.address, flows: b.totalFlows, packets: b.packets, state: b.state })),
    http: traffic.http,
    udp: traffic.udp,
    failover: { markedDownAfterStopS: down ? Number((down.at - (events.find((e) => e.text.includes('stopped'))?.at ?? 0)).toFixed(1)) : null, b2FlowsWhileDown: b2DuringOutage ?? null, backUp: up !== undefined },
    drops: Object.fromEntries(Object.entries(stats.drops).filter(([, n]) => n > 0)),
    repliesIngressPath: stats.repliesIngressPath,
  };
  const lines = [
    `Summary (${method}, ${driver}, ${elapsed().toFixed(0)} s including set-up)`,
    ...data.backends.map((b) => `  ${b.name} ${b.address}: ${b.flows} connections, ${b.packets} packets, ${b.state}`),
    `  client: ${Object.values(traffic.http.ok).reduce((a, b) => a + b, 0)} HTTP answers, ${traffic.http.failed} failed; ${Object.values(traffic.udp.ok).reduce((a, b) => a + b, 0)} UDP answers`,
    `  failover: b2 stopped, marked down ${data.failover.markedDownAfterStopS ?? '?'} s later, received ${data.failover.b2FlowsWhileDown ?? '?'} new connections while marked down, ${data.failover.backUp ? 'back up after its restart' : 'not back up yet'}`,
    `  drops: ${Object.keys(data.drops).length ? Object.entries(data.drops).map(([r, n]) => `${r}=${n}`).join(' ') : 'none'}`,
  ];
  return { text: lines.join('\n'), data };
}

async function cleanup(): Promise<void> {
  await dashboard?.close();
  await balancer?.close().catch(() => undefined);
  for (const server of realServers) await server.down().catch(() => undefined);
  await lab?.destroy();
}

try {
  await main();
  progress('Tearing down');
  await cleanup();
  progress('Done');
} catch (error) {
  process.stderr.write(`demo failed: ${(error as Error).message}\n`);
  await cleanup();
  process.exitCode = 1;
}
