// Compiles a complete forwarding configuration into one binary snapshot
// (native/shm/layout.h), at the offsets the addon exports. The native side
// validates it again before adoption; this compiler is what makes a valid
// one (sorted services, contiguous backends, longest routes first).
import type { Layout } from '../shm/layout.js';
import { StructWriter } from '../shm/layout.js';
import { ipv4ToNumber, macToBytes } from './addresses.js';

export type Protocol = 'tcp' | 'udp';
export type Method = 'nat' | 'fullnat' | 'dr' | 'ipip' | 'gre';
export type SchedulerName = 'rr' | 'wrr' | 'lc' | 'wlc' | 'sh' | 'maglev' | 'table';

export interface SnapshotPortInput {
  mac: string;
  mtu: number;
  /** The port's primary IPv4 address (tunnel source, ICMP source). */
  address?: string;
  prefixLength?: number;
  /** Answer ARP requests for VIPs and dedicated local addresses arriving here. */
  answerArpForVips?: boolean;
}

export interface SnapshotBackendInput {
  id: number;
  address: string;
  port: number;
  weight: number;
  up: boolean;
  egressPort: number;
  /** The MAC of the backend or of its gateway; undefined while unresolved. */
  nextHopMac?: string;
}

export interface SnapshotServiceInput {
  id: number;
  address: string;
  port: number;
  protocol: Protocol;
  method: Method;
  scheduler: SchedulerName;
  dropIpOptions?: boolean;
  persistenceTimeoutMs?: number;
  greKey?: number;
  /** When a backend is removed: true sends TCP resets for its flows, false drops their packets. */
  removeResetsFlows?: boolean;
  /** Lookup table for scheduler 'table': backend indexes into `backends`, length a power of two. */
  table?: number[];
  backends: SnapshotBackendInput[];
}

export interface SnapshotRouteInput {
  prefix: string;
  prefixLength: number;
  egressPort: number;
  gateway?: string;
  nextHopMac?: string;
}

export interface SnapshotInput {
  generation: bigint;
  dropBadChecksum?: boolean;
  dropWhenFlowTableFull?: boolean;
  answerEcho?: boolean;
  fullnatPortMin?: number;
  fullnatPortMax?: number;
  tunnelTtl?: number;
  icmpRatePerSec?: number;
  ports: SnapshotPortInput[];
  services: SnapshotServiceInput[];
  routes?: SnapshotRouteInput[];
  localAddresses?: string[];
}

const protocolNumbers: Record<Protocol, string> = { tcp: 'protocolTcp', udp: 'protocolUdp' };
const methodConstants: Record<Method, string> = {
  nat: 'methodNat',
  fullnat: 'methodFullnat',
  dr: 'methodDr',
  ipip: 'methodIpip',
  gre: 'methodGre',
};
const schedulerConstants: Record<SchedulerName, string> = {
  rr: 'schedulerRr',
  wrr: 'schedulerWrr',
  lc: 'schedulerLc',
  wlc: 'schedulerWlc',
  sh: 'schedulerSh',
  maglev: 'schedulerMaglev',
  table: 'schedulerTable',
};

function align(value: number, to: number): number {
  return Math.ceil(value / to) * to;
}

function serviceSortKey(s: SnapshotServiceInput, c: Record<string, number>): bigint {
  return (BigInt(ipv4ToNumber(s.address)) << 32n) | (BigInt(s.port) << 8n) | BigInt(c[protocolNumbers[s.protocol]]!);
}

