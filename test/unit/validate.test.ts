// Validation tables: good input -> the normalized form, bad input -> the
// exact code, path and message. Nothing here needs the addon.
import { describe, expect, it } from 'vitest';

import {
  defaults,
  validateBackendOptions,
  validateHealthCheck,
  validateLoadBalancerOptions,
  validateServiceOptions,
} from '../../lib/config/validate.js';
import { ValidationError } from '../../lib/errors.js';

const memory = {
  interfaces: {
    in: { mac: '02:00:00:00:00:01', addresses: ['198.18.0.1/24'] },
    out: { mac: '02:00:00:00:00:02', addresses: ['198.18.1.1/24'], mtu: 9000 },
  },
  neighbours: [{ address: '198.18.1.2', mac: '02:00:00:00:01:02', interface: 'out' }],
  routes: [{ prefix: '0.0.0.0/0', via: '198.18.0.254', interface: 'in' }],
};
const good = { driver: 'memory' as const, interfaces: ['in', 'out'], memory };

function thrown(fn: () => unknown): { code: string; path: string | undefined; message: string } {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    const e = error as ValidationError;
    return { code: e.code, path: e.path, message: e.message };
  }
  throw new Error('expected a ValidationError');
}

describe('validateLoadBalancerOptions', () => {
  it('fills in the defaults', () => {
    const o = validateLoadBalancerOptions(good);
    expect(o).toMatchObject({
      driver: 'memory',
      workers: 1,
      polling: 'adaptive',
      flows: defaults.flows,
      localAddresses: [],
      fullnatPorts: { min: 1024, max: 65535 },
      maxBackends: 4096,
      checksums: 'forward',
      answerEcho: true,
    });
    expect(o.memory!.interfaces).toEqual([
      { name: 'in', mac: '02:00:00:00:00:01', addresses: [{ address: '198.18.0.1', prefixLength: 24 }], mtu: 1500, answerArp: true },
      { name: 'out', mac: '02:00:00:00:00:02', addresses: [{ address: '198.18.1.1', prefixLength: 24 }], mtu: 9000, answerArp: true },
    ]);
    expect(o.memory!.routes).toEqual([{ prefix: '0.0.0.0', prefixLength: 0, via: '198.18.0.254', interface: 'in' }]);
    expect(o.memory!.ringFrames).toBe(256);
    expect(validateLoadBalancerOptions({ interfaces: ['eth1'] }).driver).toBe('af_packet');
  });

  const bad: Array<[string, unknown, { code: string; path: string; message: string }]> = [
    ['not an object', 42, { code: 'EINVAL_TYPE', path: '', message: 'options must be an object, got 42' }],
    [
      'unknown option',
      { ...good, worker: 2 },
      {
        code: 'EINVAL_UNKNOWN_FIELD',
        path: 'worker',
        message:
          'worker is not an option of a load balancer (known: interfaces, driver, workers, polling, spinMs, flows, localAddresses, fullnatPorts, maxBackends, hashKey, checksums, answerEcho, flowEvents, memory, afPacket, afXdp, dpdk, bgp)',
      },
    ],
    ['no interfaces', { ...good, interfaces: [] }, { code: 'EINVAL_RANGE', path: 'interfaces', message: 'interfaces must name 1 to 64 interfaces, got 0' }],
    ['interfaces not an array', { ...good, interfaces: 'eth0' }, { code: 'EINVAL_TYPE', path: 'interfaces', message: 'interfaces must be an array, got "eth0"' }],
    ['empty interface name', { ...good, interfaces: ['in', ''] }, { code: 'EINVAL_TYPE', path: 'interfaces[1]', message: 'interfaces[1] must be a non-empty string, got ""' }],
    ['duplicate interface', { ...good, interfaces: ['in', 'in'] }, { code: 'EDUPLICATE', path: 'interfaces[1]', message: 'interfaces[1] names an interface a second time, got "in"' }],
    ['unknown driver', { ...good, driver: 'netmap' }, { code: 'EINVAL_ENUM', path: 'driver', message: "driver must be one of 'af_packet', 'af_xdp', 'dpdk', 'memory', got \"netmap\"" }],
    ['dpdk options with another driver', { ...good, driver: 'af_xdp', dpdk: {} }, { code: 'EINVAL_CONFLICT', path: 'dpdk', message: "dpdk applies only to driver 'dpdk'" }],
    ['an unknown dpdk vdev', { ...good, driver: 'dpdk', dpdk: { vdev: 'tap' } }, { code: 'EINVAL_ENUM', path: 'dpdk.vdev', message: "dpdk.vdev must be one of 'af_xdp', 'af_packet', got \"tap\"" }],
    ['an empty EAL argument', { ...good, driver: 'dpdk', dpdk: { eal: ['-m', ''] } }, { code: 'EINVAL_TYPE', path: 'dpdk.eal[1]', message: 'dpdk.eal[1] must be a non-empty string, got ""' }],
    ['workers 0', { ...good, workers: 0 }, { code: 'EINVAL_RANGE', path: 'workers', message: 'workers must be an integer from 1 to 64, got 0' }],
    ['workers 1.5', { ...good, workers: 1.5 }, { code: 'EINVAL_RANGE', path: 'workers', message: 'workers must be an integer from 1 to 64, got 1.5' }],
    ['workers a string', { ...good, workers: '2' }, { code: 'EINVAL_TYPE', path: 'workers', message: 'workers must be an integer from 1 to 64, got "2"' }],
    ['polling', { ...good, polling: 'lazy' }, { code: 'EINVAL_ENUM', path: 'polling', message: "polling must be one of 'adaptive', 'busy', got \"lazy\"" }],
    ['flow capacity', { ...good, flows: { capacity: 8 } }, { code: 'EINVAL_RANGE', path: 'flows.capacity', message: 'flows.capacity must be an integer from 16 to 67108864, got 8' }],
    ['flow table sized twice', { ...good, flows: { capacity: 4096, memoryBytes: 1 << 20 } }, { code: 'EINVAL_CONFLICT', path: 'flows.memoryBytes', message: 'flows.memoryBytes sizes the table as flows.capacity does: give one of them' }],
    ['flow table bytes', { ...good, flows: { memoryBytes: 4096 } }, { code: 'EINVAL_RANGE', path: 'flows.memoryBytes', message: 'flows.memoryBytes must be an integer from 131072 to 68719476736, got 4096' }],
    [
      'flow option typo',
      { ...good, flows: { udpTimeout: 5 } },
      {
        code: 'EINVAL_UNKNOWN_FIELD',
        path: 'flows.udpTimeout',
        message:
          'flows.udpTimeout is not an option of flows (known: capacity, memoryBytes, tcpEstablishedTimeoutMs, udpTimeoutMs, tcpSynTimeoutMs, tcpClosingTimeoutMs, tcpClosedTimeoutMs)',
      },
    ],
    ['timeout zero', { ...good, flows: { udpTimeoutMs: 0 } }, { code: 'EINVAL_RANGE', path: 'flows.udpTimeoutMs', message: 'flows.udpTimeoutMs must be an integer from 1 to 4294967295, got 0' }],
    ['local address', { ...good, localAddresses: ['198.18.1.300'] }, { code: 'EINVAL_ADDRESS', path: 'localAddresses[0]', message: 'localAddresses[0] must be an IPv4 address, got "198.18.1.300"' }],
    ['local address IPv6', { ...good, localAddresses: ['2001:db8::1'] }, { code: 'EUNSUPPORTED', path: 'localAddresses[0]', message: 'localAddresses[0] is an IPv6 address; this version balances IPv4 only, got "2001:db8::1"' }],
    ['duplicate local address', { ...good, localAddresses: ['198.18.1.9', '198.18.1.9'] }, { code: 'EDUPLICATE', path: 'localAddresses[1]', message: 'localAddresses[1] names an address a second time, got "198.18.1.9"' }],
    ['fullnat ports reversed', { ...good, fullnatPorts: { min: 2000, max: 1000 } }, { code: 'EINVAL_RANGE', path: 'fullnatPorts.max', message: 'fullnatPorts.max must not be below fullnatPorts.min (2000), got 1000' }],
    ['maxBackends', { ...good, maxBackends: 65537 }, { code: 'EINVAL_RANGE', path: 'maxBackends', message: 'maxBackends must be an integer from 1 to 65536, got 65537' }],
    ['hash key', { ...good, hashKey: new Uint8Array(8) }, { code: 'EINVAL_TYPE', path: 'hashKey', message: 'hashKey must be a Uint8Array of 16 bytes, got an object' }],
    ['checksums', { ...good, checksums: 'fix' }, { code: 'EINVAL_ENUM', path: 'checksums', message: "checksums must be one of 'forward', 'drop', got \"fix\"" }],
    ['memory missing', { driver: 'memory', interfaces: ['in'] }, { code: 'EINVAL_TYPE', path: 'memory', message: "memory is required with driver 'memory'" }],
    ['memory with af_packet', { interfaces: ['in', 'out'], memory }, { code: 'EINVAL_CONFLICT', path: 'memory', message: "memory applies only to driver 'memory'" }],
    [
      'memory interface missing',
      { ...good, interfaces: ['in', 'out', 'extra'] },
      {
        code: 'EINVAL_REFERENCE',
        path: 'memory.interfaces.extra',
        message: "memory.interfaces.extra is missing: every interface of the balancer needs one with driver 'memory'",
      },
    ],
    [
      'memory interface not served',
      { ...good, interfaces: ['in'] },
      { code: 'EINVAL_REFERENCE', path: 'memory.interfaces.out', message: "memory.interfaces.out is not one of the balancer's interfaces" },
    ],
    [
      'bad MAC',
      { ...good, memory: { ...memory, interfaces: { ...memory.interfaces, in: { mac: '02:00:00:00:00' } } } },
      { code: 'EINVAL_MAC', path: 'memory.interfaces.in.mac', message: "memory.interfaces.in.mac must be a MAC address like '02:00:00:00:00:01', got \"02:00:00:00:00\"" },
    ],
    [
      'address without prefix',
      { ...good, memory: { ...memory, interfaces: { ...memory.interfaces, in: { mac: '02:00:00:00:00:01', addresses: ['198.18.0.1'] } } } },
      {
        code: 'EINVAL_PREFIX',
        path: 'memory.interfaces.in.addresses[0]',
        message: "memory.interfaces.in.addresses[0] must be an IPv4 address with a prefix length, like '198.18.0.1/24', got \"198.18.0.1\"",
      },
    ],
    [
      'mtu too small',
      { ...good, memory: { ...memory, interfaces: { ...memory.interfaces, in: { mac: '02:00:00:00:00:01', mtu: 500 } } } },
      { code: 'EINVAL_RANGE', path: 'memory.interfaces.in.mtu', message: 'memory.interfaces.in.mtu must be an integer from 576 to 9000, got 500' },
    ],
    [
      'neighbour on an unknown interface',
      { ...good, memory: { ...memory, neighbours: [{ address: '198.18.1.2', mac: '02:00:00:00:01:02', interface: 'eth9' }] } },
      { code: 'EINVAL_REFERENCE', path: 'memory.neighbours[0].interface', message: "memory.neighbours[0].interface must be one of the balancer's interfaces, got \"eth9\"" },
    ],
    [
      'route prefix length 33',
      { ...good, memory: { ...memory, routes: [{ prefix: '0.0.0.0/33', interface: 'in' }] } },
      {
        code: 'EINVAL_PREFIX',
        path: 'memory.routes[0].prefix',
        message: "memory.routes[0].prefix must be an IPv4 address with a prefix length, like '198.18.0.1/24', got \"0.0.0.0/33\"",
      },
    ],
    [
      'ring frames',
      { ...good, memory: { ...memory, ringFrames: 1 } },
      { code: 'EINVAL_RANGE', path: 'memory.ringFrames', message: 'memory.ringFrames must be an integer from 16 to 65536, got 1' },
    ],
  ];
  it.each(bad)('rejects %s', (_, input, expected) => {
    expect(thrown(() => validateLoadBalancerOptions(input))).toEqual(expected);
  });

  it('prefixes paths with a base (configuration files)', () => {
    expect(thrown(() => validateLoadBalancerOptions({ ...good, workers: 0 }, 'balancer'))).toEqual({
      code: 'EINVAL_RANGE',
      path: 'balancer.workers',
      message: 'balancer.workers must be an integer from 1 to 64, got 0',
    });
  });
});

