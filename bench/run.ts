// npm run bench [-- --full | --scenario NAME] [--json FILE] [--markdown FILE] [--svg FILE] [--seconds N] [--list]
//
// Builds the namespace testbed (bench/throughput/testbed.ts), calibrates the
// generator straight into the sink, then measures every forwarder on the same
// topology in one run: l4lb (nat, fullnat, dr, ipip, gre), the MAC-only
// forwarder on l4lb's port code, Linux routing, nftables DNAT, IPVS where the
// kernel has it, and for TCP HAProxy; then the micro benchmarks. Prints a
// headline table; writes JSON, Markdown and SVG when asked. Needs root.
import { cpus, totalmem } from 'node:os';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadBinding } from '../lib/native/binding.js';
import { microCaseCount, runMicro } from './micro/micro.js';
import { renderHeadline, renderMarkdown, renderSvg } from './report/render.js';
import { evaluateTargets } from './report/targets.js';
import { execFileSync, spawn } from 'node:child_process';
import type { BenchReport, HogScenario, IdleScenario, StormScenario, TcpScenario, UdpScenario } from './report/types.js';
import { cpuDelta, loadAverage, processCpuNs, processTreeRunNs, sampleCpu, threadRunNs } from './throughput/cpu.js';
import { kernelForwarder, l4lbForwarder, macOnlyForwarder, methods, type RunningForwarder, startBalancer, udpService } from './throughput/forwarders.js';
import type { BalancerUnderTest } from './throughput/l4lb-process.js';
import { startTcpServer, tcpBulk, tcpConnections, tcpService, type TcpForwarder } from './throughput/tcp.js';
import { buildTestbed, disableKernelForwarding, enableNftDnat, enableRouting, haproxyPath, ipvsAvailability, startHaproxy, type Testbed } from './throughput/testbed.js';
import { UdpDriver, type UdpRunResult } from './throughput/udp.js';

// ---- arguments ---------------------------------------------------------------------------

interface Args {
  full: boolean;
  scenarios: string[];
  json?: string;
  markdown?: string;
  svg?: string;
  seconds?: number;
  list: boolean;
}

function usage(message?: string): never {
  if (message) console.error(`bench: ${message}`);
  console.error('usage: npm run bench -- [--full] [--scenario NAME]... [--json FILE] [--markdown FILE] [--svg FILE] [--seconds N] [--list]');
  process.exit(2);
}

function parseArgs(argv: string[]): Args {
  const args: Args = { full: false, scenarios: [], list: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => argv[++i] ?? usage(`${a} needs a value`);
    if (a === '--full') args.full = true;
    else if (a === '--scenario') args.scenarios.push(value());
    else if (a === '--json') args.json = value();
    else if (a === '--markdown') args.markdown = value();
    else if (a === '--svg') args.svg = value();
    else if (a === '--seconds') args.seconds = Number(value());
    else if (a === '--list') args.list = true;
    else if (a === '--help' || a === '-h') usage();
    else usage(`unknown argument ${a}`);
  }
  if (args.seconds !== undefined && !(args.seconds > 0 && args.seconds <= 60)) usage('--seconds must be in (0, 60]');
  return args;
}

// ---- the plan -------------------------------------------------------------------------

// l4lb-METHOD runs over af_packet (the default driver), l4lb-af_xdp-METHOD over af_xdp,
// l4lb-dpdk-METHOD over dpdk (net_af_xdp vdevs).
type UdpForwarder = 'mac-only' | 'mac-only-af_xdp' | `l4lb-${(typeof methods)[number]}` | 'l4lb-af_xdp-nat' | 'l4lb-dpdk-nat' | 'routing' | 'nftables-dnat';

interface Plan {
  udp: Array<{ forwarder: UdpForwarder; frameSize: number; flows: number; atCalibratedRate: boolean }>;
  ipvs: boolean;
  storms: Array<'storm-l4lb-nat' | 'storm-nftables-dnat' | 'flows-1m-l4lb-nat'>;
  idle: boolean;
  hogs: HogForwarder[];
  tcp: TcpForwarder[];
  micro: boolean;
}

