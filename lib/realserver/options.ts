// Options of the real-server functions, and their validation. Every check
// runs before anything is read or changed; a failure is a ValidationError
// naming the field (`path`) and the rule, with the same message the CLI
// prints.
import { isIPv4, isIPv6 } from 'node:net';

import { ValidationError } from '../errors.js';
import type { CommandRunner } from './commands.js';
import { ipv4ToNumber } from '../config/addresses.js';

export type RealServerMethod = 'dr' | 'ipip' | 'gre';
export const realServerMethods: readonly RealServerMethod[] = ['dr', 'ipip', 'gre'];

/**
 * Who strips the tunnel header: the kernel's ipip/gre device, or l4lb's
 * userspace decapsulator (for kernels without those modules). 'auto' probes
 * the kernel and prefers it.
 */
export type DecapsulationMode = 'auto' | 'kernel' | 'userspace';

export interface ReturnThroughTunnelOptions {
  /** The balancer's address: replies from the VIP go there inside GRE. */
  balancer: string;
  /** GRE key of the returned packets (default: `greKey`, if any). */
  greKey?: number;
  /** Routing table for packets from the VIP (default: derived from the VIP, see docs/realserver.md). */
  table?: number;
}

export interface RealServerOptions {
  /** The service address, IPv4 ('198.18.0.100'). */
  vip: string;
  method: RealServerMethod;
  /**
   * The interface facing the balancer and clients; it gets the ARP settings
   * too (default: the interface of the default route, if there is one).
   */
  interface?: string;
  /** Work inside this network namespace (`ip netns` name) instead of the calling process's. */
  netns?: string;
  /** gre: accept only packets carrying this key (default: any key, or none). */
  greKey?: number;
  /** ipip/gre: send replies from the VIP back to the balancer inside GRE. */
  returnThroughTunnel?: ReturnThroughTunnelOptions;
  /** ipip/gre: default 'auto'. */
  decapsulation?: DecapsulationMode;
  /** ipip/gre: the address the balancer tunnels to; tunnel packets to other local addresses are counted and dropped. */
  localAddress?: string;
  /** Where the record of what `up` changed lives (default $L4LB_REALSERVER_STATE_DIR or /run/l4lb/realserver). */
  stateDir?: string;
  /** Compute and return the commands without running them. */
  dryRun?: boolean;
  /** Runs the commands (default: the system's `ip` and `sysctl`); tests record or fake them. */
  runner?: CommandRunner;
}

export type UpOptions = RealServerOptions;

export interface DownOptions {
  vip: string;
  netns?: string;
  stateDir?: string;
  dryRun?: boolean;
  /**
   * Recover from a stale record: steps that fail are reported instead of
   * stopping `down`, a decapsulator that ignores SIGTERM is killed, and every
   * record of the VIP whose namespace is gone (or that an older l4lb wrote)
   * is removed.
   */
  force?: boolean;
  runner?: CommandRunner;
}

export interface CheckOptions {
  vip: string;
  method: RealServerMethod;
  /** A UDP port of the service: sockets bound to the wildcard address on it are reported. */
  port?: number;
  interface?: string;
  netns?: string;
  /** ipip/gre: the replies are expected back through the tunnel (policy rule present). */
  returnThroughTunnel?: ReturnThroughTunnelOptions;
  /** Where `up` keeps its records (as for `up`): a stale record of this VIP is reported. */
  stateDir?: string;
  runner?: CommandRunner;
}

const upKeys = new Set([
  'vip', 'method', 'interface', 'netns', 'greKey', 'returnThroughTunnel', 'decapsulation', 'localAddress',
  'stateDir', 'dryRun', 'runner',
]);
const downKeys = new Set(['vip', 'netns', 'stateDir', 'dryRun', 'force', 'runner']);
const checkKeys = new Set(['vip', 'method', 'port', 'interface', 'netns', 'returnThroughTunnel', 'stateDir', 'runner']);
const returnKeys = new Set(['balancer', 'greKey', 'table']);

// Tables 253-255 are the kernel's default, main and local tables; 0 means "unspecified".
const reservedTables = new Set([0, 253, 254, 255]);

function fail(code: string, path: string, message: string): never {
  throw new ValidationError(code, `${path}: ${message}`, { path });
}

function checkKnownKeys(value: object, known: Set<string>, base: string): void {
  for (const key of Object.keys(value)) {
    if (!known.has(key) && (value as Record<string, unknown>)[key] !== undefined) {
      const path = base ? `${base}.${key}` : key;
      fail('EUNKNOWN_OPTION', path, `unknown option (expected one of ${[...known].join(', ')})`);
    }
  }
}


