// The host guard of a driver whose sockets only tap frames (af_packet, and
// dpdk over net_af_packet vdevs): nftables rules, kept in step with the
// configuration, that keep the host kernel out of the balancer's traffic
// (lib/host/guard.ts).
import type { SnapshotInput } from '../config/snapshot.js';
import type { NormalizedOptions } from '../config/validate.js';
import { DriverError } from '../errors.js';
import { HostGuard, type HostGuardConfig } from '../host/guard.js';
import type { DriverInterface } from './driver.js';

// Guard tables are per balancer: several may share a process and a host.
let guardTables = 0;

export class HostGuardKeeper {
  private guard: HostGuard | undefined;
  private guardWork: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly interfaces: readonly DriverInterface[],
    private readonly options: NormalizedOptions,
    private readonly onError: (error: DriverError) => void,
  ) {}

  /** Resolves when the guard holds the last configuration given. */
  settled(): Promise<void> {
    return this.guardWork;
  }

  /**
   * The configuration changed: keep the host guard's address sets in step
   * (VIPs, nat/fullnat backends, tunnel endpoints, fullnat addresses that
   * the host owns). Serialised, so the last configuration wins.
   */
  update(snapshot: Omit<SnapshotInput, 'generation'>): void {
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

  /** Removes the guard (after any update under way); idempotent. */
  async remove(): Promise<void> {
    this.stopped = true;
    await this.guardWork;
    await this.guard?.remove().catch(() => undefined);
    this.guard = undefined;
  }
}