type HogForwarder = 'l4lb-nat' | 'nftables-dnat';
const hogForwarders: HogForwarder[] = ['l4lb-nat', 'nftables-dnat'];

const udpForwarders: UdpForwarder[] = ['mac-only', 'mac-only-af_xdp', 'l4lb-nat', 'l4lb-af_xdp-nat', 'l4lb-dpdk-nat', 'l4lb-fullnat', 'l4lb-dr', 'l4lb-ipip', 'l4lb-gre', 'routing', 'nftables-dnat'];
const tcpForwarders: TcpForwarder[] = ['l4lb-nat', 'haproxy', 'routing', 'nftables-dnat'];
const udpName = (s: { forwarder: string; frameSize: number; flows: number }) => `${s.forwarder}-${s.frameSize}b-${s.flows}f`;

function fullPlan(): Plan {
  const udp: Plan['udp'] = [];
  for (const forwarder of udpForwarders) {
    for (const frameSize of [64, 1500]) {
      for (const flows of [1, 65536]) {
        const paced = frameSize === 64 && ['l4lb-nat', 'l4lb-af_xdp-nat', 'l4lb-dpdk-nat', 'l4lb-dr', 'l4lb-ipip', 'l4lb-gre', 'mac-only', 'mac-only-af_xdp'].includes(forwarder);
        udp.push({ forwarder, frameSize, flows, atCalibratedRate: paced });
      }
    }
  }
  return { udp, ipvs: true, storms: ['storm-l4lb-nat', 'storm-nftables-dnat', 'flows-1m-l4lb-nat'], idle: true, hogs: hogForwarders, tcp: tcpForwarders, micro: true };
}

/** About two minutes: 64-byte frames, 65,536 flows, every forwarder; nat also with 1 flow and at the calibrated rate. */
function quickPlan(): Plan {
  const udp: Plan['udp'] = udpForwarders.map((forwarder) => ({ forwarder, frameSize: 64, flows: 65536, atCalibratedRate: forwarder === 'l4lb-nat' || forwarder === 'l4lb-af_xdp-nat' || forwarder === 'l4lb-dpdk-nat' }));
  udp.splice(1, 0, { forwarder: 'l4lb-nat', frameSize: 64, flows: 1, atCalibratedRate: false });
  return { udp, ipvs: true, storms: [], idle: true, hogs: hogForwarders, tcp: ['l4lb-nat', 'haproxy'], micro: true };
}

function allNames(): string[] {
  const p = fullPlan();
  return [...p.udp.map(udpName), 'ipvs', ...p.storms, 'idle-l4lb', ...p.hogs.map((h) => `hog-${h}`), ...p.tcp.map((t) => `tcp-${t}`), 'micro'];
}

function selectedPlan(names: string[]): Plan {
  const p = fullPlan();
  const known = new Set(allNames());
  for (const n of names) if (!known.has(n)) usage(`unknown scenario ${n} (--list shows them)`);
  const has = (n: string) => names.includes(n);
  return {
    udp: p.udp.filter((s) => has(udpName(s))),
    ipvs: has('ipvs'),
    storms: p.storms.filter(has),
    idle: has('idle-l4lb'),
    hogs: p.hogs.filter((h) => has(`hog-${h}`)),
    tcp: p.tcp.filter((t) => has(`tcp-${t}`)),
    micro: has('micro'),
  };
}

// ---- progress -------------------------------------------------------------------------

class Progress {
  private step = 0;
  private readonly started = Date.now();
  constructor(private readonly total: number) {}
  next(label: string): void {
    this.step += 1;
    const elapsed = ((Date.now() - this.started) / 1000).toFixed(0).padStart(3);
    const line = `[${String(this.step).padStart(2)}/${this.total}] ${elapsed} s  ${label}`;
    if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${line}`);
    else process.stderr.write(`${line}\n`);
  }
  note(text: string): void {
    if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${text}\n`);
    else process.stderr.write(`${text}\n`);
  }
  done(): void {
    if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
  }
}

