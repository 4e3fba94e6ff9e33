// The AF_PACKET driver: the engine opens packet sockets on the named
// interfaces (in this process's network namespace); the kernel's tables
// come from KernelDriver, and this side installs the host guard that keeps
// the host kernel out of the data plane's traffic (lib/host/guard.ts): a
// packet socket only taps frames.
import type { SnapshotInput } from '../config/snapshot.js';
import type { NormalizedOptions } from '../config/validate.js';
import type { DriverError } from '../errors.js';
import type { NativeEngineOptions } from '../native/binding.js';
import type { DriverContext } from './driver.js';
import { HostGuardKeeper } from './host-guard-keeper.js';
import { KernelDriver } from './kernel.js';

export class AfPacketDriver extends KernelDriver {
  readonly name = 'af_packet';
  private readonly keeper = new HostGuardKeeper(this.interfaces, this.options, this.onError);

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
    await this.keeper.settled();
  }

  /** The configuration changed: the host guard follows it. */
  configurationChanged(snapshot: Omit<SnapshotInput, 'generation'>): void {
    this.keeper.update(snapshot);
  }

  override async stop(): Promise<void> {
    if (this.stopped) return;
    await super.stop();
    await this.keeper.remove();
  }
}
