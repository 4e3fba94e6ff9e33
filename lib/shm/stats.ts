// Reads the statistics region the workers write (native/shm/stats.h): one
// counter block per worker (one writer each; this reader sums them), the
// shared active-flow counts, and the per-worker event rings.
//
// Every offset comes from the layout the addon exports or from the headers
// in the region, checked against that layout first: magic numbers, layout
// version, sizes. Counters are read with Atomics.load (8-byte aligned, never
// torn); a sum over workers may mix counters a batch apart, never a torn one.
import { DataPlaneError } from '../errors.js';
import type { StatsLayout, StructLayout } from './layout.js';

export interface WorkerCounterValues {
  /** Counters by their exported names (rxPackets, forwarded, busyNs, ...). */
  counters: Record<string, number>;
  /** Drops by reason name. */
  drops: Record<string, number>;
  /** Flow-table counters (lookupHits, inserts, insertFailedFull, ...). */
  flows: Record<string, number>;
}

export interface BackendCounterValues {
  /** Both directions. */
  packets: number;
  bytes: number;
  /** Client -> backend, as received. */
  inPackets: number;
  inBytes: number;
  /** Backend -> client: replies that passed the balancer. */
  outPackets: number;
  outBytes: number;
  flowsCreated: number;
}

/** The per-direction names of core::BackendCounters (packets and bytes are their sums). */
export const backendCounterNames = ['inPackets', 'inBytes', 'outPackets', 'outBytes', 'flowsCreated'] as const;

export function zeroBackendCounters(): BackendCounterValues {
  return { packets: 0, bytes: 0, inPackets: 0, inBytes: 0, outPackets: 0, outBytes: 0, flowsCreated: 0 };
}

function field(layout: StructLayout, name: string): number {
  const f = layout.fields[name];
  if (!f) throw new DataPlaneError('ELAYOUT', `the native layout has no field "${name}"`);
  return f.offset;
}

function check(condition: boolean, what: string): void {
  if (!condition) throw new DataPlaneError('ELAYOUT', `statistics region: ${what}`);
}

interface BlockOffsets {
  workerCounters: number;
  drops: number;
  flowCounters: number;
  backendCounters: number;
}

export class StatsReader {
  readonly workers: number;
  readonly backendSlots: number;
  private readonly u64: BigUint64Array;
  private readonly i32: Int32Array;
  private readonly activeFlowsIndex: number;
  private readonly blocks: BlockOffsets[] = [];
  private readonly backendStride: number;
  private readonly workerFields: Array<[string, number]>;
  private readonly flowFields: Array<[string, number]>;
  private readonly backendFields: Array<[(typeof backendCounterNames)[number], number]>;