// ---- main -------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.list) {
    console.log(allNames().join('\n'));
    return;
  }
  if (process.getuid?.() !== 0) {
    console.error('bench: npm run bench needs root: it builds network namespaces, veth links and AF_PACKET sockets (run it with sudo)');
    process.exit(1);
  }
  const mode: BenchReport['mode'] = args.scenarios.length > 0 ? 'selected' : args.full ? 'full' : 'quick';
  const plan = mode === 'selected' ? selectedPlan(args.scenarios) : mode === 'full' ? fullPlan() : quickPlan();
  const seconds = args.seconds ?? (mode === 'full' ? 2 : 1);
  const settings = {
    throughputMs: seconds * 1000,
    latencyMs: Math.min(seconds, 1.5) * 1000,
    warmupMs: 300,
    lowRatePps: 10_000,
    highRateFraction: 0.8,
  };
  const nproc = cpus().length;
  const generatorCpu = 0;
  const forwarderCpu = nproc > 1 ? 1 : 0;
  // The harness itself (Node's main thread, V8's and libuv's threads) stays
  // off the forwarder's CPU: a harness thread there delays the forwarder's
  // wake-ups by scheduler slices (milliseconds), which is not the
  // forwarder's latency. Threads that pin themselves (generator, sink,
  // MAC-only forwarder) still go where they ask.
  if (nproc > 1) execFileSync('taskset', ['--all-tasks', '--pid', '--cpu-list', String(generatorCpu), String(process.pid)], { stdio: 'ignore' });
  const binding = loadBinding();
  const startedAt = Date.now();
  const report: BenchReport = {
    version: 1,
    mode,
    machine: {
      nproc,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
      node: process.versions.node,
      memoryGiB: totalmem() / 2 ** 30,
      loadAverageStart: loadAverage(),
      loadAverageEnd: 0,
      date: new Date().toISOString(),
      generatorCpu,
      forwarderCpu,
    },
    settings,
    calibration: {},
    scenarios: [],
    ipvs: { available: false, reason: 'not checked' },
    micro: [],
    targets: [],
    durationS: 0,
  };

  const frameSizes = [...new Set(plan.udp.map((s) => s.frameSize).concat(plan.storms.length > 0 ? [64] : []))].sort((a, b) => a - b);
  const microSteps = plan.micro ? microCaseCount(mode !== 'full') : 0;
  const steps = 1 + frameSizes.length + plan.udp.length + (plan.ipvs ? 1 : 0) + plan.storms.length + (plan.idle ? 2 : 0) + plan.hogs.length + plan.tcp.length + microSteps;
  const progress = new Progress(steps);
  if (nproc < 2) progress.note('bench: one CPU only: generator and forwarder share it, so rates and costs mix');

  progress.next('building the testbed');
  const bed = await buildTestbed({ generatorCpu, forwarderCpu });
  const udp = new UdpDriver(binding.bench, bed);
  let balancer: BalancerUnderTest | undefined;
  try {
    // 1. Calibration: generator straight into the sink, flat out and at the low rate.
    for (const frameSize of frameSizes) {
      progress.next(`calibration, ${frameSize}-byte frames`);
      const throughput = await udp.run({ path: 'calibration', frameSize, flows: 1, durationMs: settings.throughputMs, warmupMs: settings.warmupMs });
      const latencyLow = await udp.run({ path: 'calibration', frameSize, flows: 1, ratePps: settings.lowRatePps, durationMs: settings.latencyMs });
      report.calibration[String(frameSize)] = { throughput, latencyLow };
    }
    const calibratedRate = (frameSize: number) => report.calibration[String(frameSize)]?.throughput?.offeredPps ?? 0;
    // What forwarding adds per packet: the run's cost less the calibration's at the same frame size.
    const calibrationCost = (frameSize: number) => report.calibration[String(frameSize)]?.throughput?.threadsNsPerPacket ?? 0;
    const calibrationSystemCost = (frameSize: number) => report.calibration[String(frameSize)]?.throughput?.systemNsPerPacket ?? 0;

    // 2. UDP scenarios, one forwarder at a time (l4lb runs one balancer for all its methods).
    const runUdp = async (spec: Plan['udp'][number], forwarder: RunningForwarder): Promise<UdpScenario> => {
      const scenario: UdpScenario = { name: udpName(spec), kind: 'udp', forwarder: spec.forwarder, frameSize: spec.frameSize, flows: spec.flows, status: 'ok' };
      const common = { path: 'forward' as const, probe: forwarder, frameSize: spec.frameSize, flows: spec.flows, threads: forwarder.threads };
      scenario.throughput = await udp.run({ ...common, durationMs: settings.throughputMs, warmupMs: settings.warmupMs });
      scenario.addedNsPerPacket = scenario.throughput.threadsNsPerPacket - calibrationCost(spec.frameSize);
      scenario.addedSystemNsPerPacket = scenario.throughput.systemNsPerPacket - calibrationSystemCost(spec.frameSize);
      if (spec.atCalibratedRate) {
        scenario.atCalibratedRate = await udp.run({ ...common, ratePps: calibratedRate(spec.frameSize), durationMs: settings.throughputMs });
      }
      scenario.latencyLow = await udp.run({ ...common, ratePps: settings.lowRatePps, durationMs: settings.latencyMs });
      const capacity = Math.min(scenario.throughput.deliveredPps, scenario.throughput.offeredPps);
      scenario.latencyHigh = await udp.run({ ...common, ratePps: capacity * settings.highRateFraction, durationMs: settings.latencyMs });
      return scenario;
    };
    const failed = (spec: Plan['udp'][number], error: unknown): UdpScenario => ({
      name: udpName(spec), kind: 'udp', forwarder: spec.forwarder, frameSize: spec.frameSize, flows: spec.flows, status: 'failed',
      reason: (error as Error).message.split('\n')[0]!,
    });

    // Forwarders are compared within one (frame size, flows) combination run
    // back to back, so that a burst of other tenants' load on this shared
    // machine falls on as few of the compared runs as possible.
    const combinations = [...new Set(plan.udp.map((s) => `${s.frameSize}/${s.flows}`))];
    for (const combination of combinations) {
      const specs = plan.udp.filter((s) => `${s.frameSize}/${s.flows}` === combination);
      for (const group of ['mac-only', 'mac-only-af_xdp', 'l4lb', 'l4lb-af_xdp', 'l4lb-dpdk', 'routing', 'nftables-dnat']) {
        const overDriver = (s: { forwarder: string }) => s.forwarder.startsWith('l4lb-af_xdp') || s.forwarder.startsWith('l4lb-dpdk');
        const groupSpecs = specs.filter((s) =>
          group === 'l4lb' ? s.forwarder.startsWith('l4lb') && !overDriver(s) : group.startsWith('l4lb-') ? s.forwarder.startsWith(group) : s.forwarder === group);
        if (groupSpecs.length === 0) continue;
        try {
          if (group === 'l4lb') balancer = await startBalancer(bed);
          if (group === 'l4lb-af_xdp') balancer = await startBalancer(bed, undefined, 'af_xdp');
          if (group === 'l4lb-dpdk') balancer = await startBalancer(bed, undefined, 'dpdk');
          for (const spec of groupSpecs) {
            progress.next(udpName(spec));
            let forwarder: RunningForwarder | undefined;
            try {
              if (group === 'mac-only') forwarder = await macOnlyForwarder(binding, bed);
              else if (group === 'mac-only-af_xdp') forwarder = await macOnlyForwarder(binding, bed, 'af_xdp');
              else if (group.startsWith('l4lb')) forwarder = await l4lbForwarder(balancer!, spec.forwarder.split('-').pop() as (typeof methods)[number], bed, spec.forwarder);
              else forwarder = await kernelForwarder(bed, group as 'routing' | 'nftables-dnat');
              report.scenarios.push(await runUdp(spec, forwarder));
            } catch (error) {
              report.scenarios.push(failed(spec, error));
              progress.note(`bench: ${udpName(spec)} failed: ${(error as Error).message.split('\n')[0]}`);
            } finally {
              await forwarder?.stop();
            }
          }
        } finally {
          await balancer?.close();
          balancer = undefined;
        }
      }
    }
    if (plan.idle) {
      balancer = await startBalancer(bed);
      await balancer.configure([udpService('nat')]);
      await balancer.waitUntilResolved();
      report.scenarios.push(await measureIdle(bed, balancer, progress, 'idle-l4lb'));
      // Idle again while the table holds 65,536 flows (a balancer just after traffic: UDP flows live 300 s).
      // Paced so that every flow's frames arrive (flat out, a loaded machine drops some).
      await udp.run({ path: 'forward', frameSize: 64, flows: 65536, ratePps: 100_000, durationMs: 1500 });
      report.scenarios.push(await measureIdle(bed, balancer, progress, 'idle-l4lb-with-flows'));
      await balancer.close();
      balancer = undefined;
    }
    for (const name of plan.hogs) {
      progress.next(`hog-${name}`);
      report.scenarios.push(await measureUnderHog(bed, udp, name, settings.throughputMs, (b) => (balancer = b)));
      await balancer?.close();
      balancer = undefined;
    }
    if (plan.storms.includes('storm-nftables-dnat')) {
      progress.next('storm-nftables-dnat');
      const forwarder = await kernelForwarder(bed, 'nftables-dnat');
      try {
        const run = await udp.run({ path: 'forward', frameSize: 64, flows: 'new-per-frame', firstFlow: 100_000, durationMs: settings.throughputMs });
        report.scenarios.push({ name: 'storm-nftables-dnat', kind: 'storm', forwarder: 'nftables-dnat', status: 'ok', run, addedNsPerPacket: run.threadsNsPerPacket - calibrationCost(64) });
      } finally {
        await forwarder.stop();
      }
    }
    if (plan.storms.includes('storm-l4lb-nat') || plan.storms.includes('flows-1m-l4lb-nat')) {
      // One balancer sized for a million nat flows (flows.capacity: the
      // table at its 90% design load when they are all held): the storm
      // inserts into a table with room, then the million-flow test fills it.
      const capacity = 1_000_000;
      balancer = await startBalancer(bed, capacity);
      try {
        if (plan.storms.includes('storm-l4lb-nat')) {
          progress.next('storm-l4lb-nat');
          report.scenarios.push(await measureStorm(bed, udp, balancer, 'storm-l4lb-nat', settings, calibrationCost(64)));
        }
        if (plan.storms.includes('flows-1m-l4lb-nat')) {
          progress.next('flows-1m-l4lb-nat');
          // Paced below the rate the worker inserts new flows at (the storm's, when it ran).
          const storm = report.scenarios.find((x): x is StormScenario => x.name === 'storm-l4lb-nat' && x.status === 'ok');
          const insertRate = storm?.run ? Math.max(20_000, Math.min(storm.run.deliveredPps, storm.run.offeredPps) * 0.7) : 60_000;
          report.scenarios.push(await measureMillionFlows(bed, udp, balancer, calibrationCost(64), insertRate));
        }
      } finally {
        await balancer.close();
        balancer = undefined;
      }
    }

    // 3. IPVS.
    if (plan.ipvs) {
      progress.next('ipvs');
      report.ipvs = await ipvsAvailability(bed);
      if (!report.ipvs.available) {
        for (const frameSize of frameSizes) {
          report.scenarios.push({ name: `ipvs-${frameSize}b`, kind: 'udp', forwarder: 'ipvs', frameSize, flows: 0, status: 'unavailable', reason: report.ipvs.reason });
        }
      }
    }

    // 4. TCP.
    if (plan.tcp.length > 0) {
      const server = await startTcpServer(bed);
      try {
        for (const forwarder of plan.tcp) {
          progress.next(`tcp-${forwarder}`);
          report.scenarios.push(await measureTcp(bed, forwarder, settings.throughputMs * 3));
        }
      } finally {
        await server.stop();
      }
    }

    // 5. Ratios against every baseline at the same frame size and flows.
    for (const s of report.scenarios.filter((x): x is UdpScenario => x.kind === 'udp' && x.status === 'ok' && x.forwarder.startsWith('l4lb'))) {
      s.ratios = {};
      for (const b of report.scenarios.filter((x): x is UdpScenario => x.kind === 'udp' && x.status === 'ok' && !x.forwarder.startsWith('l4lb'))) {
        if (b.frameSize !== s.frameSize || b.flows !== s.flows || !b.throughput || !s.throughput) continue;
        // Against the MAC-only forwarder: the forwarding threads' CPU per packet; against the kernel: the CPU added per packet.
        const threads = b.forwarder.startsWith('mac-only') && b.throughput.forwarderThreadNsPerPacket && s.throughput.forwarderThreadNsPerPacket;
        s.ratios[b.forwarder] = {
          delivered: s.throughput.deliveredPps / b.throughput.deliveredPps,
          cost: threads ? s.throughput.forwarderThreadNsPerPacket! / b.throughput.forwarderThreadNsPerPacket! : (s.addedNsPerPacket ?? 0) / (b.addedNsPerPacket ?? 1),
          costMeasure: threads ? 'forwarding thread CPU ns per packet' : 'CPU added per packet over the calibration',
        };
      }
    }
  } finally {
    udp.close();
    await balancer?.close().catch(() => undefined);
    await disableKernelForwarding(bed).catch(() => undefined);
    await bed.lab.destroy();
  }

  // 6. Micro benchmarks (no network: after the testbed is gone).
  if (plan.micro) {
    report.micro = runMicro(binding, { quick: mode !== 'full', onProgress: (name) => progress.next(`micro: ${name}`) });
  }
  progress.done();
  report.machine.loadAverageEnd = loadAverage();
  report.durationS = (Date.now() - startedAt) / 1000;
  report.targets = evaluateTargets(report);

  console.log(renderHeadline(report));
  if (args.json) writeFileSync(args.json, JSON.stringify(report, null, 2) + '\n');
  if (args.markdown) writeFileSync(args.markdown, renderMarkdown(report));
  if (args.svg) writeFileSync(args.svg, renderSvg(report));
}