describe('validateServiceOptions', () => {
  it('fills in the defaults', () => {
    expect(validateServiceOptions({ address: '198.18.0.100', port: 80 })).toMatchObject({
      address: '198.18.0.100',
      port: 80,
      protocol: 'tcp',
      method: 'nat',
      scheduler: 'wrr',
      persistenceTimeoutMs: undefined,
      slowStartMs: 0,
      onBackendRemoved: 'reset',
      allBackendsDown: 'drop-new',
      greKey: undefined,
      ipOptions: 'forward',
      healthCheck: { type: 'tcp', intervalMs: 1000, timeoutMs: 500, rise: 2, fall: 3, jitter: 0.1 },
    });
    const hook = { name: 'h', table: () => [0] };
    expect(validateServiceOptions({ address: '198.18.0.100', port: 80, scheduler: hook }).scheduler).toBe(hook);
    expect(validateServiceOptions({ address: '198.18.0.100', port: 80, method: 'gre', greKey: 7 }).greKey).toBe(7);
  });

  const base = { address: '198.18.0.100', port: 80 };
  const bad: Array<[string, unknown, { code: string; path: string; message: string }]> = [
    ['missing address', { port: 80 }, { code: 'EINVAL_ADDRESS', path: 'address', message: 'address must be an IPv4 address, got undefined' }],
    ['IPv6 VIP', { ...base, address: '2001:db8::10' }, { code: 'EUNSUPPORTED', path: 'address', message: 'address is an IPv6 address; this version balances IPv4 only, got "2001:db8::10"' }],
    ['port 0', { ...base, port: 0 }, { code: 'EINVAL_RANGE', path: 'port', message: 'port must be an integer from 1 to 65535, got 0' }],
    ['port 65536', { ...base, port: 65536 }, { code: 'EINVAL_RANGE', path: 'port', message: 'port must be an integer from 1 to 65535, got 65536' }],
    ['protocol', { ...base, protocol: 'sctp' }, { code: 'EINVAL_ENUM', path: 'protocol', message: "protocol must be one of 'tcp', 'udp', got \"sctp\"" }],
    ['method', { ...base, method: 'tun' }, { code: 'EINVAL_ENUM', path: 'method', message: "method must be one of 'nat', 'fullnat', 'dr', 'ipip', 'gre', got \"tun\"" }],
    [
      'scheduler',
      { ...base, scheduler: 'random' },
      { code: 'EINVAL_ENUM', path: 'scheduler', message: "scheduler must be one of 'rr', 'wrr', 'lc', 'wlc', 'sh', 'maglev' or a scheduler hook, got \"random\"" },
    ],
    ['hook without table', { ...base, scheduler: { name: 'h' } }, { code: 'EINVAL_TYPE', path: 'scheduler.table', message: 'scheduler.table must be a function (backends, stats) => number[], got undefined' }],
    ['hook interval', { ...base, scheduler: { name: 'h', table: () => [0], intervalMs: 1 } }, { code: 'EINVAL_RANGE', path: 'scheduler.intervalMs', message: 'scheduler.intervalMs must be an integer from 10 to 2147483647, got 1' }],
    ['persistence', { ...base, persistence: { timeoutMs: -1 } }, { code: 'EINVAL_RANGE', path: 'persistence.timeoutMs', message: 'persistence.timeoutMs must be an integer from 1 to 4294967295, got -1' }],
    ['greKey without gre', { ...base, greKey: 1 }, { code: 'EINVAL_CONFLICT', path: 'greKey', message: "greKey applies only to method 'gre'" }],
    ['onBackendRemoved', { ...base, onBackendRemoved: 'keep' }, { code: 'EINVAL_ENUM', path: 'onBackendRemoved', message: "onBackendRemoved must be one of 'reset', 'drop', got \"keep\"" }],
    ['allBackendsDown', { ...base, allBackendsDown: 'open' }, { code: 'EINVAL_ENUM', path: 'allBackendsDown', message: "allBackendsDown must be one of 'drop-new', 'fail-open', got \"open\"" }],
    ['slow start', { ...base, slowStartMs: -5 }, { code: 'EINVAL_RANGE', path: 'slowStartMs', message: 'slowStartMs must be an integer from 0 to 2147483647, got -5' }],
    [
      'typo',
      { ...base, persistance: { timeoutMs: 5 } },
      {
        code: 'EINVAL_UNKNOWN_FIELD',
        path: 'persistance',
        message:
          'persistance is not an option of a service (known: address, port, protocol, method, scheduler, persistence, healthCheck, slowStartMs, onBackendRemoved, allBackendsDown, greKey, ipOptions)',
      },
    ],
  ];
  it.each(bad)('rejects %s', (_, input, expected) => {
    expect(thrown(() => validateServiceOptions(input))).toEqual(expected);
  });

  it('reports paths inside a configuration file', () => {
    expect(thrown(() => validateServiceOptions({ ...base, port: 0 }, 'services[0]'))).toEqual({
      code: 'EINVAL_RANGE',
      path: 'services[0].port',
      message: 'services[0].port must be an integer from 1 to 65535, got 0',
    });
  });
});

