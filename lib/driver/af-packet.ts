// The AF_PACKET driver: the engine opens packet sockets on the named
// interfaces (in this process's network namespace); the kernel's tables
// come from KernelDriver, and this side installs the host guard that keeps
// the host kernel out of the data plane's traffic (lib/host/guard.ts): a
// packet socket only taps frames.
import type { SnapshotInput } from '../config/snapshot.js';
import type { NormalizedOptions } from '../config/validate.js';
import { DriverError } from '../errors.js';
import { HostGuard, type HostGuardConfig } from '../host/guard.js';
import type { NativeEngineOptions } from '../native/binding.js';
import type { DriverContext } from './driver.js';
import { KernelDriver } from './kernel.js';

// Guard tables are per balancer: several may share a process and a host.
let guardTables = 0;

export class AfPacketDriver extends KernelDriver {
  readonly name = 'af_packet';
  private guard: HostGuard | undefined;
  private guardWork: Promise<void> = Promise.resolve();

  /** Reads the interfaces and the kernel's tables; fails with a DriverError naming what is missing. */
  static async open(options: NormalizedOptions, onError: (error: DriverError) => void = () => {}): Promise<AfPacketDriver> {
    const driver = new AfPacketDriver(await KernelDriver.readInterfaces(options, 'af_packet'), options, onError);
    await driver.readTables();
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

  override async start(context: DriverContext): Promise<void> {
    await super.start(context);
    await this.guardWork;
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

  override async stop(): Promise<void> {
    if (this.stopped) return;
    await super.stop();
    await this.guardWork;
    await this.guard?.remove().catch(() => undefined);
  }
}
