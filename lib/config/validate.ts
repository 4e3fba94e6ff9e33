// Validation and defaults for every option the public API takes. Each
// function checks all of its input before returning a normalized copy, and
// throws a ValidationError naming the field (`path`) and the rule broken; it
// never changes anything. `base` prefixes the paths, so that a configuration
// file reports 'services[2].backends[0].weight' and addBackend reports 'weight'.
import { isIPv4, isIPv6 } from 'node:net';

import { ValidationError } from '../errors.js';
import { isMac } from './addresses.js';
import type {
  BackendOptions,
  BuiltinScheduler,
  DriverName,
  HealthCheckFunction,
  LoadBalancerOptions,
  Method,
  Polling,
  Protocol,
  SchedulerHook,
  ServiceOptions,
} from './types.js';

// ---- normalized shapes -------------------------------------------------------------

export interface NormalizedFlows {
  /** The table's size, as given: IPv4 nat flows at the design load, or bytes (exactly one is set). */
  capacity?: number;
  memoryBytes?: number;
  tcpEstablishedTimeoutMs: number;
  udpTimeoutMs: number;
  tcpSynTimeoutMs: number;
  tcpClosingTimeoutMs: number;
  tcpClosedTimeoutMs: number;
}

export interface NormalizedMemoryInterface {
  name: string;
  mac: string;
  /** IPv4 address + prefix length, primary first. */
  addresses: Array<{ address: string; prefixLength: number }>;
  mtu: number;
  answerArp: boolean;
}

export interface NormalizedMemory {
  interfaces: NormalizedMemoryInterface[];
  neighbours: Array<{ address: string; mac: string; interface: string }>;
  routes: Array<{ prefix: string; prefixLength: number; via: string | undefined; interface: string }>;
  ringFrames: number;
}

export interface NormalizedAfPacket {
  txMethod?: 'sendmmsg' | 'ring';
  ringFrames?: number;
  cpus?: number[];
}

export interface NormalizedAfXdp {
  mode?: 'auto' | 'native' | 'generic';
  ringSize?: number;
  cpus?: number[];
}

export interface NormalizedDpdk {
  vdev?: 'af_xdp' | 'af_packet';
  eal?: string[];
  hugepages?: boolean;
  ringSize?: number;
  cpus?: number[];
}

export interface NormalizedOptions {
  interfaces: string[];
  driver: DriverName;
  workers: number;
  polling: Polling;
  spinMs: number;
  flows: NormalizedFlows;
  localAddresses: string[];
  fullnatPorts: { min: number; max: number };
  /** Whether fullnatPorts came from the user (else a driver may choose a safer default). */
  fullnatPortsGiven: boolean;
  afPacket: NormalizedAfPacket | undefined;
  afXdp: NormalizedAfXdp | undefined;
  dpdk: NormalizedDpdk | undefined;
  maxBackends: number;
  hashKey: Uint8Array | undefined;
  checksums: 'forward' | 'drop';
  answerEcho: boolean;
  /** Records per worker flow-event ring; 0: no flow events. */
  flowEventRecords: number;
  memory: NormalizedMemory | undefined;
  bgp: NormalizedBgp | undefined;
}

export interface NormalizedBgp {
  localAs: number;
  routerId: string | undefined;
  neighbours: Array<{ address: string; as: number; password: string | undefined }>;
  nextHop: string | undefined;
  /** [asn, value] pairs. */
  communities: Array<[number, number]>;
  med: { up: number; draining: number };
  holdTimeS: number;
  birdPath: string;
  birdcPath: string;
  runDirectory: string | undefined;
}

export type HealthCheckKind = 'tcp' | 'http' | 'udp' | 'none' | 'function';

export interface NormalizedHealthCheck {
  type: HealthCheckKind;
  fn: HealthCheckFunction | undefined;
  intervalMs: number;
  timeoutMs: number;
  rise: number;
  fall: number;
  jitter: number;
  port: number | undefined;
  path: string;
  /** undefined: any 2xx or 3xx. */
  expectStatus: number[] | undefined;
  expectBody: RegExp | undefined;
  host: string | undefined;
  payload: Uint8Array;
  expectReply: RegExp | undefined;
}

export interface NormalizedService {
  address: string;
  port: number;
  protocol: Protocol;
  method: Method;
  scheduler: BuiltinScheduler | SchedulerHook;
  persistenceTimeoutMs: number | undefined;
  healthCheck: NormalizedHealthCheck;
  slowStartMs: number;
  onBackendRemoved: 'reset' | 'drop';
  allBackendsDown: 'drop-new' | 'fail-open';
  greKey: number | undefined;
  ipOptions: 'forward' | 'drop';
}

export interface NormalizedBackend {
  address: string;
  port: number;
  weight: number;
}

// ---- limits and defaults -----------------------------------------------------------

