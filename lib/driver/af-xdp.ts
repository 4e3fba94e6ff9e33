// The AF_XDP driver: the engine loads l4lb_af_xdp.so, attaches its XDP
// program to the named interfaces and opens AF_XDP sockets on them (in this
// process's network namespace); the kernel's tables come from KernelDriver.
// No host guard: the XDP program takes the balancer's frames from the
// kernel (XDP_REDIRECT) instead of letting a socket tap them, so the host
// stack never sees them (docs/af-xdp.md).
import type { NormalizedOptions } from '../config/validate.js';
import { DriverError, type L4lbError } from '../errors.js';
import type { NativeEngineOptions } from '../native/binding.js';
import { KernelDriver } from './kernel.js';

/** The Debian packages the driver's library needs at run time, and to be built. */
const runtimePackages = 'libxdp1 libbpf1';
const buildPackages = 'libxdp-dev libbpf-dev clang pkg-config';

/** Codes the native driver reports (native/io/af_xdp_errors.h); each becomes a DriverError. */
const driverCodes = new Set([
  'EDRIVER_UNAVAILABLE', 'ENO_INTERFACE', 'EPORT_OPTIONS', 'EXDP_PERMISSION', 'EXDP_MEMLOCK', 'EXDP_UNSUPPORTED',
  'EXDP_BUSY', 'EXDP_MTU', 'EXDP_QUEUES', 'EXDP_LOAD', 'EXDP_ATTACH', 'EXDP_SOCKET',
]);

export class AfXdpDriver extends KernelDriver {
  readonly name = 'af_xdp';

  private constructor(interfaces: KernelDriver['interfaces'], options: NormalizedOptions, onError: (error: DriverError) => void, private readonly library: string) {
    super(interfaces, options, onError);
  }

  /** Reads the interfaces and the kernel's tables; rejects with EDRIVER_UNAVAILABLE when this installation has no AF_XDP driver. */
  static async open(options: NormalizedOptions, onError: (error: DriverError) => void = () => {}): Promise<AfXdpDriver> {
    const library = KernelDriver.driverLibrary('l4lb_af_xdp', 'af_xdp', buildPackages);
    const driver = new AfXdpDriver(await KernelDriver.readInterfaces(options, 'af_xdp'), options, onError, library);
    await driver.readTables();
    return driver;
  }

  engineOptions(): Partial<NativeEngineOptions> {
    const tuning = this.options.afXdp ?? {};
    return {
      ports: this.interfaces.length,
      afXdp: {
        library: this.library,
        interfaces: this.interfaces.map((i) => i.name),
        ...(tuning.mode ? { mode: tuning.mode } : {}),
        ...(tuning.ringSize ? { ringSize: tuning.ringSize } : {}),
        ...(tuning.cpus ? { cpus: tuning.cpus } : {}),
      },
    };
  }

  /** The engine could not open the driver: a DriverError with the native code and its remedy. */
  openError(error: unknown): L4lbError | undefined {
    const code = (error as { code?: unknown })?.code;
    if (typeof code !== 'string' || !driverCodes.has(code)) return undefined;
    let message = (error as Error).message;
    // dlopen found the library but not what it links against.
    if (code === 'EDRIVER_UNAVAILABLE' && /lib(xdp|bpf)\.so/.test(message)) message += ` (install Debian packages ${runtimePackages})`;
    return new DriverError(code, message, { cause: error });
  }
}
