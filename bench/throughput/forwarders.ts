// The forwarders the UDP scenarios compare, each with the probe that reads
// its counters: l4lb (one method at a time), the MAC-only forwarder built on
// l4lb's port code, Linux routing and nftables DNAT with conntrack.
import { compileSnapshot, type SnapshotInput } from '../../lib/config/snapshot.js';
import { nativeLibraryPath, type NativeBinding } from '../../lib/native/binding.js';
import { BalancerUnderTest, type ServiceSpec } from './l4lb-process.js';
import {
  BACKEND_FAKE,
  disableKernelForwarding,
  enableNftDnat,
  enableRouting,
  FULLNAT_LOCAL,
  LB_DOWNLINK,
  LB_UPLINK,
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

/**
 * The MAC-only forwarder over AF_PACKET (mac-only) or over the AF_XDP driver
 * (mac-only-af_xdp): its XDP program takes what a balancer with the bench's
 * UDP service would take, so the two floors see the same traffic.
 */
export async function macOnlyForwarder(binding: NativeBinding, bed: Testbed, driver: 'af_packet' | 'af_xdp' = 'af_packet'): Promise<RunningForwarder> {
  await disableKernelForwarding(bed);
  const afXdp = driver === 'af_xdp' ? { library: nativeLibraryPath('l4lb_af_xdp'), snapshot: compileSnapshot(binding.layout, benchServiceSnapshot(bed)) } : undefined;
  const forwarder = new binding.bench.MacForwarder({
    ports: [
      { interface: 'eth0', dstMac: bed.macs.genEth0, srcMac: bed.macs.lbEth0 },
      { interface: 'eth1', dstMac: SINK_FAKE_MAC, srcMac: bed.macs.lbEth1 },
    ],
    netnsPath: bed.netnsPath(bed.lb),
    polling: 'adaptive',
    cpu: bed.forwarderCpu,
    ...(afXdp ? { afXdp } : {}),
  });
  return {
    name: driver === 'af_xdp' ? 'mac-only-af_xdp' : 'mac-only',
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

/** The bench's nat UDP service toward the sink, as a configuration (what the AF_XDP program's maps are filled from). */
function benchServiceSnapshot(bed: Testbed): SnapshotInput {
  return {
    generation: 1n,
    ports: [
      { mac: bed.macs.lbEth0, mtu: 1500, address: LB_UPLINK, prefixLength: 24 },
      { mac: bed.macs.lbEth1, mtu: 1500, address: LB_DOWNLINK, prefixLength: 24 },
    ],
    services: [
      {
        id: 1, address: VIP, port: UDP_PORT, protocol: 'udp', method: 'nat', scheduler: 'rr',
        backends: [{ id: 1, address: BACKEND_FAKE, port: UDP_PORT, weight: 1, up: true, egressPort: 1, nextHopMac: SINK_FAKE_MAC }],
      },
    ],
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
