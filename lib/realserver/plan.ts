// What `up` and `down` do, as data: an ordered list of steps (each one a
// command, except starting and stopping the userspace decapsulator), computed
// from the options and the current state of the host. Pure functions: the
// dry run prints this list, `up` runs it, and unit tests build it from
// hand-made facts.
import { confPath, ipCommand, sysctlName, sysctlWriteCommand } from './commands.js';
import type { DecapsulatorOptions } from './decapsulator.js';
import { RealServerError } from './errors.js';
import type { NormalizedUpOptions } from './options.js';
import type { Change, RealServerState } from './state.js';
import type { LinkInfo, RouteInfo, RuleInfo } from './system.js';
import { ipv4ToNumber } from '../config/addresses.js';

export interface PlannedStep {
  /** Why, in one line. */
  description: string;
  /**
   * The command. For the decapsulator, which runs inside this process, the
   * equivalent `l4lb realserver decapsulate ...` command a provisioning
   * system would run as a service.
   */
  argv: string[];
  /** Run by this process rather than as a command (the decapsulator). */
  internal: boolean;
  /** How the step prints when argv alone would mislead (stopping a decapsulator inside this process). */
  shell?: string;
  change: Change;
}

/** What the host looks like, as far as a plan needs to know. */
export interface HostFacts {
  links: LinkInfo[];
  /** /proc/sys path -> value, for every path sysctlPathsFor() named that exists. */
  sysctls: Record<string, string>;
  /** Policy rules (only read with returnThroughTunnel). */
  rules: RuleInfo[];
  /** Routes in the return table (only read with returnThroughTunnel). */
  returnRoutes: RouteInfo[];
  /** The interface of the default route, if any. */
  defaultInterface?: string;
  /** The route toward the balancer (only read with returnThroughTunnel). */
  balancerRoute?: RouteInfo;
  /** Whether the kernel can make these devices (only probed for tunnel methods). */
  kernelTunnels: { ipip?: boolean; gre?: boolean };
  /** The userspace decapsulator for this VIP already runs (in this process or the one the state names). */
  decapsulatorRunning: boolean;
}

export interface UpPlan {
  steps: PlannedStep[];
  /** What was already as it should be, one line each. */
  inPlace: string[];
  decapsulation: 'none' | 'kernel' | 'userspace';
  /** The device tunnelled packets arrive on (TUN, tunl0, gre0 or a created gre device). */
  tunnelDevice?: string;
  /** The interface that got the ARP settings. */
  interface?: string;
  returnThroughTunnel?: { balancer: string; source?: string; greKey?: number; table: number; priority: number; device: string };
  /** With userspace decapsulation: what the decapsulator runs with. */
  decapsulator?: DecapsulatorOptions;
}

/** Priority of the `from VIP` rule: after `local` (0), before `main` (32766). */
export const returnRulePriority = 1000;


/**
 * The device l4lb creates for a VIP (TUN, or a kernel gre device):
 * 'l4lb' + the VIP in hex, 12 characters (IFNAMSIZ allows 15), the same name
 * in every namespace and from every process, so a second `up` finds it.
 */
export function tunnelDeviceName(vip: string): string {
  return `l4lb${ipv4ToNumber(vip).toString(16).padStart(8, '0')}`;
}

/**
 * The routing table for replies from the VIP: 0x4c340000 ('L4' in the high
 * half) plus the VIP's low 16 bits, far from the small numbers people pick
 * for their own tables. `returnThroughTunnel.table` overrides it.
 */
export function defaultReturnTable(vip: string): number {
  return 0x4c340000 + (ipv4ToNumber(vip) & 0xffff);
}

// arp_ignore 1 answers ARP only for addresses configured on the interface
// asked (not for the VIP on lo); 2 is stricter still (the sender must be on
// that subnet) and also keeps the VIP quiet, so a 2 already set is left alone.
const arpIgnoreValues = new Set(['1', '2']);