// ---- scenarios with their own procedure ----------------------------------------------------------

// Long enough that a wake-up every 100 ms and a sample every second show as what they cost.
const idleSeconds = 10;

async function measureIdle(bed: Testbed, balancer: BalancerUnderTest, progress: Progress, name: string): Promise<IdleScenario> {
  progress.next(name);
  // Let the last run's frames drain, the worker fall back to sleeping and a
  // freshly started process finish its start-up (module compilation, V8's
  // tier-up, the garbage collections after it): a balancer is idle long after
  // it started. Measured here: 1.1% of a core 3 s after start, 0.04% after 12 s.
  await sleep(10_000);
  const threads = balancer.workerTids.map((tid) => ({ pid: balancer.pid, tid }));
  const workerRunNs = () => balancer.workerTids.reduce((sum, tid) => sum + threadRunNs(balancer.pid, tid), 0);
  const processBefore = processTreeRunNs(balancer.pid);
  const workerBefore = workerRunNs();
  const before = sampleCpu(threads);
  await sleep(idleSeconds * 1000);
  const after = sampleCpu(threads);
  const processAfter = processTreeRunNs(balancer.pid);
  const workerAfter = workerRunNs();
  const cpu = cpuDelta(before, after);
  const flows = (await balancer.snapshot()).stats.flows.active;
  return {
    name,
    kind: 'idle',
    flows,
    status: threads.length > 0 ? 'ok' : 'failed',
    ...(threads.length === 0 ? { reason: 'the worker thread was not found' } : {}),
    seconds: cpu.wallNs / 1e9,
    workerCpu: (workerAfter - workerBefore) / cpu.wallNs,
    processCpu: (processAfter - processBefore) / cpu.wallNs,
    forwarderCore: cpu.cores[bed.forwarderCpu]!,
  };
}