/** An IPv4 address that can be a host's unicast address. */
export function validateIpv4(value: unknown, path: string, what = 'an IPv4 address'): string {
  if (typeof value !== 'string') fail('EINVAL_ADDRESS', path, `must be ${what} (a string like "198.18.0.100")`);
  if (isIPv6(value)) fail('EINVAL_ADDRESS', path, `"${value}" is an IPv6 address; real-server setup supports IPv4 only`);
  if (!isIPv4(value)) fail('EINVAL_ADDRESS', path, `"${value}" is not an IPv4 address`);
  const n = ipv4ToNumber(value);
  const first = n >>> 24;
  if (n === 0) fail('EINVAL_ADDRESS', path, `"${value}" is the unspecified address`);
  if (first === 127) fail('EINVAL_ADDRESS', path, `"${value}" is a loopback address`);
  if (first >= 224 && first <= 239) fail('EINVAL_ADDRESS', path, `"${value}" is a multicast address`);
  if (first >= 240) fail('EINVAL_ADDRESS', path, `"${value}" is a reserved or broadcast address`);
  return value;
}

function validateMethod(value: unknown): RealServerMethod {
  if (!realServerMethods.includes(value as RealServerMethod)) {
    fail('EINVAL_METHOD', 'method', `${JSON.stringify(value)} is not one of ${realServerMethods.join(', ')}`);
  }
  return value as RealServerMethod;
}

function validateInterface(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  // The kernel's rule (dev_valid_name): 1-15 bytes, no '/', ':' or whitespace, not '.' or '..'.
  if (typeof value !== 'string' || !/^[^\s/:]{1,15}$/.test(value) || value === '.' || value === '..') {
    fail('EINVAL_INTERFACE', 'interface', `${JSON.stringify(value)} is not an interface name (1-15 characters, no "/", ":" or spaces)`);
  }
  return value;
}

function validateNetns(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^[A-Za-z0-9_.-]{1,200}$/.test(value) || value === '.' || value === '..') {
    fail('EINVAL_NETNS', 'netns', `${JSON.stringify(value)} is not a network namespace name (letters, digits, "_", "-", ".")`);
  }
  return value;
}

function validateGreKey(value: unknown, path: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    fail('EINVAL_GRE_KEY', path, `${JSON.stringify(value)} is not a GRE key (an integer 0..4294967295)`);
  }
  return value;
}

function validateStateDir(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '') fail('EINVAL_STATE_DIR', 'stateDir', 'must be a directory path');
  return value;
}

function validateReturn(value: unknown, method: RealServerMethod): ReturnThroughTunnelOptions | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null) {
    fail('EINVAL_RETURN', 'returnThroughTunnel', 'must be an object like { balancer: "198.18.0.1" }');
  }
  if (method === 'dr') {
    fail('EINVAL_RETURN', 'returnThroughTunnel', 'needs a tunnel method (ipip or gre); in dr replies go straight to the client');
  }
  checkKnownKeys(value, returnKeys, 'returnThroughTunnel');
  const r = value as ReturnThroughTunnelOptions;
  const balancer = validateIpv4(r.balancer, 'returnThroughTunnel.balancer', "the balancer's IPv4 address");
  const greKey = validateGreKey(r.greKey, 'returnThroughTunnel.greKey');
  if (r.table !== undefined) {
    if (typeof r.table !== 'number' || !Number.isInteger(r.table) || r.table < 1 || r.table > 0xffffffff || reservedTables.has(r.table)) {
      fail('EINVAL_TABLE', 'returnThroughTunnel.table', `${JSON.stringify(r.table)} is not a free routing table (1..4294967295, not 253, 254 or 255)`);
    }
  }
  return { balancer, ...(greKey !== undefined ? { greKey } : {}), ...(r.table !== undefined ? { table: r.table } : {}) };
}

function validateDryRun(value: unknown): boolean {
  if (value !== undefined && typeof value !== 'boolean') fail('EINVAL_DRY_RUN', 'dryRun', 'must be true or false');
  return value === true;
}

function validateFlag(value: unknown, path: string): boolean {
  if (value !== undefined && typeof value !== 'boolean') fail('EINVAL_TYPE', path, 'must be true or false');
  return value === true;
}