/** Bytes each tunnel adds in front of the inner packet. */
function overhead(kind: 'ipip' | 'gre', withKey: boolean): number {
  return kind === 'ipip' ? 20 : 24 + (withKey ? 4 : 0);
}

/** The interface that gets the ARP settings: the one named, else the default route's. */
export function arpInterface(options: NormalizedUpOptions, facts: Pick<HostFacts, 'defaultInterface'>): string | undefined {
  const chosen = options.interface ?? facts.defaultInterface;
  return chosen === 'lo' ? undefined : chosen;
}

/** The devices and sysctls a plan reads, so that system.ts can fetch them in one call. */
export function sysctlPathsFor(options: NormalizedUpOptions, facts: Pick<HostFacts, 'defaultInterface' | 'kernelTunnels'>): string[] {
  const paths: string[] = [];
  const iface = arpInterface(options, facts);
  for (const device of ['all', 'lo', ...(iface ? [iface] : [])]) {
    paths.push(confPath(device, 'arp_ignore'), confPath(device, 'arp_announce'));
  }
  if (options.method !== 'dr') {
    paths.push(confPath('all', 'rp_filter'), confPath('default', 'rp_filter'));
    for (const device of candidateTunnelDevices(options)) paths.push(confPath(device, 'rp_filter'));
  }
  return paths;
}

function candidateTunnelDevices(options: NormalizedUpOptions): string[] {
  return [tunnelDeviceName(options.vip), options.method === 'ipip' ? 'tunl0' : 'gre0'];
}

interface PlanContext {
  options: NormalizedUpOptions;
  facts: HostFacts;
  state: RealServerState | undefined;
  steps: PlannedStep[];
  inPlace: string[];
}

function link(ctx: PlanContext, name: string): LinkInfo | undefined {
  return ctx.facts.links.find((l) => l.name === name);
}

function createdByUs(ctx: PlanContext, device: string): boolean {
  return ctx.state?.changes.some((c) => c.kind === 'link-add' && c.device === device) ?? false;
}

function ip(ctx: PlanContext, args: string[]): string[] {
  return ipCommand(ctx.options.netns, args);
}

function planSysctl(ctx: PlanContext, path: string, wanted: string, ok: (value: string) => boolean, why: string, options: { device?: string; assumed?: string } = {}): void {
  const current = ctx.facts.sysctls[path] ?? options.assumed;
  if (current === undefined) {
    throw new RealServerError('ECOMMAND', `cannot read sysctl ${sysctlName(path)}`);
  }
  if (ok(current)) {
    ctx.inPlace.push(`${sysctlName(path)} = ${current}`);
    return;
  }
  ctx.steps.push({
    description: why,
    argv: sysctlWriteCommand(ctx.options.netns, path, wanted),
    internal: false,
    change: { kind: 'sysctl', path, previous: current, value: wanted, ...(options.device ? { device: options.device } : {}) },
  });
}

// Reverse-path filtering (RFC 3704) checks that the route back to a packet's
// source leaves through the interface the packet came in on. Tunnelled
// packets come in on the tunnel device while the route to the client leaves
// through the physical interface, so strict mode (1) drops them. Loose mode
// (2) only asks that the source be routable at all, which still drops
// spoofed martians. The kernel uses max(all, device) for the device, so
// setting the device to 2 is enough whatever `all` says, and no other
// interface is weakened. Nothing is changed when the effective value is
// already 0 or 2.
function planRpFilter(ctx: PlanContext, device: string, created: boolean): void {
  const path = confPath(device, 'rp_filter');
  const all = Number(ctx.facts.sysctls[confPath('all', 'rp_filter')] ?? '0');
  const own = ctx.facts.sysctls[path] ?? (created ? ctx.facts.sysctls[confPath('default', 'rp_filter')] : undefined) ?? '0';
  const effective = Math.max(all, Number(own));
  planSysctl(
    ctx,
    path,
    '2',
    () => effective !== 1,
    `loose reverse-path filtering on ${device}: tunnelled packets arrive there while the route to their client leaves by another interface`,
    { device, assumed: own },
  );
}

