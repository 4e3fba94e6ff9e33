// Loads the native addon: a prebuild from prebuilds/<platform>-<arch>/ when one
// matches, else the local build in build/Release (node-gyp-build's rules).
//
// The interface below is the only hand-written declaration of native code in
// the project (DESIGN.md §3.11); layouts and names come from the addon at run
// time, never duplicated here.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Layout } from '../shm/layout.js';

export interface NativeEngineOptions {
  workers?: number;
  ports?: number;
  /** Start worker threads (else the caller steps the workers with poll()). */
  threaded?: boolean;
  polling?: 'busy' | 'adaptive';
  /** Adaptive polling: microseconds of polling after the last frame before a worker sleeps. */
  spinUs?: number;
  /**
   * Called on the JS thread when an event ring gains a record after
   * eventsDrained(); not again until the next eventsDrained().
   */
  onEvents?: () => void;
  /** Flow expiry tick (default 100 ms). */
  expiryIntervalMs?: number;
  /** Size the flow table by IPv4 nat flows at the design load ... */
  flowCapacity?: number;
  /** ... or by bytes ... */
  flowMemoryBytes?: number;
  /** ... or in slots. */
  flowSlots?: number;
  backendSlots?: number;
  maglevTableSize?: number;
  ringFrames?: number;
  /** Memory driver: the longest frame a port takes (default 9216; up to 65553 for aggregates). */
  maxFrame?: number;
  /** Memory driver: what its ports claim to offload (tests of both transmit paths). */
  memoryOffloads?: { checksum?: boolean; segmentation?: boolean };
  /** Records per worker event ring (rounded up to a power of two). */
  eventRecords?: number;
  /** Minimum time between two event records of one kind from one worker. */
  signalIntervalMs?: number;
  /** 16 bytes; default: random. Balancers that must hash flows alike share one. */
  hashKey?: Uint8Array;
  timeouts?: {
    tcpSynMs?: number;
    tcpEstablishedMs?: number;
    tcpClosingMs?: number;
    tcpClosedMs?: number;
    udpMs?: number;
    otherMs?: number;
  };
  /** AF_PACKET ports instead of memory ports: port i is interfaces[i] (in the process's network namespace). */
  afPacket?: {
    interfaces: string[];
    txMethod?: 'sendmmsg' | 'ring';
    /** Receive ring slots per socket. */
    rxFrames?: number;
    /** Worker i runs on CPU cpus[i]. */
    cpus?: number[];
  };
  /** DPDK ports (l4lb_dpdk.so at `library`): port i is interfaces[i] (a kernel interface through a vdev), then devices (EAL device strings). */
  dpdk?: {
    library: string;
    interfaces?: string[];
    devices?: string[];
    vdev?: 'af_xdp' | 'af_packet';
    eal?: string[];
    hugepages?: boolean;
    ringSize?: number;
    cpus?: number[];
  };
  /** AF_XDP ports (l4lb_af_xdp.so at `library`): port i is interfaces[i]. */
  afXdp?: {
    library: string;
    interfaces: string[];
    mode?: 'auto' | 'native' | 'generic';
    ringSize?: number;
    cpus?: number[];
  };
}

/** Per-port AF_PACKET counters summed over workers. */
export interface NativePortCounters {
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  txDropped: number;
  /** Frames the kernel dropped because the ring was full (PACKET_STATISTICS). */
  kernelDrops: number;
  /** BPF filter replacements the kernel refused (engine-wide). */
  filterErrors: number;
  /** How the driver runs the interface ('tpacket_v2', 'memory', ...). */
  mode: string;
}

/** Offload metadata of a frame (core::Frame): GSO aggregates and partial checksums. */
export interface NativeFrameOffload {
  /** 0 none, 1 TCP over IPv4, 2 TCP over IPv6, 3 UDP (each segment a datagram). */
  gsoType?: number;
  gsoSize?: number;
  headerLen?: number;
  csumStart?: number;
  csumOffset?: number;
}

export interface NativeTakenFrame extends Required<NativeFrameOffload> {
  frame: Buffer;
  flags: number;
}

/** Per-worker counters; names come from native/core/counters.h. */
export interface NativeWorkerCounters {
  [counter: string]: number | Record<string, number>;
  drops: Record<string, number>;
  flows: Record<string, number>;
}

export interface NativeBackendCounters {
  /** Both directions. */
  packets: number;
  bytes: number;
  inPackets: number;
  inBytes: number;
  outPackets: number;
  outBytes: number;
  flowsCreated: number;
  activeFlows: number;
}