/** An IPv4 nat flow takes two table slots; the slot size comes from the addon. */
function natFlowTableBytes(): number {
  return 2 * loadBinding().bench.flowTableBytesPerSlot;
}

/**
 * A busy loop pinned to the forwarder's CPU (a noisy neighbour at the same
 * priority) while the generator sends flat out: the forwarder should keep
 * about the share the scheduler gives it, not collapse. On veth the kernel
 * forwarders work on the generator's CPU, so the hog costs them little;
 * both are reported.
 */
async function measureUnderHog(
  bed: Testbed,
  udp: UdpDriver,
  name: HogForwarder,
  durationMs: number,
  keep: (balancer: BalancerUnderTest) => void,
): Promise<HogScenario> {
  const scenario: HogScenario = { name: `hog-${name}`, kind: 'hog', forwarder: name, status: 'ok', frameSize: 64, flows: 65536 };
  let forwarder: RunningForwarder | undefined;
  let hog: ReturnType<typeof spawn> | undefined;
  try {
    if (name === 'l4lb-nat') {
      const balancer = await startBalancer(bed);
      keep(balancer);
      forwarder = await l4lbForwarder(balancer, 'nat', bed);
    } else {
      forwarder = await kernelForwarder(bed, name);
    }
    const common = { path: 'forward' as const, probe: forwarder, frameSize: 64, flows: 65536, threads: forwarder.threads, durationMs, warmupMs: 300 };
    scenario.alone = await udp.run(common);
    hog = spawn('taskset', ['-c', String(bed.forwarderCpu), process.execPath, '-e', 'for (;;) {}'], { stdio: 'ignore' });
    await sleep(200);
    if (hog.exitCode !== null) throw new Error('the CPU hog (taskset, util-linux) did not start');
    scenario.withHog = await udp.run(common);
    scenario.retained = scenario.alone.deliveredPps > 0 ? scenario.withHog.deliveredPps / scenario.alone.deliveredPps : 0;
  } catch (error) {
    scenario.status = 'failed';
    scenario.reason = (error as Error).message.split('\n')[0]!;
  } finally {
    hog?.kill('SIGKILL');
    await forwarder?.stop();
  }
  return scenario;
}