function planAddressAndArp(ctx: PlanContext): string | undefined {
  const { options } = ctx;
  const lo = link(ctx, 'lo');
  const vipPrefix = `${options.vip}/32`;
  if (lo?.addresses.includes(vipPrefix)) {
    ctx.inPlace.push(`${vipPrefix} on lo`);
  } else {
    const elsewhere = ctx.facts.links.find((l) => l.name !== 'lo' && l.addresses.some((a) => a.split('/')[0] === options.vip));
    if (elsewhere && !elsewhere.noArp) {
      throw new RealServerError(
        'EVIP_ON_INTERFACE',
        `vip: ${options.vip} is configured on ${elsewhere.name}, where this host would answer ARP for it and draw the balancer's traffic; remove it there first`,
        { path: 'vip' },
      );
    }
    ctx.steps.push({
      description: 'the VIP on loopback: the local stack accepts packets for it, no neighbour learns it',
      argv: ip(ctx, ['address', 'add', vipPrefix, 'dev', 'lo']),
      internal: false,
      change: { kind: 'address', address: vipPrefix, device: 'lo' },
    });
  }
  const iface = arpInterface(options, ctx.facts);
  if (options.interface !== undefined && !link(ctx, options.interface)) {
    const where = options.netns ? `namespace ${options.netns}` : 'this host';
    throw new RealServerError('ENO_INTERFACE', `interface: "${options.interface}" does not exist in ${where}`, { path: 'interface' });
  }
  for (const device of ['all', 'lo', ...(iface ? [iface] : [])]) {
    planSysctl(
      ctx,
      confPath(device, 'arp_ignore'),
      '1',
      (v) => arpIgnoreValues.has(v),
      `arp_ignore on ${device}: answer ARP only for addresses of the interface asked, never for the VIP on lo`,
    );
  }
  for (const device of ['all', 'lo', ...(iface ? [iface] : [])]) {
    planSysctl(
      ctx,
      confPath(device, 'arp_announce'),
      '2',
      (v) => v === '2',
      `arp_announce on ${device}: never use the VIP as the source address of ARP requests`,
    );
  }
  return iface;
}

// Reverse-path filtering in loose mode still drops every packet arriving on
// a device that has no IPv4 address (__fib_validate_source goes straight to
// its last resort), and the kernel's tunl0/gre0 and our TUN device have
// none. So the receiving device carries the VIP too, as the classic LVS-TUN
// set-up has it on tunl0; the device does not do ARP, so nothing learns it.
function planVipOnTunnelDevice(ctx: PlanContext, device: string, existing: LinkInfo | undefined): void {
  const vipPrefix = `${ctx.options.vip}/32`;
  if (existing?.addresses.includes(vipPrefix)) {
    ctx.inPlace.push(`${vipPrefix} on ${device}`);
    return;
  }
  ctx.steps.push({
    description: `the VIP on ${device} too: reverse-path filtering drops whatever arrives on a device without an address`,
    argv: ip(ctx, ['address', 'add', vipPrefix, 'dev', device]),
    internal: false,
    change: { kind: 'address', address: vipPrefix, device },
  });
}

