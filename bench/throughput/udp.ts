// One measured UDP run: the generator sends for a while, the sink counts, and
// everything that costs CPU is sampled before and after.
import type { NativeBench, NativeTrafficGenerator, NativeTrafficSink } from '../../lib/native/binding.js';
import { cpuDelta, type CoreUse, sampleCpu, softirqThreadsCpuNs } from './cpu.js';
import { ipv4ToNumber } from '../../lib/config/addresses.js';
import { GENERATOR_ADDRESS, SINK_FAKE_MAC, type Testbed, UDP_PORT, VIP } from './testbed.js';

export interface ForwarderCounters {
  /** Frames the forwarder received. */
  packets: number;
  /** Busy-time accounting (time of batches that received frames), user-space forwarders. */
  busyNs?: number;
  /** The forwarding thread's CPU time. */
  threadCpuNs?: number;
  flowsActive?: number;
  drops?: Record<string, number>;
}

/** What is being measured: how to read its counters between runs. */
export interface ForwarderProbe {
  name: string;
  counters(): Promise<ForwarderCounters | undefined>;
}

export interface LatencySummary {
  p50Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
  meanUs: number;
  samples: number;
}

export interface UdpRunResult {
  frameSize: number;
  flows: number | 'new-per-frame';
  targetPps: number | 'flat-out';
  durationS: number;
  offeredPps: number;
  deliveredPps: number;
  sent: number;
  delivered: number;
  loss: number;
  sinkDrops: number;
  latency: LatencySummary;
  /** Busy-time ns per packet of a user-space forwarder (engine accounting). */
  forwarderBusyNsPerPacket?: number;
  /** Thread CPU ns per packet of a user-space forwarder. */
  forwarderThreadNsPerPacket?: number;
  /** Both cores' busy time (/proc/stat), less other tenants' visible use, per delivered packet. */
  systemNsPerPacket: number;
  /**
   * CPU time of every thread the run used, per delivered packet: generator,
   * sink reader, the forwarder's thread, ksoftirqd. Exact per-thread clocks,
   * untouched by other tenants; on veth it includes the kernel work each
   * thread's sends trigger (lb's receive, a kernel forwarder's forwarding,
   * the sink's receive), so it is the whole cost of a packet's trip.
   */
  threadsNsPerPacket: number;
  cores: CoreUse[];
  foreignCpuMs: number;
  /** Other tenants' visible CPU use as a share of the machine during the run. */
  foreignShare: number;
  /** Runs made: a run disturbed by other tenants is repeated (the least disturbed is kept). */
  attempts: number;
  forwarderDrops?: Record<string, number>;
  flowsActive?: number;
}