/** Compiles `input` into snapshot bytes (8-byte aligned, little-endian). */
export function compileSnapshot(layout: Layout, input: SnapshotInput): Uint8Array {
  const { snapshot: l, constants: c } = layout;
  const constant = (name: string): number => {
    const value = c[name];
    if (value === undefined) throw new Error(`l4lb: the native layout has no constant "${name}"`);
    return value;
  };
  const services = [...input.services].sort((a, b) => {
    const ka = serviceSortKey(a, c);
    const kb = serviceSortKey(b, c);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
  const routes = [...(input.routes ?? [])].sort((a, b) => b.prefixLength - a.prefixLength);
  const localAddresses = input.localAddresses ?? [];
  const backendCount = services.reduce((n, s) => n + s.backends.length, 0);
  const tableWords = services.reduce((n, s) => n + (s.table?.length ?? 0), 0);

  let offset = align(l.header.size, 8);
  const portOffset = offset;
  offset = align(offset + input.ports.length * l.port.size, 8);
  const serviceOffset = offset;
  offset = align(offset + services.length * l.service.size, 8);
  const backendOffset = offset;
  offset = align(offset + backendCount * l.backend.size, 8);
  const routeOffset = offset;
  offset = align(offset + routes.length * l.route.size, 8);
  const localOffset = offset;
  offset = align(offset + localAddresses.length * 4, 8);
  const tableOffset = offset;
  offset = align(offset + tableWords * 4, 8);
  const total = offset;

  const bytes = new Uint8Array(new ArrayBuffer(total));
  const view = new DataView(bytes.buffer);
  const flags =
    (input.dropBadChecksum ? constant('snapshotDropBadChecksum') : 0) |
    (input.dropWhenFlowTableFull ? constant('snapshotDropWhenFlowTableFull') : 0) |
    (input.answerEcho ?? true ? constant('snapshotAnswerEcho') : 0);
  new StructWriter(view, l.header, 0)
    .set('magic', constant('snapshotMagic'))
    .set('layout_version', constant('snapshotLayoutVersion'))
    .set('header_size', l.header.size)
    .set('total_size', total)
    .set('flags', flags)
    .set('generation', input.generation)
    .set('port_count', input.ports.length)
    .set('port_offset', portOffset)
    .set('service_count', services.length)
    .set('service_offset', serviceOffset)
    .set('backend_count', backendCount)
    .set('backend_offset', backendOffset)
    .set('route_count', routes.length)
    .set('route_offset', routeOffset)
    .set('local_address_count', localAddresses.length)
    .set('local_address_offset', localOffset)
    .set('table_word_count', tableWords)
    .set('table_offset', tableOffset)
    .set('fullnat_port_min', input.fullnatPortMin ?? 1024)
    .set('fullnat_port_max', input.fullnatPortMax ?? 65535)
    .set('tunnel_ttl', input.tunnelTtl ?? 64)
    .set('icmp_rate_per_sec', input.icmpRatePerSec ?? 100);

  input.ports.forEach((port, i) => {
    new StructWriter(view, l.port, portOffset + i * l.port.size)
      .setBytes('mac', macToBytes(port.mac))
      .set('mtu', port.mtu)
      .set('address', port.address ? ipv4ToNumber(port.address) : 0)
      .set('prefix_length', port.prefixLength ?? 0)
      .set('flags', port.answerArpForVips ? constant('portAnswerArpForVips') : 0);
  });

  let backendIndex = 0;
  let tableIndex = 0;
  services.forEach((service, i) => {
    const hasTable = service.table !== undefined;
    new StructWriter(view, l.service, serviceOffset + i * l.service.size)
      .set('address', ipv4ToNumber(service.address))
      .set('port', service.port)
      .set('protocol', constant(protocolNumbers[service.protocol]))
      .set('method', constant(methodConstants[service.method]))
      .set('id', service.id)
      .set('scheduler', constant(schedulerConstants[service.scheduler]))
      .set(
        'flags',
        (service.dropIpOptions ? constant('serviceDropIpOptions') : 0) |
          (service.persistenceTimeoutMs !== undefined ? constant('servicePersistent') : 0) |
          (service.greKey !== undefined ? constant('serviceGreKey') : 0) |
          (service.removeResetsFlows ?? true ? constant('serviceRemoveResetsFlows') : 0),
      )
      .set('backend_first', backendIndex)
      .set('backend_count', service.backends.length)
      .set('table_first', hasTable ? tableIndex : constant('none'))
      .set('table_size', service.table?.length ?? 0)
      .set('persistence_timeout_ms', service.persistenceTimeoutMs ?? 0)
      .set('gre_key', service.greKey ?? 0);
    for (const backend of service.backends) {
      new StructWriter(view, l.backend, backendOffset + backendIndex * l.backend.size)
        .set('address', ipv4ToNumber(backend.address))
        .set('port', backend.port)
        .set('weight', backend.weight)
        .set('id', backend.id)
        .set(
          'flags',
          (backend.up ? constant('backendUp') : 0) | (backend.nextHopMac ? constant('backendNextHopResolved') : 0),
        )
        .set('egress_port', backend.egressPort)
        .setBytes('next_hop_mac', macToBytes(backend.nextHopMac ?? '00:00:00:00:00:00'));
      backendIndex += 1;
    }
    for (const entry of service.table ?? []) {
      view.setUint32(tableOffset + tableIndex * 4, entry, true);
      tableIndex += 1;
    }
  });

  routes.forEach((route, i) => {
    new StructWriter(view, l.route, routeOffset + i * l.route.size)
      .set('prefix', ipv4ToNumber(route.prefix))
      .set('prefix_length', route.prefixLength)
      .set('resolved', route.nextHopMac ? 1 : 0)
      .set('egress_port', route.egressPort)
      .set('gateway', route.gateway ? ipv4ToNumber(route.gateway) : 0)
      .setBytes('next_hop_mac', macToBytes(route.nextHopMac ?? '00:00:00:00:00:00'));
  });
  localAddresses.forEach((address, i) => view.setUint32(localOffset + i * 4, ipv4ToNumber(address), true));
  return bytes;
}