  constructor(
    private readonly buffer: ArrayBuffer,
    private readonly layout: StatsLayout,
    private readonly constants: Record<string, number>,
    private readonly dropReasons: readonly string[],
  ) {
    const view = new DataView(buffer);
    const u32 = (at: number) => view.getUint32(at, true);
    const u16 = (at: number) => view.getUint16(at, true);
    const r = layout.region;
    check(buffer.byteLength >= r.size, 'shorter than its header');
    check(u32(field(r, 'magic')) === constants.statsRegionMagic, 'wrong magic number');
    check(u16(field(r, 'layout_version')) === constants.statsLayoutVersion, 'unsupported layout version');
    check(u16(field(r, 'header_size')) === r.size, 'header size differs');
    check(u32(field(r, 'total_size')) === buffer.byteLength, 'total size differs from the buffer');
    this.workers = u32(field(r, 'worker_count'));
    this.backendSlots = u32(field(r, 'backend_slots'));
    const activeFlowsOffset = u32(field(r, 'active_flows_offset'));
    const blockOffset = u32(field(r, 'block_offset'));
    const blockStride = u32(field(r, 'block_stride'));
    check(layout.activeFlows.stride === 4, 'active-flow counts are not 32-bit');
    check(activeFlowsOffset % 4 === 0 && activeFlowsOffset + 4 * this.backendSlots <= buffer.byteLength, 'active flows out of bounds');
    this.u64 = new BigUint64Array(buffer, 0, Math.floor(buffer.byteLength / 8));
    this.i32 = new Int32Array(buffer, 0, Math.floor(buffer.byteLength / 4));
    this.activeFlowsIndex = activeFlowsOffset / 4;

    const b = layout.block;
    for (let w = 0; w < this.workers; w++) {
      const base = blockOffset + w * blockStride;
      check(base + b.size <= buffer.byteLength, `worker ${w}'s block out of bounds`);
      check(u32(base + field(b, 'magic')) === constants.statsBlockMagic, `worker ${w}'s block has a wrong magic number`);
      check(u16(base + field(b, 'layout_version')) === constants.statsLayoutVersion, `worker ${w}'s block version`);
      check(u16(base + field(b, 'header_size')) === b.size, `worker ${w}'s block header size`);
      check(u32(base + field(b, 'worker')) === w, `worker ${w}'s block names another worker`);
      check(u32(base + field(b, 'worker_counters_size')) === layout.workerCounters.size, 'worker counter size differs');
      check(u32(base + field(b, 'flow_counters_size')) === layout.flowCounters.size, 'flow counter size differs');
      check(u32(base + field(b, 'backend_counters_stride')) === layout.backendCounters.size, 'backend counter size differs');
      check(u32(base + field(b, 'backend_slots')) === this.backendSlots, 'backend slots differ');
      check(u32(base + field(b, 'drop_reason_count')) === layout.drops.count, 'drop reason count differs');
      const blockSize = u32(base + field(b, 'block_size'));
      const workerCounters = base + u32(base + field(b, 'worker_counters_offset'));
      const flowCounters = base + u32(base + field(b, 'flow_counters_offset'));
      const backendCounters = base + u32(base + field(b, 'backend_counters_offset'));
      check(
        workerCounters + layout.workerCounters.size <= base + blockSize &&
          flowCounters + layout.flowCounters.size <= base + blockSize &&
          backendCounters + layout.backendCounters.size * this.backendSlots <= base + blockSize &&
          base + blockSize <= buffer.byteLength,
        `worker ${w}'s counters out of bounds`,
      );
      check([workerCounters, flowCounters, backendCounters].every((o) => o % 8 === 0), 'counters are not 8-byte aligned');
      this.blocks.push({
        workerCounters,
        drops: workerCounters + layout.drops.offset,
        flowCounters,
        backendCounters,
      });
    }
    check(layout.drops.stride === 8 && dropReasons.length === layout.drops.count, 'drop counters differ');
    this.backendStride = layout.backendCounters.size;
    this.workerFields = Object.entries(layout.workerCounters.fields).map(([name, f]) => [name, f.offset]);
    this.flowFields = Object.entries(layout.flowCounters.fields).map(([name, f]) => [name, f.offset]);
    this.backendFields = backendCounterNames.map((name) => [name, field(layout.backendCounters, name)]);
  }

  /** False once the engine is closed (the buffer is detached). */
  get attached(): boolean {
    return this.buffer.byteLength !== 0;
  }

  private load(byteOffset: number): number {
    return Number(Atomics.load(this.u64, byteOffset / 8));
  }

  /** One worker's counters, drops and flow-table counters. */
  worker(w: number): WorkerCounterValues {
    const block = this.blocks[w]!;
    const counters: Record<string, number> = {};
    for (const [name, offset] of this.workerFields) counters[name] = this.load(block.workerCounters + offset);
    const drops: Record<string, number> = {};
    this.dropReasons.forEach((reason, i) => (drops[reason] = this.load(block.drops + i * 8)));
    const flows: Record<string, number> = {};
    for (const [name, offset] of this.flowFields) flows[name] = this.load(block.flowCounters + offset);
    return { counters, drops, flows };
  }

  /** A backend slot's counters, summed over the workers. */
  backend(slot: number): BackendCounterValues {
    const out = zeroBackendCounters();
    if (slot < 0 || slot >= this.backendSlots) return out;
    for (const block of this.blocks) {
      const base = block.backendCounters + slot * this.backendStride;
      for (const [name, offset] of this.backendFields) out[name] += this.load(base + offset);
    }
    out.packets = out.inPackets + out.outPackets;
    out.bytes = out.inBytes + out.outBytes;
    return out;
  }

