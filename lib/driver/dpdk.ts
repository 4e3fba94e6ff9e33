// The DPDK driver: the engine loads l4lb_dpdk.so, starts DPDK's EAL once per
// process (on a thread of its own) and opens each interface as a DPDK port
// through a vdev, in this process's network namespace; the kernel's tables
// come from KernelDriver. With net_af_xdp (the default) the vdev runs the
// balancer's XDP program, which takes only the balancer's frames from the
// kernel, as the af_xdp driver's does; with net_af_packet the vdev only taps
// frames, so the host guard keeps the host stack out, as with af_packet
// (docs/dpdk.md).
import type { SnapshotInput } from '../config/snapshot.js';
import type { NormalizedOptions } from '../config/validate.js';
import { DriverError, type L4lbError } from '../errors.js';
import type { NativeEngineOptions } from '../native/binding.js';
import type { DriverContext, DriverInterface } from './driver.js';
import { HostGuardKeeper } from './host-guard-keeper.js';
import { KernelDriver } from './kernel.js';

/** The Debian packages the driver needs to be built, and at run time. */
const buildPackages = 'libdpdk-dev libbpf-dev clang pkg-config';
// DPDK's libraries l4lb_dpdk.so links and the poll-mode drivers it loads (libdpdk-dev pulls them all in).
const runtimePackages = 'librte-ethdev23 librte-bus-vdev23 librte-net-af-xdp23 librte-net-af-packet23';

/**
 * Codes the native driver reports (native/io/dpdk_driver.cc, dpdk_eal.cc; and
 * the af_xdp driver's for an XDP program already on an interface,
 * xdp_selection.cc); each becomes a DriverError.
 */
const driverCodes = new Set([
  'EDRIVER_UNAVAILABLE', 'ENO_INTERFACE', 'EPORT_OPTIONS', 'EDPDK_EAL', 'EDPDK_EAL_CONFLICT', 'EDPDK_DEVICE', 'EDPDK_PORT', 'EDPDK_MEMORY',
  'EXDP_BUSY', 'EXDP_PERMISSION', 'EXDP_UNSUPPORTED', 'EXDP_SOCKET',
]);

export class DpdkDriver extends KernelDriver {
  readonly name = 'dpdk';
  private readonly keeper: HostGuardKeeper | undefined;

  private constructor(interfaces: readonly DriverInterface[], options: NormalizedOptions, onError: (error: DriverError) => void, private readonly library: string) {
    super(interfaces, options, onError);
    if (options.dpdk?.vdev === 'af_packet') this.keeper = new HostGuardKeeper(interfaces, options, onError);
  }

  /** Reads the interfaces and the kernel's tables; rejects with EDRIVER_UNAVAILABLE when this installation has no DPDK driver. */
  static async open(options: NormalizedOptions, onError: (error: DriverError) => void = () => {}): Promise<DpdkDriver> {
    const library = KernelDriver.driverLibrary('l4lb_dpdk', 'dpdk', buildPackages);
    const driver = new DpdkDriver(await KernelDriver.readInterfaces(options, 'dpdk'), options, onError, library);
    await driver.readTables();
    return driver;
  }

  engineOptions(): Partial<NativeEngineOptions> {
    const d = this.options.dpdk ?? {};
    return {
      ports: this.interfaces.length,
      dpdk: {
        library: this.library,
        interfaces: this.interfaces.map((i) => i.name),
        ...(d.vdev ? { vdev: d.vdev } : {}),
        ...(d.eal ? { eal: d.eal } : {}),
        ...(d.hugepages ? { hugepages: d.hugepages } : {}),
        ...(d.ringSize ? { ringSize: d.ringSize } : {}),
        ...(d.cpus ? { cpus: d.cpus } : {}),
      },
    };
  }

  override async start(context: DriverContext): Promise<void> {
    await super.start(context);
    await this.keeper?.settled();
  }

  /** net_af_packet: the host guard follows the configuration (net_af_xdp: the native side fills the program's maps). */
  configurationChanged(snapshot: Omit<SnapshotInput, 'generation'>): void {
    this.keeper?.update(snapshot);
  }

  override async stop(): Promise<void> {
    if (this.stopped) return;
    await super.stop();
    await this.keeper?.remove();
  }

  /** The engine could not open the driver: a DriverError with the native code and its remedy. */
  openError(error: unknown): L4lbError | undefined {
    const code = (error as { code?: unknown })?.code;
    if (typeof code !== 'string' || !driverCodes.has(code)) return undefined;
    let message = (error as Error).message;
    // dlopen found the library but not DPDK's.
    if (code === 'EDRIVER_UNAVAILABLE' && /librte_|libbpf\.so/.test(message)) message += ` (install Debian packages ${runtimePackages})`;
    return new DriverError(code, message, { cause: error });
  }
}