let nextTag = 1 + Math.floor(Math.random() * 1000) * 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class UdpDriver {
  private generators = new Map<string, NativeTrafficGenerator>();
  private sinks = new Map<string, NativeTrafficSink>();

  constructor(
    private readonly bench: NativeBench,
    private readonly bed: Testbed,
  ) {}

  /** The generator for a path ('forward': through lb, 'calibration': straight to the sink) and frame size. */
  generator(path: 'forward' | 'calibration', frameSize: number): NativeTrafficGenerator {
    const key = `${path}/${frameSize}`;
    let generator = this.generators.get(key);
    if (!generator) {
      const forward = path === 'forward';
      generator = new this.bench.TrafficGenerator({
        interface: forward ? 'eth0' : 'cal0',
        netnsPath: this.bed.netnsPath(this.bed.gen),
        dstMac: forward ? this.bed.macs.lbEth0 : SINK_FAKE_MAC,
        srcMac: forward ? this.bed.macs.genEth0 : this.bed.macs.genCal0,
        srcAddress: ipv4ToNumber(GENERATOR_ADDRESS),
        dstAddress: ipv4ToNumber(VIP),
        dstPort: UDP_PORT,
        protocol: 'udp',
        frameSize,
        cpu: this.bed.generatorCpu,
      });
      this.generators.set(key, generator);
    }
    return generator;
  }

  sink(path: 'forward' | 'calibration'): NativeTrafficSink {
    let sink = this.sinks.get(path);
    if (!sink) {
      sink = new this.bench.TrafficSink({
        interface: path === 'forward' ? 'eth0' : 'cal0',
        netnsPath: this.bed.netnsPath(this.bed.sink),
        cpu: this.bed.generatorCpu,
      });
      this.sinks.set(path, sink);
    }
    return sink;
  }

  /**
   * One measurement. On a shared machine another tenant's burst can take
   * the forwarder's CPU in the middle of a run; a run during which other
   * processes used more than `disturbedShare` of the machine is repeated,
   * up to twice, and the least disturbed run is reported (with its count).
   */
  async run(options: Parameters<UdpDriver['runOnce']>[0], disturbedShare = 0.05): Promise<UdpRunResult & { nextFlow: number }> {
    let best: (UdpRunResult & { nextFlow: number }) | undefined;
    let firstFlow = options.firstFlow;
    for (let attempt = 1; attempt <= 3; attempt++) {
      // A repeated storm sends fresh flows again.
      const result = await this.runOnce({ ...options, ...(firstFlow !== undefined ? { firstFlow } : {}) });
      if (options.flows === 'new-per-frame') firstFlow = result.nextFlow;
      result.attempts = attempt;
      if (!best || result.foreignShare < best.foreignShare) best = { ...result, attempts: attempt };
      if (result.foreignShare <= disturbedShare) break;
    }
    return best!;
  }

  private async runOnce(options: {
    path: 'forward' | 'calibration';
    probe?: ForwarderProbe;
    frameSize: number;
    flows: number | 'new-per-frame';
    ratePps?: number;
    durationMs: number;
    /** Storm: the first flow number (fresh flows for each run). */
    firstFlow?: number;
    maxFrames?: number;
    warmupMs?: number;
    threads?: Array<{ pid: number; tid: number }>;
  }): Promise<UdpRunResult & { nextFlow: number }> {
    const generator = this.generator(options.path, options.frameSize);
    const sink = this.sink(options.path);
    const storm = options.flows === 'new-per-frame';
    const flows = storm ? 1 : (options.flows as number);
    const paced = options.ratePps !== undefined && options.ratePps > 0;
    const runFor = async (tag: number, durationMs: number, maxFrames = 0, firstFlow = 0) => {
      const started = generator.start({
        runTag: tag,
        ...(paced ? { ratePps: options.ratePps } : {}),
        burst: 32,
        // Latency runs at low rates send frame by frame; throughput runs in kicks of 16 or more.
        minBurst: paced && options.ratePps! < 50_000 ? 1 : 16,
        flows,
        newFlowPerFrame: storm,
        firstFlow,
        durationMs,
        maxFrames,
      });
      if (!started) throw new Error('the generator is still running');
      while (generator.stats().running) await sleep(10);
    };
    if (options.warmupMs) {
      const tag = nextTag++;
      sink.expect(tag);
      await runFor(tag, options.warmupMs);
      await sleep(50);
    }
    const tag = nextTag++;
    if (!sink.expect(tag)) throw new Error('the sink did not take the run tag');
    const sinkBefore = sink.stats();
    const before = await options.probe?.counters();
    const softirqBefore = softirqThreadsCpuNs();
    const cpuBefore = sampleCpu(options.threads ?? []);
    await runFor(tag, options.durationMs, options.maxFrames ?? 0, options.firstFlow ?? 0);
    // Drain: frames still queued in the forwarder's ring arrive after the generator stopped.
    let seen = -1;
    for (let i = 0; i < 40; i++) {
      const frames = sink.stats().frames;
      if (frames === seen) break;
      seen = frames;
      await sleep(25);
    }
    const cpuAfter = sampleCpu(options.threads ?? []);
    const softirqAfter = softirqThreadsCpuNs();
    const after = await options.probe?.counters();
    const g = generator.stats();
    const s = sink.stats();
    const cpu = cpuDelta(cpuBefore, cpuAfter);
    const seconds = g.elapsedNs / 1e9;
    const delivered = s.frames;
    const forwarded = after && before ? after.packets - before.packets : 0;
    const result: UdpRunResult & { nextFlow: number } = {
      frameSize: options.frameSize,
      flows: options.flows,
      targetPps: paced ? options.ratePps! : 'flat-out',
      durationS: seconds,
      offeredPps: g.sent / seconds,
      deliveredPps: delivered / seconds,
      sent: g.sent,
      delivered,
      loss: g.sent === 0 ? 0 : Math.max(0, 1 - delivered / g.sent),
      sinkDrops: s.kernelDrops - sinkBefore.kernelDrops,
      latency: {
        p50Us: s.latencyNs.p50 / 1000,
        p99Us: s.latencyNs.p99 / 1000,
        p999Us: s.latencyNs.p999 / 1000,
        maxUs: s.latencyNs.max / 1000,
        meanUs: s.latencyNs.mean / 1000,
        samples: delivered,
      },
      systemNsPerPacket: delivered === 0 ? 0 : Math.max(0, cpu.busyNs - cpu.foreignNs) / delivered,
      threadsNsPerPacket:
        delivered === 0
          ? 0
          : (g.threadCpuNs + (s.threadCpuNs - sinkBefore.threadCpuNs) + (softirqAfter - softirqBefore) +
              Math.max(0, (after?.threadCpuNs ?? 0) - (before?.threadCpuNs ?? 0))) /
            delivered,
      cores: cpu.cores,
      foreignCpuMs: cpu.foreignNs / 1e6,
      foreignShare: cpu.foreignNs / (cpu.wallNs * Math.max(1, cpu.cores.length)),
      attempts: 1,
      nextFlow: g.nextFlow,
    };
    if (after && before && forwarded > 0) {
      if (after.busyNs !== undefined) result.forwarderBusyNsPerPacket = (after.busyNs - before.busyNs!) / forwarded;
      if (after.threadCpuNs !== undefined && after.threadCpuNs > 0) {
        result.forwarderThreadNsPerPacket = (after.threadCpuNs - before.threadCpuNs!) / forwarded;
      }
    }
    if (after?.drops) {
      const drops: Record<string, number> = {};
      for (const [reason, count] of Object.entries(after.drops)) {
        const d = count - (before?.drops?.[reason] ?? 0);
        if (d > 0) drops[reason] = d;
      }
      result.forwarderDrops = drops;
    }
    if (after?.flowsActive !== undefined) result.flowsActive = after.flowsActive;
    return result;
  }

  close(): void {
    for (const g of this.generators.values()) g.close();
    for (const s of this.sinks.values()) s.close();
    this.generators.clear();
    this.sinks.clear();
  }
}