describe('validateHealthCheck', () => {
  it('normalizes each type', () => {
    expect(validateHealthCheck({ type: 'none' }, 'healthCheck').type).toBe('none');
    const http = validateHealthCheck({ type: 'http', path: '/healthz', expectStatus: 204, expectBody: /ok/, rise: 1 }, 'healthCheck');
    expect(http).toMatchObject({ type: 'http', path: '/healthz', expectStatus: [204], rise: 1, fall: 3 });
    const udp = validateHealthCheck({ type: 'udp', payload: 'ping' }, 'healthCheck');
    expect(Buffer.from(udp.payload).toString()).toBe('ping');
    const fn = async () => true;
    expect(validateHealthCheck(fn, 'healthCheck')).toMatchObject({ type: 'function', fn });
    expect(validateHealthCheck({ type: fn, intervalMs: 50 }, 'healthCheck')).toMatchObject({ type: 'function', fn, intervalMs: 50 });
  });

  const bad: Array<[string, unknown, { code: string; path: string; message: string }]> = [
    ['type', { type: 'icmp' }, { code: 'EINVAL_ENUM', path: 'healthCheck.type', message: "healthCheck.type must be one of 'tcp', 'http', 'udp', 'none' or a function, got \"icmp\"" }],
    ['rise 0', { type: 'tcp', rise: 0 }, { code: 'EINVAL_RANGE', path: 'healthCheck.rise', message: 'healthCheck.rise must be an integer from 1 to 100, got 0' }],
    ['interval', { type: 'tcp', intervalMs: 5 }, { code: 'EINVAL_RANGE', path: 'healthCheck.intervalMs', message: 'healthCheck.intervalMs must be an integer from 10 to 2147483647, got 5' }],
    ['jitter', { type: 'tcp', jitter: 2 }, { code: 'EINVAL_RANGE', path: 'healthCheck.jitter', message: 'healthCheck.jitter must be a number from 0 to 1, got 2' }],
    [
      'http option on tcp',
      { type: 'tcp', path: '/' },
      { code: 'EINVAL_UNKNOWN_FIELD', path: 'healthCheck.path', message: "healthCheck.path is not an option of a health check of type 'tcp' (known: type, intervalMs, timeoutMs, rise, fall, jitter, port)" },
    ],
    [
      'http path',
      { type: 'http', path: 'health z' },
      { code: 'EINVAL_TYPE', path: 'healthCheck.path', message: "healthCheck.path must be a URL path starting with '/' without spaces or control characters, got \"health z\"" },
    ],
    ['expectStatus', { type: 'http', expectStatus: [200, 700] }, { code: 'EINVAL_RANGE', path: 'healthCheck.expectStatus[1]', message: 'healthCheck.expectStatus[1] must be an integer from 100 to 599, got 700' }],
    ['expectBody', { type: 'http', expectBody: 'ok' }, { code: 'EINVAL_TYPE', path: 'healthCheck.expectBody', message: 'healthCheck.expectBody must be a RegExp, got "ok"' }],
    ['udp payload', { type: 'udp', payload: 5 }, { code: 'EINVAL_TYPE', path: 'healthCheck.payload', message: 'healthCheck.payload must be a string or a Uint8Array, got 5' }],
    [
      'none with timing',
      { type: 'none', intervalMs: 100 },
      { code: 'EINVAL_UNKNOWN_FIELD', path: 'healthCheck.intervalMs', message: "healthCheck.intervalMs is not an option of a health check of type 'none' (known: type)" },
    ],
  ];
  it.each(bad)('rejects %s', (_, input, expected) => {
    expect(thrown(() => validateHealthCheck(input, 'healthCheck'))).toEqual(expected);
  });
});