async function measureStorm(
  bed: Testbed,
  udp: UdpDriver,
  balancer: BalancerUnderTest,
  name: 'storm-l4lb-nat',
  settings: { throughputMs: number },
  calibrationCost: number,
): Promise<StormScenario> {
  const forwarder = await l4lbForwarder(balancer, 'nat', bed);
  const run = await udp.run({ path: 'forward', probe: forwarder, threads: forwarder.threads, frameSize: 64, flows: 'new-per-frame', firstFlow: 4_000_000, durationMs: settings.throughputMs });
  const snapshot = await balancer.snapshot();
  return {
    name,
    kind: 'storm',
    forwarder: 'l4lb-nat',
    status: 'ok',
    run,
    addedNsPerPacket: run.threadsNsPerPacket - calibrationCost,
    flowsCreated: snapshot.stats.counters.flowsCreated ?? 0,
    flowsHeld: snapshot.stats.flows.active,
    flowTableFull: snapshot.stats.drops['flow-table-full'] ?? 0,
    tableBytesPerFlow: natFlowTableBytes(),
    capacity: snapshot.stats.flows.capacity,
  };
}

/**
 * A million nat flows at once, on a balancer sized for them: storms of
 * distinct new flows, paced below the rate at which the worker inserts
 * flows, until a million are tracked (at most four rounds). Memory per flow:
 * what creating the flow table added to the balancer's resident size,
 * divided by the flows held.
 */
