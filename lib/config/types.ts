// The options users pass to LoadBalancer.create, addService and addBackend,
// and the shapes stats() returns. Every duration is in milliseconds and ends
// in `Ms`; addresses are strings.
import type { Backend } from '../backend.js';

export type Protocol = 'tcp' | 'udp';
export type Method = 'nat' | 'fullnat' | 'dr' | 'ipip' | 'gre';
export type BuiltinScheduler = 'rr' | 'wrr' | 'lc' | 'wlc' | 'sh' | 'maglev';
export type DriverName = 'af_packet' | 'af_xdp' | 'dpdk' | 'memory';
export type Polling = 'adaptive' | 'busy';
export type BackendState = 'up' | 'down';
export type ServiceState = 'up' | 'down';

export interface BgpNeighbour {
  /** The peer's IPv4 address. */
  address: string;
  /** Its AS number. */
  as: number;
  /** TCP MD5 password of the session. */
  password?: string;
}

export interface BgpOptions {
  /** The balancer's AS number. */
  localAs: number;
  /** BIRD's router id (an IPv4 address); default: BIRD chooses the lowest address of the host. */
  routerId?: string;
  neighbours: BgpNeighbour[];
  /** The next hop announced; default: the address of each session (next hop self). */
  nextHop?: string;
  /** Standard communities ('65000:100') on every announcement. */
  communities?: string[];
  /** MED of a VIP with a backend up (default 0), and of one whose up backends all drain at weight 0 (default 100). */
  med?: { up?: number; draining?: number };
  /** Session hold time in seconds (default 9; keepalives every third of it). */
  holdTimeS?: number;
  /** The bird binary (default 'bird' on the PATH: Debian package bird2). */
  birdPath?: string;
  /** birdc (default 'birdc' on the PATH). */
  birdcPath?: string;
  /** Where BIRD's configuration and control socket go (default /run/l4lb/bird-PID). */
  runDirectory?: string;
}

/** What stats().bgp reports of the announcements. */
export interface BgpStats {
  /** Each VIP: announced (with its MED) or withdrawn. */
  routes: Array<{ prefix: string; state: 'announced' | 'withdrawn'; med?: number }>;
  /** Each neighbour's session as BIRD reports it ('Established', 'Active', 'Connect', ...). */
  neighbours: Array<{ address: string; as: number; state: string }>;
  /** Configurations BIRD accepted and refused since start. */
  reconfigurations: number;
  errors: number;
}

export interface FlowOptions {
  /**
   * IPv4 nat flows the table holds at its design load of 90% (default 262144): 2 slots of 32 bytes
   * each, so about 71 bytes a flow. A dr or tunnel flow takes one slot, an IPv6 flow two to four.
   * Give this or memoryBytes, not both.
   */
  capacity?: number;
  /** The table's size in bytes instead (131072 to 2^36); stats().flows reports the flows it holds. */
  memoryBytes?: number;
  /** Idle timeout of an established TCP flow (default 900000). */
  tcpEstablishedTimeoutMs?: number;
  /** Idle timeout of a UDP flow (default 300000). */
  udpTimeoutMs?: number;
  /** A TCP flow that has seen only its SYN (default 60000). */
  tcpSynTimeoutMs?: number;
  /** A TCP flow after the first FIN (default 120000). */
  tcpClosingTimeoutMs?: number;
  /** A TCP flow after RST or both FINs (default 10000). */
  tcpClosedTimeoutMs?: number;
}

/** One in-process interface of the memory driver. */
export interface MemoryInterfaceOptions {
  mac: string;
  /** IPv4 addresses with prefix length ('198.18.0.1/24'); the first is the interface's primary address. */
  addresses?: string[];
  /** Default 1500. */
  mtu?: number;
  /** Answer ARP requests for VIPs and fullnat local addresses arriving here (default true). */
  answerArp?: boolean;
}

export interface MemoryNeighbour {
  address: string;
  mac: string;
  interface: string;
}

export interface MemoryRoute {
  /** 'a.b.c.d/n'; '0.0.0.0/0' is the default route. */
  prefix: string;
  /** Gateway; omitted: the prefix is on-link on `interface`. */
  via?: string;
  interface: string;
}

/** The static world of the memory driver: its interfaces, neighbour table and routes. */
export interface MemoryDriverOptions {
  interfaces: Record<string, MemoryInterfaceOptions>;
  neighbours?: MemoryNeighbour[];
  routes?: MemoryRoute[];
  /** Frames each worker's receive and transmit ring holds per interface (default 256). */
  ringFrames?: number;
}

