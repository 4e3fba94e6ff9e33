// LoadBalancer over the memory driver with threaded workers: forwarding and
// statistics, transactions, drain and removal, established flows under a
// storm of configuration changes, health, hooks, signals, several balancers
// and close().
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

import { DriverError, StateError, ValidationError } from '../../lib/errors.js';
import { LoadBalancer } from '../../lib/load-balancer.js';
import type { Backend } from '../../lib/backend.js';
import {
  backendAddress,
  backendMac,
  client,
  createBalancer,
  decode,
  memoryOptions,
  tcp,
  toVip,
  until,
  vip,
} from '../support/balancer.js';

const open: LoadBalancer[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((lb) => lb.close()));
});

async function balancer(overrides: Parameters<typeof createBalancer>[0] = {}): Promise<LoadBalancer> {
  const lb = await createBalancer(overrides);
  open.push(lb);
  return lb;
}

/** Resolves once every worker runs the configuration last published. */
async function settled(lb: LoadBalancer): Promise<number> {
  const started = performance.now();
  const generation = lb.generation;
  await until(() => lb.stats().workers.every((w) => w.configGeneration >= generation), 2000, 'workers adopting the configuration');
  return performance.now() - started;
}

/** Injects a SYN per client port and returns the backend address each went to. */
async function connect(lb: LoadBalancer, ports: number[], flags = 'S'): Promise<Map<number, string>> {
  for (const port of ports) expect(lb.memoryPort('in').inject(toVip(tcp(port, flags)))).toBe(true);
  const frames = await lb.memoryPort('out').take({ count: ports.length, timeoutMs: 2000 });
  expect(frames).toHaveLength(ports.length);
  const chosen = new Map<number, string>();
  for (const f of frames) {
    const d = decode(f);
    chosen.set(d.srcPort, d.dstAddress);
  }
  return chosen;
}

describe('LoadBalancer.create', () => {
  it("rejects driver 'af_packet' on an interface that does not exist, naming it", async () => {
    const error = await LoadBalancer.create({ interfaces: ['l4lb-none0'] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DriverError);
    expect(error).toMatchObject({
      code: 'ENO_INTERFACE',
      path: 'interfaces[0]',
      message: 'interfaces[0]: no interface "l4lb-none0" in this network namespace',
    });
  });

  it("refuses afPacket tuning for another driver, and CPU lists that do not match the workers", async () => {
    await expect(LoadBalancer.create(memoryOptions({ afPacket: { txMethod: 'ring' } }))).rejects.toMatchObject({ code: 'EINVAL_CONFLICT', path: 'afPacket' });
    await expect(LoadBalancer.create({ interfaces: ['x'], workers: 2, afPacket: { cpus: [0] } })).rejects.toMatchObject({ code: 'EINVAL_RANGE', path: 'afPacket.cpus' });
  });

  it('rejects bad options with a ValidationError', async () => {
    const error = await LoadBalancer.create(memoryOptions({ workers: 0 })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ code: 'EINVAL_RANGE', path: 'workers' });
  });

  it('cannot be constructed directly', () => {
    expect(() => new (LoadBalancer as unknown as new () => unknown)()).toThrow('use LoadBalancer.create(options)');
  });
});

