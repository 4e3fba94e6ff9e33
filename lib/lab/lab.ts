// The namespace lab: test topologies built from network namespaces, veth pairs
// and bridges, entirely inside namespaces the lab creates. Nothing is created
// in the host's own namespace (veth ends are created directly inside their
// namespaces; bridges live in a namespace of their own), so no route or packet
// can leave through the host's interfaces.
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { LabError } from '../errors.js';
import { parseLabPrefix } from './addresses.js';
import { LabProcess } from './process.js';
import { processAlive } from '../host/processes.js';

const execFileAsync = promisify(execFile);

/** Every lab namespace starts with this; `Lab.cleanup()` looks for it. */
export const labNamespacePrefix = 'l4lb-';

export interface CommandResult {
  stdout: string;
  stderr: string;
}

export interface HostOptions {
  /** sysctls to set inside the host, e.g. `{ 'net.ipv4.ip_forward': 1 }`. */
  sysctls?: Record<string, string | number>;
}

export interface LinkEnd {
  host: Host;
  /** Interface name inside the host (default: the peer host's name, e.g. 'balancer'). */
  name?: string;
  /** Addresses with prefix length, e.g. '198.18.0.1/24', '2001:db8::1/64'. */
  addresses?: string[];
  /**
   * Transmit and receive queues of the veth pair (default 1), given to both
   * ends: the sender's transmit queue picks the receiver's queue, so flows
   * spread over this many receive queues (AF_XDP serves one per worker).
   */
  queues?: number;
}

export interface LinkOptions {
  mtu?: number;
  /**
   * Largest segmentation-offload aggregate a host's stack may hand this link
   * (gso_max_size). A local TCP stack on veth otherwise passes segments of
   * up to 64 KiB, which a packet forwarder (l4lb's AF_PACKET workers) then
   * sees as one over-MTU frame; a real NIC would segment them. Set it to the
   * MTU on links whose traffic crosses a balancer.
   */
  gsoMaxSize?: number;
}

export interface SegmentMember {
  host: Host;
  name?: string;
  addresses?: string[];
  /** Queues of the member's veth to the bridge (LinkEnd.queues). */
  queues?: number;
}

export interface InterfaceInfo {
  name: string;
  mac: string;
  mtu: number;
  addresses: string[];
}

/** Runs `ip` (or another command) and turns a failure into a LabError that shows the command and its stderr. */
async function run(command: string, args: string[]): Promise<CommandResult> {
  try {
    const { stdout, stderr } = await execFileAsync(command, args, { maxBuffer: 16 * 1024 * 1024 });
    return { stdout, stderr };
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string; code?: string | number };
    if (e.code === 'ENOENT') {
      throw new LabError('ENO_TOOL', `the lab needs "${command}" (Debian package iproute2), and it is not installed`, { cause: error });
    }
    throw new LabError('ECOMMAND', `${command} ${args.join(' ')} failed: ${(e.stderr ?? e.message).trim()}`, { cause: error });
  }
}

function hasNetAdmin(): boolean {
  if (process.getuid?.() === 0) return true;
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const match = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
    // CAP_NET_ADMIN is capability 12, CAP_SYS_ADMIN (needed by `ip netns add` to mount) is 21.
    return match !== null && (BigInt('0x' + match[1]) & ((1n << 12n) | (1n << 21n))) === ((1n << 12n) | (1n << 21n));
  } catch {
    return false;
  }
}

/** Throws a LabError naming what is missing when this process cannot build a lab. */
export async function assertLabAvailable(): Promise<void> {
  if (process.platform !== 'linux') throw new LabError('EPLATFORM', 'the lab needs Linux network namespaces');
  if (!hasNetAdmin()) {
    throw new LabError('EPRIVILEGE', 'the lab needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces');
  }
  await run('ip', ['-V']);
}

const liveLabs = new Set<Lab>();
let exitHooksInstalled = false;

// Teardown must also happen when the process is interrupted. Signal handlers
// run the synchronous teardown and then re-raise the signal with the default
// action, so the exit status still says how the process ended.
function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', () => {
    for (const lab of liveLabs) lab.destroySync();
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      for (const lab of liveLabs) lab.destroySync();
      process.kill(process.pid, signal);
    });
  }
}