function planReturnRouting(ctx: PlanContext, device: string, table: number, priority: number): void {
  const { options } = ctx;
  const rule = ctx.facts.rules.find((r) => r.priority === priority && r.src === options.vip && r.table === String(table));
  if (rule) {
    ctx.inPlace.push(`rule ${priority}: from ${options.vip} lookup ${table}`);
  } else {
    ctx.steps.push({
      description: 'policy routing: packets from the VIP (the replies) use the return table',
      argv: ip(ctx, ['rule', 'add', 'priority', String(priority), 'from', options.vip, 'lookup', String(table)]),
      internal: false,
      change: { kind: 'rule', priority, from: options.vip, table },
    });
  }
  const foreign = ctx.facts.returnRoutes.filter((r) => !(r.dst === 'default' && r.dev === device));
  if (foreign.length > 0) {
    throw new RealServerError(
      'ETABLE_IN_USE',
      `returnThroughTunnel.table: routing table ${table} already holds other routes (${foreign.map((r) => `${r.dst}${r.dev ? ` dev ${r.dev}` : ''}`).join(', ')}); choose another table`,
      { path: 'returnThroughTunnel.table' },
    );
  }
  if (ctx.facts.returnRoutes.some((r) => r.dst === 'default' && r.dev === device)) {
    ctx.inPlace.push(`default dev ${device} in table ${table}`);
  } else {
    ctx.steps.push({
      description: `the return table sends everything into ${device}, toward the balancer`,
      argv: ip(ctx, ['route', 'add', 'default', 'dev', device, 'table', String(table)]),
      internal: false,
      change: { kind: 'route', table, destination: 'default', device },
    });
  }
}

function ensureOurDevice(ctx: PlanContext, device: string): LinkInfo | undefined {
  const existing = link(ctx, device);
  if (existing && !createdByUs(ctx, device)) {
    throw new RealServerError(
      'EDEVICE_IN_USE',
      `device ${device} exists but this VIP's record does not say l4lb created it; remove it (ip link del ${device}) or run down first`,
    );
  }
  return existing;
}

function decapsulatorCommand(config: DecapsulatorOptions, method: 'ipip' | 'gre'): string[] {
  const argv = ['l4lb', 'realserver', 'decapsulate', '--vip', config.vips[0]!, '--method', method, '--device', config.device];
  if (config.netns !== undefined) argv.push('--netns', config.netns);
  if (config.greKey !== undefined) argv.push('--gre-key', String(config.greKey));
  if (config.localAddresses?.length) argv.push('--local-address', config.localAddresses[0]!);
  if (config.returnTo) {
    argv.push('--return-to', config.returnTo.destination);
    if (config.returnTo.source !== undefined) argv.push('--return-source', config.returnTo.source);
    if (config.returnTo.greKey !== undefined) argv.push('--return-gre-key', String(config.returnTo.greKey));
  }
  return argv;
}

function resolveReturn(ctx: PlanContext): UpPlan['returnThroughTunnel'] | undefined {
  const r = ctx.options.returnThroughTunnel;
  if (!r) return undefined;
  if (!ctx.facts.balancerRoute) {
    throw new RealServerError(
      'ENO_ROUTE',
      `returnThroughTunnel.balancer: no route to ${r.balancer}${ctx.options.netns ? ` in namespace ${ctx.options.netns}` : ''}; the tunnelled replies could not reach it`,
      { path: 'returnThroughTunnel.balancer' },
    );
  }
  const greKey = r.greKey ?? ctx.options.greKey;
  return {
    balancer: r.balancer,
    ...(ctx.facts.balancerRoute.prefsrc ? { source: ctx.facts.balancerRoute.prefsrc } : {}),
    ...(greKey !== undefined ? { greKey } : {}),
    table: r.table ?? defaultReturnTable(ctx.options.vip),
    priority: returnRulePriority,
    device: tunnelDeviceName(ctx.options.vip),
  };
}