  /** Flows tracked for a backend slot right now (all workers). */
  activeFlows(slot: number): number {
    if (slot < 0 || slot >= this.backendSlots) return 0;
    return Math.max(0, Atomics.load(this.i32, this.activeFlowsIndex + slot));
  }
}

export interface DataPlaneEvent {
  /** Event kind name (layout.stats.eventKinds): 'flow-table-full', 'no-neighbour', ... */
  kind: string;
  worker: number;
  /** Occurrences since the previous event of this kind from this worker. */
  count: number;
  /** Kind-specific: the drop counter's running total, or an errno for 'port-error'. */
  detail: number;
  /** The worker's clock (CLOCK_MONOTONIC) in nanoseconds. */
  timeNs: bigint;
}

/**
 * The consumer side of one ring (an event ring, or a flow-event ring) of a
 * worker. The producer publishes `tail` with a release store after writing
 * a record; Atomics.load of tail (sequentially consistent, so at least
 * acquire) pairs with it. After the records are read, Atomics.store of head
 * publishes their slots back; the producer's acquire load of head pairs
 * with it.
 */
class RingReader<T> {
  private readonly u32: Uint32Array;
  private readonly tailIndex: number;
  private readonly headIndex: number;
  private readonly lostIndex: number;
  private readonly recordsOffset: number;
  private readonly mask: number;
  private readonly recordSize: number;
  protected readonly view: DataView;
  private lostSeen = 0;

  constructor(
    buffer: ArrayBuffer,
    layout: StatsLayout,
    base: number,
    magic: number,
    version: number,
    record: StructLayout,
    readonly worker: number,
    private readonly decode: (view: DataView, at: number) => T,
  ) {
    const view = new DataView(buffer);
    const u32 = (at: number) => view.getUint32(at, true);
    const e = layout.eventRing;
    check(base + e.size <= buffer.byteLength, `worker ${worker}'s ring out of bounds`);
    check(u32(base + field(e, 'magic')) === magic, `worker ${worker}'s ring has a wrong magic number`);
    check(view.getUint16(base + field(e, 'layout_version'), true) === version, 'ring version');
    check(view.getUint16(base + field(e, 'header_size'), true) === e.size, 'ring header size');
    check(u32(base + field(e, 'record_size')) === record.size, 'ring record size differs');
    check(u32(base + field(e, 'worker')) === worker, `worker ${worker}'s ring names another worker`);
    const capacity = u32(base + field(e, 'capacity'));
    check(capacity > 0 && (capacity & (capacity - 1)) === 0, 'ring capacity is not a power of two');
    const ringSize = u32(base + field(e, 'ring_size'));
    this.recordsOffset = base + u32(base + field(e, 'records_offset'));
    this.recordSize = record.size;
    check(
      this.recordsOffset + capacity * this.recordSize <= base + ringSize && base + ringSize <= buffer.byteLength,
      'ring records out of bounds',
    );
    for (const name of ['tail', 'head', 'lost']) check((base + field(e, name)) % 4 === 0, `ring ${name} misaligned`);
    this.u32 = new Uint32Array(buffer, 0, Math.floor(buffer.byteLength / 4));
    this.tailIndex = (base + field(e, 'tail')) / 4;
    this.headIndex = (base + field(e, 'head')) / 4;
    this.lostIndex = (base + field(e, 'lost')) / 4;
    this.mask = capacity - 1;
    this.view = view;
  }

  /** Records the producer dropped because the ring was full (since creation). */
  get lost(): number {
    return Atomics.load(this.u32, this.lostIndex);
  }

  /** Lost records not reported by a previous call. */
  takeLost(): number {
    const lost = this.lost;
    const fresh = (lost - this.lostSeen) >>> 0;
    this.lostSeen = lost;
    return fresh;
  }

  /** Takes every record published so far, oldest first. */
  drain(): T[] {
    const head = Atomics.load(this.u32, this.headIndex);
    const tail = Atomics.load(this.u32, this.tailIndex); // pairs with the producer's release store of tail
    const available = (tail - head) >>> 0;
    const records: T[] = [];
    if (available === 0 || available > this.mask + 1) return records;
    for (let i = 0; i < available; i++) {
      records.push(this.decode(this.view, this.recordsOffset + (((head + i) >>> 0) & this.mask) * this.recordSize));
    }
    // Pairs with the producer's acquire load of head: the slots are free again.
    Atomics.store(this.u32, this.headIndex, tail);
    return records;
  }
}