export const limits = {
  workers: 64,
  interfaces: 64,
  maxBackends: 65536,
  flowCapacity: 1 << 26,
  /** The side arrays alone take 64 KiB; 128 KiB leaves about 900 flows. 64 GiB is 2^31 slots. */
  flowMemoryBytesMin: 1 << 17,
  flowMemoryBytesMax: 2 ** 36,
  weight: 65535,
  /** Native timeouts are 32-bit milliseconds. */
  timeoutMs: 0xffffffff,
  hookTableLength: 1 << 20,
  mtuMin: 576,
  mtuMax: 9000,
  ringFramesMin: 16,
  ringFramesMax: 65536,
  afPacketRingFramesMin: 64,
  afXdpRingSizeMin: 64,
  afXdpRingSizeMax: 16384,
  spinMsMax: 10,
  udpPayload: 65507,
  healthRiseFall: 100,
} as const;

export const defaults = {
  driver: 'af_packet' as DriverName,
  workers: 1,
  polling: 'adaptive' as Polling,
  spinMs: 0.05,
  flows: {
    capacity: 262_144,
    tcpEstablishedTimeoutMs: 900_000,
    udpTimeoutMs: 300_000,
    tcpSynTimeoutMs: 60_000,
    tcpClosingTimeoutMs: 120_000,
    tcpClosedTimeoutMs: 10_000,
  },
  fullnatPorts: { min: 1024, max: 65535 },
  maxBackends: 4096,
  mtu: 1500,
  ringFrames: 256,
  flowEventRecords: 4096,
  protocol: 'tcp' as Protocol,
  method: 'nat' as Method,
  scheduler: 'wrr' as BuiltinScheduler,
  healthCheck: { intervalMs: 1000, timeoutMs: 500, rise: 2, fall: 3, jitter: 0.1 },
  weight: 1,
} as const;

/** Every driver's name, in the order docs and messages list them. */
export const drivers: readonly DriverName[] = ['af_packet', 'af_xdp', 'dpdk', 'memory'];
const pollings: readonly Polling[] = ['adaptive', 'busy'];
const protocols: readonly Protocol[] = ['tcp', 'udp'];
const methods: readonly Method[] = ['nat', 'fullnat', 'dr', 'ipip', 'gre'];
const schedulers: readonly BuiltinScheduler[] = ['rr', 'wrr', 'lc', 'wlc', 'sh', 'maglev'];

// ---- primitives --------------------------------------------------------------------

/** How a value is shown in a message: strings quoted, everything else by kind. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'function') return 'a function';
  return 'an object';
}

export function join(base: string, name: string | number): string {
  if (typeof name === 'number') return `${base}[${name}]`;
  return base === '' ? name : `${base}.${name}`;
}

function fail(code: string, path: string, rule: string, value?: unknown, showValue = true): never {
  const got = showValue ? `, got ${describe(value)}` : '';
  throw new ValidationError(code, `${path || 'options'} ${rule}${got}`, { path });
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof RegExp);
}

function object(value: unknown, path: string): Record<string, unknown> {
  if (!isPlainObject(value)) fail('EINVAL_TYPE', path, 'must be an object', value);
  return value;
}

function knownKeys(value: Record<string, unknown>, allowed: readonly string[], path: string, what: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      fail('EINVAL_UNKNOWN_FIELD', join(path, key), `is not an option of ${what} (known: ${allowed.join(', ')})`, undefined, false);
    }
  }
}

function integer(value: unknown, path: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) fail('EINVAL_TYPE', path, `must be an integer from ${min} to ${max}`, value);
  if (!Number.isInteger(value) || value < min || value > max) {
    fail('EINVAL_RANGE', path, `must be an integer from ${min} to ${max}`, value);
  }
  return value;
}

function optionalInteger(value: unknown, path: string, min: number, max: number, fallback: number): number {
  return value === undefined ? fallback : integer(value, path, min, max);
}

function fraction(value: unknown, path: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) {
    fail(typeof value === 'number' ? 'EINVAL_RANGE' : 'EINVAL_TYPE', path, 'must be a number from 0 to 1', value);
  }
  return value;
}

function oneOf<T extends string>(value: unknown, path: string, options: readonly T[], fallback?: T): T {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'string' || !options.includes(value as T)) {
    fail('EINVAL_ENUM', path, `must be one of ${options.map((o) => `'${o}'`).join(', ')}`, value);
  }
  return value as T;
}

function boolean(value: unknown, path: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') fail('EINVAL_TYPE', path, 'must be true or false', value);
  return value;
}

function string(value: unknown, path: string): string {
  if (typeof value !== 'string' || value === '') fail('EINVAL_TYPE', path, 'must be a non-empty string', value);
  return value;
}

function ipv4(value: unknown, path: string): string {
  if (typeof value === 'string' && isIPv6(value)) {
    fail('EUNSUPPORTED', path, 'is an IPv6 address; this version balances IPv4 only', value);
  }
  if (typeof value !== 'string' || !isIPv4(value)) fail('EINVAL_ADDRESS', path, 'must be an IPv4 address', value);
  return value;
}

function mac(value: unknown, path: string): string {
  if (typeof value !== 'string' || !isMac(value)) fail('EINVAL_MAC', path, "must be a MAC address like '02:00:00:00:00:01'", value);
  return value.toLowerCase();
}

/** 'a.b.c.d/n' -> the address (host bits kept) and n. */
function prefix(value: unknown, path: string): { address: string; prefixLength: number } {
  const match = typeof value === 'string' ? /^([^/]+)\/(\d{1,2})$/.exec(value) : null;
  if (!match || !isIPv4(match[1]!) || Number(match[2]) > 32) {
    fail('EINVAL_PREFIX', path, "must be an IPv4 address with a prefix length, like '198.18.0.1/24'", value);
  }
  return { address: match[1]!, prefixLength: Number(match[2]) };
}