describe('forwarding and statistics', () => {
  it('balances new flows over the backends and counts exactly the injected traffic', async () => {
    const lb = await balancer();
    const web = lb.addService({ address: vip, port: 80, healthCheck: { type: 'none' } });
    web.addBackend({ address: backendAddress(2), port: 8080 });
    web.addBackend({ address: backendAddress(3), port: 8080, weight: 3 });
    await settled(lb);
    const ports = Array.from({ length: 200 }, (_, i) => 40000 + i);
    const chosen = await connect(lb, ports);
    const shares = [...chosen.values()].reduce<Record<string, number>>((acc, a) => ({ ...acc, [a]: (acc[a] ?? 0) + 1 }), {});
    expect(shares[backendAddress(2)]).toBeGreaterThan(20);
    expect(shares[backendAddress(3)]).toBeGreaterThan(shares[backendAddress(2)]!);

    const s = lb.stats();
    const service = s.services[0]!;
    expect(service).toMatchObject({ address: vip, port: 80, protocol: 'tcp', method: 'nat', scheduler: 'wrr', state: 'up' });
    expect(service.packets).toBe(200);
    expect(service.totalFlows).toBe(200);
    expect(service.activeFlows).toBe(200);
    expect(service.bytes).toBe(200 * 54);
    expect(service.backends.map((b) => b.packets)).toEqual([shares[backendAddress(2)], shares[backendAddress(3)]]);
    expect(service.backends[1]).toMatchObject({ address: backendAddress(3), port: 8080, state: 'up', weight: 3, nextHopResolved: true });
    expect(s.packets).toBe(200);
    expect(s.workers.reduce((n, w) => n + w.packets, 0)).toBe(200);
    expect(s.workers.every((w) => w.busyNsPerPacket > 0)).toBe(true);
    expect(Object.values(s.drops).every((n) => n === 0)).toBe(true);
    expect(s.counters.forwarded).toBe(200);
    expect(s.flows.active).toBe(200);
    expect(s.flows.capacity).toBe(4096);
    const rates = lb.rates({ windowMs: 60_000 });
    expect(rates.services[0]!.packetsPerSec).toBeGreaterThan(0);
    expect(rates.packetsPerSec).toBeGreaterThan(0);
  });

  it('sizes the flow table by bytes and holds the flows stats() reports for it', async () => {
    const memoryBytes = 256 * 1024;
    const lb = await balancer({ flows: { memoryBytes, udpTimeoutMs: 60_000 } });
    const { flows } = lb.stats();
    // 64 KiB of side arrays, then 128-byte buckets of four 32-byte slots; two slots an IPv4 nat flow at 90% load.
    expect(flows.memoryBytes).toBeLessThanOrEqual(memoryBytes);
    expect(flows.memoryBytes).toBeGreaterThan(memoryBytes - 128);
    expect(flows.slots).toBe(6144);
    expect(flows.capacity).toBe(Math.floor((flows.slots * 0.9) / 2));
    const dns = lb.addService({ address: vip, port: 53, protocol: 'udp', healthCheck: { type: 'none' } });
    dns.addBackend({ address: backendAddress(2), port: 53 });
    await settled(lb);
    const batch = 512;
    for (let first = 0; first < flows.capacity; first += batch) {
      const count = Math.min(batch, flows.capacity - first);
      for (let i = 0; i < count; i++) {
        expect(lb.memoryPort('in').inject(toVip({ kind: 'udp', sport: 1024 + first + i, dport: 53 }))).toBe(true);
      }
      expect(await lb.memoryPort('out').take({ count, timeoutMs: 2000 })).toHaveLength(count);
    }
    const after = lb.stats();
    expect(after.flows.active).toBe(flows.capacity);
    expect(after.flows.counters.insertFailedFull ?? 0).toBe(0);
    expect(after.drops['flow-table-full'] ?? 0).toBe(0);
  });

  it('refuses a flow table sized both by flows and by bytes, and one the machine cannot allocate', async () => {
    await expect(LoadBalancer.create(memoryOptions({ flows: { capacity: 4096, memoryBytes: 1 << 20 } }))).rejects.toMatchObject({
      code: 'EINVAL_CONFLICT',
      path: 'flows.memoryBytes',
    });
    await expect(LoadBalancer.create(memoryOptions({ flows: { memoryBytes: 1000 } }))).rejects.toMatchObject({ code: 'EINVAL_RANGE', path: 'flows.memoryBytes' });
    // 38 GiB of address space: room for Node (and its WebAssembly reservations), not for 64 GiB of flows.
    const script = fileURLToPath(new URL('../fixtures/flow-table-no-memory.ts', import.meta.url));
    const result = spawnSync('bash', ['-c', 'ulimit -v 40000000 && exec "$0" --import tsx "$1"', process.execPath, script], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(result.stderr).toBe('');
    expect(JSON.parse(result.stdout)).toEqual({
      name: 'DataPlaneError',
      code: 'ENOMEM',
      path: 'flows',
      message: 'data plane: the flow table (68719476720 bytes) could not be allocated: give flows.capacity or flows.memoryBytes a smaller value',
    });
  });

  it("drops a nat flow whose reply tuple another flow owns as reply-tuple-in-use, not as a full table", async () => {
    const lb = await balancer();
    // Two VIPs with the same backend: a client port used toward both gives both flows the reply tuple backend:8080 <- client:port.
    for (const address of [vip, '198.18.0.101']) {
      lb.addService({ address, port: 80, healthCheck: { type: 'none' } }).addBackend({ address: backendAddress(2), port: 8080 });
    }
    await settled(lb);
    expect(lb.memoryPort('in').inject(toVip(tcp(40000, 'S')))).toBe(true);
    expect(await lb.memoryPort('out').take({ count: 1, timeoutMs: 2000 })).toHaveLength(1);
    expect(lb.memoryPort('in').inject(toVip(tcp(40000, 'S'), '198.18.0.101'))).toBe(true);
    await until(() => (lb.stats().drops['reply-tuple-in-use'] ?? 0) === 1, 2000, 'the clash counted');
    const s = lb.stats();
    expect(s.drops['flow-table-full']).toBe(0);
    expect(s.flows.active).toBe(1);
  });

  it('rewrites toward the backend with its next-hop MAC and translates replies back from the VIP', async () => {
    const lb = await balancer();
    const web = lb.addService({ address: vip, port: 80, healthCheck: { type: 'none' } });
    web.addBackend({ address: backendAddress(7), port: 8080 });
    await settled(lb);
    lb.memoryPort('in').inject(toVip(tcp(40001, 'S')));
    const [out] = await lb.memoryPort('out').take({ count: 1, timeoutMs: 2000 });
    expect(decode(out!)).toMatchObject({ dstMac: backendMac(7), srcAddress: client, dstAddress: backendAddress(7), dstPort: 8080 });
  });

  it('takes frames by count and by timeout', async () => {
    const lb = await balancer();
    const web = lb.addService({ address: vip, port: 80, healthCheck: { type: 'none' } });
    web.addBackend({ address: backendAddress(2) });
    await settled(lb);
    const out = lb.memoryPort('out');
    let started = Date.now();
    expect(await out.take({ timeoutMs: 50 })).toEqual([]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    expect(await out.take()).toEqual([]);
    for (let i = 0; i < 5; i++) lb.memoryPort('in').inject(toVip(tcp(40100 + i, 'S')));
    started = Date.now();
    expect(await out.take({ count: 2, timeoutMs: 5000 })).toHaveLength(2);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(await out.take({ count: 10, timeoutMs: 100 })).toHaveLength(3);
    expect(() => lb.memoryPort('eth0')).toThrow(ValidationError);
    expect(() => out.take({ count: 0 })).toThrow('count must be a positive integer, got 0');
    expect(() => out.take({ timeoutMs: -1 })).toThrow('timeoutMs must be a number of milliseconds >= 0, got -1');
    expect(() => lb.memoryPort('in').inject(new Uint8Array(0))).toThrow(ValidationError);
  });
});

describe('services', () => {
  it('removeService stops balancing its VIP:port, and the service can be added again', async () => {
    const lb = await balancer();
    let web = lb.addService({ address: vip, port: 80, healthCheck: { type: 'none' } });
    web.addBackend({ address: backendAddress(2) });
    await settled(lb);
    expect((await connect(lb, [40500])).size).toBe(1);
    lb.removeService(web);
    expect(web.active).toBe(false);
    expect(lb.services).toEqual([]);
    expect(() => lb.removeService(web)).toThrow(StateError);
    await settled(lb);
    lb.memoryPort('in').inject(toVip(tcp(40501, 'S')));
    await until(() => lb.stats().counters.passed === 1);
    expect(await lb.memoryPort('out').take({ timeoutMs: 20 })).toEqual([]);
    web = lb.addService({ address: vip, port: 80, healthCheck: { type: 'none' } });
    web.addBackend({ address: backendAddress(3) });
    await settled(lb);
    expect([...(await connect(lb, [40502])).values()]).toEqual([backendAddress(3)]);
  });

  it('balances UDP, and fullnat from the local address pool', async () => {
    const lb = await balancer({ localAddresses: ['198.18.1.250'] });
    const dns = lb.addService({ address: vip, port: 53, protocol: 'udp', healthCheck: { type: 'none' } });
    dns.addBackend({ address: backendAddress(2), port: 5353 });
    const api = lb.addService({ address: vip, port: 443, method: 'fullnat', healthCheck: { type: 'none' } });
    api.addBackend({ address: backendAddress(3), port: 8443 });
    expect(() => lb.addService({ address: '198.18.1.250', port: 80 })).toThrow('address 198.18.1.250 is one of the fullnat localAddresses');
    await settled(lb);
    lb.memoryPort('in').inject(toVip({ kind: 'udp', sport: 40600, dport: 53, payload: Buffer.from('query') }));
    lb.memoryPort('in').inject(toVip(tcp(40601, 'S', 443)));
    const frames = (await lb.memoryPort('out').take({ count: 2, timeoutMs: 2000 })).map(decode);
    expect(frames.find((f) => f.protocol === 17)).toMatchObject({ srcAddress: client, dstAddress: backendAddress(2), dstPort: 5353 });
    expect(frames.find((f) => f.protocol === 6)).toMatchObject({ srcAddress: '198.18.1.250', dstAddress: backendAddress(3), dstPort: 8443 });
    expect(lb.stats().services.map((x) => [x.port, x.protocol, x.method, x.packets])).toEqual([
      [53, 'udp', 'nat', 1],
      [443, 'tcp', 'fullnat', 1],
    ]);
  });
});

describe('transactions', () => {
  it('publishes every change of a transaction as one snapshot', async () => {
    const lb = await balancer();
    const before = lb.generation;
    const web = lb.transaction(() => {
      const service = lb.addService({ address: vip, port: 80, healthCheck: { type: 'none' } });
      for (let n = 2; n < 12; n++) service.addBackend({ address: backendAddress(n) });
      service.backends[0]!.setWeight(5);
      return service;
    });
    expect(lb.generation).toBe(before + 1);
    expect(web.backends).toHaveLength(10);
    expect(web.backends[0]!.weight).toBe(5);
  });

  it('changes nothing when the function throws or a change is invalid', async () => {
    const lb = await balancer();
    const web = lb.addService({ address: vip, port: 80, healthCheck: { type: 'none' } });
    const a = web.addBackend({ address: backendAddress(2) });
    const generation = lb.generation;
    let added: Backend | undefined;
    expect(() =>
      lb.transaction(() => {
        added = web.addBackend({ address: backendAddress(3) });
        a.setWeight(9);
        web.addBackend({ address: backendAddress(4), weight: -1 });
      }),
    ).toThrow(ValidationError);
    expect(lb.generation).toBe(generation);
    expect(web.backends).toEqual([a]);
    expect(a.weight).toBe(1);
    expect(added!.active).toBe(false);
    expect(() => added!.setWeight(2)).toThrow(StateError);

    expect(() =>
      lb.transaction(() => {
        lb.addService({ address: '198.18.0.101', port: 80 });
        throw new Error('changed my mind');
      }),
    ).toThrow('changed my mind');
    expect(lb.services).toEqual([web]);
    expect(lb.generation).toBe(generation);

    expect(() => lb.transaction(() => Promise.resolve())).toThrow(
      'transaction(fn): fn must be synchronous, it returned a promise; nothing was changed',
    );
    expect(() => web.addBackend({ address: backendAddress(2) })).toThrow('backend 198.18.1.2:80 is in service 198.18.0.100:80/tcp already');
    expect(() => lb.addService({ address: vip, port: 80 })).toThrow('a service for 198.18.0.100:80/tcp exists already');
    expect(() => lb.addService({ address: vip, port: 81, method: 'fullnat' })).toThrow(
      "method 'fullnat' needs localAddresses in the load balancer's options",
    );
    expect(lb.generation).toBe(generation);
  });

  it('undoes only a nested transaction that throws', async () => {
    const lb = await balancer();
    const web = lb.addService({ address: vip, port: 80, healthCheck: { type: 'none' } });
    lb.transaction(() => {
      web.addBackend({ address: backendAddress(2) });
      try {
        lb.transaction(() => {
          web.addBackend({ address: backendAddress(3) });
          throw new Error('inner');
        });
      } catch {
        // the outer transaction goes on
      }
      web.addBackend({ address: backendAddress(4) });
    });
    expect(web.backends.map((b) => b.address)).toEqual([backendAddress(2), backendAddress(4)]);
  });

  it('reaches every worker within milliseconds of the call', async () => {
    const lb = await balancer();
    const web = lb.addService({ address: vip, port: 80, healthCheck: { type: 'none' } });
    const backend = web.addBackend({ address: backendAddress(2) });
    await settled(lb);
    const delays: number[] = [];
    for (let i = 0; i < 20; i++) {
      const started = performance.now();
      backend.setWeight(1 + (i % 5));
      const generation = lb.generation;
      // Spin (the workers are other threads): a timer's granularity would hide what is measured.
      while (!lb.stats().workers.every((w) => w.configGeneration >= generation)) {
        if (performance.now() - started > 2000) throw new Error('workers did not adopt the configuration');
      }
      delays.push(performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    delays.sort((x, y) => x - y);
    if (process.env.L4LB_VERBOSE) console.log(delays.map((d) => d.toFixed(2)).join(" "));
    // Idle adaptive workers nap 1 ms between polls: on a quiet machine the
    // median is about that nap. The bound leaves room for CPUs shared with
    // other test files (busy-polling workers among them).
    expect(delays[10]).toBeLessThan(10);
  });
});

describe('drain and removal', () => {
  it('drain (weight 0) keeps established flows and sends new ones elsewhere', async () => {
    const lb = await balancer();
    const web = lb.addService({ address: vip, port: 80, healthCheck: { type: 'none' } });
    const a = web.addBackend({ address: backendAddress(2) });
    web.addBackend({ address: backendAddress(3) });
    await settled(lb);
    const established = await connect(lb, Array.from({ length: 20 }, (_, i) => 41000 + i));
    const onA = [...established].filter(([, address]) => address === a.address).map(([port]) => port);
    expect(onA.length).toBeGreaterThan(0);
    a.setWeight(0);
    await settled(lb);
    const again = await connect(lb, onA, 'A');
    expect([...again.values()].every((address) => address === a.address)).toBe(true);
    const fresh = await connect(lb, Array.from({ length: 20 }, (_, i) => 42000 + i));
    expect([...fresh.values()].every((address) => address === backendAddress(3))).toBe(true);
  });

  it('removal ends the flows with a TCP reset toward the client', async () => {
    const lb = await balancer();
    const web = lb.addService({ address: vip, port: 80, healthCheck: { type: 'none' } });
    const a = web.addBackend({ address: backendAddress(2) });
    await settled(lb);
    await connect(lb, [43000]);
    web.removeBackend(a);
    expect(a.active).toBe(false);
    await settled(lb);
    lb.memoryPort('in').inject(toVip(tcp(43000, 'A', 80, { seq: 1001, ack: 5001 })));
    const [reset] = await lb.memoryPort('in').take({ count: 1, timeoutMs: 2000 });
    expect(decode(reset!)).toMatchObject({ srcAddress: vip, dstAddress: client, srcPort: 80, dstPort: 43000, tcpFlags: 0x04 });
    expect(lb.stats().counters.flowsReset).toBe(1);
    expect(() => web.removeBackend(a)).toThrow(StateError);
  });

  it("with onBackendRemoved 'drop' the removed backend's packets are dropped", async () => {
    const lb = await balancer();
    const web = lb.addService({ address: vip, port: 80, healthCheck: { type: 'none' }, onBackendRemoved: 'drop' });
    const a = web.addBackend({ address: backendAddress(2) });
    await settled(lb);
    await connect(lb, [43100]);
    web.removeBackend(a);
    await settled(lb);
    lb.memoryPort('in').inject(toVip(tcp(43100, 'A')));
    await until(() => lb.stats().drops['no-backend'] === 1);
    expect(await lb.memoryPort('in').take({ timeoutMs: 20 })).toEqual([]);
    expect(await lb.memoryPort('out').take({ timeoutMs: 20 })).toEqual([]);
  });
});

describe('established flows under configuration changes', () => {
  it('100 changes (backends added and removed, weights, health flips) never move an established flow', async () => {
    const sick = new Set<string>();
    const lb = await balancer();
    const web = lb.addService({
      address: vip,
      port: 80,
      scheduler: 'maglev',
      healthCheck: { type: async (b) => !sick.has(b.address), intervalMs: 10, timeoutMs: 100, rise: 1, fall: 1, jitter: 0 },
    });
    const core = [2, 3, 4, 5].map((n) => web.addBackend({ address: backendAddress(n) }));
    await until(() => core.every((b) => b.state === 'up'), 3000, 'backends up');
    await settled(lb);
    const ports = Array.from({ length: 40 }, (_, i) => 44000 + i);
    const owner = await connect(lb, ports);
    const extra: Backend[] = [];
    let next = 20;
    let moved = 0;
    for (let change = 0; change < 100; change++) {
      switch (change % 4) {
        case 0:
          extra.push(web.addBackend({ address: backendAddress(next++), weight: 1 + (change % 3) }));
          break;
        case 1:
          if (extra.length > 2) web.removeBackend(extra.shift()!);
          else web.backends[change % web.backends.length]!.setWeight(change % 4);
          break;
        case 2: {
          const all = web.backends;
          all[(change * 7) % all.length]!.setWeight((change % 5) * 2);
          break;
        }
        case 3: {
          const target = backendAddress([2, 3, 4, 5, ...extra.map((b) => Number(b.address.split('.')[3]))][change % (4 + extra.length)]!);
          if (sick.has(target)) sick.delete(target);
          else sick.add(target);
          break;
        }
      }
      // A packet of every established flow after every change.
      for (const port of ports) lb.memoryPort('in').inject(toVip(tcp(port, 'A', 80, { seq: 1001 + change })));
      const frames = await lb.memoryPort('out').take({ count: ports.length, timeoutMs: 3000 });
      expect(frames).toHaveLength(ports.length);
      for (const f of frames) {
        const d = decode(f);
        if (owner.get(d.srcPort) !== d.dstAddress) moved += 1;
      }
    }
    expect(moved).toBe(0);
    expect(lb.stats().drops['no-backend']).toBe(0);
  });
});

describe('health', () => {
  it('reports flips, service-down when every backend is down, and drops only new flows', async () => {
    const healthy = new Set([backendAddress(2), backendAddress(3)]);
    const lb = await balancer();
    const events: string[] = [];
    lb.on('backend-state', (e) => events.push(`${e.backend.address} ${e.state}`));
    lb.on('service-down', (e) => events.push(`service ${e.service.name} down`));
    lb.on('service-up', (e) => events.push(`service ${e.service.name} up`));
    const web = lb.addService({
      address: vip,
      port: 80,
      healthCheck: { type: async (b) => healthy.has(b.address), intervalMs: 10, timeoutMs: 100, rise: 2, fall: 2, jitter: 0 },
    });
    const [a, b] = [web.addBackend({ address: backendAddress(2) }), web.addBackend({ address: backendAddress(3) })];
    expect([a.state, b.state, web.state]).toEqual(['down', 'down', 'down']);
    await until(() => a.state === 'up' && b.state === 'up', 3000, 'backends up');
    expect(events.sort()).toEqual(['198.18.1.2 up', '198.18.1.3 up', 'service 198.18.0.100:80/tcp up']);
    await settled(lb);
    const established = await connect(lb, [45000, 45001, 45002, 45003]);
    events.length = 0;
    healthy.clear();
    await until(() => web.state === 'down', 3000, 'service down');
    expect(events.sort()).toEqual(['198.18.1.2 down', '198.18.1.3 down', 'service 198.18.0.100:80/tcp down']);
    await settled(lb);
    // Established flows go on; new ones are dropped as 'no-backend'.
    const again = await connect(lb, [...established.keys()], 'A');
    expect(again).toEqual(established);
    lb.memoryPort('in').inject(toVip(tcp(45100, 'S')));
    await until(() => lb.stats().drops['no-backend'] === 1);
    expect(lb.stats().services[0]!.backends.map((x) => x.state)).toEqual(['down', 'down']);
    healthy.add(backendAddress(3));
    await until(() => web.state === 'up', 3000, 'service up');
    expect(events.at(-1)).toBe('service 198.18.0.100:80/tcp up');
  });

  it("'fail-open' schedules new flows over all backends while every one is down", async () => {
    const lb = await balancer();
    let downEvents = 0;
    lb.on('service-down', () => (downEvents += 1));
    const web = lb.addService({
      address: vip,
      port: 80,
      allBackendsDown: 'fail-open',
      healthCheck: { type: async () => false, intervalMs: 10, rise: 1, fall: 1, jitter: 0 },
    });
    web.addBackend({ address: backendAddress(2) });
    await settled(lb);
    const chosen = await connect(lb, [46000, 46001]);
    expect([...chosen.values()]).toEqual([backendAddress(2), backendAddress(2)]);
    expect(web.state).toBe('down');
    expect(downEvents).toBe(0); // it never was up
  });

  it('slow start ramps a recovering backend from 1 to its weight', async () => {
    let healthy = false;
    const lb = await balancer();
    const web = lb.addService({
      address: vip,
      port: 80,
      slowStartMs: 300,
      healthCheck: { type: async () => healthy, intervalMs: 10, rise: 1, fall: 1, jitter: 0 },
    });
    const a = web.addBackend({ address: backendAddress(2), weight: 100 });
    healthy = true;
    await until(() => a.state === 'up');
    const early = a.effectiveWeight;
    expect(early).toBeGreaterThanOrEqual(1);
    expect(early).toBeLessThan(60);
    const generation = lb.generation;
    await until(() => a.effectiveWeight === 100, 2000, 'full weight');
    expect(lb.generation).toBeGreaterThan(generation + 2);
    expect(lb.stats().services[0]!.backends[0]!.effectiveWeight).toBe(100);
  });
});

describe('scheduler hooks', () => {
  it('sends new flows by the hook table, and keeps the previous table when the hook fails', async () => {
    const lb = await balancer();
    const errors: Array<{ code: string; message: string }> = [];
    lb.on('error', (e) => errors.push({ code: e.code, message: e.message }));
    let mode: 'first' | 'throw' | 'bad' = 'first';
    const calls: number[] = [];
    const web = lb.addService({
      address: vip,
      port: 80,
      healthCheck: { type: 'none' },
      scheduler: {
        name: 'pin',
        table(backends, stats) {
          calls.push(backends.length);
          expect(stats.address).toBe(vip);
          if (mode === 'throw') throw new Error('latency probe failed');
          if (mode === 'bad') return [0, 1, 2];
          return new Array(8).fill(backends.length - 1); // everything to the last backend
        },
      },
    });
    web.addBackend({ address: backendAddress(2) });
    const pinned = web.addBackend({ address: backendAddress(3) });
    await settled(lb);
    let chosen = await connect(lb, Array.from({ length: 10 }, (_, i) => 47000 + i));
    expect(new Set(chosen.values())).toEqual(new Set([pinned.address]));
    expect(lb.stats().services[0]!.scheduler).toBe('pin');

    mode = 'throw';
    web.addBackend({ address: backendAddress(4) });
    expect(errors.at(-1)).toEqual({
      code: 'EHOOK_THREW',
      message: 'scheduler hook "pin" threw: latency probe failed; the previous table stays in force',
    });
    await settled(lb);
    chosen = await connect(lb, Array.from({ length: 10 }, (_, i) => 47100 + i));
    expect(new Set(chosen.values())).toEqual(new Set([pinned.address]));

    mode = 'bad';
    web.backends[0]!.setWeight(2);
    expect(errors.at(-1)!.code).toBe('EHOOK_TABLE');
    expect(calls.length).toBeGreaterThanOrEqual(4);
  });

  it('re-runs a hook on its interval', async () => {
    const lb = await balancer();
    let runs = 0;
    lb.transaction(() => {
      const web = lb.addService({
        address: vip,
        port: 80,
        healthCheck: { type: 'none' },
        scheduler: { name: 'tick', intervalMs: 20, table: () => (runs++, [0]) },
      });
      web.addBackend({ address: backendAddress(2) });
    });
    expect(runs).toBe(1);
    const before = runs;
    await until(() => runs >= before + 3, 2000, 'hook interval');
  });
});

describe('data-plane signals', () => {
  it("emits 'dataplane' when frames drop for an unresolved next hop", async () => {
    const lb = await balancer();
    const signals: Array<{ kind: string; count: number }> = [];
    lb.on('dataplane', (s) => signals.push({ kind: s.kind, count: s.count }));
    const web = lb.addService({ address: vip, port: 80, healthCheck: { type: 'none' } });
    web.addBackend({ address: '198.18.1.200' }); // on-link, not in the neighbour table
    expect(lb.stats().services[0]!.backends[0]!.nextHopResolved).toBe(false);
    await settled(lb);
    for (let i = 0; i < 3; i++) lb.memoryPort('in').inject(toVip(tcp(48000 + i, 'S')));
    await until(() => signals.reduce((n, s) => n + (s.kind === 'no-neighbour' ? s.count : 0), 0) === 3, 3000, 'signal');
    expect(lb.stats().drops['no-neighbour']).toBe(3);
  });
});

describe('several balancers and close()', () => {
  it('two balancers in one process do not interfere', async () => {
    const [one, two] = await Promise.all([balancer(), balancer({ workers: 1 })]);
    for (const lb of [one, two]) {
      const web = lb.addService({ address: vip, port: 80, healthCheck: { type: 'none' } });
      web.addBackend({ address: backendAddress(lb === one ? 2 : 3) });
      await settled(lb);
    }
    const a = await connect(one, [49000, 49001]);
    expect([...a.values()]).toEqual([backendAddress(2), backendAddress(2)]);
    expect(await two.memoryPort('out').take({ timeoutMs: 30 })).toEqual([]);
    const b = await connect(two, [49000]);
    expect([...b.values()]).toEqual([backendAddress(3)]);
    expect(one.stats().packets).toBe(2);
    expect(two.stats().packets).toBe(1);
    await one.close();
    expect((await connect(two, [49002])).size).toBe(1);
  });

  it('close() is idempotent and everything after it throws ECLOSED', async () => {
    const lb = await LoadBalancer.create(memoryOptions());
    const web = lb.addService({ address: vip, port: 80, healthCheck: { type: 'tcp', intervalMs: 10 } });
    const a = web.addBackend({ address: backendAddress(2) });
    const port = lb.memoryPort('out');
    let closeEvents = 0;
    lb.on('close', () => (closeEvents += 1));
    const first = lb.close();
    expect(lb.close()).toBe(first);
    await first;
    await lb.close();
    expect(closeEvents).toBe(1);
    expect(lb.closed).toBe(true);
    for (const call of [() => lb.stats(), () => lb.addService({ address: vip, port: 81 }), () => a.setWeight(2), () => port.inject(Buffer.alloc(60))]) {
      expect(call).toThrow(StateError);
    }
    expect(await port.take({ timeoutMs: 10 })).toEqual([]);
  });

  it('a process exits by itself once its balancer is closed (no handles, no threads left)', () => {
    const script = fileURLToPath(new URL('../fixtures/balancer-lifecycle.ts', import.meta.url));
    const started = Date.now();
    const result = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', timeout: 20_000 });
    expect(result.stderr).toBe('');
    expect(result.stdout.trim()).toBe('forwarded 4, closed');
    expect(result.status).toBe(0);
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});

describe('metrics', () => {
  it('exposes the statistics as a prom-client registry, collected on scrape', async () => {
    const lb = await balancer();
    const web = lb.addService({ address: vip, port: 80, healthCheck: { type: 'none' } });
    web.addBackend({ address: backendAddress(2), port: 8080 });
    await settled(lb);
    await connect(lb, [50000, 50001, 50002]);
    const registry = lb.metrics();
    expect(lb.metrics()).toBe(registry);
    const text = await registry.metrics();
    expect(text).toContain('l4lb_backend_packets_total{service="198.18.0.100:80/tcp",backend="198.18.1.2:8080"} 3');
    expect(text).toContain('l4lb_backend_up{service="198.18.0.100:80/tcp",backend="198.18.1.2:8080"} 1');
    expect(text).toContain('l4lb_service_up{service="198.18.0.100:80/tcp"} 1');
    expect(text).toContain('l4lb_drops_total{reason="no-backend"} 0');
    expect(text).toContain('l4lb_flows_active 3');
    expect(text).toMatch(/l4lb_worker_packets_total\{worker="0"\} \d+/);
    expect(registry.contentType).toMatch(/^text\/plain/);
  });
});