export interface LoadBalancerOptions {
  /** Interfaces the data plane serves; their order is the port order of the snapshot. */
  interfaces: string[];
  /**
   * Default 'af_packet'; 'af_xdp' (zero-copy rewrite in UMEM, docs/af-xdp.md); 'dpdk' (DPDK poll-mode
   * drivers, the kernel interfaces through net_af_xdp or net_af_packet vdevs, docs/dpdk.md); 'memory'
   * for tests and benchmarks without privileges.
   */
  driver?: DriverName;
  /** Poll threads (default 1, at most 64). */
  workers?: number;
  /** 'adaptive' (default) sleeps when idle; 'busy' spins a core at 100%. */
  polling?: Polling;
  /**
   * With polling 'adaptive': how long a worker keeps polling after its last
   * packet before it sleeps on its rings (default 0.05, i.e. 50 µs; 0 to 10).
   * Longer catches more packets of a burst without a wake-up; shorter
   * spends less CPU on lone packets.
   */
  spinMs?: number;
  flows?: FlowOptions;
  /** Source pool of method 'fullnat' (IPv4). */
  localAddresses?: string[];
  /** Source ports of method 'fullnat' (default 1024..65535). */
  fullnatPorts?: { min: number; max: number };
  /** Backends the balancer can hold at once across all services (default 4096, at most 65536). */
  maxBackends?: number;
  /** 16 bytes keying the flow hash (default: random). Balancers that must send a flow to the same backend (Maglev) share one. */
  hashKey?: Uint8Array;
  /** Packets to a VIP with a wrong checksum: forward them unchanged (default) or drop them. */
  checksums?: 'forward' | 'drop';
  /** Answer ICMP echo requests to VIPs (default true). */
  answerEcho?: boolean;
  /**
   * Flow events (lb.on('flow')): every flow created and ended, with its backend,
   * packets, bytes and duration. Off by default: per-flow counting costs 40
   * bytes per flow-table slot and two atomic adds per packet. `records`: per
   * worker ring (default 4096, 16 to 65536); a full ring drops events and
   * counts them (stats().flowEvents.dropped).
   */
  flowEvents?: boolean | { records?: number };
  /** Announce each VIP over BGP through a BIRD the balancer runs (docs/scale-out.md). */
  bgp?: BgpOptions;
  /** Required with driver 'memory'. */
  memory?: MemoryDriverOptions;
  /** Tuning of driver 'af_packet'. */
  afPacket?: AfPacketOptions;
  /** Tuning of driver 'af_xdp'. */
  afXdp?: AfXdpOptions;
  /** Options of driver 'dpdk'. */
  dpdk?: DpdkOptions;
}

export interface DpdkOptions {
  /**
   * How each of `interfaces` (kernel interfaces) becomes a DPDK port:
   * 'af_xdp' (default: a net_af_xdp vdev running the balancer's XDP program,
   * which takes only the balancer's frames from the kernel) or 'af_packet'
   * (a net_af_packet vdev; the host guard's nftables rules keep the host
   * stack out, as with driver 'af_packet').
   */
  vdev?: 'af_xdp' | 'af_packet';
  /**
   * Extra EAL arguments (e.g. ['-m', '1024'], ['--log-level', 'pmd.net.af_xdp:debug']).
   * The EAL starts once per process, with the arguments of the first dpdk
   * balancer; a later one with others fails with DriverError EDPDK_EAL_CONFLICT.
   */
  eal?: string[];
  /** Use hugepages (default false: --no-huge --no-pci, memory from the heap; enough for vdevs). */
  hugepages?: boolean;
  /** Descriptors per receive and transmit queue (default 1024; a power of two, 64 to 16384). */
  ringSize?: number;
  /** Pin worker i to CPU cpus[i] (one per worker). */
  cpus?: number[];
}

export interface AfXdpOptions {
  /**
   * How the XDP program is attached: 'auto' (default) native (driver) mode
   * where the interface supports it, generic (skb) mode elsewhere; 'native'
   * fails with DriverError EXDP_UNSUPPORTED on an interface without it;
   * 'generic' always generic.
   */
  mode?: 'auto' | 'native' | 'generic';
  /** Descriptors per ring of each AF_XDP socket (default 2048; a power of two, 64 to 16384). */
  ringSize?: number;
  /** Pin worker i to CPU cpus[i] (one per worker). */
  cpus?: number[];
}

export interface AfPacketOptions {
  /** Transmit with one sendmmsg() per burst (default: cheaper on veth, and passes 64 KiB GSO aggregates on) or a TX ring. */
  txMethod?: 'sendmmsg' | 'ring';
  /** Receive ring slots per socket (default 4096, 64 to 65536); each holds one frame of the interface's MTU. */
  ringFrames?: number;
  /** Pin worker i to CPU cpus[i] (one per worker). */
  cpus?: number[];
}