function planUserspace(ctx: PlanContext, method: 'ipip' | 'gre', ret: UpPlan['returnThroughTunnel']): { device: string; config: DecapsulatorOptions } {
  const { options } = ctx;
  const device = tunnelDeviceName(options.vip);
  const existing = ensureOurDevice(ctx, device);
  // Replies leave through the TUN device and gain the GRE header on the way:
  // its MTU leaves room for that, so the local stack sizes segments (and the
  // MSS it announces) to fit the path to the balancer.
  const underlying =
    ctx.facts.links.find((l) => l.name === ctx.facts.balancerRoute?.dev) ??
    ctx.facts.links.find((l) => l.name === arpInterface(options, ctx.facts));
  const baseMtu = underlying?.mtu && underlying.mtu > 0 ? underlying.mtu : 1500;
  const mtu = ret ? baseMtu - overhead('gre', ret.greKey !== undefined) : baseMtu - overhead(method, options.greKey !== undefined);
  if (existing) {
    ctx.inPlace.push(`TUN device ${device}`);
  } else {
    ctx.steps.push({
      description: `TUN device ${device}: the decapsulator hands inner packets to the local stack through it`,
      argv: ip(ctx, ['tuntap', 'add', 'dev', device, 'mode', 'tun']),
      internal: false,
      change: { kind: 'link-add', device },
    });
  }
  if (existing?.mtu === mtu) {
    ctx.inPlace.push(`${device} mtu ${mtu}`);
  } else {
    ctx.steps.push({
      description: `${device} mtu ${mtu}: room for the tunnel header on the way back`,
      argv: ip(ctx, ['link', 'set', 'dev', device, 'mtu', String(mtu)]),
      internal: false,
      change: { kind: 'link-set', device, setting: 'mtu' },
    });
  }
  planVipOnTunnelDevice(ctx, device, existing);
  planRpFilter(ctx, device, !existing);
  if (existing?.up) {
    ctx.inPlace.push(`${device} up`);
  } else {
    ctx.steps.push({
      description: `${device} up`,
      argv: ip(ctx, ['link', 'set', 'dev', device, 'up']),
      internal: false,
      change: { kind: 'link-set', device, setting: 'up' },
    });
  }
  if (ret) planReturnRouting(ctx, device, ret.table, ret.priority);
  const config: DecapsulatorOptions = {
    vips: [options.vip],
    accept: [method],
    device,
    ...(options.netns !== undefined ? { netns: options.netns } : {}),
    ...(options.greKey !== undefined ? { greKey: options.greKey } : {}),
    ...(options.localAddress !== undefined ? { localAddresses: [options.localAddress] } : {}),
    ...(ret
      ? {
          returnTo: {
            destination: ret.balancer,
            ...(ret.source !== undefined ? { source: ret.source } : {}),
            ...(ret.greKey !== undefined ? { greKey: ret.greKey } : {}),
          },
        }
      : {}),
  };
  if (ctx.facts.decapsulatorRunning) {
    ctx.inPlace.push(`userspace decapsulator on ${device}`);
  } else {
    ctx.steps.push({
      description: `userspace decapsulator (the kernel has no ${method === 'ipip' ? 'ipip' : 'ip_gre'} module): strips the outer header, hands the inner packet to ${device}${ret ? ', sends replies back in GRE' : ''}; its raw socket also keeps the kernel from answering ${method} packets with ICMP protocol-unreachable`,
      argv: decapsulatorCommand(config, method),
      internal: true,
      change: { kind: 'decapsulator', device, pid: process.pid },
    });
  }
  return { device, config };
}