/** A host: one network namespace with its interfaces and processes. */
export class Host {
  private readonly processes = new Set<LabProcess>();

  constructor(
    readonly lab: Lab,
    /** The host's short name in the topology, e.g. 'client'. */
    readonly name: string,
    /** The network namespace's name (lab prefix + host name). */
    readonly netns: string,
  ) {}

  /** Runs a command inside the host and returns its output; a non-zero exit throws a LabError. */
  exec(command: string[]): Promise<CommandResult> {
    return run('ip', ['netns', 'exec', this.netns, ...command]);
  }

  /** Runs `ip ARGS` inside the host. */
  ip(args: string[]): Promise<CommandResult> {
    return run('ip', ['-n', this.netns, ...args]);
  }

  /** Starts a long-running command inside the host; it is stopped at teardown if still running. */
  spawn(command: string[], options: { env?: NodeJS.ProcessEnv; stdin?: 'pipe' | 'ignore' } = {}): LabProcess {
    const child = new LabProcess(`${this.name}: ${command.join(' ')}`, 'ip', ['netns', 'exec', this.netns, ...command], options);
    this.processes.add(child);
    void child.exited.then(() => this.processes.delete(child));
    return child;
  }

  /** Starts a Node.js script inside the host with the same Node binary as this process. */
  spawnNode(script: string, args: string[] = [], options: { env?: NodeJS.ProcessEnv; stdin?: 'pipe' | 'ignore' } = {}): LabProcess {
    return this.spawn([process.execPath, script, ...args], options);
  }

  /** Sets a sysctl inside the host ('net.ipv4.ip_forward', 1). */
  async setSysctl(key: string, value: string | number): Promise<void> {
    if (!/^[a-z0-9_.\-]+$/i.test(key)) throw new LabError('EINVAL_SYSCTL', `sysctl name "${key}" is not valid`);
    await this.exec(['sysctl', '-q', '-w', `${key}=${value}`]);
  }

  /** Reads a sysctl inside the host. */
  async getSysctl(key: string): Promise<string> {
    return (await this.exec(['sysctl', '-n', key])).stdout.trim();
  }

  /** Adds an address (lab ranges only) to an interface of this host. */
  async addAddress(ifname: string, address: string): Promise<void> {
    const prefix = parseLabPrefix(address, `${this.name}.${ifname}.addresses`);
    const args = ['address', 'add', `${prefix.address}/${prefix.length}`, 'dev', ifname];
    if (prefix.family === 6) args.push('nodad');
    await this.ip(args);
  }

  /**
   * Adds a route. `destination` is a lab prefix or 'default'; `via` a lab
   * address; `dev` an interface of this host. A default route here stays
   * inside the lab: the namespace has no link to the host's interfaces.
   */
  async addRoute(destination: string, options: { via?: string; dev?: string; src?: string; table?: number }): Promise<void> {
    const args = ['route', 'add'];
    if (destination === 'default' || destination === 'default6') {
      if (destination === 'default6') args.unshift('-6');
      args.push('default');
    } else {
      const prefix = parseLabPrefix(destination, `${this.name}.routes`);
      args.push(`${prefix.address}/${prefix.length}`);
    }
    if (options.via) args.push('via', parseLabPrefix(options.via, `${this.name}.routes.via`).address);
    if (options.dev) args.push('dev', options.dev);
    if (options.src) args.push('src', parseLabPrefix(options.src, `${this.name}.routes.src`).address);
    if (options.table !== undefined) args.push('table', String(options.table));
    await this.ip(args);
  }

  /** Interface details (MAC, MTU, addresses) as the kernel reports them. */
  async interface(ifname: string): Promise<InterfaceInfo> {
    const { stdout } = await this.ip(['-j', 'address', 'show', 'dev', ifname]);
    const [info] = JSON.parse(stdout) as Array<{
      ifname: string;
      address: string;
      mtu: number;
      addr_info: Array<{ local: string; prefixlen: number }>;
    }>;
    if (!info) throw new LabError('ENO_INTERFACE', `${this.name} has no interface ${ifname}`);
    return {
      name: info.ifname,
      mac: info.address,
      mtu: info.mtu,
      addresses: info.addr_info.map((a) => `${a.local}/${a.prefixlen}`),
    };
  }