interface HealthCheckTiming {
  /** Time between the end of one check and the start of the next (default 1000). */
  intervalMs?: number;
  /** A check not finished by then fails (default 500). */
  timeoutMs?: number;
  /** Consecutive passes that bring a down backend up (default 2). */
  rise?: number;
  /** Consecutive failures that bring an up backend down (default 3). */
  fall?: number;
  /** Random spread of the interval, a fraction of it: 0.1 means ±10% (default 0.1). */
  jitter?: number;
  /** Port to check (default: the backend's port). */
  port?: number;
}

export interface TcpHealthCheck extends HealthCheckTiming {
  /** Passes when a TCP connection is established. */
  type: 'tcp';
}

export interface HttpHealthCheck extends HealthCheckTiming {
  /** Passes on an expected status (and body, when `expectBody` is set). */
  type: 'http';
  /** Default '/'. */
  path?: string;
  /** Default: any 2xx or 3xx. */
  expectStatus?: number | number[];
  /** Tested against the first 64 KiB of the body. */
  expectBody?: RegExp;
  /** Host header (default: the backend's address). */
  host?: string;
}

export interface UdpHealthCheck extends HealthCheckTiming {
  /** Sends `payload` and passes on a reply (matching `expectReply` when set); ICMP port unreachable fails at once. */
  type: 'udp';
  payload?: string | Uint8Array;
  expectReply?: RegExp;
}

export interface NoHealthCheck {
  /** Backends are up from the start and stay up. */
  type: 'none';
}

/** A custom check: resolve true for healthy. A rejection or `false` is a failure; `signal` aborts at the timeout. */
export type HealthCheckFunction = (backend: Backend, signal: AbortSignal) => Promise<boolean>;

export interface FunctionHealthCheck extends HealthCheckTiming {
  type: HealthCheckFunction;
}

export type HealthCheckOptions =
  | TcpHealthCheck
  | HttpHealthCheck
  | UdpHealthCheck
  | NoHealthCheck
  | FunctionHealthCheck
  | HealthCheckFunction;

/**
 * A scheduler hook: `table` returns a lookup table of indexes into
 * `backends` (length a power of two, at most 2^20); each new flow hashes
 * into it. It runs when the service's backends, weights or health change,
 * and every `intervalMs` when set. Entries pointing at a backend that is
 * down or draining are skipped (the next entry's backend is used).
 */
export interface SchedulerHook {
  name: string;
  table(backends: readonly Backend[], stats: ServiceStats): ArrayLike<number>;
  intervalMs?: number;
}

export interface ServiceOptions {
  address: string;
  port: number;
  /** Default 'tcp'. */
  protocol?: Protocol;
  /** Default 'nat'. */
  method?: Method;
  /** Default 'wrr'. */
  scheduler?: BuiltinScheduler | SchedulerHook;
  /** Same client address -> same backend for `timeoutMs` after its last flow. */
  persistence?: { timeoutMs: number };
  /** Default { type: 'tcp' } with the default timing. */
  healthCheck?: HealthCheckOptions;
  /** A backend coming up ramps its weight from 1 to its configured weight over this time (default 0: at once). */
  slowStartMs?: number;
  /** What ends the flows of a removed backend: a TCP reset toward the client (default) or silently dropping their packets. */
  onBackendRemoved?: 'reset' | 'drop';
  /**
   * When no backend of the service is up: 'drop-new' (default) keeps
   * established flows going and drops new flows (counted as 'no-backend');
   * 'fail-open' schedules new flows over all backends as if they were up.
   * Either way 'service-down' is emitted.
   */
  allBackendsDown?: 'drop-new' | 'fail-open';
  /** Method 'gre': the GRE key to send. */
  greKey?: number;
  /** Packets with IPv4 options: forward (default) or drop. */
  ipOptions?: 'forward' | 'drop';
}

export interface BackendOptions {
  address: string;
  /** Default: the service's port. Ignored by dr and the tunnels (the packet keeps the VIP port). */
  port?: number;
  /** Relative share of new flows, 0..65535 (default 1); 0 drains. */
  weight?: number;
}

// ---- statistics ----------------------------------------------------------------

export interface BackendStats {
  address: string;
  port: number;
  state: BackendState;
  /** The configured weight. */
  weight: number;
  /** The weight in force (lower while slow start ramps it up). */
  effectiveWeight: number;
  /** Whether the next hop toward this backend is resolved (else its packets drop as 'no-neighbour'). */
  nextHopResolved: boolean;
  /** Both directions (inPackets + outPackets, inBytes + outBytes). */
  packets: number;
  bytes: number;
  /** Client -> backend, as received (ipvsadm --stats InPkts, InBytes). */
  inPackets: number;
  inBytes: number;
  /** Backend -> client: replies that passed the balancer (nat, fullnat; dr/tunnel replies returned through it). */
  outPackets: number;
  outBytes: number;
  activeFlows: number;
  totalFlows: number;
}

