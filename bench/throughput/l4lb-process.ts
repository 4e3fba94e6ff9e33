// The l4lb balancer under test: bench/throughput/balancer-runner.ts in the
// lb namespace. Its worker is pinned to the forwarder's CPU (afPacket.cpus or afXdp.cpus);
// the rest of the process (Node's threads, the `ip` commands its driver runs
// every half second) to the generator's CPU with taskset: a forked `ip` on
// the worker's CPU would preempt the worker for milliseconds.
import { fileURLToPath } from 'node:url';
import type { BackendOptions, LoadBalancerOptions, LoadBalancerStats, ServiceOptions } from '../../lib/index.js';
import type { LabProcess } from '../../lib/lab/index.js';
import type { Testbed } from './testbed.js';

const runner = fileURLToPath(new URL('./balancer-runner.ts', import.meta.url));

export interface BalancerSnapshot {
  stats: Pick<LoadBalancerStats, 'workers' | 'flows' | 'drops' | 'counters' | 'services' | 'interfaces'>;
  workerThreads: Array<{ tid: number; cpuNs: number }>;
  processCpuNs: number;
  rssBytes: number;
}

export interface ServiceSpec {
  service: ServiceOptions;
  backends: BackendOptions[];
}

export class BalancerUnderTest {
  private constructor(
    readonly process: LabProcess,
    readonly pid: number,
    readonly workerTids: number[],
    /** Resident size before and after LoadBalancer.create(): the flow table is allocated (and zeroed) there. */
    readonly rssBeforeCreate: number,
    readonly rssAfterCreate: number,
  ) {}

  static async start(bed: Testbed, options: Partial<LoadBalancerOptions>): Promise<BalancerUnderTest> {
    const full = {
      interfaces: ['eth0', 'eth1'],
      driver: 'af_packet',
      workers: 1,
      polling: 'adaptive',
      ...options,
      ...(options.driver === 'af_xdp'
        ? { afXdp: { ...options.afXdp, cpus: [bed.forwarderCpu] } }
        : options.driver === 'dpdk'
          ? { dpdk: { ...options.dpdk, cpus: [bed.forwarderCpu] } }
          : { afPacket: { ...options.afPacket, cpus: [bed.forwarderCpu] } }),
    };
    const child = bed.lb.spawn(['taskset', '-c', String(bed.generatorCpu), process.execPath, '--import', 'tsx', runner, JSON.stringify(full)], {
      stdin: 'pipe',
    });
    const line = await child.waitForLine(/"event":"ready"/, 60_000);
    const ready = JSON.parse(line) as { pid: number; workerTids: number[]; rssBeforeCreate: number; rssAfterCreate: number };
    return new BalancerUnderTest(child, ready.pid, ready.workerTids, ready.rssBeforeCreate, ready.rssAfterCreate);
  }

  private nextId = 1;

  // Replies carry the request's id: the process log is bounded (its head is
  // dropped as it grows), so replies are found by id, never by counting lines.
  private async request(command: object, reply: string): Promise<string> {
    const id = this.nextId++;
    const tags = [`"id":${id},`, `"id":${id}}`];
    this.process.child.stdin!.write(JSON.stringify({ ...command, id }) + '\n');
    for (let i = 0; i < 3000; i++) {
      const line = this.process.log.split('\n').find((l) => tags.some((t) => l.includes(t)));
      if (line !== undefined) {
        if (line.includes('"event":"error"')) throw new Error(`balancer: ${line}`);
        if (line.includes(`"event":"${reply}"`)) return line;
      }
      if (!this.process.running) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`balancer did not answer ${JSON.stringify(command)} (${this.process.running ? 'running' : 'exited'}): ${this.process.log.slice(-2000)}`);
  }

  async configure(services: ServiceSpec[]): Promise<void> {
    await this.request({ cmd: 'configure', services }, 'configured');
  }

  async snapshot(): Promise<BalancerSnapshot> {
    return JSON.parse(await this.request({ cmd: 'stats' }, 'stats')) as BalancerSnapshot;
  }

  /** Waits until every backend's next hop is resolved (the driver reads the neighbour table every 500 ms). */
  async waitUntilResolved(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { stats } = await this.snapshot();
      if (stats.services.every((s) => s.backends.every((b) => b.nextHopResolved && b.state === 'up'))) return;
      if (Date.now() > deadline) throw new Error(`backends not resolved: ${JSON.stringify(stats.services)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async close(): Promise<void> {
    if (!this.process.running) return;
    this.process.child.stdin!.write(JSON.stringify({ cmd: 'close' }) + '\n');
    await Promise.race([this.process.exited, new Promise((r) => setTimeout(r, 10_000))]);
    await this.process.stop();
  }
}