  /** Stops every process started in this host. */
  async stopProcesses(): Promise<void> {
    await Promise.all([...this.processes].map((p) => p.stop()));
  }
}

/**
 * A topology of hosts. Create with `Lab.create()`, add hosts and links, and
 * `destroy()` it (also done automatically on exit, SIGINT, SIGTERM and SIGHUP).
 */
export class Lab {
  private readonly hosts = new Map<string, Host>();
  private readonly namespaces: string[] = [];
  private destroyed = false;
  private linkCount = 0;

  private constructor(
    /** Unique per run: 'l4lb-<pid>-<random>-'; every namespace name starts with it. */
    readonly prefix: string,
  ) {}

  /** Checks privileges and tools, then returns an empty lab with a fresh name prefix. */
  static async create(): Promise<Lab> {
    await assertLabAvailable();
    installExitHooks();
    const lab = new Lab(`${labNamespacePrefix}${process.pid}-${randomBytes(3).toString('hex')}-`);
    liveLabs.add(lab);
    return lab;
  }

  /**
   * Removes leftovers of runs that crashed: every lab namespace whose creating
   * process is gone (or, with `all`, every lab namespace), with its processes.
   * Returns the namespaces removed.
   */
  static async cleanup(options: { all?: boolean } = {}): Promise<string[]> {
    await assertLabAvailable();
    const { stdout } = await run('ip', ['-j', 'netns', 'list']);
    const names = (stdout.trim() ? (JSON.parse(stdout) as Array<{ name: string }>) : []).map((n) => n.name);
    const removed: string[] = [];
    for (const name of names) {
      const match = /^l4lb-(\d+)-[0-9a-f]+-/.exec(name);
      if (!match) continue;
      const owner = Number(match[1]);
      if (!options.all && owner !== process.pid && processAlive(owner)) continue;
      if (!options.all && owner === process.pid && [...liveLabs].some((lab) => name.startsWith(lab.prefix))) continue;
      removeNamespaceSync(name);
      removed.push(name);
    }
    return removed;
  }

  host(name: string): Host {
    const host = this.hosts.get(name);
    if (!host) throw new LabError('ENO_HOST', `the lab has no host "${name}"`);
    return host;
  }

  /** Adds a host (a namespace with `lo` up). */
  async addHost(name: string, options: HostOptions = {}): Promise<Host> {
    this.assertLive();
    if (!/^[a-z][a-z0-9-]{0,30}$/.test(name)) {
      throw new LabError('EINVAL_NAME', `host name "${name}" must be lower-case letters, digits and '-', starting with a letter`);
    }
    if (this.hosts.has(name)) throw new LabError('EEXIST', `the lab already has a host "${name}"`);
    const netns = this.prefix + name;
    await run('ip', ['netns', 'add', netns]);
    this.namespaces.push(netns);
    const host = new Host(this, name, netns);
    this.hosts.set(name, host);
    await host.ip(['link', 'set', 'dev', 'lo', 'up']);
    // Lab addresses are unique by construction: skip IPv6 duplicate address detection delays.
    await host.setSysctl('net.ipv6.conf.all.accept_dad', 0);
    await host.setSysctl('net.ipv6.conf.default.accept_dad', 0);
    for (const [key, value] of Object.entries(options.sysctls ?? {})) await host.setSysctl(key, value);
    return host;
  }

  /** Adds a host that routes between its links (IPv4 and IPv6 forwarding on). */
  addRouter(name: string, options: HostOptions = {}): Promise<Host> {
    return this.addHost(name, {
      ...options,
      sysctls: { 'net.ipv4.ip_forward': 1, 'net.ipv6.conf.all.forwarding': 1, ...options.sysctls },
    });
  }