function regionField(buffer: ArrayBuffer, layout: StatsLayout, name: string): number {
  return new DataView(buffer).getUint32(field(layout.region, name), true);
}

/** The data-plane signals of one worker (kinds: layout.stats.eventKinds). */
export class EventRingReader extends RingReader<DataPlaneEvent> {
  constructor(buffer: ArrayBuffer, layout: StatsLayout, constants: Record<string, number>, worker: number) {
    const rec = layout.eventRecord;
    const base = regionField(buffer, layout, 'ring_offset') + worker * regionField(buffer, layout, 'ring_stride');
    super(buffer, layout, base, constants.eventRingMagic!, constants.statsLayoutVersion!, rec, worker, (view, at) => {
      const kind = view.getUint16(at + field(rec, 'kind'), true);
      return {
        kind: layout.eventKinds[kind] ?? `unknown-${kind}`,
        worker: view.getUint32(at + field(rec, 'worker'), true),
        timeNs: view.getBigUint64(at + field(rec, 'time_ns'), true),
        count: Number(view.getBigUint64(at + field(rec, 'count'), true)),
        detail: Number(view.getBigUint64(at + field(rec, 'detail'), true)),
      };
    });
  }
}

/** A flow created or ended, as the worker recorded it (shm::FlowEventRecord). */
export interface FlowEventRecord {
  kind: 'created' | 'ended';
  /** core::FlowEndReason: 0 expired, 1 removed, 2 evicted. */
  reason: number;
  protocol: number;
  family: number;
  worker: number;
  timeNs: bigint;
  backendId: number;
  durationMs: number;
  /** Host-order IPv4 addresses (IPv4 flows). */
  src: number;
  dst: number;
  sport: number;
  dport: number;
  inPackets: number;
  inBytes: number;
  outPackets: number;
  outBytes: number;
}

/** The flow-event ring of one worker; undefined from forWorker() when the engine keeps none. */
export class FlowEventRingReader extends RingReader<FlowEventRecord> {
  static forWorker(buffer: ArrayBuffer, layout: StatsLayout, constants: Record<string, number>, worker: number): FlowEventRingReader | undefined {
    const offset = regionField(buffer, layout, 'flow_ring_offset');
    if (offset === 0) return undefined;
    return new FlowEventRingReader(buffer, layout, constants, worker, offset + worker * regionField(buffer, layout, 'flow_ring_stride'));
  }

  private constructor(buffer: ArrayBuffer, layout: StatsLayout, constants: Record<string, number>, worker: number, base: number) {
    const rec = layout.flowEventRecord;
    const f = (name: string) => field(rec, name);
    super(buffer, layout, base, constants.flowRingMagic!, constants.statsLayoutVersion!, rec, worker, (view, at) => ({
      kind: view.getUint8(at + f('kind')) === 0 ? 'created' : 'ended',
      reason: view.getUint8(at + f('reason')),
      protocol: view.getUint8(at + f('protocol')),
      family: view.getUint8(at + f('family')),
      worker: view.getUint32(at + f('worker'), true),
      timeNs: view.getBigUint64(at + f('time_ns'), true),
      backendId: view.getUint32(at + f('backend_id'), true),
      durationMs: view.getUint32(at + f('duration_ms'), true),
      // Network order in the record: big-endian reads give host-order numbers.
      src: view.getUint32(at + f('src_addr'), false),
      dst: view.getUint32(at + f('dst_addr'), false),
      sport: view.getUint16(at + f('src_port'), true),
      dport: view.getUint16(at + f('dst_port'), true),
      inPackets: Number(view.getBigUint64(at + f('packets_in'), true)),
      inBytes: Number(view.getBigUint64(at + f('bytes_in'), true)),
      outPackets: Number(view.getBigUint64(at + f('packets_out'), true)),
      outBytes: Number(view.getBigUint64(at + f('bytes_out'), true)),
    }));
  }
}
