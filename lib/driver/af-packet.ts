// The AF_PACKET driver: the engine opens packet sockets on the named
// interfaces (in this process's network namespace); this side learns the
// interfaces, routes and neighbours from the kernel (netlink, through
// iproute2's JSON output), re-reads them when `ip monitor` reports a change,
// probes unresolved next hops, and installs the host guard that keeps the
// host kernel out of the data plane's traffic (lib/host/guard.ts).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ipv4ToNumber } from '../config/addresses.js';
import type { NormalizedOptions } from '../config/validate.js';
import type { SnapshotInput } from '../config/snapshot.js';
import { DriverError } from '../errors.js';
import { HostGuard, type HostGuardConfig } from '../host/guard.js';
import { probeNeighbour } from '../host/next-hops.js';
import { TableMonitor } from '../host/table-monitor.js';
import type { NativeEngineOptions } from '../native/binding.js';
import type { DataPlaneDriver, DriverContext, DriverInterface, DriverRoute, NextHop } from './driver.js';

const execFileAsync = promisify(execFile);

/**
 * Routes and neighbours are re-read when the kernel reports a change; this
 * often as well, in case a change was missed (a monitor restarted, say), and
 * every refreshWithoutMonitorMs when `ip monitor` cannot run.
 */
const safetyRefreshMs = 30_000;
const refreshWithoutMonitorMs = 500;

// Guard tables are per balancer: several may share a process and a host.
let guardTables = 0;

interface KernelRoute {
  network: number;
  prefixLength: number;
  interfaceIndex: number;
  gateway: string | undefined;
}

interface IpAddressJson {
  ifname: string;
  address: string;
  mtu: number;
  addr_info: Array<{ family: string; local: string; prefixlen: number; scope?: string }>;
}

interface IpRouteJson {
  dst: string;
  dev: string;
  gateway?: string;
  type?: string;
}

interface IpNeighJson {
  dst: string;
  dev: string;
  lladdr?: string;
  state?: string[];
}

// Neighbour states whose MAC the kernel itself would use to transmit.
const usableStates = new Set(['REACHABLE', 'STALE', 'DELAY', 'PROBE', 'PERMANENT', 'NOARP']);

async function ipJson<T>(args: string[]): Promise<T> {
  try {
    const { stdout } = await execFileAsync('ip', ['-j', ...args], { maxBuffer: 64 * 1024 * 1024 });
    return (stdout.trim() ? JSON.parse(stdout) : []) as T;
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new DriverError('ENO_TOOL', "driver 'af_packet' needs iproute2 ('ip')", { cause: error });
    throw new DriverError('EKERNEL_TABLES', `ip ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`, { cause: error });
  }
}

function mask(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (~0 << (32 - prefixLength)) >>> 0;
}

function parsePrefix(dst: string): { network: number; prefixLength: number } | undefined {
  if (dst === 'default') return { network: 0, prefixLength: 0 };
  const [address, length] = dst.split('/');
  try {
    const prefixLength = length === undefined ? 32 : Number(length);
    return { network: (ipv4ToNumber(address!) & mask(prefixLength)) >>> 0, prefixLength };
  } catch {
    return undefined;
  }
}

export class AfPacketDriver implements DataPlaneDriver {
  readonly name = 'af_packet';
  private routeTable: KernelRoute[] = [];
  private neighbours = new Map<string, string>(); // `${dev} ${address}` -> MAC
  private signature = '';
  private timer: NodeJS.Timeout | undefined;
  private monitor: TableMonitor | undefined;
  private refreshing: Promise<void> | undefined;
  private refreshAgain = false;
  private refreshEveryMs = safetyRefreshMs;
  private context: DriverContext | undefined;
  private guard: HostGuard | undefined;
  private guardWork: Promise<void> = Promise.resolve();
  private stopped = false;

  private constructor(
    readonly interfaces: readonly DriverInterface[],
    private readonly options: NormalizedOptions,
    private readonly onError: (error: DriverError) => void,
  ) {}

