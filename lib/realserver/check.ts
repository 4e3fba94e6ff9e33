// `check`: what a real server still lacks for its method, read from the host
// (or namespace) without changing anything, with the fix for each problem.
import { type CommandRunner, confPath, formatCommand, ipCommand, sysctlWriteCommand, systemRunner } from './commands.js';
import { namespacesOf } from './netns.js';
import { type CheckOptions, type RealServerMethod, validateCheckOptions } from './options.js';
import { defaultReturnTable, returnRulePriority, tunnelDeviceName } from './plan.js';
import { isWildcardAddress, parseProcNetSockets, type ProcNetSocket } from './procnet.js';
import { decapsulatorState } from './realserver.js';
import { describeNamespace, listStates, readState, statePath } from './state.js';
import { type LinkInfo, readLinks, readProcFile, readRoutes, readRules, readSysctls } from './system.js';

export interface CheckFinding {
  /**
   * 'vip-on-loopback', 'vip-on-interface', 'arp-ignore', 'arp-announce',
   * 'decapsulation', 'rp-filter', 'return-path', 'udp-wildcard',
   * 'udp-bound-to-vip', 'udp-other-address', 'udp-no-socket', 'record'
   * (this namespace's record of `up`), 'stale-record' (a record that no
   * longer describes a running set-up, here or of a namespace that is gone).
   */
  id: string;
  status: 'ok' | 'problem' | 'warning';
  message: string;
  /** For problems and warnings: what to do about it. */
  fix?: string;
}

export interface CheckResult {
  vip: string;
  method: RealServerMethod;
  netns?: string;
  port?: number;
  /** No problems (warnings allowed). */
  ok: boolean;
  problems: number;
  findings: CheckFinding[];
  /** The UDP sockets on `port` (IPv4 and IPv6). */
  udpSockets: ProcNetSocket[];
  report: string;
}

// Values of arp_ignore that keep the host from answering ARP for the VIP on lo.
const quietArpIgnore = new Set([1, 2, 8]);

function tunnelProtocol(method: 'ipip' | 'gre'): number {
  return method === 'ipip' ? 4 : 47;
}

function numberOf(sysctls: Record<string, string>, path: string): number {
  return Number(sysctls[path] ?? '0');
}

function formatReport(result: Omit<CheckResult, 'report'>): string {
  const where = result.netns === undefined ? '' : `, namespace ${result.netns}`;
  const warnings = result.findings.filter((f) => f.status === 'warning').length;
  const summary =
    result.problems === 0
      ? `ready${warnings ? ` (${warnings} warning${warnings === 1 ? '' : 's'})` : ''}`
      : `${result.problems} problem${result.problems === 1 ? '' : 's'}${warnings ? `, ${warnings} warning${warnings === 1 ? '' : 's'}` : ''}`;
  const lines = [`check ${result.vip} (${result.method}${where}): ${summary}`];
  const label = { ok: 'ok     ', problem: 'PROBLEM', warning: 'warning' } as const;
  for (const f of result.findings) {
    lines.push(`  ${label[f.status]}  ${f.message}`);
    if (f.fix && f.status !== 'ok') lines.push(`           fix: ${f.fix}`);
  }
  return lines.join('\n');
}

/**
 * Reports what is missing for `method` on this host (or `netns`): the VIP on
 * lo and nowhere that answers ARP, ARP suppression, decapsulation and
 * reverse-path filtering for tunnels, the return path if asked for, and UDP
 * sockets on `port` bound to the wildcard address, which reply from the real
 * server's own address instead of the VIP.
 */
