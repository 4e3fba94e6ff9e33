// Keeps the balancer host's own kernel out of the traffic the data plane
// handles.
//
// An AF_PACKET socket taps packets; it does not steal them. Without a guard,
// the host kernel also sees every frame the workers process and may forward
// it a second time (ip_forward), reset it (a TCP segment to one of its own
// addresses with no socket: fullnat replies), or answer it with ICMP (GRE or
// IPIP to its own address when the ip_gre/ipip modules are absent:
// "protocol unreachable").
//
// The mechanism: an nftables table in the netdev family with an ingress
// chain per served interface. The ingress hook runs after the packet taps
// (__netif_receive_skb_core delivers to ptype_all taps, then runs tc and
// netfilter ingress), so the workers still receive every frame, and the
// kernel receives none of the balancer's:
//   - IPv4 to a VIP;
//   - nat/fullnat replies: from a backend to anything but the host's own
//     addresses (health checks and the host's own connections still work);
//   - fullnat replies to a local address inside the reserved port range
//     (the range is also put in net.ipv4.ip_local_reserved_ports so the
//     host's own connections never pick those ports);
//   - GRE and IPIP to a tunnel endpoint (replies returned by real servers).
// Everything else (ARP, the host's own traffic, IPv6) passes.
import { execFile } from 'node:child_process';
import { isIPv4 } from 'node:net';
import { L4lbError } from '../errors.js';

export interface HostGuardConfig {
  /** Interfaces the data plane serves. */
  interfaces: string[];
  vips: string[];
  /** Backend addresses of nat and fullnat services (their replies come back). */
  natBackends: string[];
  /** The host's own addresses: traffic from backends to them is the host's (health checks). */
  hostAddresses: string[];
  /** Addresses real servers send returning GRE/IPIP to. */
  tunnelEndpoints: string[];
  /** fullnat source pool and port range, when it uses addresses the host also owns. */
  fullnat?: { addresses: string[]; portMin: number; portMax: number };
}

export interface HostGuardOptions {
  /** Run inside this network namespace (`ip netns exec`). */
  netns?: string;
  /** nftables table name (default 'l4lb'); one per balancer on a host. */
  table?: string;
}

/** The guard could not be installed or updated (nft missing, rejected ruleset, ...). */
export class HostGuardError extends L4lbError {}

function set(name: string, addresses: string[]): string {
  for (const address of addresses) {
    if (!isIPv4(address)) throw new HostGuardError('EINVAL_ADDRESS', `host guard: "${address}" is not an IPv4 address`);
  }
  const elements = addresses.length > 0 ? ` elements = { ${[...new Set(addresses)].join(', ')} };` : '';
  return `  set ${name} { type ipv4_addr;${elements} }`;
}

