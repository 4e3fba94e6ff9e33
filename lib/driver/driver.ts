// The data-plane driver: what the balancer needs from whatever moves the
// frames (the memory driver today, AF_PACKET next; AF_XDP and DPDK later).
// The balancer never looks behind this interface: it asks the driver for
// its interfaces (the snapshot's ports, in order), where a backend's frames
// must go (egress interface + next-hop MAC), the routes for replies, and
// hands it the native engine once it exists.
import type { SnapshotInput } from '../config/snapshot.js';
import type { L4lbError } from '../errors.js';
import type { NativeEngine, NativeEngineOptions } from '../native/binding.js';

export interface DriverInterface {
  name: string;
  mac: string;
  mtu: number;
  /** Primary IPv4 address (tunnel source, ICMP source) and its prefix length. */
  address: string | undefined;
  prefixLength: number;
  /** Answer ARP for VIPs and fullnat local addresses on this interface. */
  answerArp: boolean;
}

export interface NextHop {
  /** Index into `interfaces`. */
  interfaceIndex: number;
  /** The gateway, when the destination is not on-link. */
  gateway: string | undefined;
  /** The next hop's MAC; undefined while unresolved (frames then drop as 'no-neighbour'). */
  mac: string | undefined;
}

export interface DriverRoute {
  /** Network address. */
  prefix: string;
  prefixLength: number;
  interfaceIndex: number;
  gateway: string | undefined;
  /** Gateway's (or, on-link, nobody's) MAC; undefined = unresolved. */
  mac: string | undefined;
}

export interface DriverContext {
  engine: NativeEngine;
  /** Call when next hops, neighbours or routes changed: the balancer recompiles and republishes. */
  nextHopsChanged(): void;
}

export interface DataPlaneDriver {
  readonly name: string;
  /** The interfaces served, in port order. */
  readonly interfaces: readonly DriverInterface[];
  /** Native engine options this driver needs (port count, ring sizes, sockets to open...). */
  engineOptions(): Partial<NativeEngineOptions>;
  /** Where frames to `address` leave; undefined when no route leads there. */
  resolveNextHop(address: string): NextHop | undefined;
  /** Routes compiled into the snapshot (replies without a recorded ingress path). */
  routes(): DriverRoute[];
  /** The data plane dropped frames for these unresolved next hops: probe them (ARP/ND), then call nextHopsChanged. */
  requestResolution(addresses: readonly string[]): void;
  /** The engine exists and holds the first snapshot; workers start after this resolves. */
  start(context: DriverContext): Promise<void>;
  /** The balancer is closing; the engine is closed after this resolves. Must be idempotent. */
  stop(): Promise<void>;
  /**
   * The fullnat source-port range to use when the user gave none, for this
   * source pool (e.g. a range disjoint from the host's ephemeral ports when
   * the pool holds a host address); undefined: the library default.
   */
  defaultFullnatPorts?(localAddresses: readonly string[]): { min: number; max: number } | undefined;
  /** The native engine refused to open with `error`: the driver's typed error for it, or undefined to report it as it is. */
  openError?(error: unknown): L4lbError | undefined;
  /** A snapshot was published (for drivers that keep host state in step, e.g. AF_PACKET's host guard). */
  configurationChanged?(snapshot: Omit<SnapshotInput, 'generation'>): void;
}
