// The forwarders the UDP scenarios compare, each with the probe that reads
// its counters: l4lb (one method at a time), the MAC-only forwarder built on
// l4lb's port code, Linux routing and nftables DNAT with conntrack.
import type { NativeBench } from '../../lib/native/binding.js';
import { BalancerUnderTest, type ServiceSpec } from './l4lb-process.js';
import {
  BACKEND_FAKE,
  disableKernelForwarding,
  enableNftDnat,
  enableRouting,
  FULLNAT_LOCAL,
  SINK_FAKE_MAC,
  type Testbed,
  UDP_PORT,
  VIP,
} from './testbed.js';
import type { ForwarderProbe } from './udp.js';

export type Method = 'nat' | 'fullnat' | 'dr' | 'ipip' | 'gre';
export const methods: Method[] = ['nat', 'fullnat', 'dr', 'ipip', 'gre'];

export interface RunningForwarder extends ForwarderProbe {
  threads: Array<{ pid: number; tid: number }>;
  stop(): Promise<void>;
}

export function udpService(method: Method): ServiceSpec {
  return {
    service: {
      address: VIP,
      port: UDP_PORT,
      protocol: 'udp',
      method,
      scheduler: 'maglev',
      healthCheck: { type: 'none' },
      ...(method === 'gre' ? { greKey: 7 } : {}),
    },
    backends: [{ address: BACKEND_FAKE, port: UDP_PORT }],
  };
}

/** Flow capacity of the balancer for the steady-flow scenarios (the library's default). */
export const defaultFlowCapacity = 262_144;

export async function startBalancer(bed: Testbed, flowCapacity = defaultFlowCapacity, driver: 'af_packet' | 'af_xdp' | 'dpdk' = 'af_packet'): Promise<BalancerUnderTest> {
  await disableKernelForwarding(bed);
  return BalancerUnderTest.start(bed, { driver, flows: { capacity: flowCapacity }, localAddresses: FULLNAT_LOCAL } as never);
}

/** l4lb with one UDP service of `method`, on an already running balancer. */
export async function l4lbForwarder(balancer: BalancerUnderTest, method: Method, bed: Testbed, name = `l4lb-${method}`): Promise<RunningForwarder> {
  await balancer.configure([udpService(method)]);
  await balancer.waitUntilResolved();
  return {
    name,
    threads: balancer.workerTids.map((tid) => ({ pid: balancer.pid, tid })),
    async counters() {
      const snapshot = await balancer.snapshot();
      const workers = snapshot.stats.workers;
      return {
        packets: workers.reduce((sum, w) => sum + w.packets, 0),
        busyNs: workers.reduce((sum, w) => sum + (w.counters.busyNs ?? 0), 0),
        threadCpuNs: snapshot.workerThreads.reduce((sum, t) => sum + t.cpuNs, 0),
        flowsActive: snapshot.stats.flows.active,
        drops: {
          ...snapshot.stats.drops,
          'kernel-drops': snapshot.stats.interfaces.reduce((sum, i) => sum + i.kernelDrops, 0),
          'tx-dropped': snapshot.stats.interfaces.reduce((sum, i) => sum + i.txDropped, 0),
        },
      };
    },
    async stop() {
      void bed;
    },
  };
}

export async function macOnlyForwarder(bench: NativeBench, bed: Testbed): Promise<RunningForwarder> {
  await disableKernelForwarding(bed);
  const forwarder = new bench.MacForwarder({
    ports: [
      { interface: 'eth0', dstMac: bed.macs.genEth0, srcMac: bed.macs.lbEth0 },
      { interface: 'eth1', dstMac: SINK_FAKE_MAC, srcMac: bed.macs.lbEth1 },
    ],
    netnsPath: bed.netnsPath(bed.lb),
    polling: 'adaptive',
    cpu: bed.forwarderCpu,
  });
  return {
    name: 'mac-only',
    threads: [],
    async counters() {
      const s = forwarder.stats();
      return { packets: s.rxPackets, busyNs: s.busyNs, threadCpuNs: s.threadCpuNs, drops: { 'kernel-drops': s.kernelDrops, 'tx-dropped': s.txDropped } };
    },
    async stop() {
      forwarder.close();
    },
  };
}

export async function kernelForwarder(bed: Testbed, kind: 'routing' | 'nftables-dnat'): Promise<RunningForwarder> {
  await disableKernelForwarding(bed);
  if (kind === 'routing') await enableRouting(bed);
  else await enableNftDnat(bed);
  return {
    name: kind,
    threads: [],
    async counters() {
      return undefined;
    },
    async stop() {
      await disableKernelForwarding(bed);
    },
  };
}
