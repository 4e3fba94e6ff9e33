// Typed access to the shared-memory layouts the addon exports. Nothing here
// knows an offset: each write goes to the offset the addon reported.

export interface FieldLayout {
  offset: number;
  size: number;
}

export interface StructLayout<F extends string = string> {
  size: number;
  align: number;
  fields: Record<F, FieldLayout>;
}

export interface SnapshotLayout {
  header: StructLayout;
  port: StructLayout;
  service: StructLayout;
  backend: StructLayout;
  route: StructLayout;
}

/** The statistics region (native/shm/stats.h): headers, counter structs and event rings. */
export interface StatsLayout {
  region: StructLayout;
  block: StructLayout;
  eventRing: StructLayout;
  eventRecord: StructLayout;
  /** shm::FlowEventRecord: one flow created or ended (flow events). */
  flowEventRecord: StructLayout;
  /** core::WorkerCounters, fields by their exported names (rxPackets, ...). */
  workerCounters: StructLayout;
  /** WorkerCounters::drops: `count` 8-byte counters from `offset`, in the order of dropReasons(). */
  drops: { offset: number; stride: number; count: number };
  /** core::FlowCounters, fields by exported names (lookupHits, ...). */
  flowCounters: StructLayout;
  /** core::BackendCounters: inPackets, inBytes, outPackets, outBytes, flowsCreated. */
  backendCounters: StructLayout;
  /** The shared active-flow counts: one int32 per backend slot. */
  activeFlows: { stride: number };
  /** Names of the event kinds, indexed by EventRecord.kind. */
  eventKinds: string[];
}

export interface Layout {
  snapshot: SnapshotLayout;
  stats: StatsLayout;
  constants: Record<string, number>;
}

/** Writes struct fields by name at the offsets of a StructLayout (little-endian, as the layouts declare). */
export class StructWriter {
  constructor(
    private readonly view: DataView,
    private readonly layout: StructLayout,
    private readonly base: number,
  ) {}

  private field(name: string): FieldLayout {
    const field = this.layout.fields[name];
    if (!field) throw new Error(`l4lb: the native layout has no field "${name}"`);
    return field;
  }

  /** Writes an unsigned integer of the field's size (1, 2, 4 or 8 bytes). */
  set(name: string, value: number | bigint): this {
    const { offset, size } = this.field(name);
    const at = this.base + offset;
    switch (size) {
      case 1:
        this.view.setUint8(at, Number(value));
        break;
      case 2:
        this.view.setUint16(at, Number(value), true);
        break;
      case 4:
        this.view.setUint32(at, Number(value) >>> 0, true);
        break;
      case 8:
        this.view.setBigUint64(at, BigInt(value), true);
        break;
      default:
        throw new Error(`l4lb: field "${name}" has size ${size}; use setBytes`);
    }
    return this;
  }

  /** Copies bytes into a byte-array field (a MAC address). */
  setBytes(name: string, bytes: Uint8Array): this {
    const { offset, size } = this.field(name);
    if (bytes.length !== size) throw new Error(`l4lb: field "${name}" holds ${size} bytes, not ${bytes.length}`);
    new Uint8Array(this.view.buffer, this.view.byteOffset + this.base + offset, size).set(bytes);
    return this;
  }
}