export async function check(options: CheckOptions): Promise<CheckResult> {
  const runner: CommandRunner = options?.runner ?? systemRunner;
  const { runner: _runner, ...rest } = options ?? ({} as CheckOptions);
  const o = validateCheckOptions(rest);
  const identity = namespacesOf(runner).identify(o.netns);
  const findings: CheckFinding[] = [];
  const links = await readLinks(runner, o.netns);
  const device = (name: string): LinkInfo | undefined => links.find((l) => l.name === name);
  const ip = (args: string[]) => formatCommand(ipCommand(o.netns, args));
  const sysctl = (path: string, value: number) => formatCommand(sysctlWriteCommand(o.netns, path, value));

  // The VIP: on lo, and on no interface that answers ARP.
  if (device('lo')?.addresses.includes(`${o.vip}/32`)) {
    findings.push({ id: 'vip-on-loopback', status: 'ok', message: `${o.vip}/32 is on lo` });
  } else {
    findings.push({
      id: 'vip-on-loopback',
      status: 'problem',
      message: `${o.vip} is not on lo: the local stack drops the packets the balancer sends for it`,
      fix: ip(['address', 'add', `${o.vip}/32`, 'dev', 'lo']),
    });
  }
  for (const l of links) {
    if (l.loopback || l.noArp) continue;
    const found = l.addresses.find((a) => a.split('/')[0] === o.vip);
    if (found) {
      findings.push({
        id: 'vip-on-interface',
        status: 'problem',
        message: `${o.vip} is on ${l.name}, which answers ARP for it and draws the traffic meant for the balancer`,
        fix: ip(['address', 'del', found, 'dev', l.name]),
      });
    }
  }

  // ARP: the kernel applies max(all, interface) to both settings.
  const arpDevices = o.interface !== undefined ? [o.interface] : links.filter((l) => !l.loopback && !l.noArp && l.up).map((l) => l.name);
  const tunnelDevices = o.method === 'dr' ? [] : [tunnelDeviceName(o.vip), o.method === 'ipip' ? 'tunl0' : 'gre0'];
  const sysctls = await readSysctls(runner, o.netns, [
    ...['all', ...arpDevices].flatMap((d) => [confPath(d, 'arp_ignore'), confPath(d, 'arp_announce')]),
    ...(o.method === 'dr' ? [] : [confPath('all', 'rp_filter'), ...tunnelDevices.map((d) => confPath(d, 'rp_filter'))]),
  ]);
  const badIgnore = arpDevices.filter(
    (d) => !quietArpIgnore.has(Math.max(numberOf(sysctls, confPath('all', 'arp_ignore')), numberOf(sysctls, confPath(d, 'arp_ignore')))),
  );
  const badAnnounce = arpDevices.filter(
    (d) => Math.max(numberOf(sysctls, confPath('all', 'arp_announce')), numberOf(sysctls, confPath(d, 'arp_announce'))) !== 2,
  );
  const noArpDevices = arpDevices.length === 0;
  if (badIgnore.length > 0 || (noArpDevices && !quietArpIgnore.has(numberOf(sysctls, confPath('all', 'arp_ignore'))))) {
    findings.push({
      id: 'arp-ignore',
      status: 'problem',
      message: `arp_ignore lets ${badIgnore.length ? badIgnore.join(', ') : 'this host'} answer ARP requests for the VIP on lo`,
      fix: sysctl(confPath('all', 'arp_ignore'), 1),
    });
  } else {
    findings.push({ id: 'arp-ignore', status: 'ok', message: `arp_ignore keeps ${arpDevices.join(', ') || 'all interfaces'} quiet about the VIP` });
  }
  if (badAnnounce.length > 0 || (noArpDevices && numberOf(sysctls, confPath('all', 'arp_announce')) !== 2)) {
    findings.push({
      id: 'arp-announce',
      status: 'problem',
      message: `arp_announce lets ${badAnnounce.length ? badAnnounce.join(', ') : 'this host'} use the VIP as the source of ARP requests, teaching neighbours the wrong MAC for it`,
      fix: sysctl(confPath('all', 'arp_announce'), 2),
    });
  } else {
    findings.push({ id: 'arp-announce', status: 'ok', message: `arp_announce = 2 on ${arpDevices.join(', ') || 'all'}` });
  }

  if (o.method !== 'dr') {
    await checkTunnel(runner, o.method, o, links, sysctls, findings, ip, sysctl);
  }

  let udpSockets: ProcNetSocket[] = [];
  if (o.port !== undefined) {
    const text = (await readProcFile(runner, o.netns, '/proc/net/udp')) + (await readProcFile(runner, o.netns, '/proc/net/udp6'));
    udpSockets = parseProcNetSockets(text).filter((s) => s.localPort === o.port);
    checkUdp(o.vip, o.port, udpSockets, findings);
  }

  await checkRecords(runner, o, statePath(o.stateDir, identity, o.vip), findings);

  const problems = findings.filter((f) => f.status === 'problem').length;
  const partial: Omit<CheckResult, 'report'> = {
    vip: o.vip,
    method: o.method,
    ...(o.netns !== undefined ? { netns: o.netns } : {}),
    ...(o.port !== undefined ? { port: o.port } : {}),
    ok: problems === 0,
    problems,
    findings,
    udpSockets,
  };
  return { ...partial, report: formatReport(partial) };
}