async function measureMillionFlows(
  bed: Testbed,
  udp: UdpDriver,
  balancer: BalancerUnderTest,
  calibrationCost: number,
  insertRatePps: number,
): Promise<StormScenario> {
  const flows = 1_000_000;
  try {
    const forwarder = await l4lbForwarder(balancer, 'nat', bed);
    const before = await balancer.snapshot();
    let run: UdpRunResult | undefined;
    let firstFlow = 8_000_000;
    let held = before.stats.flows.active;
    for (let round = 0; round < 4 && held < flows; round++) {
      const result = await udp.run({
        path: 'forward', probe: forwarder, threads: forwarder.threads, frameSize: 64, flows: 'new-per-frame', firstFlow,
        ratePps: insertRatePps, maxFrames: Math.ceil((flows - held) * 1.02), durationMs: 60_000,
      });
      firstFlow = result.nextFlow;
      run ??= result;
      held = (await balancer.snapshot()).stats.flows.active;
    }
    const after = await balancer.snapshot();
    held = after.stats.flows.active;
    return {
      name: 'flows-1m-l4lb-nat',
      kind: 'storm',
      forwarder: 'l4lb-nat',
      status: 'ok',
      run: run!,
      addedNsPerPacket: run!.threadsNsPerPacket - calibrationCost,
      flowsCreated: (after.stats.counters.flowsCreated ?? 0) - (before.stats.counters.flowsCreated ?? 0),
      flowsHeld: held,
      flowTableFull: (after.stats.drops['flow-table-full'] ?? 0) - (before.stats.drops['flow-table-full'] ?? 0),
      rssBytesPerFlow: held > 0 ? (balancer.rssAfterCreate - balancer.rssBeforeCreate) / held : 0,
      tableBytesPerFlow: natFlowTableBytes(),
      capacity: after.stats.flows.capacity,
    };
  } catch (error) {
    return { name: 'flows-1m-l4lb-nat', kind: 'storm', forwarder: 'l4lb-nat', status: 'failed', reason: (error as Error).message.split('\n')[0]! };
  }
}

