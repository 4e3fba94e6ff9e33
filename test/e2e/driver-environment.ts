// Shared by the af_xdp and dpdk environment tests: open a balancer in a lab
// host (test/fixtures/driver-open.ts, in a process of its own, optionally
// under a prefix such as setpriv or prlimit) and see which XDP programs the
// host's interfaces carry.
import type { DriverName, LoadBalancerOptions } from '../../lib/index.js';
import type { Host, LabProcess } from '../../lib/lab/index.js';
import { fixture } from './support.js';

export interface Outcome {
  ok?: boolean;
  modes?: string[];
  name?: string;
  code?: string;
  message?: string;
}

function command(driver: DriverName, options: Partial<LoadBalancerOptions>, hold: boolean): string[] {
  return [process.execPath, '--import', 'tsx', fixture('driver-open.ts'), JSON.stringify({ options: { driver, ...options }, hold })];
}

/** Opens (and closes) a balancer of `driver` with `options`; its outcome. */
export async function openBalancer(host: Host, driver: DriverName, options: Partial<LoadBalancerOptions>, prefix: string[] = []): Promise<Outcome> {
  const { stdout } = await host.exec([...prefix, ...command(driver, options, false)]);
  return JSON.parse(stdout.trim().split('\n').pop()!) as Outcome;
}

/** A balancer of `driver` that stays open until its process is killed (it prints {"ok":true,...} once open). */
export function holdBalancer(host: Host, driver: DriverName, options: Partial<LoadBalancerOptions>): LabProcess {
  return host.spawn(command(driver, options, true));
}

/** The names of the XDP programs attached to the host's interfaces. */
export async function xdpAttached(host: Host): Promise<string[]> {
  const { stdout } = await host.exec(['ip', '-d', 'link', 'show']);
  return [...stdout.matchAll(/prog\/xdp id \d+ name (\S+)/g)].map((m) => m[1]!);
}