async function checkTunnel(
  runner: CommandRunner,
  method: 'ipip' | 'gre',
  o: ReturnType<typeof validateCheckOptions>,
  links: LinkInfo[],
  sysctls: Record<string, string>,
  findings: CheckFinding[],
  ip: (args: string[]) => string,
  sysctl: (path: string, value: number) => string,
): Promise<void> {
  const own = links.find((l) => l.name === tunnelDeviceName(o.vip));
  const fallback = links.find((l) => l.name === (method === 'ipip' ? 'tunl0' : 'gre0'));
  const raw = parseProcNetSockets(await readProcFile(runner, o.netns, '/proc/net/raw'));
  const rawSocket = raw.some((s) => s.localPort === tunnelProtocol(method));
  let decapDevice: LinkInfo | undefined;
  if (own && own.linkType === 'none' && rawSocket && own.lowerUp) {
    decapDevice = own;
    findings.push({ id: 'decapsulation', status: 'ok', message: `the userspace decapsulator serves ${method} through ${own.name}` });
  } else if (own && own.linkType !== 'none' && own.up) {
    decapDevice = own;
    findings.push({ id: 'decapsulation', status: 'ok', message: `the kernel decapsulates ${method} on ${own.name}` });
  } else if (fallback?.up) {
    decapDevice = fallback;
    findings.push({ id: 'decapsulation', status: 'ok', message: `the kernel decapsulates ${method} on ${fallback.name}` });
  } else {
    const cli = ['l4lb', 'realserver', 'up', '--vip', o.vip, '--method', method, ...(o.netns ? ['--netns', o.netns] : [])];
    const why = own && own.linkType === 'none' ? `${own.name} exists but no decapsulator is attached to it` : `no ${method} device is up and no userspace decapsulator runs`;
    findings.push({
      id: 'decapsulation',
      status: 'problem',
      message: `nothing decapsulates ${method} here: ${why}${rawSocket ? '' : `; the kernel answers ${method} packets with ICMP protocol-unreachable`}`,
      fix: formatCommand(cli),
    });
  }
  if (decapDevice) {
    const effective = Math.max(Number(sysctls[confPath('all', 'rp_filter')] ?? '0'), Number(sysctls[confPath(decapDevice.name, 'rp_filter')] ?? '0'));
    if (effective === 1) {
      findings.push({
        id: 'rp-filter',
        status: 'problem',
        message: `strict reverse-path filtering on ${decapDevice.name} drops tunnelled packets whose client is routed through another interface`,
        fix: sysctl(confPath(decapDevice.name, 'rp_filter'), 2),
      });
    } else if (effective === 2 && decapDevice.addresses.length === 0) {
      findings.push({
        id: 'rp-filter',
        status: 'problem',
        message: `${decapDevice.name} has no IPv4 address, and reverse-path filtering (even loose) drops everything that arrives on such a device`,
        fix: ip(['address', 'add', `${o.vip}/32`, 'dev', decapDevice.name]),
      });
    } else {
      findings.push({ id: 'rp-filter', status: 'ok', message: `reverse-path filtering on ${decapDevice.name} is ${effective === 0 ? 'off' : 'loose'}` });
    }
  }
  if (o.returnThroughTunnel) {
    const table = o.returnThroughTunnel.table ?? defaultReturnTable(o.vip);
    const device = tunnelDeviceName(o.vip);
    const rules = await readRules(runner, o.netns);
    const routes = await readRoutes(runner, o.netns, table);
    const rule = rules.some((r) => r.src === o.vip && r.table === String(table));
    const route = routes.some((r) => r.dst === 'default' && r.dev === device);
    if (rule && route) {
      findings.push({ id: 'return-path', status: 'ok', message: `replies from ${o.vip} go into ${device} (table ${table})` });
    } else {
      findings.push({
        id: 'return-path',
        status: 'problem',
        message: `replies from ${o.vip} do not go back through the tunnel: ${rule ? '' : `no rule "from ${o.vip} lookup ${table}"`}${!rule && !route ? ', ' : ''}${route ? '' : `no default route dev ${device} in table ${table}`}`,
        fix: [
          ...(rule ? [] : [ip(['rule', 'add', 'priority', String(returnRulePriority), 'from', o.vip, 'lookup', String(table)])]),
          ...(route ? [] : [ip(['route', 'add', 'default', 'dev', device, 'table', String(table)])]),
        ].join(' && '),
      });
    }
  }
}