/** The facts of Engine::explain for one tuple (native/engine/engine.h FlowExplanation), backends by id. */
export interface NativeFlowFacts {
  configured: boolean;
  hash: bigint;
  /** Index of the service in the snapshot, -1 when the tuple is for none. */
  serviceIndex: number;
  flow: {
    backendId: number;
    /** The backend is in the configuration in force. */
    backendPresent: boolean;
    state: string;
    matched: 'original' | 'reply';
    idleMs: number;
    expired: boolean;
    slot: number;
    ingressPort: number;
    replyRouteDiffers: boolean;
  } | null;
  persistence: { backendId: number; backendPresent: boolean; idleMs: number; timeoutMs: number; expired: boolean } | null;
  pick: { scheduler: string; byHash: boolean; slot: number; tableSize: number; backendId: number | null } | null;
}

/** A backend as compareSchedulers builds it: address as a host-order number. */
export interface NativeSchedulingBackend {
  address: number;
  port: number;
  weight: number;
  up: boolean;
}

/** The native engine handle (native/addon/engine_binding.cc). */
export interface NativeEngine {
  /** Adopts a snapshot; throws an Error with code 'ESNAPSHOT' naming the rule it breaks. */
  publish(snapshot: Uint8Array): void;
  /** Manual mode: runs one batch of every worker with the given clock (ns). Returns frames received. */
  poll(nowNs: bigint | number): number;
  /** Memory driver: a frame arriving on `port`. False when the ring is full or the frame too long. */
  inject(port: number, frame: Uint8Array, flags?: number, offload?: NativeFrameOffload): boolean;
  /** Memory driver: the next frame transmitted on `port`, or null; with its flags and offload metadata when asked. */
  take(port: number): Buffer | null;
  take(port: number, withOffload: true): NativeTakenFrame | null;
  counters(): NativeWorkerCounters[];
  backendCounters(slots: number[]): NativeBackendCounters[];
  flowOccupancy(): { forward: number; reverse: number; templates: number };
  /** What the flow table was built with. */
  flowTable(): { slots: number; slotBytes: number; capacity: number; memoryBytes: number };
  maglevChangedSlots(serviceIndex: number): number | null;
  /** What the data plane would do with a client's packet of this tuple (addresses host-order numbers); changes nothing. */
  explainFlow(tuple: { protocol: number; src: number; sport: number; dst: number; dport: number }, nowNs?: bigint): NativeFlowFacts;
  /**
   * The statistics region (counters, active flows, event rings; layout.stats)
   * as an external ArrayBuffer, the same object on every call. Detached by close().
   */
  sharedMemory(): ArrayBuffer;
  /** Manual mode only: pushes a record into a worker's event ring as that worker would. False when full. */
  postEvent(worker: number, kind: number, count: number, detail: number): boolean;
  /** The caller is about to read the event rings: the next record calls onEvents again. */
  eventsDrained(): void;
  start(): void;
  /** Idempotent: stops the workers and frees the engine. */
  /** AF_PACKET ports only: per-port counters (empty for memory ports). */
  portCounters(): NativePortCounters[];
  close(): void;
}

/**
 * The real server's userspace decapsulator (native/realserver/decapsulator.h):
 * options as lib/realserver validated them. Addresses are host-order numbers
 * (198.18.0.1 is 0xc6120001).
 */
export interface NativeDecapsulatorOptions {
  /** Network namespace file (/run/netns/NAME) the worker joins; absent: the caller's. */
  netnsPath?: string;
  /** TUN device: attached if a persistent one exists, else created (and removed on stop). */
  tunName: string;
  /** Accepted inner destinations. */
  vips: number[];
  /** Accepted outer destinations; absent or empty: any local address. */
  localAddresses?: number[];
  acceptIpip: boolean;
  acceptGre: boolean;
  /** Only GRE packets with this key are delivered; absent: any key or none. */
  greKey?: number;
  /** Packets from a VIP read from the TUN device go to `destination` inside this tunnel. */
  returnTo?: { kind: 'gre' | 'ipip'; destination: number; source?: number; greKey?: number };
}

/** Counter names of the maps come from native/realserver/tunnel_packet.h. */
export interface NativeDecapsulatorStats {
  running: boolean;
  stopped: boolean;
  failure?: string;
  tunPersistent?: boolean;
  received?: number;
  decapsulated?: number;
  decapsulatedBytes?: number;
  tunWriteErrors?: number;
  malformed?: Record<string, number>;
  notForUs?: Record<string, number>;
  returned?: number;
  returnedBytes?: number;
  returnDrops?: Record<string, number>;
  sendErrors?: number;
  receiveErrors?: number;
}

export interface NativeDecapsulator {
  stats(): NativeDecapsulatorStats;
  /** Idempotent: joins the worker thread and closes its sockets and TUN descriptor. */
  stop(): void;
}