function planKernel(ctx: PlanContext, method: 'ipip' | 'gre', ret: UpPlan['returnThroughTunnel']): string {
  const { options } = ctx;
  // The module's fallback device (tunl0, gre0) receives every keyless packet
  // of its protocol; a key or a return path needs a device of our own.
  const ownDevice = method === 'gre' ? options.greKey !== undefined || ret !== undefined : ret !== undefined;
  const fallback = method === 'ipip' ? 'tunl0' : 'gre0';
  let receiving = fallback;
  if (method === 'ipip' || !ownDevice) {
    const existing = link(ctx, fallback);
    if (existing?.up) {
      ctx.inPlace.push(`${fallback} up`);
    } else {
      ctx.steps.push({
        description: `${fallback} up: the ${method} module's catch-all device receives the tunnelled packets`,
        argv: ip(ctx, ['link', 'set', 'dev', fallback, 'up']),
        internal: false,
        change: { kind: 'link-up', device: fallback },
      });
    }
    planVipOnTunnelDevice(ctx, fallback, existing);
    planRpFilter(ctx, fallback, false);
  }
  if (ownDevice) {
    const device = tunnelDeviceName(options.vip);
    const existing = ensureOurDevice(ctx, device);
    if (existing) {
      ctx.inPlace.push(`gre device ${device}`);
    } else {
      const args = ['link', 'add', 'name', device, 'type', 'gre'];
      if (ret) args.push('remote', ret.balancer);
      if (ret?.source) args.push('local', ret.source);
      const inKey = method === 'gre' ? options.greKey : undefined;
      const outKey = ret?.greKey;
      if (inKey !== undefined && inKey === outKey) args.push('key', String(inKey));
      else {
        if (inKey !== undefined) args.push('ikey', String(inKey));
        if (outKey !== undefined) args.push('okey', String(outKey));
      }
      ctx.steps.push({
        description: `kernel gre device ${device}${ret ? `: receives from and returns to ${ret.balancer}` : ''}`,
        argv: ip(ctx, args),
        internal: false,
        change: { kind: 'link-add', device },
      });
    }
    if (method === 'gre') planVipOnTunnelDevice(ctx, device, existing);
    planRpFilter(ctx, device, !existing);
    if (existing?.up) {
      ctx.inPlace.push(`${device} up`);
    } else {
      ctx.steps.push({
        description: `${device} up`,
        argv: ip(ctx, ['link', 'set', 'dev', device, 'up']),
        internal: false,
        change: { kind: 'link-set', device, setting: 'up' },
      });
    }
    if (method === 'gre') receiving = device;
    if (ret) planReturnRouting(ctx, device, ret.table, ret.priority);
  }
  return receiving;
}

/** The steps that bring the host from `facts` to a configured real server. */
export function planUp(options: NormalizedUpOptions, facts: HostFacts, state?: RealServerState): UpPlan {
  const ctx: PlanContext = { options, facts, state, steps: [], inPlace: [] };
  const iface = planAddressAndArp(ctx);
  const plan: UpPlan = { steps: ctx.steps, inPlace: ctx.inPlace, decapsulation: 'none', ...(iface ? { interface: iface } : {}) };
  if (options.method === 'dr') return plan;

  const method = options.method;
  const ret = resolveReturn(ctx);
  const kernel = facts.kernelTunnels[method] === true;
  if (options.decapsulation === 'kernel' && !kernel) {
    throw new RealServerError(
      'ENO_KERNEL_TUNNEL',
      `decapsulation: the kernel has no ${method} support (ip link add ... type ${method}: Unknown device type); use 'auto' or 'userspace'`,
      { path: 'decapsulation' },
    );
  }
  if (kernel && options.decapsulation !== 'userspace') {
    plan.decapsulation = 'kernel';
    plan.tunnelDevice = planKernel(ctx, method, ret);
  } else {
    plan.decapsulation = 'userspace';
    const { device, config } = planUserspace(ctx, method, ret);
    plan.tunnelDevice = device;
    plan.decapsulator = config;
  }
  if (ret) plan.returnThroughTunnel = ret;
  return plan;
}

/** What the host looks like now, as far as undoing needs to know. */
export interface UndoFacts {
  links: LinkInfo[];
  sysctls: Record<string, string>;
  rules: RuleInfo[];
  /** Whether the decapsulator the state names still runs, and where. */
  decapsulator: 'this-process' | 'other-process' | 'gone';
}

export interface DownPlan {
  steps: PlannedStep[];
  /** Changes not undone, and why (already undone, changed by someone else since). */
  leftAlone: string[];
}

/**
 * The steps that undo `state.changes`, newest first, each only if it still
 * holds; commands address the namespace as `netns` (the caller's name for
 * it, which need not be the one `up` was given).
 */
