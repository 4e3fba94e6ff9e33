// The benchmark report: what `npm run bench -- --json FILE` writes.
import type { CoreUse } from '../throughput/cpu.js';
import type { TcpBulkResult, TcpConnectionsResult } from '../throughput/tcp.js';
import type { UdpRunResult } from '../throughput/udp.js';
import type { MicroResult } from '../micro/micro.js';

export type Status = 'ok' | 'unavailable' | 'failed';

export interface Machine {
  nproc: number;
  cpuModel: string;
  kernel: string;
  node: string;
  memoryGiB: number;
  loadAverageStart: number;
  loadAverageEnd: number;
  date: string;
  generatorCpu: number;
  forwarderCpu: number;
}

export interface UdpScenario {
  name: string;
  kind: 'udp';
  forwarder: string;
  frameSize: number;
  flows: number;
  status: Status;
  reason?: string;
  /** Flat out: the generator offers what it can; delivered is the forwarder's capacity when there is loss. */
  throughput?: UdpRunResult;
  /** Paced at the generator's calibrated single-core rate. */
  atCalibratedRate?: UdpRunResult;
  latencyLow?: UdpRunResult;
  latencyHigh?: UdpRunResult;
  /** threadsNsPerPacket less the calibration's at the same frame size: the CPU forwarding adds per packet. */
  addedNsPerPacket?: number;
  /** The same from /proc/stat (both CPUs' busy time less other tenants' visible use): a cross-check. */
  addedSystemNsPerPacket?: number;
  /** Ratios l4lb / baseline at the same frame size and flows (delivered pps; cost per packet: busy ns vs mac-only, added ns otherwise). */
  ratios?: Record<string, { delivered: number; cost: number; costMeasure: string }>;
}

export interface StormScenario {
  name: string;
  kind: 'storm';
  forwarder: string;
  status: Status;
  reason?: string;
  run?: UdpRunResult;
  addedNsPerPacket?: number;
  flowsCreated?: number;
  flowsHeld?: number;
  flowTableFull?: number;
  /** The balancer's resident growth when its flow table was created, per flow held. */
  rssBytesPerFlow?: number;
  /** Flow table bytes per flow by construction (slots per flow x bytes per slot). */
  tableBytesPerFlow?: number;
  capacity?: number;
}

export interface IdleScenario {
  name: string;
  kind: 'idle';
  status: Status;
  reason?: string;
  seconds?: number;
  /** Flows the table held while idle (the expiry sweep walks them). */
  flows?: number;
  /** Fractions of one core. */
  workerCpu?: number;
  processCpu?: number;
  forwarderCore?: CoreUse;
}

/** Flat out through one forwarder, alone on its core and then beside a CPU hog pinned there. */
export interface HogScenario {
  name: string;
  kind: 'hog';
  forwarder: string;
  status: Status;
  reason?: string;
  frameSize?: number;
  flows?: number;
  alone?: UdpRunResult;
  withHog?: UdpRunResult;
  /** Delivered pps with the hog / alone. */
  retained?: number;
}

export interface TcpScenario {
  name: string;
  kind: 'tcp';
  forwarder: string;
  status: Status;
  reason?: string;
  /** As many connections as the client gets through. */
  connections?: TcpConnectionsResult;
  /** New connections at one fixed rate for every forwarder (CPU per connection compared there). */
  connectionsAtSameRate?: TcpConnectionsResult;
  bulk?: TcpBulkResult;
}

export interface Target {
  name: string;
  target: string;
  measured: string;
  met: boolean | null;
  /** How far from the target, when missed (e.g. "2.3x the limit"). */
  gap?: string;
}

export interface BenchReport {
  version: 1;
  mode: 'quick' | 'full' | 'selected';
  machine: Machine;
  settings: { throughputMs: number; latencyMs: number; warmupMs: number; lowRatePps: number; highRateFraction: number };
  calibration: Record<string, { throughput?: UdpRunResult; latencyLow?: UdpRunResult }>;
  scenarios: Array<UdpScenario | StormScenario | IdleScenario | HogScenario | TcpScenario>;
  ipvs: { available: boolean; reason: string };
  micro: MicroResult[];
  targets: Target[];
  durationS: number;
}