export interface NativeDecapsulatorClass {
  /** Starts the worker; throws an Error with code 'ENETNS' | 'ESOCKET' | 'ETUN' | 'ETHREAD'. */
  new (options: NativeDecapsulatorOptions): NativeDecapsulator;
  /** The pure decapsulation of one received IPv4 packet. */
  decapsulatePacket(
    packet: Uint8Array,
    filter: Pick<NativeDecapsulatorOptions, 'vips' | 'localAddresses' | 'acceptIpip' | 'acceptGre' | 'greKey'>,
  ): { verdict: 'deliver' | 'malformed' | 'not-for-us'; reason?: string; tunnel: 'ipip' | 'gre'; inner?: Buffer };
  /** The pure encapsulation of one reply read from the TUN device. */
  encapsulateReturnPacket(
    packet: Uint8Array,
    tunnel: { kind: 'gre' | 'ipip'; destination: number; source?: number; greKey?: number; vips: number[]; identification?: number },
  ): { ok: true; packet: Buffer } | { ok: false; reason: string };
}

/** Benchmark traffic generator (native/bench/traffic_generator.h). Addresses are host-order numbers. */
export interface NativeTrafficGeneratorOptions {
  interface: string;
  /** Network namespace file (/run/netns/NAME) the socket is created in; absent: the caller's. */
  netnsPath?: string;
  dstMac: string;
  srcMac: string;
  /** Flow f is sent from srcAddress + floor(f / 64512), port 1024 + f % 64512. */
  srcAddress: number;
  dstAddress: number;
  dstPort?: number;
  protocol?: 'udp' | 'tcp';
  /** Ethernet frame size with FCS (RFC 2544): 64..1518 (TCP from 74). */
  frameSize?: number;
  txMethod?: 'sendmmsg' | 'ring';
  cpu?: number;
}

export interface NativeTrafficGeneratorRun {
  runTag: number;
  /** 0 or absent: flat out. */
  ratePps?: number;
  burst?: number;
  /** Paced runs kick only once this many frames are due (larger kicks cost less per frame). */
  minBurst?: number;
  flows?: number;
  newFlowPerFrame?: boolean;
  firstFlow?: number;
  durationMs?: number;
  maxFrames?: number;
}

export interface NativeTrafficGeneratorStats {
  running: boolean;
  sent: number;
  refused: number;
  kicks: number;
  elapsedNs: number;
  threadCpuNs: number;
  nextFlow: number;
  wireLength: number;
}

export interface NativeTrafficGenerator {
  /** False while a run is in progress. */
  start(run: NativeTrafficGeneratorRun): boolean;
  stop(): void;
  stats(): NativeTrafficGeneratorStats;
  close(): void;
}

export interface NativeTrafficSinkStats {
  runTag: number;
  frames: number;
  bytes: number;
  otherFrames: number;
  /** Cumulative over the sink's life. */
  kernelDrops: number;
  negativeLatencies: number;
  /** The sink thread's CPU time since it started. */
  threadCpuNs: number;
  firstNs: number;
  lastNs: number;
  latencyNs: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
}

export interface NativeTrafficSink {
  /** Counts the frames of `runTag` from zero; false if the sink thread did not adopt it in time. */
  expect(runTag: number): boolean;
  stats(): NativeTrafficSinkStats;
  close(): void;
}

export interface NativeMacForwarderStats {
  rxPackets: number;
  txPackets: number;
  txDropped: number;
  kernelDrops: number;
  busyNs: number;
  batches: number;
  idlePolls: number;
  threadCpuNs: number;
}

