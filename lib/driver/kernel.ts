// What the drivers over kernel interfaces (af_packet, af_xdp, dpdk) share: the
// interfaces, routes and neighbours learnt from the kernel (netlink, through
// iproute2's JSON output), re-read when `ip monitor` reports a change, and
// probes of unresolved next hops.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { ipv4ToNumber, prefixMask } from '../config/addresses.js';
import type { NormalizedOptions } from '../config/validate.js';
import { DriverError } from '../errors.js';
import { probeNeighbour } from '../host/next-hops.js';
import { TableMonitor } from '../host/table-monitor.js';
import { nativeLibraryPath, type NativeEngineOptions } from '../native/binding.js';
import type { DataPlaneDriver, DriverContext, DriverInterface, DriverRoute, NextHop } from './driver.js';

const execFileAsync = promisify(execFile);

/**
 * Routes and neighbours are re-read when the kernel reports a change; this
 * often as well, in case a change was missed (a monitor restarted, say), and
 * every refreshWithoutMonitorMs when `ip monitor` cannot run.
 */
const safetyRefreshMs = 30_000;
const refreshWithoutMonitorMs = 500;

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

async function ipJson<T>(args: string[], driver: string): Promise<T> {
  try {
    const { stdout } = await execFileAsync('ip', ['-j', ...args], { maxBuffer: 64 * 1024 * 1024 });
    return (stdout.trim() ? JSON.parse(stdout) : []) as T;
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new DriverError('ENO_TOOL', `driver '${driver}' needs iproute2 ('ip')`, { cause: error });
    throw new DriverError('EKERNEL_TABLES', `ip ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`, { cause: error });
  }
}


function parsePrefix(dst: string): { network: number; prefixLength: number } | undefined {
  if (dst === 'default') return { network: 0, prefixLength: 0 };
  const [address, length] = dst.split('/');
  try {
    const prefixLength = length === undefined ? 32 : Number(length);
    return { network: (ipv4ToNumber(address!) & prefixMask(prefixLength)) >>> 0, prefixLength };
  } catch {
    return undefined;
  }
}

export abstract class KernelDriver implements DataPlaneDriver {
  abstract readonly name: string;
  private routeTable: KernelRoute[] = [];
  private neighbours = new Map<string, string>(); // `${dev} ${address}` -> MAC
  private signature = '';
  private timer: NodeJS.Timeout | undefined;
  private monitor: TableMonitor | undefined;
  private refreshing: Promise<void> | undefined;
  private refreshAgain = false;
  private refreshEveryMs = safetyRefreshMs;
  private context: DriverContext | undefined;
  protected stopped = false;

  protected constructor(
    readonly interfaces: readonly DriverInterface[],
    protected readonly options: NormalizedOptions,
    protected readonly onError: (error: DriverError) => void,
  ) {}

  /**
   * The path of an optional driver library (l4lb_af_xdp, l4lb_dpdk) built
   * beside the addon; EDRIVER_UNAVAILABLE naming the build packages when this
   * installation has none.
   */
  protected static driverLibrary(library: string, driver: string, buildPackages: string): string {
    const path = nativeLibraryPath(library);
    if (!existsSync(path)) {
      throw new DriverError('EDRIVER_UNAVAILABLE',
        `driver '${driver}': ${path} was not built (it needs Debian packages ${buildPackages} when the addon is compiled): install them and rebuild (npm rebuild l4lb)`,
        { path: 'driver' });
    }
    return path;
  }

  /** Reads the interfaces of the options (in this network namespace); a DriverError names what is missing. */
  protected static async readInterfaces(options: NormalizedOptions, driver: string): Promise<DriverInterface[]> {
    const addresses = await ipJson<IpAddressJson[]>(['address', 'show'], driver);
    return options.interfaces.map((name, index) => {
      const info = addresses.find((a) => a.ifname === name);
      if (!info) {
        throw new DriverError('ENO_INTERFACE', `interfaces[${index}]: no interface "${name}" in this network namespace`, { path: `interfaces[${index}]` });
      }
      const v4 = info.addr_info.find((a) => a.family === 'inet');
      return { name, mac: info.address, mtu: info.mtu, address: v4?.local, prefixLength: v4?.prefixlen ?? 0, answerArp: true };
    });
  }

  /** Reads the routes and neighbours once, before the first snapshot. */
  protected async readTables(): Promise<void> {
    await this.refresh();
  }

  abstract engineOptions(): Partial<NativeEngineOptions>;

  private interfaceIndex(dev: string): number {
    return this.interfaces.findIndex((i) => i.name === dev);
  }

  /** Re-reads routes and neighbours; true when anything the snapshot uses changed. */
  private async refresh(): Promise<boolean> {
    const [routes, neighbours] = await Promise.all([
      ipJson<IpRouteJson[]>(['-4', 'route', 'show', 'table', 'main'], this.name),
      ipJson<IpNeighJson[]>(['-4', 'neigh', 'show'], this.name),
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
    const route = this.routeTable.find((r) => ((value & prefixMask(r.prefixLength)) >>> 0) === r.network);
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
    this.startMonitor();
  }

  private startMonitor(): void {
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
   * balancer's source ports to its own connections, so the default range
   * stays clear of Linux's default ephemeral range (32768-60999).
   */
  defaultFullnatPorts(localAddresses: readonly string[]): { min: number; max: number } | undefined {
    const hostAddresses = new Set(this.interfaces.flatMap((i) => (i.address ? [i.address] : [])));
    return localAddresses.some((a) => hostAddresses.has(a)) ? { min: 61000, max: 65535 } : undefined;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    this.monitor?.stop();
  }
}