/** The nftables ruleset (nft -f syntax) for a configuration: a pure function, unit-tested. */
export function guardRuleset(config: HostGuardConfig, table = 'l4lb'): string {
  if (!/^[a-z][a-z0-9_]{0,30}$/.test(table)) throw new HostGuardError('EINVAL_TABLE', `host guard: table name "${table}" is not valid`);
  const lines = [
    // Delete-and-recreate in one transaction: `nft -f` applies the file atomically.
    `table netdev ${table}`,
    `delete table netdev ${table}`,
    `table netdev ${table} {`,
    set('vips', config.vips),
    set('nat_backends', config.natBackends),
    set('host_addresses', config.hostAddresses),
    set('tunnel_endpoints', config.tunnelEndpoints),
    set('fullnat_addresses', config.fullnat?.addresses ?? []),
  ];
  for (const [index, device] of config.interfaces.entries()) {
    if (!/^[A-Za-z0-9_.:-]{1,15}$/.test(device)) {
      throw new HostGuardError('EINVAL_INTERFACE', `host guard: "${device}" is not an interface name`);
    }
    lines.push(
      `  chain ingress_${index} {`,
      `    type filter hook ingress device "${device}" priority -500; policy accept;`,
      `    ip daddr @vips counter drop comment "served by the l4lb data plane"`,
      `    ip saddr @nat_backends ip daddr != @host_addresses counter drop comment "nat/fullnat replies"`,
      `    ip daddr @tunnel_endpoints ip protocol { 4, 47 } counter drop comment "replies returned through tunnels"`,
    );
    if (config.fullnat) {
      const { portMin, portMax } = config.fullnat;
      lines.push(
        `    ip daddr @fullnat_addresses tcp dport ${portMin}-${portMax} counter drop comment "fullnat replies"`,
        `    ip daddr @fullnat_addresses udp dport ${portMin}-${portMax} counter drop comment "fullnat replies"`,
      );
    }
    lines.push('  }');
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}

function run(command: string, args: string[], input: string | undefined, netns: string | undefined): Promise<string> {
  const [file, argv] = netns ? ['ip', ['netns', 'exec', netns, command, ...args]] : [command, args];
  return new Promise((resolve, reject) => {
    const child = execFile(file, argv, (error, stdout, stderr) => {
      if (error) {
        const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
        reject(
          new HostGuardError(
            missing ? 'ENO_TOOL' : 'ECOMMAND',
            missing ? `host guard: "${file}" is not installed (Debian package ${command === 'nft' ? 'nftables' : 'procps'})` : `host guard: ${command} failed: ${stderr.trim() || error.message}`,
            { cause: error },
          ),
        );
      } else {
        resolve(stdout);
      }
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** Installs, updates and removes the guard table (and the reserved fullnat ports). */
export class HostGuard {
  private previousReservedPorts: string | undefined;
  private installed = false;

  private constructor(
    private readonly options: HostGuardOptions,
    private config: HostGuardConfig,
  ) {}

  static async install(config: HostGuardConfig, options: HostGuardOptions = {}): Promise<HostGuard> {
    await HostGuard.removeStale(options.netns);
    const guard = new HostGuard(options, config);
    await guard.apply(config);
    return guard;
  }

  get table(): string {
    return this.options.table ?? 'l4lb';
  }

  /** Replaces the rules atomically with those for `config`. */
  async apply(config: HostGuardConfig): Promise<void> {
    const ruleset = guardRuleset(config, this.table);
    await run('nft', ['-f', '-'], ruleset, this.options.netns);
    this.installed = true;
    this.config = config;
    await this.reservePorts(config.fullnat);
  }

  private async reservePorts(fullnat: HostGuardConfig['fullnat']): Promise<void> {
    const key = 'net.ipv4.ip_local_reserved_ports';
    if (this.previousReservedPorts === undefined) {
      this.previousReservedPorts = (await run('sysctl', ['-n', key], undefined, this.options.netns)).trim();
    }
    const wanted = fullnat ? [this.previousReservedPorts, `${fullnat.portMin}-${fullnat.portMax}`].filter(Boolean).join(',') : this.previousReservedPorts;
    await run('sysctl', ['-q', '-w', `${key}=${wanted}`], undefined, this.options.netns);
  }

  /**
   * Removes guard tables (l4lb_<pid>_<n>) left by balancers whose process is
   * gone (killed before close()): their rules would keep dropping traffic
   * for addresses nobody serves any more.
   */
  static async removeStale(netns?: string): Promise<string[]> {
    const out = await run('nft', ['-j', 'list', 'tables'], undefined, netns);
    const parsed = JSON.parse(out) as { nftables: Array<{ table?: { family: string; name: string } }> };
    const removed: string[] = [];
    for (const item of parsed.nftables) {
      const match = item.table?.family === 'netdev' ? /^l4lb_(\d+)_\d+$/.exec(item.table.name) : null;
      if (!match) continue;
      const pid = Number(match[1]);
      let alive = true;
      try {
        process.kill(pid, 0);
      } catch (error) {
        alive = (error as NodeJS.ErrnoException).code === 'EPERM';
      }
      if (alive) continue;
      await run('nft', ['delete', 'table', 'netdev', item.table!.name], undefined, netns).catch(() => undefined);
      removed.push(item.table!.name);
    }
    return removed;
  }

  /** Counters of the drop rules, summed over interfaces, by comment. */
  async counters(): Promise<Record<string, number>> {
    const out = await run('nft', ['-j', 'list', 'table', 'netdev', this.table], undefined, this.options.netns);
    const totals: Record<string, number> = {};
    const parsed = JSON.parse(out) as { nftables: Array<{ rule?: { comment?: string; expr: Array<{ counter?: { packets: number } }> } }> };
    for (const item of parsed.nftables) {
      if (!item.rule?.comment) continue;
      const packets = item.rule.expr.find((e) => e.counter)?.counter?.packets ?? 0;
      totals[item.rule.comment] = (totals[item.rule.comment] ?? 0) + packets;
    }
    return totals;
  }

  /** Removes the table and restores the reserved ports. Idempotent. */
  async remove(): Promise<void> {
    if (!this.installed) return;
    this.installed = false;
    await run('nft', ['delete', 'table', 'netdev', this.table], undefined, this.options.netns).catch(() => undefined);
    if (this.previousReservedPorts !== undefined) {
      await run('sysctl', ['-q', '-w', `net.ipv4.ip_local_reserved_ports=${this.previousReservedPorts}`], undefined, this.options.netns);
    }
  }

  get currentConfig(): HostGuardConfig {
    return this.config;
  }
}
