// TCP through each forwarder: many short HTTP connections (connection rate
// and CPU per connection) and one long stream (bulk throughput). The client
// runs in the generator's namespace and the server in the sink's, both on
// the generator's CPU; the forwarder has the other CPU to itself.
import { fileURLToPath } from 'node:url';
import type { LabProcess } from '../../lib/lab/index.js';
import { cpuDelta, type CoreUse, sampleCpu } from './cpu.js';
import type { BalancerUnderTest } from './l4lb-process.js';
import { BACKEND_REAL, LB_UPLINK, SERVER_PORT, TCP_PORT, type Testbed, VIP } from './testbed.js';

const client = fileURLToPath(new URL('./tcp-client.mjs', import.meta.url));
const server = fileURLToPath(new URL('./tcp-server.mjs', import.meta.url));

export type TcpForwarder = 'l4lb-nat' | 'haproxy' | 'routing' | 'nftables-dnat';

/** Where the client connects for each forwarder. */
export function tcpTarget(forwarder: TcpForwarder): { address: string; port: number } {
  switch (forwarder) {
    case 'l4lb-nat':
    case 'nftables-dnat':
      return { address: VIP, port: TCP_PORT };
    case 'haproxy':
      return { address: LB_UPLINK, port: TCP_PORT };
    case 'routing':
      return { address: BACKEND_REAL, port: SERVER_PORT };
  }
}

export interface TcpRunResult {
  durationS: number;
  /** Forwarder CPU busy time (its core, from /proc/stat) per unit of work. */
  forwarderCoreNs: number;
  /** Both cores, less other tenants' visible use. */
  systemNs: number;
  cores: CoreUse[];
  foreignCpuMs: number;
  /** l4lb only: the worker's busy-time accounting. */
  workerBusyNs?: number;
  /**
   * The forwarder's own CPU time (user + system, from /proc): l4lb's worker
   * thread, HAProxy's process. Immune to other tenants, unlike the core's
   * busy time. On veth it includes the receiving stack's work that a send
   * triggers (DESIGN §4), for both alike.
   */
  forwarderCpuNs?: number;
}

export interface TcpConnectionsResult extends TcpRunResult {
  completed: number;
  failed: number;
  connectionsPerSecond: number;
  forwarderCoreNsPerConnection: number;
  systemNsPerConnection: number;
  workerBusyNsPerConnection?: number;
  forwarderCpuNsPerConnection?: number;
  firstError?: string;
}

export interface TcpBulkResult extends TcpRunResult {
  bytes: number;
  bitsPerSecond: number;
  forwarderCoreNsPerMegabyte: number;
  forwarderCpuNsPerMegabyte?: number;
}

export async function startTcpServer(bed: Testbed): Promise<LabProcess> {
  const proc = bed.sink.spawn(['taskset', '-c', String(bed.generatorCpu), process.execPath, server, BACKEND_REAL, String(SERVER_PORT)]);
  await proc.waitForLine(/"listening"/);
  return proc;
}

async function measure<T>(
  bed: Testbed,
  work: () => Promise<T>,
  extra: { balancer?: BalancerUnderTest; processCpuNs?: () => number },
): Promise<{ value: T; run: TcpRunResult }> {
  const balancerBefore = extra.balancer ? await extra.balancer.snapshot() : undefined;
  const processBefore = extra.processCpuNs?.();
  const before = sampleCpu();
  const value = await work();
  const after = sampleCpu();
  const balancerAfter = extra.balancer ? await extra.balancer.snapshot() : undefined;
  const cpu = cpuDelta(before, after);
  const core = cpu.cores[bed.forwarderCpu]!;
  const run: TcpRunResult = {
    durationS: cpu.wallNs / 1e9,
    forwarderCoreNs: core.busy * cpu.wallNs,
    systemNs: Math.max(0, cpu.busyNs - cpu.foreignNs),
    cores: cpu.cores,
    foreignCpuMs: cpu.foreignNs / 1e6,
  };
  if (balancerBefore && balancerAfter) {
    const busy = (s: typeof balancerBefore) => s.stats.workers.reduce((sum, w) => sum + (w.counters.busyNs ?? 0), 0);
    const thread = (s: typeof balancerBefore) => s.workerThreads.reduce((sum, t) => sum + t.cpuNs, 0);
    run.workerBusyNs = busy(balancerAfter) - busy(balancerBefore);
    run.forwarderCpuNs = thread(balancerAfter) - thread(balancerBefore);
  } else if (processBefore !== undefined) {
    run.forwarderCpuNs = extra.processCpuNs!() - processBefore;
  }
  return { value, run };
}

export async function tcpConnections(
  bed: Testbed,
  forwarder: TcpForwarder,
  options: { durationMs: number; concurrency: number; ratePerSecond?: number; balancer?: BalancerUnderTest; processCpuNs?: () => number },
): Promise<TcpConnectionsResult> {
  const target = tcpTarget(forwarder);
  const { value, run } = await measure(
    bed,
    async () => {
      const { stdout } = await bed.gen.exec([
        'taskset', '-c', String(bed.generatorCpu), process.execPath, client, 'connections',
        target.address, String(target.port), String(options.durationMs), String(options.concurrency),
        ...(options.ratePerSecond ? [String(options.ratePerSecond)] : []),
      ]);
      return JSON.parse(stdout.trim().split('\n').pop()!) as { completed: number; failed: number; firstError?: string; seconds: number };
    },
    options,
  );
  const n = Math.max(value.completed, 1);
  return {
    ...run,
    completed: value.completed,
    failed: value.failed,
    ...(value.firstError ? { firstError: value.firstError } : {}),
    connectionsPerSecond: value.completed / value.seconds,
    forwarderCoreNsPerConnection: run.forwarderCoreNs / n,
    systemNsPerConnection: run.systemNs / n,
    ...(run.workerBusyNs !== undefined ? { workerBusyNsPerConnection: run.workerBusyNs / n } : {}),
    ...(run.forwarderCpuNs !== undefined ? { forwarderCpuNsPerConnection: run.forwarderCpuNs / n } : {}),
  };
}

export async function tcpBulk(
  bed: Testbed,
  forwarder: TcpForwarder,
  options: { durationMs: number; balancer?: BalancerUnderTest; processCpuNs?: () => number },
): Promise<TcpBulkResult> {
  const target = tcpTarget(forwarder);
  const { value, run } = await measure(
    bed,
    async () => {
      const { stdout } = await bed.gen.exec([
        'taskset', '-c', String(bed.generatorCpu), process.execPath, client, 'bulk', target.address, String(target.port), String(options.durationMs),
      ]);
      return JSON.parse(stdout.trim().split('\n').pop()!) as { bytes: number; seconds: number; bitsPerSecond: number };
    },
    options,
  );
  return {
    ...run,
    bytes: value.bytes,
    bitsPerSecond: value.bitsPerSecond,
    forwarderCoreNsPerMegabyte: value.bytes === 0 ? 0 : run.forwarderCoreNs / (value.bytes / 1e6),
    ...(run.forwarderCpuNs !== undefined && value.bytes > 0 ? { forwarderCpuNsPerMegabyte: run.forwarderCpuNs / (value.bytes / 1e6) } : {}),
  };
}

export function tcpService(): { service: object; backends: object[] } {
  return {
    service: { address: VIP, port: TCP_PORT, protocol: 'tcp', method: 'nat', scheduler: 'maglev', healthCheck: { type: 'none' } },
    backends: [{ address: BACKEND_REAL, port: SERVER_PORT }],
  };
}
