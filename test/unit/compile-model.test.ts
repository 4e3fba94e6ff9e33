// The model compiler: services sorted as the data plane searches them,
// backends in the order they were added, next hops from the driver, and
// what stays unresolved.
import { describe, expect, it } from 'vitest';

import { BackendSlots } from '../../lib/backend-slots.js';
import { compileModel, type ModelService } from '../../lib/config/compile.js';
import { validateLoadBalancerOptions } from '../../lib/config/validate.js';
import { MemoryDriver } from '../../lib/driver/memory.js';

const options = validateLoadBalancerOptions({
  driver: 'memory',
  interfaces: ['in', 'out'],
  memory: {
    interfaces: {
      in: { mac: '02:00:00:00:00:01', addresses: ['198.18.0.1/24'] },
      out: { mac: '02:00:00:00:00:02', addresses: ['198.18.1.1/24', '198.18.3.1/24'], answerArp: false },
    },
    neighbours: [
      { address: '198.18.1.2', mac: '02:00:00:00:01:02', interface: 'out' },
      { address: '198.18.0.254', mac: '02:00:00:00:00:fe', interface: 'in' },
      { address: '203.0.113.9', mac: '02:00:00:00:09:09', interface: 'out' },
    ],
    routes: [
      { prefix: '0.0.0.0/0', via: '198.18.0.254', interface: 'in' },
      { prefix: '198.18.2.0/24', via: '198.18.1.254', interface: 'out' },
    ],
  },
});
const driver = new MemoryDriver(options.memory!);

function service(id: number, address: string, port: number, protocol: 'tcp' | 'udp', backends: string[]): ModelService {
  return {
    id,
    address,
    port,
    protocol,
    method: 'nat',
    scheduler: 'wrr',
    dropIpOptions: false,
    removeResetsFlows: true,
    failOpen: false,
    backends: backends.map((address, i) => ({ id: id * 100 + i, address, port: 8080, weight: 1, up: true })),
  };
}

const settings = { localAddresses: [], fullnatPorts: { min: 1024, max: 65535 }, dropBadChecksum: false, answerEcho: true };

describe('MemoryDriver next hops', () => {
  it.each([
    ['on-link, neighbour known', '198.18.1.2', { interfaceIndex: 1, gateway: undefined, mac: '02:00:00:00:01:02' }],
    ['on-link, neighbour unknown', '198.18.1.3', { interfaceIndex: 1, gateway: undefined, mac: undefined }],
    ['second address of an interface', '198.18.3.7', { interfaceIndex: 1, gateway: undefined, mac: undefined }],
    ['via a gateway with a known MAC', '203.0.113.50', { interfaceIndex: 0, gateway: '198.18.0.254', mac: '02:00:00:00:00:fe' }],
    ['via a gateway not resolved', '198.18.2.9', { interfaceIndex: 1, gateway: '198.18.1.254', mac: undefined }],
  ])('%s', (_, address, expected) => {
    expect(driver.resolveNextHop(address)).toEqual(expected);
  });

  it('has no next hop without a route', () => {
    const isolated = new MemoryDriver(
      validateLoadBalancerOptions({
        driver: 'memory',
        interfaces: ['in'],
        memory: { interfaces: { in: { mac: '02:00:00:00:00:01', addresses: ['198.18.0.1/24'] } } },
      }).memory!,
    );
    expect(isolated.resolveNextHop('198.18.9.9')).toBeUndefined();
  });

  it('compiles its routes longest prefix first, connected before configured', () => {
    expect(driver.routes()).toEqual([
      { prefix: '198.18.0.0', prefixLength: 24, interfaceIndex: 0, gateway: undefined, mac: undefined },
      { prefix: '198.18.1.0', prefixLength: 24, interfaceIndex: 1, gateway: undefined, mac: undefined },
      { prefix: '198.18.3.0', prefixLength: 24, interfaceIndex: 1, gateway: undefined, mac: undefined },
      { prefix: '198.18.2.0', prefixLength: 24, interfaceIndex: 1, gateway: '198.18.1.254', mac: undefined },
      { prefix: '0.0.0.0', prefixLength: 0, interfaceIndex: 0, gateway: '198.18.0.254', mac: '02:00:00:00:00:fe' },
    ]);
  });
});