/** Connections per second at which every forwarder's CPU per connection is compared. */
const tcpComparisonRate = 250;

async function measureTcp(bed: Testbed, forwarder: TcpForwarder, durationMs: number): Promise<TcpScenario> {
  const scenario: TcpScenario = { name: `tcp-${forwarder}`, kind: 'tcp', forwarder, status: 'ok' };
  let stop: () => Promise<void> = async () => {};
  try {
    let balancer: BalancerUnderTest | undefined;
    let processCpu: (() => number) | undefined;
    if (forwarder === 'l4lb-nat') {
      balancer = await startBalancer(bed);
      await balancer.configure([tcpService() as never]);
      await balancer.waitUntilResolved();
      stop = () => balancer!.close();
    } else if (forwarder === 'haproxy') {
      const binary = haproxyPath();
      if (!binary) return { ...scenario, status: 'unavailable', reason: 'haproxy is not installed (Debian package haproxy)' };
      await disableKernelForwarding(bed);
      const proc = await startHaproxy(bed, binary);
      processCpu = () => processCpuNs(proc.child.pid!);
      stop = async () => void (await proc.stop());
    } else {
      await disableKernelForwarding(bed);
      if (forwarder === 'routing') await enableRouting(bed);
      else await enableNftDnat(bed);
      stop = () => disableKernelForwarding(bed);
    }
    const third = Math.max(500, durationMs / 3);
    const extra = { ...(balancer ? { balancer } : {}), ...(processCpu ? { processCpuNs: processCpu } : {}) };
    // The connection rate each forwarder reaches (the client and server limit it here), then the CPU
    // per connection at one rate for all, below the slowest forwarder's: adaptive polling costs
    // depend on the rate, so CPU per connection is compared at the same one.
    scenario.connections = await tcpConnections(bed, forwarder, { durationMs: third, concurrency: 8, ...extra });
    scenario.connectionsAtSameRate = await tcpConnections(bed, forwarder, { durationMs: third, concurrency: 8, ratePerSecond: tcpComparisonRate, ...extra });
    scenario.bulk = await tcpBulk(bed, forwarder, { durationMs: third, ...extra });
    if (scenario.connections.completed === 0) {
      scenario.status = 'failed';
      scenario.reason = `no connection completed (${scenario.connections.firstError ?? 'no error'})`;
    }
  } catch (error) {
    scenario.status = 'failed';
    scenario.reason = (error as Error).message.split('\n')[0]!;
  } finally {
    await stop().catch(() => undefined);
  }
  return scenario;
}


main().catch((error) => {
  console.error(`bench: ${(error as Error).stack ?? error}`);
  process.exit(1);
});
