// The memory driver: in-process interfaces that tests and benchmarks drive
// directly (inject a frame, take what was transmitted), with a static
// neighbour table and routes from the options. The engine, snapshot and
// workers behind it are the ones AF_PACKET uses.
import { ipv4ToNumber, prefixMask } from '../config/addresses.js';
import type { NormalizedMemory } from '../config/validate.js';
import { StateError, ValidationError } from '../errors.js';
import type { NativeEngine, NativeEngineOptions } from '../native/binding.js';
import type { DataPlaneDriver, DriverInterface, DriverRoute, NextHop } from './driver.js';

interface RouteEntry {
  network: number;
  prefixLength: number;
  interfaceIndex: number;
  gateway: string | undefined;
  connected: boolean;
}


function network(address: string, prefixLength: number): number {
  return (ipv4ToNumber(address) & prefixMask(prefixLength)) >>> 0;
}

function numberToIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => (value >>> shift) & 0xff).join('.');
}

export class MemoryDriver implements DataPlaneDriver {
  readonly name = 'memory';
  readonly interfaces: readonly DriverInterface[];
  private readonly table: RouteEntry[];

  constructor(private readonly config: NormalizedMemory) {
    this.interfaces = config.interfaces.map((i) => ({
      name: i.name,
      mac: i.mac,
      mtu: i.mtu,
      address: i.addresses[0]?.address,
      prefixLength: i.addresses[0]?.prefixLength ?? 0,
      answerArp: i.answerArp,
    }));
    const indexOf = (name: string) => config.interfaces.findIndex((i) => i.name === name);
    const connected: RouteEntry[] = config.interfaces.flatMap((i, interfaceIndex) =>
      i.addresses.map((a) => ({
        network: network(a.address, a.prefixLength),
        prefixLength: a.prefixLength,
        interfaceIndex,
        gateway: undefined,
        connected: true,
      })),
    );
    const configured: RouteEntry[] = config.routes.map((r) => ({
      network: network(r.prefix, r.prefixLength),
      prefixLength: r.prefixLength,
      interfaceIndex: indexOf(r.interface),
      gateway: r.via,
      connected: false,
    }));
    // Longest prefix first; at equal length a connected route wins, as in the kernel's main table.
    this.table = [...connected, ...configured].sort(
      (a, b) => b.prefixLength - a.prefixLength || Number(b.connected) - Number(a.connected),
    );
  }

  engineOptions(): Partial<NativeEngineOptions> {
    return { ports: this.interfaces.length, ringFrames: this.config.ringFrames };
  }

  private neighbourMac(address: string, interfaceIndex: number): string | undefined {
    const name = this.config.interfaces[interfaceIndex]?.name;
    return this.config.neighbours.find((n) => n.address === address && n.interface === name)?.mac;
  }

  resolveNextHop(address: string): NextHop | undefined {
    const target = ipv4ToNumber(address);
    const route = this.table.find((r) => ((target & prefixMask(r.prefixLength)) >>> 0) === r.network);
    if (route) {
      const hop = route.gateway ?? address;
      return { interfaceIndex: route.interfaceIndex, gateway: route.gateway, mac: this.neighbourMac(hop, route.interfaceIndex) };
    }
    // A neighbour outside every prefix is still on-link where it was declared.
    const neighbour = this.config.neighbours.find((n) => n.address === address);
    if (neighbour) {
      const interfaceIndex = this.config.interfaces.findIndex((i) => i.name === neighbour.interface);
      return { interfaceIndex, gateway: undefined, mac: neighbour.mac };
    }
    return undefined;
  }

  routes(): DriverRoute[] {
    return this.table.map((r) => ({
      prefix: numberToIpv4(r.network),
      prefixLength: r.prefixLength,
      interfaceIndex: r.interfaceIndex,
      gateway: r.gateway,
      mac: r.gateway ? this.neighbourMac(r.gateway, r.interfaceIndex) : undefined,
    }));
  }

  requestResolution(): void {
    // The neighbour table is static: nothing to probe.
  }

  async start(): Promise<void> {}

  async stop(): Promise<void> {}
}

export interface TakeOptions {
  /** Resolve as soon as this many frames were taken (default: no limit, wait for the timeout). */
  count?: number;
  /** Give up waiting after this long and resolve with what arrived (default 0: only what is there now). */
  timeoutMs?: number;
}

/** One interface of the memory driver: frames in, frames transmitted out. */
export class MemoryPort {
  constructor(
    readonly name: string,
    private readonly index: number,
    private readonly engine: () => NativeEngine | undefined,
    private readonly checksumPartialFlag: number,
  ) {}

  private open(): NativeEngine {
    const engine = this.engine();
    if (!engine) throw new StateError('ECLOSED', `memoryPort("${this.name}"): the load balancer is closed`);
    return engine;
  }

  /**
   * A whole Ethernet frame arriving on this interface. `checksumPartial`
   * marks it as a local stack hands it to veth (only the pseudo-header
   * checksum filled in). False when the receive rings are full.
   */
  inject(frame: Uint8Array, options: { checksumPartial?: boolean } = {}): boolean {
    if (!(frame instanceof Uint8Array) || frame.length === 0) {
      throw new ValidationError('EINVAL_TYPE', 'frame must be a non-empty Uint8Array (a whole Ethernet frame)', { path: 'frame' });
    }
    return this.open().inject(this.index, frame, options.checksumPartial ? this.checksumPartialFlag : 0);
  }

  /** Frames transmitted on this interface: resolves once `count` arrived or `timeoutMs` passed. */
  take(options: TakeOptions = {}): Promise<Buffer[]> {
    const count = options.count ?? Infinity;
    const timeoutMs = options.timeoutMs ?? 0;
    if (count !== Infinity && (!Number.isInteger(count) || count < 1)) {
      throw new ValidationError('EINVAL_RANGE', `count must be a positive integer, got ${String(count)}`, { path: 'count' });
    }
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
      throw new ValidationError('EINVAL_RANGE', `timeoutMs must be a number of milliseconds >= 0, got ${String(timeoutMs)}`, {
        path: 'timeoutMs',
      });
    }
    const deadline = Date.now() + timeoutMs;
    const frames: Buffer[] = [];
    return new Promise((resolve) => {
      const collect = () => {
        const engine = this.engine();
        while (engine && frames.length < count) {
          const frame = engine.take(this.index);
          if (frame === null) break;
          frames.push(frame);
        }
        if (!engine || frames.length >= count || Date.now() >= deadline) {
          resolve(frames);
          return;
        }
        // Workers transmit within microseconds; a millisecond's wait is what
        // Node's timers offer and costs the workers' cores nothing.
        setTimeout(collect, 1);
      };
      collect();
    });
  }
}