  /** Connects two hosts with a veth pair, sets the MTU and addresses, and brings both ends up. */
  async connect(a: LinkEnd, b: LinkEnd, options: LinkOptions = {}): Promise<{ a: InterfaceInfo; b: InterfaceInfo }> {
    this.assertLive();
    const aName = a.name ?? b.host.name;
    const bName = b.name ?? a.host.name;
    for (const n of [aName, bName]) {
      if (n.length > 15) throw new LabError('EINVAL_NAME', `interface name "${n}" is longer than 15 characters`);
    }
    // Validate every address before changing anything.
    for (const [end, ifname] of [[a, aName], [b, bName]] as const) {
      for (const address of end.addresses ?? []) parseLabPrefix(address, `${end.host.name}.${ifname}.addresses`);
    }
    const queues = Math.max(a.queues ?? 1, b.queues ?? 1);
    if (!Number.isInteger(queues) || queues < 1 || queues > 64) throw new LabError('EINVAL_QUEUES', `queues must be an integer from 1 to 64, not ${queues}`);
    const queueArgs = queues > 1 ? ['numtxqueues', String(queues), 'numrxqueues', String(queues)] : [];
    await run('ip', [
      'link', 'add', 'name', aName, 'netns', a.host.netns, ...queueArgs, 'type', 'veth', 'peer', 'name', bName, 'netns', b.host.netns, ...queueArgs,
    ]);
    this.linkCount += 1;
    for (const [end, ifname] of [[a, aName], [b, bName]] as const) {
      if (options.mtu !== undefined) await end.host.ip(['link', 'set', 'dev', ifname, 'mtu', String(options.mtu)]);
      if (options.gsoMaxSize !== undefined) await end.host.ip(['link', 'set', 'dev', ifname, 'gso_max_size', String(options.gsoMaxSize)]);
      for (const address of end.addresses ?? []) await end.host.addAddress(ifname, address);
      await end.host.ip(['link', 'set', 'dev', ifname, 'up']);
    }
    return { a: await a.host.interface(aName), b: await b.host.interface(bName) };
  }

  /**
   * Puts several hosts on one L2 segment: a bridge in a namespace of its own
   * (named after the segment), with a veth from each member to it.
   */
  async segment(name: string, members: SegmentMember[], options: LinkOptions = {}): Promise<Map<Host, InterfaceInfo>> {
    const bridgeHost = await this.addHost(`sw-${name}`);
    await bridgeHost.ip(['link', 'add', 'name', 'br0', 'type', 'bridge']);
    // No spanning tree and no forwarding delay: ports forward as soon as they are up.
    await bridgeHost.ip(['link', 'set', 'dev', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
    if (options.mtu !== undefined) await bridgeHost.ip(['link', 'set', 'dev', 'br0', 'mtu', String(options.mtu)]);
    await bridgeHost.ip(['link', 'set', 'dev', 'br0', 'up']);
    const result = new Map<Host, InterfaceInfo>();
    let index = 0;
    for (const member of members) {
      const port = `p${index++}`;
      const ends = await this.connect(
        { host: member.host, name: member.name ?? name, addresses: member.addresses ?? [], ...(member.queues ? { queues: member.queues } : {}) },
        { host: bridgeHost, name: port },
        options,
      );
      await bridgeHost.ip(['link', 'set', 'dev', port, 'master', 'br0']);
      result.set(member.host, ends.a);
    }
    return result;
  }

  /** Stops every process, then removes every namespace (and with them every interface). Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    await Promise.all([...this.hosts.values()].map((h) => h.stopProcesses()));
    this.destroySync();
  }

  /** Synchronous teardown, for exit and signal handlers. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    liveLabs.delete(this);
    for (const netns of [...this.namespaces].reverse()) removeNamespaceSync(netns);
  }

  private assertLive(): void {
    if (this.destroyed) throw new LabError('EDESTROYED', 'this lab has been destroyed');
  }
}


// A namespace stays alive while a process is inside it, so kill those first.
function removeNamespaceSync(netns: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', netns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .map((s) => Number(s.trim()))
      .filter((pid) => Number.isInteger(pid) && pid > 0 && pid !== process.pid);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  } catch {
    // namespace already gone
  }
  try {
    execFileSync('ip', ['netns', 'del', netns], { stdio: 'ignore' });
  } catch {
    // already removed
  }
}
