// Balancers behind ECMP see each other's flows whenever the routers' paths
// change: with the same hashKey and the same backends (added in any order)
// they must choose the same backend for every flow, a mid-stream TCP segment
// of a flow another balancer started included (dr and tunnels forward it;
// docs/scale-out.md).
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { LoadBalancer } from '../../lib/load-balancer.js';
import { backendAddress, backendMac, createBalancer, decode, tcp, toVip, vip } from '../support/balancer.js';

const balancers: LoadBalancer[] = [];
afterEach(async () => {
  await Promise.all(balancers.splice(0).map((lb) => lb.close()));
});

async function balancerWith(hashKey: Uint8Array, scheduler: 'maglev' | 'sh', order: number[]): Promise<LoadBalancer> {
  const lb = await createBalancer({ hashKey });
  balancers.push(lb);
  const web = lb.addService({ address: vip, port: 80, method: 'dr', scheduler, healthCheck: { type: 'none' } });
  for (const n of order) web.addBackend({ address: backendAddress(n), port: 80 });
  const generation = lb.generation;
  const deadline = Date.now() + 2000;
  while (!lb.stats().workers.every((w) => w.configGeneration >= generation)) {
    if (Date.now() > deadline) throw new Error('workers did not adopt the configuration');
    await new Promise((r) => setTimeout(r, 10));
  }
  return lb;
}

/** The backend (by MAC) each client port's segment was sent to. */
async function choices(lb: LoadBalancer, ports: number[], flags: string): Promise<Map<number, string>> {
  const chosen = new Map<number, string>();
  for (let first = 0; first < ports.length; first += 200) {
    const batch = ports.slice(first, first + 200);
    for (const port of batch) expect(lb.memoryPort('in').inject(toVip(tcp(port, flags)))).toBe(true);
    const frames = await lb.memoryPort('out').take({ count: batch.length, timeoutMs: 2000 });
    expect(frames).toHaveLength(batch.length);
    for (const f of frames) {
      const d = decode(f);
      chosen.set(d.srcPort, d.dstMac);
    }
  }
  return chosen;
}

describe('consistent choice across balancers', () => {
  // Maglev: the scheduler for balancers behind ECMP (sh hashes the client address alone, so one test client would be one backend).
  it('maglev: the same hashKey and backends give every flow the same backend, mid-stream segments included', async () => {
    const scheduler = 'maglev';
    const hashKey = new Uint8Array(randomBytes(16));
    const ports = Array.from({ length: 600 }, (_, i) => 20000 + i);
    const first = await balancerWith(hashKey, scheduler, [2, 3, 4, 5]);
    const second = await balancerWith(hashKey, scheduler, [5, 3, 2, 4]);
    // The first balancer sees each flow's SYN; the second only a later segment (the routers moved the flow).
    const started = await choices(first, ports, 'S');
    const picked = await choices(second, ports, 'A');
    expect(picked).toEqual(started);
    // Every backend takes a share: the agreement is not everyone on one backend.
    const used = new Set(started.values());
    expect(used).toEqual(new Set([2, 3, 4, 5].map(backendMac)));
    // A balancer with another key agrees on only about a quarter of the flows (4 backends): the key is what makes them agree.
    const other = await balancerWith(new Uint8Array(randomBytes(16)), scheduler, [2, 3, 4, 5]);
    const elsewhere = await choices(other, ports, 'A');
    const same = ports.filter((p) => elsewhere.get(p) === started.get(p)).length;
    expect(same).toBeLessThan(ports.length * 0.5);
    // The mid-stream segment created a tracked, established flow in the second balancer.
    expect(second.stats().flows.active).toBe(ports.length);
  });
});
