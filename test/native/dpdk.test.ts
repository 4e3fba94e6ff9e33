// The DPDK driver's EAL in one Node process: started once, on a thread of its
// own, shared by several engines, its devices released by close() so that
// the same device can be opened again; its errors typed. Devices here are
// net_null vdevs (no interface, no privileges beyond what EAL needs): a null
// port receives empty frames as fast as it is polled and swallows what it is
// sent, which is enough to see the workers poll DPDK queues. Traffic over
// real interfaces (net_af_xdp on veth) is in the e2e suite.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadBinding, nativeLibraryPath, type NativeEngine } from '../../lib/native/binding.js';
import { DpdkDriver } from '../../lib/driver/dpdk.js';

const library = nativeLibraryPath('l4lb_dpdk');
const binding = loadBinding();

function engine(devices: string[], extra: Record<string, unknown> = {}): NativeEngine {
  return new binding.Engine({ ports: devices.length, workers: 1, threaded: true, dpdk: { library, devices, ...extra } });
}

function failure(make: () => unknown): Error & { code?: string } {
  try {
    make();
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a failure');
}

function threadNames(): string[] {
  return readdirSync('/proc/self/task').map((task) => readFileSync(`/proc/self/task/${task}/comm`, 'utf8').trim());
}

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('dpdk driver: the EAL in a Node process', () => {
  it('starts the EAL once on its own thread, shares it between engines, releases devices on close and opens them again', async () => {
    const first = engine(['net_null_l4lbtest0']);
    // The EAL's main lcore is a thread of its own, not the JavaScript thread.
    expect(threadNames()).toContain('l4lb-eal');
    expect(first.portCounters()[0]!.mode).toBe('dpdk_net_null');

    // A second engine while the first runs: the same EAL, another device.
    const second = engine(['net_null_l4lbtest1']);
    first.start();
    second.start();
    await until(() => first.portCounters()[0]!.rxPackets > 0 && second.portCounters()[0]!.rxPackets > 0);
    expect(threadNames().filter((name) => name === 'l4lb-eal')).toHaveLength(1);

    // Signals stay Node's: the EAL's threads block them all.
    const received = new Promise<string>((resolve) => process.once('SIGUSR2', () => resolve('SIGUSR2')));
    process.kill(process.pid, 'SIGUSR2');
    expect(await received).toBe('SIGUSR2');

    first.close();
    // Closed, its device is gone from the EAL: the same one opens again.
    const again = engine(['net_null_l4lbtest0']);
    again.start();
    await until(() => again.portCounters()[0]!.rxPackets > 0);
    again.close();
    second.close();
  });

  it('a device string EAL cannot probe: EDPDK_DEVICE naming it, and the next engine still opens', () => {
    const error = failure(() => engine(['no_such_bus:l4lb']));
    expect(error.code).toBe('EDPDK_DEVICE');
    expect(error.message).toContain('no_such_bus:l4lb');
    expect(error.message).toMatch(/PCI address|vdev/);
    const working = engine(['net_null_l4lbtest2']);
    working.close();
  });

  it('other EAL arguments than those the EAL runs with: EDPDK_EAL_CONFLICT naming them', () => {
    const error = failure(() => engine(['net_null_l4lbtest3'], { eal: ['--log-level=lib.eal:debug'] }));
    expect(error.code).toBe('EDPDK_EAL_CONFLICT');
    expect(error.message).toContain('--no-huge');
  });

  it('without l4lb_dpdk.so: EDRIVER_UNAVAILABLE naming the file, and the addon goes on working', () => {
    const error = failure(() => new binding.Engine({ ports: 1, dpdk: { library: '/nonexistent/l4lb_dpdk.so', devices: ['net_null0'] } }));
    expect(error.code).toBe('EDRIVER_UNAVAILABLE');
    expect(error.message).toContain('/nonexistent/l4lb_dpdk.so');
    new binding.Engine({ ports: 1 }).close();
  });

  it("a library that cannot load DPDK's: a DriverError EDRIVER_UNAVAILABLE naming the Debian packages", () => {
    const native = Object.assign(new Error("driver 'dpdk' cannot load l4lb_dpdk.so: librte_ethdev.so.23: cannot open shared object file"), { code: 'EDRIVER_UNAVAILABLE' });
    const typed = (DpdkDriver.prototype.openError as (e: unknown) => Error & { code?: string } | undefined).call(undefined, native);
    expect(typed?.code).toBe('EDRIVER_UNAVAILABLE');
    expect(typed?.message).toContain('install Debian packages librte-ethdev23 librte-bus-vdev23 librte-net-af-xdp23');
  });
});
