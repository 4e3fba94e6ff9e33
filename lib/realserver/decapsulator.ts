// The userspace decapsulator from TypeScript: a handle over the native worker
// (native/realserver/decapsulator.h), the long-running mode the CLI runs as a
// service, and the two pure packet functions for tests and tools.
import { isIPv4 } from 'node:net';

import { ValidationError } from '../errors.js';
import { loadBinding, type NativeDecapsulator, type NativeDecapsulatorOptions } from '../native/binding.js';
import { RealServerError } from './errors.js';
import { netnsPath } from './system.js';
import { ipv4ToNumber } from '../config/addresses.js';

export type TunnelType = 'ipip' | 'gre';

export interface DecapsulatorOptions {
  /** Accepted inner destinations (the VIPs). */
  vips: string[];
  /** Which tunnels to receive. */
  accept: TunnelType[];
  /** The TUN device: attached when a persistent one exists (`ip tuntap add`), else created and removed on stop. */
  device: string;
  /** Network namespace (`ip netns` name) to work in; default: the calling process's. */
  netns?: string;
  /** GRE: only packets with this key are delivered (default: any key, or none). */
  greKey?: number;
  /** Accepted outer destinations (default: any local address). */
  localAddresses?: string[];
  /** Send packets from a VIP that routing puts into the TUN device back to `destination`, encapsulated. */
  returnTo?: { destination: string; source?: string; greKey?: number; type?: TunnelType };
}

export interface DecapsulatorStats {
  running: boolean;
  /** Why the worker stopped on its own (the TUN device was deleted under it). */
  failure?: string;
  /** Tunnel packets received. */
  received: number;
  /** Inner packets handed to the local stack through the TUN device, and their bytes. */
  decapsulated: number;
  decapsulatedBytes: number;
  /** Dropped as malformed, by reason ('gre-version', 'inner-bad-length', ...). */
  malformed: Record<string, number>;
  /** Well-formed but not ours, by reason ('inner-destination', 'gre-key', ...). */
  notForUs: Record<string, number>;
  /** Replies sent back through the tunnel, and their bytes (outer packets). */
  returned: number;
  returnedBytes: number;
  /** Packets read from the TUN device and not sent back, by reason. */
  returnDrops: Record<string, number>;
  tunWriteErrors: number;
  sendErrors: number;
  receiveErrors: number;
}


function addressNumber(address: string, path: string): number {
  if (!isIPv4(address)) throw new ValidationError('EINVAL_ADDRESS', `${path}: "${address}" is not an IPv4 address`, { path });
  return ipv4ToNumber(address);
}

function nativeError(error: unknown): RealServerError {
  const code = typeof (error as { code?: unknown })?.code === 'string' ? (error as { code: string }).code : 'ENATIVE';
  return new RealServerError(code, `decapsulator: ${(error as Error).message}`, { cause: error });
}

function toNativeOptions(options: DecapsulatorOptions): NativeDecapsulatorOptions {
  if (options.vips.length === 0) throw new ValidationError('EINVAL_ADDRESS', 'vips: at least one VIP is needed', { path: 'vips' });
  const native: NativeDecapsulatorOptions = {
    tunName: options.device,
    vips: options.vips.map((vip, i) => addressNumber(vip, `vips[${i}]`)),
    acceptIpip: options.accept.includes('ipip'),
    acceptGre: options.accept.includes('gre'),
  };
  if (options.netns !== undefined) native.netnsPath = netnsPath(options.netns);
  if (options.greKey !== undefined) native.greKey = options.greKey;
  if (options.localAddresses) native.localAddresses = options.localAddresses.map((a, i) => addressNumber(a, `localAddresses[${i}]`));
  if (options.returnTo) {
    native.returnTo = {
      kind: options.returnTo.type ?? 'gre',
      destination: addressNumber(options.returnTo.destination, 'returnTo.destination'),
      ...(options.returnTo.source !== undefined ? { source: addressNumber(options.returnTo.source, 'returnTo.source') } : {}),
      ...(options.returnTo.greKey !== undefined ? { greKey: options.returnTo.greKey } : {}),
    };
  }
  return native;
}

/** A running decapsulator. `stop()` joins its thread and closes its sockets and TUN descriptor. */
export class Decapsulator {
  private native: NativeDecapsulator | undefined;
  private lastStats: DecapsulatorStats | undefined;

  private constructor(
    native: NativeDecapsulator,
    readonly options: Readonly<DecapsulatorOptions>,
  ) {
    this.native = native;
  }

  /** Opens the sockets and the TUN device (inside `netns`) and starts the worker thread. */
  static start(options: DecapsulatorOptions): Decapsulator {
    const nativeOptions = toNativeOptions(options);
    const binding = loadBinding();
    try {
      return new Decapsulator(new binding.Decapsulator(nativeOptions), { ...options });
    } catch (error) {
      throw nativeError(error);
    }
  }

  get device(): string {
    return this.options.device;
  }

  get running(): boolean {
    return this.native !== undefined && this.native.stats().running;
  }