describe('validateBackendOptions', () => {
  it('defaults the port to the service port and the weight to 1', () => {
    expect(validateBackendOptions({ address: '198.18.1.2' }, 80)).toEqual({ address: '198.18.1.2', port: 80, weight: 1 });
    expect(validateBackendOptions({ address: '198.18.1.2', port: 8080, weight: 0 }, 80)).toEqual({ address: '198.18.1.2', port: 8080, weight: 0 });
  });

  const bad: Array<[string, unknown, { code: string; path: string; message: string }]> = [
    ['address', { address: 'backend-1' }, { code: 'EINVAL_ADDRESS', path: 'address', message: 'address must be an IPv4 address, got "backend-1"' }],
    ['weight', { address: '198.18.1.2', weight: 70000 }, { code: 'EINVAL_RANGE', path: 'weight', message: 'weight must be an integer from 0 to 65535, got 70000' }],
    ['negative weight', { address: '198.18.1.2', weight: -1 }, { code: 'EINVAL_RANGE', path: 'weight', message: 'weight must be an integer from 0 to 65535, got -1' }],
    ['port', { address: '198.18.1.2', port: '80' }, { code: 'EINVAL_TYPE', path: 'port', message: 'port must be an integer from 1 to 65535, got "80"' }],
    ['typo', { address: '198.18.1.2', wieght: 2 }, { code: 'EINVAL_UNKNOWN_FIELD', path: 'wieght', message: 'wieght is not an option of a backend (known: address, port, weight)' }],
  ];
  it.each(bad)('rejects %s', (_, input, expected) => {
    expect(thrown(() => validateBackendOptions(input, 80))).toEqual(expected);
  });
});