describe('compileModel', () => {
  it('sorts services by address, port and protocol and keeps backends in insertion order', () => {
    const compiled = compileModel(
      [
        service(1, '198.18.0.101', 80, 'tcp', ['198.18.1.2']),
        service(2, '198.18.0.100', 443, 'tcp', ['198.18.1.5', '198.18.1.2', '198.18.1.4']),
        service(3, '198.18.0.100', 53, 'udp', ['198.18.1.2']),
        service(4, '198.18.0.100', 53, 'tcp', ['198.18.1.2']),
      ],
      driver,
      settings,
    );
    expect(compiled.snapshot.services.map((s) => `${s.address}:${s.port}/${s.protocol}`)).toEqual([
      '198.18.0.100:53/tcp',
      '198.18.0.100:53/udp',
      '198.18.0.100:443/tcp',
      '198.18.0.101:80/tcp',
    ]);
    expect(compiled.snapshot.services[2]!.backends.map((b) => [b.id, b.address])).toEqual([
      [200, '198.18.1.5'],
      [201, '198.18.1.2'],
      [202, '198.18.1.4'],
    ]);
    expect(compiled.snapshot.ports).toEqual([
      { mac: '02:00:00:00:00:01', mtu: 1500, address: '198.18.0.1', prefixLength: 24, answerArpForVips: true },
      { mac: '02:00:00:00:00:02', mtu: 1500, address: '198.18.1.1', prefixLength: 24, answerArpForVips: false },
    ]);
  });

  it('publishes unresolved next hops as unresolved and names what to probe', () => {
    const compiled = compileModel(
      [service(1, '198.18.0.100', 80, 'tcp', ['198.18.1.2', '198.18.1.3', '198.18.2.9', '192.0.2.1'])],
      driver,
      settings,
    );
    const backends = compiled.snapshot.services[0]!.backends;
    expect(backends.map((b) => [b.address, b.egressPort, b.nextHopMac])).toEqual([
      ['198.18.1.2', 1, '02:00:00:00:01:02'],
      ['198.18.1.3', 1, undefined],
      ['198.18.2.9', 1, undefined],
      ['192.0.2.1', 0, '02:00:00:00:00:fe'],
    ]);
    expect(compiled.unresolved).toEqual(['198.18.1.3', '198.18.1.254']);
    expect([...compiled.resolved]).toEqual([100, 103]);
  });

  it("fails open only when the service asks for it and no backend is up", () => {
    const down = service(1, '198.18.0.100', 80, 'tcp', ['198.18.1.2', '198.18.1.3']);
    down.backends.forEach((b) => (b.up = false));
    expect(compileModel([down], driver, settings).snapshot.services[0]!.backends.map((b) => b.up)).toEqual([false, false]);
    expect(compileModel([{ ...down, failOpen: true }], driver, settings).snapshot.services[0]!.backends.map((b) => b.up)).toEqual([true, true]);
    const oneUp = { ...down, failOpen: true, backends: down.backends.map((b, i) => ({ ...b, up: i === 0 })) };
    expect(compileModel([oneUp], driver, settings).snapshot.services[0]!.backends.map((b) => b.up)).toEqual([true, false]);
  });
});

describe('BackendSlots', () => {
  it('hands out fresh slots first, then the oldest idle freed slot, with a new generation each time', () => {
    const slots = new BackendSlots(3);
    const none = () => 0;
    const a = slots.allocate(none)!;
    const b = slots.allocate(none)!;
    const c = slots.allocate(none)!;
    expect([a, b, c]).toEqual([
      { slot: 0, id: 0x10000 },
      { slot: 1, id: 0x10001 },
      { slot: 2, id: 0x10002 },
    ]);
    expect(slots.allocate(none)).toBeUndefined();
    slots.release(1);
    slots.release(0);
    // Slot 1 still has flows of its old backend: slot 0 is taken first.
    expect(slots.allocate((slot) => (slot === 1 ? 3 : 0))).toEqual({ slot: 0, id: 0x20000 });
    expect(slots.allocate(none)).toEqual({ slot: 1, id: 0x20001 });
    slots.giveBack(1);
    expect(slots.allocate(none)).toEqual({ slot: 1, id: 0x30001 });
  });
});