  /** Reads the interfaces and the kernel's tables; fails with a DriverError naming what is missing. */
  static async open(options: NormalizedOptions, onError: (error: DriverError) => void = () => {}): Promise<AfPacketDriver> {
    const addresses = await ipJson<IpAddressJson[]>(['address', 'show']);
    const interfaces = options.interfaces.map((name, index) => {
      const info = addresses.find((a) => a.ifname === name);
      if (!info) {
        throw new DriverError('ENO_INTERFACE', `interfaces[${index}]: no interface "${name}" in this network namespace`, { path: `interfaces[${index}]` });
      }
      const v4 = info.addr_info.find((a) => a.family === 'inet');
      return { name, mac: info.address, mtu: info.mtu, address: v4?.local, prefixLength: v4?.prefixlen ?? 0, answerArp: true };
    });
    const driver = new AfPacketDriver(interfaces, options, onError);
    await driver.refresh();
    return driver;
  }

  engineOptions(): Partial<NativeEngineOptions> {
    const tuning = this.options.afPacket ?? {};
    return {
      ports: this.interfaces.length,
      afPacket: {
        interfaces: this.interfaces.map((i) => i.name),
        ...(tuning.txMethod ? { txMethod: tuning.txMethod } : {}),
        ...(tuning.ringFrames ? { rxFrames: tuning.ringFrames } : {}),
        ...(tuning.cpus ? { cpus: tuning.cpus } : {}),
      },
    };
  }

  private interfaceIndex(dev: string): number {
    return this.interfaces.findIndex((i) => i.name === dev);
  }

  /** Re-reads routes and neighbours; true when anything the snapshot uses changed. */
  private async refresh(): Promise<boolean> {
    const [routes, neighbours] = await Promise.all([
      ipJson<IpRouteJson[]>(['-4', 'route', 'show', 'table', 'main']),
      ipJson<IpNeighJson[]>(['-4', 'neigh', 'show']),
    ]);
    const table: KernelRoute[] = [];
    for (const route of routes) {
      if (route.type && route.type !== 'unicast') continue;
      const prefix = parsePrefix(route.dst);
      const interfaceIndex = this.interfaceIndex(route.dev);
      if (!prefix || interfaceIndex < 0) continue;
      table.push({ ...prefix, interfaceIndex, gateway: route.gateway });
    }
    table.sort((a, b) => b.prefixLength - a.prefixLength);
    const macs = new Map<string, string>();
    for (const n of neighbours) {
      if (n.lladdr && usableStates.has(n.state?.[0] ?? '')) macs.set(`${n.dev} ${n.dst}`, n.lladdr);
    }
    this.routeTable = table;
    this.neighbours = macs;
    const signature = JSON.stringify([table, [...macs].sort()]);
    const changed = signature !== this.signature;
    this.signature = signature;
    return changed;
  }

  resolveNextHop(address: string): NextHop | undefined {
    let value: number;
    try {
      value = ipv4ToNumber(address);
    } catch {
      return undefined;
    }
    const route = this.routeTable.find((r) => ((value & mask(r.prefixLength)) >>> 0) === r.network);
    if (!route) return undefined;
    const neighbour = route.gateway ?? address;
    return {
      interfaceIndex: route.interfaceIndex,
      gateway: route.gateway,
      mac: this.neighbours.get(`${this.interfaces[route.interfaceIndex]!.name} ${neighbour}`),
    };
  }

  routes(): DriverRoute[] {
    return this.routeTable.map((r) => ({
      prefix: [24, 16, 8, 0].map((shift) => (r.network >>> shift) & 0xff).join('.'),
      prefixLength: r.prefixLength,
      interfaceIndex: r.interfaceIndex,
      gateway: r.gateway,
      mac: r.gateway ? this.neighbours.get(`${this.interfaces[r.interfaceIndex]!.name} ${r.gateway}`) : undefined,
    }));
  }

  requestResolution(addresses: readonly string[]): void {
    void (async () => {
      await Promise.all(addresses.map((a) => probeNeighbour(a).catch(() => undefined)));
      // ARP answers within milliseconds on a LAN; look again soon rather than at the next tick.
      for (const delay of [20, 100, 300]) {
        await new Promise((r) => setTimeout(r, delay));
        if (this.stopped) return;
        if (await this.refresh().catch(() => false)) {
          this.context?.nextHopsChanged();
          return;
        }
      }
    })();
  }

