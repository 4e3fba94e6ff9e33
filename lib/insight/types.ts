// The shapes of the operator-insight API: explain() (which backend a flow
// gets and why), whatIf() (what a change would move), and the flow events.
import type { Backend } from '../backend.js';
import type { BackendOptions, Protocol } from '../config/types.js';
import type { Service } from '../service.js';

/** A client's packet as it arrives: client address and port -> VIP and port. */
export interface FlowTuple {
  src: string;
  sport: number;
  dst: string;
  dport: number;
  /** Default 'tcp'. */
  proto?: Protocol;
}

/** A backend as explain() and whatIf() name it. */
export interface BackendRef {
  address: string;
  port: number;
}

export type ExplainVerdict =
  /** No service for dst:dport/proto: the packet is passed, not balanced. */
  | 'no-service'
  /** A tracked flow holds the tuple: its packets go to its backend. */
  | 'existing-flow'
  /** The flow's backend was removed: its next packet ends it (reset or drop). */
  | 'backend-removed'
  /** A new flow goes to the backend of the client's persistence template. */
  | 'persistence'
  /** A new flow goes where the scheduler sends it. */
  | 'scheduler'
  /** A new flow has no backend to go to (none up, or all draining): dropped as 'no-backend'. */
  | 'no-backend';

export interface FlowExplanation {
  flow: Required<FlowTuple>;
  /** The service the tuple is for ('198.18.0.100:80/tcp'), or null. */
  service: string | null;
  verdict: ExplainVerdict;
  /** The backend the next packet of this tuple goes to; null when none (or when the scheduler's rotation decides). */
  backend: (BackendRef & { state: 'up' | 'down'; weight: number }) | null;
  /** One sentence: the verdict and why. */
  reason: string;
  /** The flow-table entry holding the tuple, if any. */
  existingFlow: {
    backend: BackendRef | null;
    /** TCP state ('syn-seen', 'established', 'fin-from-client', ...), or 'udp'. */
    state: string;
    /** Since its last packet. */
    idleMs: number;
    /** The idle timeout of its state. */
    timeoutMs: number;
    /** Timed out, not yet removed: the next packet starts a new flow. */
    expired: boolean;
    /** Whether routing would send its replies out of another port than they leave by. */
    replyRouteDiffers: boolean;
  } | null;
  /** The client's persistence template for the service, if the service has persistence and one exists. */
  persistence: { backend: BackendRef | null; idleMs: number; timeoutMs: number; expired: boolean } | null;
  /** What the scheduler would do for a new flow of this tuple. */
  scheduler: {
    name: string;
    /** A function of the packet alone (maglev, sh, hook tables): `slot` of `tableSize` decides. */
    byHash: boolean;
    slot: number | null;
    tableSize: number | null;
    /** Its choice (by hash), or lc/wlc's choice now; null for rr/wrr (each worker's rotation decides). */
    backend: BackendRef | null;
  } | null;
  /** The flow table's keyed hash of the tuple (hex). */
  hash: string;
}

/** A change whatIf() evaluates without applying it. `service`: a Service or its name ('198.18.0.100:80/tcp'). */
export type WhatIfChange =
  | { service: Service | string; add: BackendOptions }
  | { service: Service | string; remove: Backend | BackendRef }
  | { service: Service | string; backend: Backend | BackendRef; weight: number };

export interface WhatIfResult {
  service: string;
  scheduler: string;
  /**
   * How movedShare was found: 'table-slots' (Maglev tables compared slot by
   * slot, exact), 'sampled' (sh: the choice at 65,536 evenly spread hashes),
   * 'weights' (rr, wrr, lc, wlc: the change in each backend's share of new
   * flows by weight; which flow goes where depends on the rotation and load).
   */
  method: 'table-slots' | 'sampled' | 'weights';
  /** The share (0..1) of new flows that would go to another backend than today. */
  movedShare: number;
  /** For 'table-slots' and 'sampled': slots (samples) whose backend changes, of how many. */
  changed: number | null;
  total: number | null;
  /** Tracked flows of a backend the change removes: they end at their next packet (onBackendRemoved). */
  flowsEnding: number;
  /** Tracked flows of the service now; established flows of the other backends stay where they are. */
  activeFlows: number;
  /** Each backend's share of new flows before and after (by its weight among the schedulable backends). */
  backends: Array<BackendRef & { shareBefore: number; shareAfter: number }>;
}

export type FlowEndReason = 'expired' | 'removed' | 'evicted';

/** A flow created or ended in the data plane (lb.on('flow')); flowEvents must be enabled. */
export interface FlowEvent {
  type: 'created' | 'ended';
  /** The service ('198.18.0.100:80/tcp'), or null if it is gone. */
  service: string | null;
  /** The backend the flow went to, or null if it is gone. */
  backend: BackendRef | null;
  protocol: Protocol;
  client: { address: string; port: number };
  vip: { address: string; port: number };
  worker: number;
  /** The worker's clock (CLOCK_MONOTONIC) when it wrote the event, in nanoseconds. */
  timeNs: bigint;
  /** ended: why (timed out, removed by the data plane, or evicted to make room). */
  reason: FlowEndReason | null;
  /** ended: from its first packet to its last. */
  durationMs: number;
  /** ended: client -> backend (In) and replies (Out), as the data plane counted them. */
  inPackets: number;
  inBytes: number;
  outPackets: number;
  outBytes: number;
}