function requireObject(options: unknown, what: string): asserts options is Record<string, unknown> {
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError('EINVAL_OPTIONS', `${what}: options must be an object`);
  }
}

export interface NormalizedUpOptions {
  vip: string;
  method: RealServerMethod;
  interface?: string;
  netns?: string;
  greKey?: number;
  returnThroughTunnel?: ReturnThroughTunnelOptions;
  decapsulation: DecapsulationMode;
  localAddress?: string;
  stateDir?: string;
  dryRun: boolean;
}

export function validateUpOptions(options: unknown): NormalizedUpOptions {
  requireObject(options, 'up');
  checkKnownKeys(options, upKeys, '');
  const vip = validateIpv4(options.vip, 'vip');
  const method = validateMethod(options.method);
  const iface = validateInterface(options.interface);
  const netns = validateNetns(options.netns);
  const greKey = validateGreKey(options.greKey, 'greKey');
  if (greKey !== undefined && method !== 'gre') fail('EINVAL_GRE_KEY', 'greKey', `applies to method gre, not ${method}`);
  const returnThroughTunnel = validateReturn(options.returnThroughTunnel, method);
  const decapsulation = options.decapsulation ?? 'auto';
  if (!['auto', 'kernel', 'userspace'].includes(decapsulation as string)) {
    fail('EINVAL_DECAPSULATION', 'decapsulation', `${JSON.stringify(decapsulation)} is not one of auto, kernel, userspace`);
  }
  if (method === 'dr' && options.decapsulation !== undefined) {
    fail('EINVAL_DECAPSULATION', 'decapsulation', 'applies to ipip and gre; dr needs no decapsulation');
  }
  let localAddress: string | undefined;
  if (options.localAddress !== undefined) {
    if (method === 'dr') fail('EINVAL_ADDRESS', 'localAddress', 'applies to ipip and gre, not dr');
    localAddress = validateIpv4(options.localAddress, 'localAddress');
  }
  return {
    vip,
    method,
    ...(iface !== undefined ? { interface: iface } : {}),
    ...(netns !== undefined ? { netns } : {}),
    ...(greKey !== undefined ? { greKey } : {}),
    ...(returnThroughTunnel ? { returnThroughTunnel } : {}),
    decapsulation: decapsulation as DecapsulationMode,
    ...(localAddress !== undefined ? { localAddress } : {}),
    ...(validateStateDir(options.stateDir) !== undefined ? { stateDir: options.stateDir as string } : {}),
    dryRun: validateDryRun(options.dryRun),
  };
}

export interface NormalizedDownOptions {
  vip: string;
  netns?: string;
  stateDir?: string;
  dryRun: boolean;
  force: boolean;
}

export function validateDownOptions(options: unknown): NormalizedDownOptions {
  requireObject(options, 'down');
  checkKnownKeys(options, downKeys, '');
  const vip = validateIpv4(options.vip, 'vip');
  const netns = validateNetns(options.netns);
  return {
    vip,
    ...(netns !== undefined ? { netns } : {}),
    ...(validateStateDir(options.stateDir) !== undefined ? { stateDir: options.stateDir as string } : {}),
    dryRun: validateDryRun(options.dryRun),
    force: validateFlag(options.force, 'force'),
  };
}

export interface NormalizedCheckOptions {
  vip: string;
  method: RealServerMethod;
  port?: number;
  interface?: string;
  netns?: string;
  returnThroughTunnel?: ReturnThroughTunnelOptions;
  stateDir?: string;
}

export function validateCheckOptions(options: unknown): NormalizedCheckOptions {
  requireObject(options, 'check');
  checkKnownKeys(options, checkKeys, '');
  const vip = validateIpv4(options.vip, 'vip');
  const method = validateMethod(options.method);
  if (options.port !== undefined) {
    const port = options.port;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
      fail('EINVAL_PORT', 'port', `${JSON.stringify(port)} is not a port (1..65535)`);
    }
  }
  const iface = validateInterface(options.interface);
  const netns = validateNetns(options.netns);
  const returnThroughTunnel = validateReturn(options.returnThroughTunnel, method);
  return {
    vip,
    method,
    ...(options.port !== undefined ? { port: options.port as number } : {}),
    ...(iface !== undefined ? { interface: iface } : {}),
    ...(netns !== undefined ? { netns } : {}),
    ...(returnThroughTunnel ? { returnThroughTunnel } : {}),
    ...(validateStateDir(options.stateDir) !== undefined ? { stateDir: options.stateDir as string } : {}),
  };
}