  async start(context: DriverContext): Promise<void> {
    this.context = context;
    this.monitor = new TableMonitor({
      onChange: () => void this.refreshAndReschedule(),
      onFailure: (error) => {
        this.refreshEveryMs = refreshWithoutMonitorMs;
        this.reschedule();
        this.onError(new DriverError('EKERNEL_TABLES', `${error.message}: re-reading routes and neighbours every ${refreshWithoutMonitorMs} ms instead`, { cause: error }));
      },
    });
    this.monitor.start();
    this.reschedule();
    await this.guardWork;
  }

  private reschedule(): void {
    clearTimeout(this.timer);
    if (!this.stopped) this.timer = setTimeout(() => void this.refreshAndReschedule(), this.refreshEveryMs).unref();
  }

  private async refreshAndReschedule(): Promise<void> {
    await this.refreshNow();
    this.reschedule();
  }

  /** Re-reads the tables now (one read at a time; a change during one reads again) and republishes on change. */
  private async refreshNow(): Promise<void> {
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      do {
        this.refreshAgain = false;
        try {
          if ((await this.refresh()) && !this.stopped) this.context?.nextHopsChanged();
        } catch (error) {
          this.onError(error instanceof DriverError ? error : new DriverError('EKERNEL_TABLES', String(error)));
        }
      } while (this.refreshAgain && !this.stopped);
    })();
    try {
      await this.refreshing;
    } finally {
      this.refreshing = undefined;
    }
  }

  /**
   * fullnat from the host's own addresses: the kernel must not hand the
   * balancer's source ports to its own connections (they are reserved and
   * their replies dropped by the host guard), so the default range stays
   * clear of Linux's default ephemeral range (32768-60999).
   */
  defaultFullnatPorts(localAddresses: readonly string[]): { min: number; max: number } | undefined {
    const hostAddresses = new Set(this.interfaces.flatMap((i) => (i.address ? [i.address] : [])));
    return localAddresses.some((a) => hostAddresses.has(a)) ? { min: 61000, max: 65535 } : undefined;
  }

  /**
   * The configuration changed: keep the host guard's address sets in step
   * (VIPs, nat/fullnat backends, tunnel endpoints, fullnat addresses that
   * the host owns). Serialised, so the last configuration wins.
   */
  configurationChanged(snapshot: Omit<SnapshotInput, 'generation'>): void {
    const hostAddresses = this.interfaces.flatMap((i) => (i.address ? [i.address] : []));
    const natBackends = new Set<string>();
    const vips = new Set<string>();
    let tunnels = false;
    for (const service of snapshot.services) {
      vips.add(service.address);
      if (service.method === 'nat' || service.method === 'fullnat') for (const b of service.backends) natBackends.add(b.address);
      if (service.method === 'ipip' || service.method === 'gre') tunnels = true;
    }
    const local = (snapshot.localAddresses ?? []).filter((a) => hostAddresses.includes(a));
    const config: HostGuardConfig = {
      interfaces: this.interfaces.map((i) => i.name),
      vips: [...vips],
      natBackends: [...natBackends],
      hostAddresses,
      tunnelEndpoints: tunnels ? hostAddresses : [],
      ...(local.length > 0
        ? { fullnat: { addresses: local, portMin: snapshot.fullnatPortMin ?? this.options.fullnatPorts.min, portMax: snapshot.fullnatPortMax ?? this.options.fullnatPorts.max } }
        : {}),
    };
    this.guardWork = this.guardWork.then(async () => {
      if (this.stopped) return;
      try {
        if (this.guard) await this.guard.apply(config);
        else this.guard = await HostGuard.install(config, { table: `l4lb_${process.pid}_${guardTables++}` });
      } catch (error) {
        this.onError(new DriverError('EHOST_GUARD', `host guard: ${(error as Error).message}`, { cause: error }));
      }
    });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    this.monitor?.stop();
    await this.guardWork;
    await this.guard?.remove().catch(() => undefined);
  }
}