/** The benchmark's native pieces (native/addon/bench_binding.cc). */
export interface NativeBench {
  TrafficGenerator: new (options: NativeTrafficGeneratorOptions) => NativeTrafficGenerator;
  TrafficSink: new (options: { interface: string; netnsPath?: string; blockSize?: number; blockCount?: number; cpu?: number }) => NativeTrafficSink;
  MacForwarder: new (options: {
    ports: [{ interface: string; dstMac: string; srcMac: string }, { interface: string; dstMac: string; srcMac: string }];
    netnsPath?: string;
    polling?: 'busy' | 'adaptive';
    cpu?: number;
    txMethod?: 'sendmmsg' | 'ring';
    /** Over the AF_XDP driver instead: its library, and a compiled configuration whose services its XDP program redirects. */
    afXdp?: { library: string; snapshot: Uint8Array };
  }) => { stats(): NativeMacForwarderStats; close(): void };
  /** run(iterations) picks that many times; returns a checksum of the picks. */
  SchedulerPick: new (kind: string, backends: number) => { run(iterations: number): number };
  FlowTableMicro: new (slots: number, flows: number) => {
    lookupHits(iterations: number): number;
    /** Lookups in bursts of the engine's size, each burst hashed and prefetched first. */
    lookupBurstHits(iterations: number): number;
    lookupMisses(iterations: number): number;
    insertRemove(iterations: number): number;
    /** The table's memory: slots and side arrays. */
    bytes(): number;
    /** Flows the constructor placed. */
    held(): number;
    /** Nanoseconds the constructor spent inserting them. */
    fillNs(): number;
    /** Frees the table; every other method then throws. */
    release(): void;
  };
  /** kind: copy | parse | nat | fullnat | dr | ipip | gre. */
  Rewrite: new (kind: string, frame: Uint8Array) => { run(iterations: number): number };
  /** The whole engine step through memory ports, one frame over and over. */
  EngineStep: new (snapshot: Uint8Array, ports: number, port: number, frame: Uint8Array) => { run(iterations: number): number };
  /** Nanoseconds one Maglev build took (0 if it failed). */
  maglevBuildNs(backends: number, tableSize: number): number;
  readonly flowTableBytesPerSlot: number;
  /** Slots the engine gives a table sized for this many IPv4 nat flows (flows.capacity). */
  flowTableSlotsFor(flows: number): number;
}

/** The addon's exports, as seen from TypeScript. */
export interface NativeBinding {
  /** Changes whenever a verb or shared layout changes meaning. */
  readonly abiVersion: number;
  /** Names of the drop reasons, indexed by the native DropReason value. */
  dropReasons(): string[];
  /** Sizes, offsets and constants of the shared layouts (native/shm/layout.h). */
  readonly layout: Layout;
  /** Frame flag bits for inject(). */
  readonly frameFlags: { checksumPartial: number };
  readonly Engine: new (options: NativeEngineOptions) => NativeEngine;
  /**
   * Builds a hash-based scheduler ('maglev', 'sh', 'table') for each backend
   * list as the engine would and returns the share of new flows that moves:
   * Maglev slot by slot (exact), else at `samples` evenly spread hashes.
   * null for the other kinds.
   */
  compareSchedulers(
    kind: string,
    before: NativeSchedulingBackend[],
    after: NativeSchedulingBackend[],
    options?: { maglevTableSize?: number; samples?: number; tableBefore?: number[]; tableAfter?: number[] },
  ): { exact: boolean; moved: number; total: number } | null;
  /** The real server's userspace decapsulator (lib/realserver). */
  readonly Decapsulator: NativeDecapsulatorClass;
  /** The benchmark's generator, sink, MAC-only forwarder and micro kernels (bench/). */
  readonly bench: NativeBench;
  /**
   * SO_NETNS_COOKIE of the network namespace at `path` (an nsfs file), or of
   * the calling thread's; throws an Error with code 'ENETNS', 'ESOCKET' or
   * 'EUNSUPPORTED' (a kernel before 5.14).
   */
  netnsCookie(path?: string): bigint;
}

/** The ABI version this TypeScript code was written against. */
export const expectedAbiVersion = 3;

const require = createRequire(import.meta.url);
const nodeGypBuild = require('node-gyp-build') as ((dir: string) => unknown) & {
  resolve(dir: string): string;
};

/** The package root: both lib/native (sources) and dist/native (compiled) sit two levels below it. */
export const packageRoot = fileURLToPath(new URL('../..', import.meta.url));

let cached: NativeBinding | undefined;

/** The path of the addon file that `loadBinding(dir)` would load. */
export function resolveBindingPath(dir: string = packageRoot): string {
  return nodeGypBuild.resolve(dir);
}

/**
 * Where an optional native library (an AF_XDP or DPDK driver linked against
 * libraries the main addon must not depend on) lives: beside the addon file
 * that loads, `<name>.so` in build/Release or in the prebuild directory.
 * The addon opens it with dlopen when the driver is asked for, so a machine
 * without those libraries still loads the addon (docs/packaging.md).
 */
export function nativeLibraryPath(name: string, dir: string = packageRoot): string {
  return join(dirname(resolveBindingPath(dir)), `${name}.so`);
}

/** Loads (once per package root) and checks the addon. */
export function loadBinding(dir: string = packageRoot): NativeBinding {
  if (dir === packageRoot && cached) return cached;
  const binding = nodeGypBuild(dir) as NativeBinding;
  if (binding.abiVersion !== expectedAbiVersion) {
    throw new Error(
      `l4lb: native addon ABI ${binding.abiVersion} does not match ${expectedAbiVersion}; rebuild it (npm rebuild l4lb)`,
    );
  }
  if (dir === packageRoot) cached = binding;
  return binding;
}