  /** Counters since start; after stop(), the last values. */
  stats(): DecapsulatorStats {
    if (!this.native) return { ...this.lastStats!, running: false };
    const s = this.native.stats();
    return {
      running: s.running,
      ...(s.failure !== undefined ? { failure: s.failure } : {}),
      received: s.received ?? 0,
      decapsulated: s.decapsulated ?? 0,
      decapsulatedBytes: s.decapsulatedBytes ?? 0,
      malformed: { ...s.malformed },
      notForUs: { ...s.notForUs },
      returned: s.returned ?? 0,
      returnedBytes: s.returnedBytes ?? 0,
      returnDrops: { ...s.returnDrops },
      tunWriteErrors: s.tunWriteErrors ?? 0,
      sendErrors: s.sendErrors ?? 0,
      receiveErrors: s.receiveErrors ?? 0,
    };
  }

  /** What JSON.stringify (and a CLI's --json) shows: the device and the counters. */
  toJSON(): { device: string; netns?: string } & DecapsulatorStats {
    return { device: this.device, ...(this.options.netns !== undefined ? { netns: this.options.netns } : {}), ...this.stats() };
  }

  /** Idempotent. Returns the final counters. */
  stop(): DecapsulatorStats {
    if (this.native) {
      this.lastStats = this.stats();
      this.native.stop();
      this.native = undefined;
    }
    return { ...this.lastStats!, running: false };
  }
}

/**
 * The CLI's long-running mode (`l4lb realserver decapsulate`): runs the
 * decapsulator until SIGINT or SIGTERM (or `signal` aborts), then stops it
 * and resolves with its final counters. `onStats` is called every
 * `statsIntervalMs` (default: never).
 */
export async function runDecapsulator(
  options: DecapsulatorOptions & {
    signal?: AbortSignal;
    statsIntervalMs?: number;
    onStats?: (stats: DecapsulatorStats) => void;
  },
): Promise<DecapsulatorStats> {
  const { signal, statsIntervalMs, onStats, ...decapsulatorOptions } = options;
  const decapsulator = Decapsulator.start(decapsulatorOptions);
  try {
    await untilStopped(signal, statsIntervalMs && onStats ? { intervalMs: statsIntervalMs, tick: () => onStats(decapsulator.stats()) } : undefined);
  } finally {
    decapsulator.stop();
  }
  return decapsulator.stats();
}

/** Resolves on SIGINT, SIGTERM or `signal`'s abort; removes its handlers afterwards. */
export function untilStopped(signal?: AbortSignal, every?: { intervalMs: number; tick: () => void }): Promise<void> {
  return new Promise((resolve) => {
    // Signal handlers and the native worker thread do not keep Node's event
    // loop alive: without a timer the process would exit here, leaving the
    // set-up in place and the decapsulator dead.
    const timer = setInterval(every?.tick ?? (() => {}), every?.intervalMs ?? 60_000);
    const done = () => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      signal?.removeEventListener('abort', done);
      clearInterval(timer);
      resolve();
    };
    if (signal?.aborted) return done();
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
    signal?.addEventListener('abort', done, { once: true });
  });
}

export interface DecapsulateResult {
  verdict: 'deliver' | 'malformed' | 'not-for-us';
  /** With 'malformed' or 'not-for-us': the counter the decapsulator would increment. */
  reason?: string;
  tunnel: TunnelType;
  /** With 'deliver': the inner IPv4 packet the TUN device would receive. */
  inner?: Buffer;
}

/** What the decapsulator does with one received IPv4 packet (the pure function, no I/O). */
export function decapsulatePacket(
  packet: Uint8Array,
  filter: { vips: string[]; accept: TunnelType[]; greKey?: number; localAddresses?: string[] },
): DecapsulateResult {
  const result = loadBinding().Decapsulator.decapsulatePacket(packet, {
    vips: filter.vips.map((v, i) => addressNumber(v, `vips[${i}]`)),
    acceptIpip: filter.accept.includes('ipip'),
    acceptGre: filter.accept.includes('gre'),
    ...(filter.greKey !== undefined ? { greKey: filter.greKey } : {}),
    ...(filter.localAddresses ? { localAddresses: filter.localAddresses.map((a, i) => addressNumber(a, `localAddresses[${i}]`)) } : {}),
  });
  return result;
}

/**
 * The packet the return path sends for one reply read from the TUN device:
 * the outer IPv4 header (and GRE header) prepended, inner packet unchanged.
 * Also a way to craft tunnel packets toward a real server in tests.
 */
export function encapsulateReturnPacket(
  packet: Uint8Array,
  tunnel: { destination: string; source?: string; greKey?: number; type?: TunnelType; vips: string[]; identification?: number },
): { ok: true; packet: Buffer } | { ok: false; reason: string } {
  return loadBinding().Decapsulator.encapsulateReturnPacket(packet, {
    kind: tunnel.type ?? 'gre',
    destination: addressNumber(tunnel.destination, 'destination'),
    ...(tunnel.source !== undefined ? { source: addressNumber(tunnel.source, 'source') } : {}),
    ...(tunnel.greKey !== undefined ? { greKey: tunnel.greKey } : {}),
    vips: tunnel.vips.map((v, i) => addressNumber(v, `vips[${i}]`)),
    ...(tunnel.identification !== undefined ? { identification: tunnel.identification } : {}),
  });
}
