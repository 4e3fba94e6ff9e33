// Reading the state that plans are computed from: links and addresses, sysctls,
// policy rules and routes, /proc/net tables, and whether the kernel has the
// ipip/gre modules. Everything here only reads (the kernel probe creates a
// device and removes it at once); it goes through the same CommandRunner as
// the changes, marked 'query'.
import { existsSync } from 'node:fs';

import {
  type CommandRunner,
  inNetns,
  ipCommand,
  runOrThrow,
  sysctlName,
  sysctlPathOfPrinted,
} from './commands.js';
import { RealServerError } from './errors.js';

export interface LinkInfo {
  name: string;
  /** Administratively up. */
  up: boolean;
  /** Carrier present (for a TUN device: a descriptor is attached). */
  lowerUp: boolean;
  mtu: number;
  noArp: boolean;
  loopback: boolean;
  linkType: string;
  /** IPv4 addresses with prefix length, '198.18.0.2/24'. */
  addresses: string[];
}

export interface RuleInfo {
  priority: number;
  /** 'all' or an address (with `/srclen` when not a host). */
  src: string;
  table: string;
}

export interface RouteInfo {
  dst: string;
  dev?: string;
  gateway?: string;
  prefsrc?: string;
}

/** Where `ip netns` keeps its namespace files. */
export const netnsDirectory = '/run/netns';

export function netnsPath(netns: string): string {
  return `${netnsDirectory}/${netns}`;
}

export function assertNetnsExists(netns: string | undefined): void {
  if (netns !== undefined && !existsSync(netnsPath(netns))) {
    throw new RealServerError('ENO_NETNS', `netns: network namespace "${netns}" does not exist (see ip netns list)`, {
      path: 'netns',
    });
  }
}

function parseJson<T>(text: string, what: string): T {
  try {
    return (text.trim() === '' ? [] : JSON.parse(text)) as T;
  } catch (error) {
    throw new RealServerError('ECOMMAND', `cannot read the output of ${what}: ${(error as Error).message}`, { cause: error });
  }
}

export async function readLinks(runner: CommandRunner, netns: string | undefined): Promise<LinkInfo[]> {
  const argv = ipCommand(netns, ['-j', 'address', 'show']);
  const { stdout } = await runOrThrow(runner, argv, 'query');
  const links = parseJson<
    Array<{
      ifname: string;
      flags?: string[];
      mtu?: number;
      link_type?: string;
      addr_info?: Array<{ family?: string; local?: string; prefixlen?: number }>;
    }>
  >(stdout, 'ip address show');
  return links.map((link) => {
    const flags = link.flags ?? [];
    return {
      name: link.ifname,
      up: flags.includes('UP'),
      lowerUp: flags.includes('LOWER_UP'),
      mtu: link.mtu ?? 0,
      noArp: flags.includes('NOARP'),
      loopback: flags.includes('LOOPBACK'),
      linkType: link.link_type ?? '',
      addresses: (link.addr_info ?? [])
        .filter((a) => a.family === 'inet' && a.local !== undefined)
        .map((a) => `${a.local}/${a.prefixlen ?? 32}`),
    };
  });
}

/** Current values of the given sysctls (/proc/sys paths); absent keys (a device that does not exist) are left out. */
export async function readSysctls(
  runner: CommandRunner,
  netns: string | undefined,
  paths: readonly string[],
): Promise<Record<string, string>> {
  const unique = [...new Set(paths)];
  if (unique.length === 0) return {};
  // One sysctl call for all of them; it prints "name = value" per key it found
  // and exits non-zero if any is missing, which is not an error here.
  const { stdout } = await runner.run(inNetns(netns, ['sysctl', ...unique.map(sysctlName)]), 'query');
  const values: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const match = /^(\S+)\s*=\s*(.*)$/.exec(line.trim());
    if (!match) continue;
    const path = sysctlPathOfPrinted(match[1]!);
    if (unique.includes(path)) values[path] = match[2]!.trim();
  }
  return values;
}

export async function readRules(runner: CommandRunner, netns: string | undefined): Promise<RuleInfo[]> {
  const { stdout } = await runOrThrow(runner, ipCommand(netns, ['-j', '-4', 'rule', 'show']), 'query');
  return parseJson<Array<{ priority: number; src?: string; srclen?: number; table?: string }>>(stdout, 'ip rule show').map(
    (rule) => ({
      priority: rule.priority,
      src: rule.src === undefined ? 'all' : rule.srclen !== undefined && rule.srclen !== 32 ? `${rule.src}/${rule.srclen}` : rule.src,
      table: String(rule.table ?? ''),
    }),
  );
}

export async function readRoutes(runner: CommandRunner, netns: string | undefined, table: number | 'main'): Promise<RouteInfo[]> {
  const argv = ipCommand(netns, ['-j', '-4', 'route', 'show', 'table', String(table)]);
  const output = await runner.run(argv, 'query');
  // A table nobody has put a route in yet does not exist for the kernel.
  if (output.exitCode !== 0 && /table does not exist/i.test(output.stderr)) return [];
  const { stdout } = output.exitCode === 0 ? output : await runOrThrow(runner, argv, 'query');
  return parseJson<RouteInfo[]>(stdout, 'ip route show');
}

/** The route the kernel would use to reach `address`, or undefined when it has none. */
export async function routeTo(runner: CommandRunner, netns: string | undefined, address: string): Promise<RouteInfo | undefined> {
  const output = await runner.run(ipCommand(netns, ['-j', 'route', 'get', address]), 'query');
  if (output.exitCode !== 0) return undefined;
  return parseJson<RouteInfo[]>(output.stdout, 'ip route get')[0];
}

export type KernelTunnel = 'ipip' | 'gre';

/**
 * Whether the kernel can create `type` devices. This kernel family may lack
 * the modules (microVMs, containers); `ip link add ... type ipip` then fails
 * with "Unknown device type". Where the module exists, the probe loads it
 * (as the first real device would) and removes its probe device at once.
 */
export async function kernelHasTunnel(runner: CommandRunner, netns: string | undefined, type: KernelTunnel): Promise<boolean> {
  const probe = `l4lbp${process.pid % 1_000_000}`;
  // 192.0.2.1 (TEST-NET-1) as the remote keeps the probe from clashing with the
  // module's fallback device (tunl0, gre0) and from ever routing anywhere.
  const output = await runner.run(ipCommand(netns, ['link', 'add', 'name', probe, 'type', type, 'remote', '192.0.2.1']), 'query');
  if (output.exitCode === 0) {
    await runOrThrow(runner, ipCommand(netns, ['link', 'del', 'dev', probe]), 'query');
    return true;
  }
  if (/unknown device type|not supported|operation not supported/i.test(output.stderr)) return false;
  throw new RealServerError(
    'ECOMMAND',
    `cannot tell whether the kernel has ${type} tunnels: ip link add ... type ${type} failed: ${output.stderr.trim()}`,
  );
}

/** A /proc file as seen from inside the namespace ('' if it does not exist, e.g. /proc/net/udp6 without IPv6). */
export async function readProcFile(runner: CommandRunner, netns: string | undefined, path: string): Promise<string> {
  const output = await runner.run(inNetns(netns, ['cat', path]), 'query');
  return output.exitCode === 0 ? output.stdout : '';
}