function array(value: unknown, path: string): unknown[] {
  if (!Array.isArray(value)) fail('EINVAL_TYPE', path, 'must be an array', value);
  return value;
}

function regExp(value: unknown, path: string): RegExp | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof RegExp)) fail('EINVAL_TYPE', path, 'must be a RegExp', value);
  return value;
}

// ---- LoadBalancer.create ----------------------------------------------------------

const optionKeys = [
  'interfaces',
  'driver',
  'workers',
  'polling',
  'spinMs',
  'flows',
  'localAddresses',
  'fullnatPorts',
  'maxBackends',
  'hashKey',
  'checksums',
  'answerEcho',
  'flowEvents',
  'memory',
  'afPacket',
  'afXdp',
  'dpdk',
  'bgp',
] as const;

/** Validates LoadBalancer.create's options and fills in the defaults. */
export function validateLoadBalancerOptions(input: LoadBalancerOptions | unknown, base = ''): NormalizedOptions {
  const o = object(input, base);
  knownKeys(o, optionKeys, base, 'a load balancer');

  const interfacesPath = join(base, 'interfaces');
  const interfaceList = array(o.interfaces, interfacesPath);
  if (interfaceList.length === 0 || interfaceList.length > limits.interfaces) {
    fail('EINVAL_RANGE', interfacesPath, `must name 1 to ${limits.interfaces} interfaces`, interfaceList.length);
  }
  const interfaces = interfaceList.map((name, i) => string(name, join(interfacesPath, i)));
  interfaces.forEach((name, i) => {
    if (interfaces.indexOf(name) !== i) fail('EDUPLICATE', join(interfacesPath, i), 'names an interface a second time', name);
  });

  const driver = oneOf(o.driver, join(base, 'driver'), drivers, defaults.driver);
  const workers = optionalInteger(o.workers, join(base, 'workers'), 1, limits.workers, defaults.workers);
  const polling = oneOf(o.polling, join(base, 'polling'), pollings, defaults.polling);
  const spinPath = join(base, 'spinMs');
  let spinMs: number = defaults.spinMs;
  if (o.spinMs !== undefined) {
    if (typeof o.spinMs !== 'number' || !Number.isFinite(o.spinMs) || o.spinMs < 0 || o.spinMs > limits.spinMsMax) {
      fail('EINVAL_RANGE', spinPath, `must be a number of milliseconds from 0 to ${limits.spinMsMax}`, o.spinMs);
    }
    spinMs = o.spinMs;
  }

  const flowsPath = join(base, 'flows');
  const f = o.flows === undefined ? {} : object(o.flows, flowsPath);
  knownKeys(f, Object.keys(defaults.flows).flatMap((k) => (k === 'capacity' ? [k, 'memoryBytes'] : [k])), flowsPath, 'flows');
  const timeout = (name: Exclude<keyof NormalizedFlows, 'capacity' | 'memoryBytes'>) =>
    optionalInteger(f[name], join(flowsPath, name), 1, limits.timeoutMs, defaults.flows[name]);
  if (f.capacity !== undefined && f.memoryBytes !== undefined) {
    fail('EINVAL_CONFLICT', join(flowsPath, 'memoryBytes'), 'sizes the table as flows.capacity does: give one of them', undefined, false);
  }
  const size =
    f.memoryBytes !== undefined
      ? { memoryBytes: integer(f.memoryBytes, join(flowsPath, 'memoryBytes'), limits.flowMemoryBytesMin, limits.flowMemoryBytesMax) }
      : { capacity: optionalInteger(f.capacity, join(flowsPath, 'capacity'), 16, limits.flowCapacity, defaults.flows.capacity) };
  const flows: NormalizedFlows = {
    ...size,
    tcpEstablishedTimeoutMs: timeout('tcpEstablishedTimeoutMs'),
    udpTimeoutMs: timeout('udpTimeoutMs'),
    tcpSynTimeoutMs: timeout('tcpSynTimeoutMs'),
    tcpClosingTimeoutMs: timeout('tcpClosingTimeoutMs'),
    tcpClosedTimeoutMs: timeout('tcpClosedTimeoutMs'),
  };

  const localPath = join(base, 'localAddresses');
  const localAddresses = o.localAddresses === undefined ? [] : array(o.localAddresses, localPath).map((a, i) => ipv4(a, join(localPath, i)));
  localAddresses.forEach((address, i) => {
    if (localAddresses.indexOf(address) !== i) fail('EDUPLICATE', join(localPath, i), 'names an address a second time', address);
  });

  const portsPath = join(base, 'fullnatPorts');
  let fullnatPorts: { min: number; max: number } = { ...defaults.fullnatPorts };
  if (o.fullnatPorts !== undefined) {
    const p = object(o.fullnatPorts, portsPath);
    knownKeys(p, ['min', 'max'], portsPath, 'fullnatPorts');
    fullnatPorts = {
      min: integer(p.min, join(portsPath, 'min'), 1, 65535),
      max: integer(p.max, join(portsPath, 'max'), 1, 65535),
    };
    if (fullnatPorts.max < fullnatPorts.min) {
      fail('EINVAL_RANGE', join(portsPath, 'max'), `must not be below fullnatPorts.min (${fullnatPorts.min})`, fullnatPorts.max);
    }
  }

  const maxBackends = optionalInteger(o.maxBackends, join(base, 'maxBackends'), 1, limits.maxBackends, defaults.maxBackends);
  let hashKey: Uint8Array | undefined;
  if (o.hashKey !== undefined) {
    if (!(o.hashKey instanceof Uint8Array) || o.hashKey.length !== 16) {
      fail('EINVAL_TYPE', join(base, 'hashKey'), 'must be a Uint8Array of 16 bytes', o.hashKey);
    }
    hashKey = Uint8Array.from(o.hashKey);
  }
  const checksums = oneOf(o.checksums, join(base, 'checksums'), ['forward', 'drop'] as const, 'forward');
  const answerEcho = boolean(o.answerEcho, join(base, 'answerEcho'), true);
  let flowEventRecords = 0;
  if (o.flowEvents === true) flowEventRecords = defaults.flowEventRecords;
  else if (typeof o.flowEvents === 'object' && o.flowEvents !== null) {
    const f = object(o.flowEvents, join(base, 'flowEvents'));
    knownKeys(f, ['records'], join(base, 'flowEvents'), 'flowEvents');
    flowEventRecords = optionalInteger(f.records, join(base, 'flowEvents.records'), 16, 65536, defaults.flowEventRecords);
  } else if (o.flowEvents !== undefined && o.flowEvents !== false) {
    fail('EINVAL_TYPE', join(base, 'flowEvents'), 'must be a boolean or { records }', o.flowEvents);
  }

  const afPacketPath = join(base, 'afPacket');
  let afPacket: NormalizedAfPacket | undefined;
  if (o.afPacket !== undefined) {
    if (driver !== 'af_packet') fail('EINVAL_CONFLICT', afPacketPath, "applies only to driver 'af_packet'", undefined, false);
    afPacket = validateAfPacket(o.afPacket, afPacketPath, workers);
  }
  const afXdpPath = join(base, 'afXdp');
  let afXdp: NormalizedAfXdp | undefined;
  if (o.afXdp !== undefined) {
    if (driver !== 'af_xdp') fail('EINVAL_CONFLICT', afXdpPath, "applies only to driver 'af_xdp'", undefined, false);
    afXdp = validateAfXdp(o.afXdp, afXdpPath, workers);
  }

  const dpdkPath = join(base, 'dpdk');
  let dpdk: NormalizedDpdk | undefined;
  if (o.dpdk !== undefined) {
    if (driver !== 'dpdk') fail('EINVAL_CONFLICT', dpdkPath, "applies only to driver 'dpdk'", undefined, false);
    dpdk = validateDpdk(o.dpdk, dpdkPath, workers);
  }

  const memoryPath = join(base, 'memory');
  let memory: NormalizedMemory | undefined;
  if (driver === 'memory') {
    if (o.memory === undefined) fail('EINVAL_TYPE', memoryPath, "is required with driver 'memory'", undefined, false);
    memory = validateMemory(o.memory, memoryPath, interfaces);
  } else if (o.memory !== undefined) {
    fail('EINVAL_CONFLICT', memoryPath, "applies only to driver 'memory'", undefined, false);
  }

  return {
    interfaces,
    driver,
    workers,
    polling,
    spinMs,
    flows,
    localAddresses,
    fullnatPorts,
    fullnatPortsGiven: o.fullnatPorts !== undefined,
    maxBackends,
    hashKey,
    checksums,
    answerEcho,
    flowEventRecords,
    memory,
    afPacket,
    afXdp,
    dpdk,
    bgp: o.bgp === undefined ? undefined : validateBgp(o.bgp, join(base, 'bgp')),
  };
}