export function planDown(state: RealServerState, facts: UndoFacts, netns: string | undefined): DownPlan {
  const steps: PlannedStep[] = [];
  const leftAlone: string[] = [];
  const deleted = new Set(state.changes.filter((c) => c.kind === 'link-add').map((c) => c.device));
  const linkNamed = (name: string) => facts.links.find((l) => l.name === name);
  for (const change of [...state.changes].reverse()) {
    switch (change.kind) {
      case 'decapsulator':
        if (facts.decapsulator === 'gone') {
          leftAlone.push(`decapsulator (process ${change.pid}) is no longer running`);
        } else {
          steps.push({
            description: `stop the userspace decapsulator on ${change.device}`,
            argv: ['kill', '-TERM', String(change.pid)],
            internal: true,
            ...(facts.decapsulator === 'this-process' ? { shell: `# stop the decapsulator running in this process (${change.pid})` } : {}),
            change,
          });
        }
        break;
      case 'rule':
        if (facts.rules.some((r) => r.priority === change.priority && r.src === change.from && r.table === String(change.table))) {
          steps.push({
            description: `remove the policy rule for replies from ${change.from}`,
            argv: ipCommand(netns, ['rule', 'del', 'priority', String(change.priority), 'from', change.from, 'lookup', String(change.table)]),
            internal: false,
            change,
          });
        } else {
          leftAlone.push(`rule ${change.priority} from ${change.from} lookup ${change.table} is already gone`);
        }
        break;
      case 'route':
        // A route through a device `up` created goes away with the device.
        if (deleted.has(change.device)) break;
        if (linkNamed(change.device)) {
          steps.push({
            description: `remove the return route through ${change.device}`,
            argv: ipCommand(netns, ['route', 'del', change.destination, 'dev', change.device, 'table', String(change.table)]),
            internal: false,
            change,
          });
        }
        break;
      case 'link-set':
        break; // goes away with the device `up` created
      case 'link-add':
        if (linkNamed(change.device)) {
          steps.push({
            description: `delete ${change.device} (its routes and settings go with it)`,
            argv: ipCommand(netns, ['link', 'del', 'dev', change.device]),
            internal: false,
            change,
          });
        } else {
          leftAlone.push(`${change.device} is already gone`);
        }
        break;
      case 'link-up':
        if (linkNamed(change.device)?.up) {
          steps.push({
            description: `${change.device} back down, as it was`,
            argv: ipCommand(netns, ['link', 'set', 'dev', change.device, 'down']),
            internal: false,
            change,
          });
        }
        break;
      case 'sysctl': {
        if (change.device !== undefined && deleted.has(change.device)) break;
        const current = facts.sysctls[change.path];
        if (current === undefined) {
          leftAlone.push(`${sysctlName(change.path)} no longer exists`);
        } else if (current !== change.value) {
          leftAlone.push(`${sysctlName(change.path)} is ${current} now, not the ${change.value} up set: left as it is`);
        } else {
          steps.push({
            description: `${sysctlName(change.path)} back to ${change.previous}`,
            argv: sysctlWriteCommand(netns, change.path, change.previous),
            internal: false,
            change,
          });
        }
        break;
      }
      case 'address':
        if (deleted.has(change.device)) break; // goes away with the device
        if (linkNamed(change.device)?.addresses.includes(change.address)) {
          steps.push({
            description: `remove ${change.address} from ${change.device}`,
            argv: ipCommand(netns, ['address', 'del', change.address, 'dev', change.device]),
            internal: false,
            change,
          });
        } else {
          leftAlone.push(`${change.address} is no longer on ${change.device}`);
        }
        break;
    }
  }
  return { steps, leftAlone };
}

/** The sysctls planDown needs to read. */
export function undoSysctlPaths(state: RealServerState): string[] {
  return state.changes.flatMap((c) => (c.kind === 'sysctl' ? [c.path] : []));
}