function checkUdp(vip: string, port: number, sockets: ProcNetSocket[], findings: CheckFinding[]): void {
  const onVip = sockets.filter((s) => s.localAddress === vip || s.localAddress === `::ffff:${vip}`);
  const wildcard = sockets.filter((s) => isWildcardAddress(s.localAddress));
  const other = sockets.filter((s) => !onVip.includes(s) && !wildcard.includes(s));
  for (const s of onVip) {
    findings.push({ id: 'udp-bound-to-vip', status: 'ok', message: `UDP socket ${s.localAddress}:${port} is bound to the VIP: its replies come from the VIP` });
  }
  const fix =
    `bind the service to ${vip}:${port} (with IP_FREEBIND it may bind before the address exists), or have it read each ` +
    `datagram's destination with IP_PKTINFO and reply from that address (sendmsg with IP_PKTINFO, ipi_spec_dst = the destination)`;
  for (const s of wildcard) {
    const shown = s.family === 6 ? `[${s.localAddress}]:${port}` : `${s.localAddress}:${port}`;
    if (onVip.length > 0) {
      // The kernel delivers to the most specific bound socket: the VIP's.
      findings.push({
        id: 'udp-wildcard',
        status: 'warning',
        message: `UDP socket ${shown} (inode ${s.inode}) is bound to every address; the VIP-bound socket takes the VIP's datagrams`,
      });
      continue;
    }
    findings.push({
      id: 'udp-wildcard',
      status: 'problem',
      message:
        `UDP socket ${shown} (inode ${s.inode}, uid ${s.uid}) is bound to every address: in dr and tunnel modes it receives ` +
        `datagrams for the VIP but replies from this server's own address, which clients drop` +
        (s.family === 6 ? ' (an IPv6 wildcard socket takes IPv4 too unless IPV6_V6ONLY is set, which /proc does not show)' : ''),
      fix,
    });
  }
  for (const s of other) {
    findings.push({
      id: 'udp-other-address',
      status: 'warning',
      message: `UDP socket ${s.localAddress}:${port} is bound to another address and never sees the VIP's datagrams`,
    });
  }
  if (sockets.length === 0) {
    findings.push({ id: 'udp-no-socket', status: 'warning', message: `no UDP socket on port ${port} (fine if the service is TCP only)` });
  }
}


/**
 * The records of `up` for this VIP: this namespace's (a userspace
 * decapsulator it names that no longer runs is a problem: nothing serves
 * the TUN device it left), and those of other namespaces that are gone or
 * were written by an older l4lb (warnings: they hold nothing up here, but
 * only `down --force` clears them).
 */
async function checkRecords(
  runner: CommandRunner,
  o: ReturnType<typeof validateCheckOptions>,
  path: string,
  findings: CheckFinding[],
): Promise<void> {
  const down = (netns?: string) =>
    formatCommand(['l4lb', 'realserver', 'down', '--force', '--vip', o.vip, ...(netns ? ['--netns', netns] : []), ...(o.stateDir ? ['--state-dir', o.stateDir] : [])]);
  let own;
  try {
    own = readState(path);
  } catch (error) {
    findings.push({ id: 'stale-record', status: 'problem', message: (error as Error).message, fix: down(o.netns) });
  }
  if (own) {
    const decapsulator = own.changes.find((c) => c.kind === 'decapsulator');
    if (decapsulator && decapsulator.kind === 'decapsulator' && (await decapsulatorState(runner, path, own, o.netns)) === 'gone') {
      findings.push({
        id: 'stale-record',
        status: 'problem',
        message: `the record ${path} names a userspace decapsulator (process ${decapsulator.pid}) that no longer runs: ${decapsulator.device} is left without it`,
        fix: `${down(o.netns)} (then up again)`,
      });
    } else {
      findings.push({ id: 'record', status: 'ok', message: `set up by l4lb realserver up (${own.method}${own.decapsulation !== 'none' ? `, ${own.decapsulation} decapsulation` : ''}): ${path}` });
    }
  }
  const namespaces = namespacesOf(runner);
  for (const file of listStates(o.stateDir, o.vip)) {
    if (file.path === path) continue;
    if (file.kind === 'record') {
      if (namespaces.lookup(file.state.namespace)) continue;
      findings.push({
        id: 'stale-record',
        status: 'warning',
        message: `the record ${file.path} is of ${describeNamespace(file.state.namespace)}, which no longer exists`,
        fix: down(),
      });
    } else {
      findings.push({
        id: 'stale-record',
        status: 'warning',
        message:
          file.kind === 'legacy'
            ? `the record ${file.path} was written by an older l4lb and does not say which namespace it belongs to`
            : `the record ${file.path} cannot be read: ${file.error}`,
        fix: down(),
      });
    }
  }
}