const asNumberMax = 0xffffffff;

function validateBgp(input: unknown, path: string): NormalizedBgp {
  const b = object(input, path);
  knownKeys(b, ['localAs', 'routerId', 'neighbours', 'nextHop', 'communities', 'med', 'holdTimeS', 'birdPath', 'birdcPath', 'runDirectory'], path, 'bgp');
  const text = (value: unknown, at: string, fallback: string) => {
    if (value === undefined) return fallback;
    if (typeof value !== 'string' || value === '' || /[\s"';{}]/.test(value)) fail('EINVAL_TYPE', at, 'must be a non-empty string without spaces, quotes, ; or braces', value);
    return value;
  };
  const neighboursPath = join(path, 'neighbours');
  const neighbours = array(b.neighbours, neighboursPath).map((n, i) => {
    const at = join(neighboursPath, i);
    const o = object(n, at);
    knownKeys(o, ['address', 'as', 'password'], at, 'a BGP neighbour');
    return { address: ipv4(o.address, join(at, 'address')), as: integer(o.as, join(at, 'as'), 1, asNumberMax), password: o.password === undefined ? undefined : text(o.password, join(at, 'password'), '') };
  });
  if (neighbours.length === 0) fail('EINVAL_RANGE', neighboursPath, 'must name at least one neighbour', undefined, false);
  neighbours.forEach((n, i) => {
    if (neighbours.findIndex((m) => m.address === n.address) !== i) fail('EDUPLICATE', join(join(neighboursPath, i), 'address'), 'names a neighbour a second time', n.address);
  });
  const communitiesPath = join(path, 'communities');
  const communities = (b.communities === undefined ? [] : array(b.communities, communitiesPath)).map((c, i): [number, number] => {
    const match = typeof c === 'string' ? /^(\d{1,5}):(\d{1,5})$/.exec(c) : null;
    if (!match || Number(match[1]) > 0xffff || Number(match[2]) > 0xffff) fail('EINVAL_TYPE', join(communitiesPath, i), "must be a standard community 'ASN:VALUE' (each 0-65535)", c);
    return [Number(match[1]), Number(match[2])];
  });
  const medPath = join(path, 'med');
  const med = b.med === undefined ? {} : object(b.med, medPath);
  knownKeys(med, ['up', 'draining'], medPath, 'bgp.med');
  const runDirectory = b.runDirectory === undefined ? undefined : text(b.runDirectory, join(path, 'runDirectory'), '');
  if (runDirectory !== undefined && !runDirectory.startsWith('/')) fail('EINVAL_TYPE', join(path, 'runDirectory'), 'must be an absolute path', runDirectory);
  return {
    localAs: integer(b.localAs, join(path, 'localAs'), 1, asNumberMax),
    routerId: b.routerId === undefined ? undefined : ipv4(b.routerId, join(path, 'routerId')),
    neighbours,
    nextHop: b.nextHop === undefined ? undefined : ipv4(b.nextHop, join(path, 'nextHop')),
    communities,
    med: { up: optionalInteger(med.up, join(medPath, 'up'), 0, asNumberMax, 0), draining: optionalInteger(med.draining, join(medPath, 'draining'), 0, asNumberMax, 100) },
    // BIRD accepts 3-65535 s (0 turns keepalives off, which a balancer must not do).
    holdTimeS: optionalInteger(b.holdTimeS, join(path, 'holdTimeS'), 3, 65535, 9),
    birdPath: text(b.birdPath, join(path, 'birdPath'), 'bird'),
    birdcPath: text(b.birdcPath, join(path, 'birdcPath'), 'birdc'),
    runDirectory,
  };
}

function validateDpdk(input: unknown, path: string, workers: number): NormalizedDpdk {
  const d = object(input, path);
  knownKeys(d, ['vdev', 'eal', 'hugepages', 'ringSize', 'cpus'], path, 'dpdk');
  const out: NormalizedDpdk = {};
  if (d.vdev !== undefined) out.vdev = oneOf(d.vdev, join(path, 'vdev'), ['af_xdp', 'af_packet'] as const, 'af_xdp');
  if (d.eal !== undefined) {
    out.eal = array(d.eal, join(path, 'eal')).map((arg, i) => {
      if (typeof arg !== 'string' || arg.length === 0) fail('EINVAL_TYPE', join(join(path, 'eal'), i), 'must be a non-empty string', arg);
      return arg as string;
    });
  }
  if (d.hugepages !== undefined) out.hugepages = boolean(d.hugepages, join(path, 'hugepages'), false);
  if (d.ringSize !== undefined) {
    const size = integer(d.ringSize, join(path, 'ringSize'), limits.afXdpRingSizeMin, limits.afXdpRingSizeMax);
    if ((size & (size - 1)) !== 0) fail('EINVAL_RANGE', join(path, 'ringSize'), 'must be a power of two', size);
    out.ringSize = size;
  }
  if (d.cpus !== undefined) {
    const cpus = array(d.cpus, join(path, 'cpus')).map((cpu, i) => integer(cpu, join(join(path, 'cpus'), i), 0, 4095));
    if (cpus.length !== workers) fail('EINVAL_RANGE', join(path, 'cpus'), `must name one CPU per worker (${workers})`, cpus.length);
    out.cpus = cpus;
  }
  return out;
}

function validateAfXdp(input: unknown, path: string, workers: number): NormalizedAfXdp {
  const a = object(input, path);
  knownKeys(a, ['mode', 'ringSize', 'cpus'], path, 'afXdp');
  const out: NormalizedAfXdp = {};
  if (a.mode !== undefined) out.mode = oneOf(a.mode, join(path, 'mode'), ['auto', 'native', 'generic'] as const, 'auto');
  if (a.ringSize !== undefined) {
    const size = integer(a.ringSize, join(path, 'ringSize'), limits.afXdpRingSizeMin, limits.afXdpRingSizeMax);
    if ((size & (size - 1)) !== 0) fail('EINVAL_RANGE', join(path, 'ringSize'), 'must be a power of two', size);
    out.ringSize = size;
  }
  if (a.cpus !== undefined) {
    const cpus = array(a.cpus, join(path, 'cpus')).map((cpu, i) => integer(cpu, join(join(path, 'cpus'), i), 0, 4095));
    if (cpus.length !== workers) fail('EINVAL_RANGE', join(path, 'cpus'), `must name one CPU per worker (${workers})`, cpus.length);
    out.cpus = cpus;
  }
  return out;
}

// Tuning of the TPACKET_V3 ring the port used before it handed frames over
// one by one: named in the error, so that an old configuration says what to do.
const removedAfPacketKeys = ['ringBlockBytes', 'ringBlocks', 'blockTimeoutMs'];

function validateAfPacket(input: unknown, path: string, workers: number): NormalizedAfPacket {
  const a = object(input, path);
  for (const key of removedAfPacketKeys) {
    if (a[key] !== undefined) {
      fail('EINVAL_UNKNOWN_FIELD', join(path, key),
        'is no longer an option: the receive ring hands every frame over at once (TPACKET_V2 slots, no block timer); size it with afPacket.ringFrames',
        undefined, false);
    }
  }
  knownKeys(a, ['txMethod', 'ringFrames', 'cpus'], path, 'afPacket');
  const out: NormalizedAfPacket = {};
  if (a.txMethod !== undefined) out.txMethod = oneOf(a.txMethod, join(path, 'txMethod'), ['sendmmsg', 'ring'] as const, 'sendmmsg');
  if (a.ringFrames !== undefined) {
    out.ringFrames = integer(a.ringFrames, join(path, 'ringFrames'), limits.afPacketRingFramesMin, limits.ringFramesMax);
  }
  if (a.cpus !== undefined) {
    const cpus = array(a.cpus, join(path, 'cpus')).map((cpu, i) => integer(cpu, join(join(path, 'cpus'), i), 0, 4095));
    if (cpus.length !== workers) fail('EINVAL_RANGE', join(path, 'cpus'), `must name one CPU per worker (${workers})`, cpus.length);
    out.cpus = cpus;
  }
  return out;
}

function validateMemory(input: unknown, path: string, interfaces: string[]): NormalizedMemory {
  const m = object(input, path);
  knownKeys(m, ['interfaces', 'neighbours', 'routes', 'ringFrames'], path, 'memory');
  const interfacesPath = join(path, 'interfaces');
  const declared = object(m.interfaces, interfacesPath);
  for (const name of Object.keys(declared)) {
    if (!interfaces.includes(name)) {
      fail('EINVAL_REFERENCE', join(interfacesPath, name), 'is not one of the balancer\'s interfaces', undefined, false);
    }
  }
  const normalizedInterfaces = interfaces.map((name): NormalizedMemoryInterface => {
    const ifPath = join(interfacesPath, name);
    if (declared[name] === undefined) {
      fail('EINVAL_REFERENCE', ifPath, 'is missing: every interface of the balancer needs one with driver \'memory\'', undefined, false);
    }
    const i = object(declared[name], ifPath);
    knownKeys(i, ['mac', 'addresses', 'mtu', 'answerArp'], ifPath, 'a memory interface');
    const addressesPath = join(ifPath, 'addresses');
    return {
      name,
      mac: mac(i.mac, join(ifPath, 'mac')),
      addresses: i.addresses === undefined ? [] : array(i.addresses, addressesPath).map((a, n) => prefix(a, join(addressesPath, n))),
      mtu: optionalInteger(i.mtu, join(ifPath, 'mtu'), limits.mtuMin, limits.mtuMax, defaults.mtu),
      answerArp: boolean(i.answerArp, join(ifPath, 'answerArp'), true),
    };
  });
  const interfaceName = (value: unknown, at: string) => {
    const name = string(value, at);
    if (!interfaces.includes(name)) fail('EINVAL_REFERENCE', at, "must be one of the balancer's interfaces", name);
    return name;
  };
  const neighboursPath = join(path, 'neighbours');
  const neighbours = (m.neighbours === undefined ? [] : array(m.neighbours, neighboursPath)).map((n, i) => {
    const at = join(neighboursPath, i);
    const entry = object(n, at);
    knownKeys(entry, ['address', 'mac', 'interface'], at, 'a neighbour');
    return {
      address: ipv4(entry.address, join(at, 'address')),
      mac: mac(entry.mac, join(at, 'mac')),
      interface: interfaceName(entry.interface, join(at, 'interface')),
    };
  });
  const routesPath = join(path, 'routes');
  const routes = (m.routes === undefined ? [] : array(m.routes, routesPath)).map((r, i) => {
    const at = join(routesPath, i);
    const entry = object(r, at);
    knownKeys(entry, ['prefix', 'via', 'interface'], at, 'a route');
    const p = prefix(entry.prefix, join(at, 'prefix'));
    return {
      prefix: p.address,
      prefixLength: p.prefixLength,
      via: entry.via === undefined ? undefined : ipv4(entry.via, join(at, 'via')),
      interface: interfaceName(entry.interface, join(at, 'interface')),
    };
  });
  const ringFrames = optionalInteger(m.ringFrames, join(path, 'ringFrames'), limits.ringFramesMin, limits.ringFramesMax, defaults.ringFrames);
  return { interfaces: normalizedInterfaces, neighbours, routes, ringFrames };
}

// ---- addService ------------------------------------------------------------------

const serviceKeys = [
  'address',
  'port',
  'protocol',
  'method',
  'scheduler',
  'persistence',
  'healthCheck',
  'slowStartMs',
  'onBackendRemoved',
  'allBackendsDown',
  'greKey',
  'ipOptions',
] as const;

/** Validates addService's options (the balancer checks what depends on its state: duplicates, local addresses). */
export function validateServiceOptions(input: ServiceOptions | unknown, base = ''): NormalizedService {
  const s = object(input, base);
  knownKeys(s, serviceKeys, base, 'a service');
  const address = ipv4(s.address, join(base, 'address'));
  const port = integer(s.port, join(base, 'port'), 1, 65535);
  const protocol = oneOf(s.protocol, join(base, 'protocol'), protocols, defaults.protocol);
  const method = oneOf(s.method, join(base, 'method'), methods, defaults.method);

  const schedulerPath = join(base, 'scheduler');
  let scheduler: BuiltinScheduler | SchedulerHook = defaults.scheduler;
  if (isPlainObject(s.scheduler)) {
    scheduler = validateSchedulerHook(s.scheduler, schedulerPath);
  } else if (s.scheduler !== undefined) {
    if (typeof s.scheduler !== 'string' || !schedulers.includes(s.scheduler as BuiltinScheduler)) {
      fail('EINVAL_ENUM', schedulerPath, `must be one of ${schedulers.map((o) => `'${o}'`).join(', ')} or a scheduler hook`, s.scheduler);
    }
    scheduler = s.scheduler as BuiltinScheduler;
  }

  let persistenceTimeoutMs: number | undefined;
  if (s.persistence !== undefined) {
    const persistencePath = join(base, 'persistence');
    const p = object(s.persistence, persistencePath);
    knownKeys(p, ['timeoutMs'], persistencePath, 'persistence');
    persistenceTimeoutMs = integer(p.timeoutMs, join(persistencePath, 'timeoutMs'), 1, limits.timeoutMs);
  }

  const healthCheck = validateHealthCheck(s.healthCheck, join(base, 'healthCheck'));
  const slowStartMs = optionalInteger(s.slowStartMs, join(base, 'slowStartMs'), 0, 0x7fffffff, 0);
  const onBackendRemoved = oneOf(s.onBackendRemoved, join(base, 'onBackendRemoved'), ['reset', 'drop'] as const, 'reset');
  const allBackendsDown = oneOf(s.allBackendsDown, join(base, 'allBackendsDown'), ['drop-new', 'fail-open'] as const, 'drop-new');
  let greKey: number | undefined;
  if (s.greKey !== undefined) {
    if (method !== 'gre') fail('EINVAL_CONFLICT', join(base, 'greKey'), "applies only to method 'gre'", undefined, false);
    greKey = integer(s.greKey, join(base, 'greKey'), 0, 0xffffffff);
  }
  const ipOptions = oneOf(s.ipOptions, join(base, 'ipOptions'), ['forward', 'drop'] as const, 'forward');
  return {
    address,
    port,
    protocol,
    method,
    scheduler,
    persistenceTimeoutMs,
    healthCheck,
    slowStartMs,
    onBackendRemoved,
    allBackendsDown,
    greKey,
    ipOptions,
  };
}

export function validateSchedulerHook(value: Record<string, unknown>, path: string): SchedulerHook {
  knownKeys(value, ['name', 'table', 'intervalMs'], path, 'a scheduler hook');
  string(value.name, join(path, 'name'));
  if (typeof value.table !== 'function') fail('EINVAL_TYPE', join(path, 'table'), 'must be a function (backends, stats) => number[]', value.table);
  if (value.intervalMs !== undefined) integer(value.intervalMs, join(path, 'intervalMs'), 10, 0x7fffffff);
  return value as unknown as SchedulerHook;
}

const timingKeys = ['intervalMs', 'timeoutMs', 'rise', 'fall', 'jitter', 'port'] as const;
const healthKeys: Record<Exclude<HealthCheckKind, 'none'>, readonly string[]> = {
  tcp: ['type', ...timingKeys],
  http: ['type', ...timingKeys, 'path', 'expectStatus', 'expectBody', 'host'],
  udp: ['type', ...timingKeys, 'payload', 'expectReply'],
  function: ['type', ...timingKeys],
};

export function validateHealthCheck(input: unknown, path: string): NormalizedHealthCheck {
  const d = defaults.healthCheck;
  const normalized: NormalizedHealthCheck = {
    type: 'tcp',
    fn: undefined,
    intervalMs: d.intervalMs,
    timeoutMs: d.timeoutMs,
    rise: d.rise,
    fall: d.fall,
    jitter: d.jitter,
    port: undefined,
    path: '/',
    expectStatus: undefined,
    expectBody: undefined,
    host: undefined,
    payload: new Uint8Array(0),
    expectReply: undefined,
  };
  if (input === undefined) return normalized;
  if (typeof input === 'function') return { ...normalized, type: 'function', fn: input as HealthCheckFunction };
  const h = object(input, path);
  const typePath = join(path, 'type');
  if (h.type === 'none') {
    knownKeys(h, ['type'], path, "a health check of type 'none'");
    return { ...normalized, type: 'none' };
  }
  let type: Exclude<HealthCheckKind, 'none'>;
  if (typeof h.type === 'function') {
    type = 'function';
    normalized.fn = h.type as HealthCheckFunction;
  } else {
    if (h.type === undefined || typeof h.type !== 'string' || !['tcp', 'http', 'udp'].includes(h.type)) {
      fail('EINVAL_ENUM', typePath, "must be one of 'tcp', 'http', 'udp', 'none' or a function", h.type);
    }
    type = h.type as 'tcp' | 'http' | 'udp';
  }
  knownKeys(h, healthKeys[type], path, `a health check of type '${type}'`);
  normalized.type = type;
  normalized.intervalMs = optionalInteger(h.intervalMs, join(path, 'intervalMs'), 10, 0x7fffffff, d.intervalMs);
  normalized.timeoutMs = optionalInteger(h.timeoutMs, join(path, 'timeoutMs'), 1, 0x7fffffff, d.timeoutMs);
  normalized.rise = optionalInteger(h.rise, join(path, 'rise'), 1, limits.healthRiseFall, d.rise);
  normalized.fall = optionalInteger(h.fall, join(path, 'fall'), 1, limits.healthRiseFall, d.fall);
  normalized.jitter = fraction(h.jitter, join(path, 'jitter'), d.jitter);
  normalized.port = h.port === undefined ? undefined : integer(h.port, join(path, 'port'), 1, 65535);
  if (type === 'http') {
    if (h.path !== undefined) {
      if (typeof h.path !== 'string' || !h.path.startsWith('/') || /[\s\x00-\x1f\x7f]/.test(h.path)) {
        fail('EINVAL_TYPE', join(path, 'path'), "must be a URL path starting with '/' without spaces or control characters", h.path);
      }
      normalized.path = h.path;
    }
    if (h.expectStatus !== undefined) {
      const statusPath = join(path, 'expectStatus');
      const list = Array.isArray(h.expectStatus) ? h.expectStatus : [h.expectStatus];
      if (list.length === 0) fail('EINVAL_RANGE', statusPath, 'must name at least one status', h.expectStatus, false);
      normalized.expectStatus = list.map((status, i) =>
        integer(status, Array.isArray(h.expectStatus) ? join(statusPath, i) : statusPath, 100, 599),
      );
    }
    normalized.expectBody = regExp(h.expectBody, join(path, 'expectBody'));
    if (h.host !== undefined) {
      const host = string(h.host, join(path, 'host'));
      if (/[\s\x00-\x1f\x7f]/.test(host)) fail('EINVAL_TYPE', join(path, 'host'), 'must not contain spaces or control characters', host);
      normalized.host = host;
    }
  }
  if (type === 'udp') {
    if (h.payload !== undefined) {
      const payloadPath = join(path, 'payload');
      const bytes =
        typeof h.payload === 'string'
          ? new TextEncoder().encode(h.payload)
          : h.payload instanceof Uint8Array
            ? Uint8Array.from(h.payload)
            : fail('EINVAL_TYPE', payloadPath, 'must be a string or a Uint8Array', h.payload);
      if (bytes.length > limits.udpPayload) fail('EINVAL_RANGE', payloadPath, `must be at most ${limits.udpPayload} bytes`, bytes.length);
      normalized.payload = bytes;
    }
    normalized.expectReply = regExp(h.expectReply, join(path, 'expectReply'));
  }
  return normalized;
}

// ---- addBackend --------------------------------------------------------------------

export function validateBackendOptions(input: BackendOptions | unknown, servicePort: number, base = ''): NormalizedBackend {
  const b = object(input, base);
  knownKeys(b, ['address', 'port', 'weight'], base, 'a backend');
  return {
    address: ipv4(b.address, join(base, 'address')),
    port: optionalInteger(b.port, join(base, 'port'), 1, 65535, servicePort),
    weight: validateWeight(b.weight === undefined ? defaults.weight : b.weight, join(base, 'weight')),
  };
}

export function validateWeight(value: unknown, path = 'weight'): number {
  return integer(value, path, 0, limits.weight);
}