export interface ServiceStats {
  address: string;
  port: number;
  protocol: Protocol;
  method: Method;
  /** The builtin scheduler's name, or the hook's name. */
  scheduler: string;
  state: ServiceState;
  packets: number;
  bytes: number;
  /** Sums of the backends' In and Out counters. */
  inPackets: number;
  outPackets: number;
  inBytes: number;
  outBytes: number;
  activeFlows: number;
  totalFlows: number;
  backends: BackendStats[];
}

export interface WorkerStats {
  /** Frames received. */
  packets: number;
  bytes: number;
  /** Busy time (non-empty batches) per received frame. */
  busyNsPerPacket: number;
  /** Configuration generation the worker runs. */
  configGeneration: number;
  /** Every counter of the worker by name (native/core/counters.h). */
  counters: Record<string, number>;
}

export interface FlowTableStats {
  /** Flows tracked right now. */
  active: number;
  /** IPv4 nat flows the table holds at its design load (from flows.capacity or flows.memoryBytes, rounded up to whole buckets). */
  capacity: number;
  /** Bytes the table takes (its slots and side arrays). */
  memoryBytes: number;
  /** Slots of 32 bytes. */
  slots: number;
  /** Flow-table counters summed over workers: lookupHits, inserts, insertFailedFull, evictionsHalfOpen, expired, ... */
  counters: Record<string, number>;
}

export interface InterfaceStats {
  name: string;
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  /** Frames the port could not transmit (ring full). */
  txDropped: number;
  /** Frames the kernel dropped before the workers saw them: the receive ring was full (PACKET_STATISTICS; AF_XDP: XDP_STATISTICS). */
  kernelDrops: number;
  /** How the driver runs the interface: 'tpacket_v2' (af_packet), 'xdp_native' or 'xdp_generic' (af_xdp), 'dpdk_af_xdp' or 'dpdk_af_packet' (dpdk), 'memory'. */
  mode: string;
}

export interface LoadBalancerStats {
  /** Generation of the last published configuration. */
  generation: number;
  /** Frames and bytes received by the data plane. */
  packets: number;
  bytes: number;
  services: ServiceStats[];
  /** Dropped frames by reason ('bad-checksum', 'truncated', 'no-backend', 'flow-table-full', ...). */
  drops: Record<string, number>;
  workers: WorkerStats[];
  /** Replies sent back on their flow's ingress path (port + next-hop MAC of its first packet). */
  repliesIngressPath: number;
  /** ...of which routing would have chosen another port. */
  repliesRouteDiffers: number;
  flows: FlowTableStats;
  /** Per interface: what its sockets received and sent, and what the kernel dropped. */
  interfaces: InterfaceStats[];
  /** Every worker counter summed over workers. */
  counters: Record<string, number>;
  /** Flow events (LoadBalancerOptions.flowEvents): delivered as 'flow', and dropped because a worker's ring was full. */
  flowEvents: { enabled: boolean; events: number; dropped: number };
  /** Route announcement (option bgp): each VIP's route and each neighbour's session. */
  bgp?: BgpStats;
}

export interface RateOptions {
  /** Look back this far (default 10000); the oldest sample kept (up to 10 minutes) when there is no older one. */
  windowMs?: number;
}

export interface BackendRates {
  address: string;
  port: number;
  packetsPerSec: number;
  bytesPerSec: number;
  flowsPerSec: number;
}

export interface ServiceRates {
  address: string;
  port: number;
  protocol: Protocol;
  packetsPerSec: number;
  bytesPerSec: number;
  flowsPerSec: number;
  backends: BackendRates[];
}

export interface LoadBalancerRates {
  /** The window actually measured. */
  windowMs: number;
  packetsPerSec: number;
  bytesPerSec: number;
  dropsPerSec: Record<string, number>;
  services: ServiceRates[];
}

// ---- events ----------------------------------------------------------------------

export interface BackendStateEvent {
  service: import('../service.js').Service;
  backend: Backend;
  state: BackendState;
  /** Why: 'health check passed 2 times', 'health check failed 3 times: connect ECONNREFUSED', ... */
  reason: string;
}

export interface ServiceStateEvent {
  service: import('../service.js').Service;
  state: ServiceState;
}

export interface DataPlaneSignal {
  /** 'flow-table-full', 'no-neighbour', 'no-route', 'no-local-port', 'tx-full', 'port-error', or 'events-lost'. */
  kind: string;
  /** The reporting worker (-1 for 'events-lost' summed over workers). */
  worker: number;
  /** Occurrences since the previous signal of this kind from this worker. */
  count: number;
  /** Kind-specific detail: the drop counter's total, or an errno. */
  detail: number;
}
