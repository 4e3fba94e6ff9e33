// explain() and whatIf() against a running memory-driver balancer: explain's
// answer is checked against where the data plane really sends the packet,
// whatIf's Maglev share against the choices explain reports after the change.
import { afterEach, describe, expect, it } from 'vitest';

import type { LoadBalancer } from '../../lib/load-balancer.js';
import { backendAddress, client, createBalancer, decode, tcp, toVip, vip } from '../support/balancer.js';

const open: LoadBalancer[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((lb) => lb.close()));
});

async function balancer(): Promise<LoadBalancer> {
  const lb = await createBalancer();
  open.push(lb);
  return lb;
}

async function sendSyn(lb: LoadBalancer, sport: number, dport = 80): Promise<string> {
  expect(lb.memoryPort('in').inject(toVip(tcp(sport, 'S', dport)))).toBe(true);
  const [sent] = await lb.memoryPort('out').take({ count: 1, timeoutMs: 2000 });
  expect(sent, `SYN from port ${sport} forwarded`).toBeDefined();
  return decode(sent!).dstAddress;
}

const tuple = (sport: number, dport = 80) => ({ src: client, sport, dst: vip, dport, proto: 'tcp' as const });

describe('explain', () => {
  it('a new flow: the Maglev slot and backend, which is where the data plane sends it; then the flow entry', async () => {
    const lb = await balancer();
    const web = lb.addService({ address: vip, port: 80, scheduler: 'maglev', healthCheck: { type: 'none' } });
    for (const n of [2, 3, 4]) web.addBackend({ address: backendAddress(n), port: 8080 });
    for (const sport of [40001, 40002, 40003, 40004, 40005]) {
      const before = lb.explain(tuple(sport));
      expect(before).toMatchObject({ service: `${vip}:80/tcp`, verdict: 'scheduler', existingFlow: null });
      expect(before.scheduler).toMatchObject({ name: 'maglev', byHash: true, tableSize: 65537 });
      expect(before.scheduler!.slot).toBeGreaterThanOrEqual(0);
      expect(before.reason).toContain(`slot ${before.scheduler!.slot} of 65537`);
      const chosen = await sendSyn(lb, sport);
      expect(before.backend).toMatchObject({ address: chosen, port: 8080, state: 'up', weight: 1 });
      const after = lb.explain(tuple(sport));
      expect(after).toMatchObject({ verdict: 'existing-flow', backend: { address: chosen } });
      expect(after.existingFlow).toMatchObject({ backend: { address: chosen, port: 8080 }, state: 'syn-seen', expired: false, timeoutMs: 60_000 });
    }
  });

  it('a flow keeps its backend when it drains; a removed backend ends it; no service; rr', async () => {
    const lb = await balancer();
    const web = lb.addService({ address: vip, port: 80, scheduler: 'rr', healthCheck: { type: 'none' } });
    const backends = [2, 3].map((n) => web.addBackend({ address: backendAddress(n), port: 8080 }));
    const chosen = await sendSyn(lb, 41000);
    const held = backends.find((b) => b.address === chosen)!;
    held.setWeight(0);
    expect(lb.explain(tuple(41000))).toMatchObject({ verdict: 'existing-flow', backend: { address: chosen, weight: 0 } });
    expect(lb.explain(tuple(41000)).reason).toContain('draining');
    web.removeBackend(held);
    expect(lb.explain(tuple(41000))).toMatchObject({ verdict: 'backend-removed', backend: null });
    const fresh = lb.explain(tuple(41001));
    expect(fresh).toMatchObject({ verdict: 'scheduler', backend: null, scheduler: { name: 'rr', byHash: false, backend: null } });
    expect(fresh.reason).toContain('rotation');
    expect(lb.explain(tuple(41001, 81))).toMatchObject({ verdict: 'no-service', service: null, scheduler: null });
    expect(lb.explain({ ...tuple(41001), proto: 'udp' })).toMatchObject({ verdict: 'no-service' });
  });

  it('persistence: a new flow of a known client goes to its template backend', async () => {
    const lb = await balancer();
    const web = lb.addService({ address: vip, port: 80, scheduler: 'rr', persistence: { timeoutMs: 60_000 }, healthCheck: { type: 'none' } });
    for (const n of [2, 3, 4]) web.addBackend({ address: backendAddress(n), port: 8080 });
    const chosen = await sendSyn(lb, 42000);
    const next = lb.explain(tuple(42001));
    expect(next).toMatchObject({ verdict: 'persistence', backend: { address: chosen } });
    expect(next.persistence).toMatchObject({ backend: { address: chosen, port: 8080 }, timeoutMs: 60_000, expired: false });
    expect(await sendSyn(lb, 42001)).toBe(chosen);
  });

  it('no backend up: no-backend; bad tuples are ValidationErrors', async () => {
    const lb = await balancer();
    const web = lb.addService({ address: vip, port: 80, scheduler: 'maglev', healthCheck: { type: 'none' } });
    web.addBackend({ address: backendAddress(2), port: 8080, weight: 0 });
    expect(lb.explain(tuple(43000))).toMatchObject({ verdict: 'no-backend', backend: null });
    expect(() => lb.explain({ ...tuple(1), src: '2001:db8::1' })).toThrow(expect.objectContaining({ code: 'EUNSUPPORTED', path: 'src' }));
    expect(() => lb.explain({ ...tuple(1), dst: 'vip' })).toThrow(expect.objectContaining({ code: 'EINVAL_ADDRESS', path: 'dst' }));
    expect(() => lb.explain({ ...tuple(1), sport: 70000 })).toThrow(expect.objectContaining({ code: 'EINVAL_RANGE', path: 'sport' }));
    expect(() => lb.explain({ ...tuple(1), proto: 'sctp' as 'tcp' })).toThrow(expect.objectContaining({ code: 'EINVAL_ENUM', path: 'proto' }));
  });
});

describe('whatIf', () => {
  it("Maglev: the share of slots that move, which matches the choices after the change is applied", async () => {
    const lb = await balancer();
    const web = lb.addService({ address: vip, port: 80, scheduler: 'maglev', healthCheck: { type: 'none' } });
    for (const n of [2, 3, 4]) web.addBackend({ address: backendAddress(n), port: 8080 });
    const prediction = lb.whatIf({ service: web, add: { address: backendAddress(5), port: 8080 } });
    expect(prediction).toMatchObject({ service: `${vip}:80/tcp`, scheduler: 'maglev', method: 'table-slots', total: 65537, flowsEnding: 0 });
    expect(prediction.movedShare).toBeGreaterThan(0.2);
    expect(prediction.movedShare).toBeLessThan(0.3);
    expect(prediction.changed).toBe(Math.round(prediction.movedShare * 65537));
    expect(prediction.backends.map((b) => [b.address, b.shareBefore.toFixed(3), b.shareAfter.toFixed(3)])).toEqual([
      [backendAddress(2), '0.333', '0.250'],
      [backendAddress(3), '0.333', '0.250'],
      [backendAddress(4), '0.333', '0.250'],
      [backendAddress(5), '0.000', '0.250'],
    ]);
    // Nothing was applied.
    expect(web.backends).toHaveLength(3);
    const ports = Array.from({ length: 4000 }, (_, i) => 20000 + i);
    const before = ports.map((p) => lb.explain(tuple(p)).backend!.address);
    web.addBackend({ address: backendAddress(5), port: 8080 });
    const after = ports.map((p) => lb.explain(tuple(p)).backend!.address);
    const moved = ports.filter((_, i) => before[i] !== after[i]).length / ports.length;
    expect(Math.abs(moved - prediction.movedShare)).toBeLessThan(0.03);
    // Nearly every flow that moved went to the new backend (Maglev's minimal
    // disruption is near-minimal: a few slots change hands among the others).
    const movedPorts = ports.filter((_, i) => before[i] !== after[i]);
    expect(movedPorts.filter((p) => after[ports.indexOf(p)] === backendAddress(5)).length / movedPorts.length).toBeGreaterThan(0.9);
  });

  it('weights for rr/wrr, flows ending on a removal, sh sampled, and the refusals', async () => {
    const lb = await balancer();
    const web = lb.addService({ address: vip, port: 80, scheduler: 'wrr', healthCheck: { type: 'none' } });
    const [a, b] = [2, 3].map((n) => web.addBackend({ address: backendAddress(n), port: 8080 }));
    const reweigh = lb.whatIf({ service: `${vip}:80/tcp`, backend: b!, weight: 3 });
    expect(reweigh).toMatchObject({ method: 'weights', movedShare: 0.25, changed: null, total: null });
    for (let i = 0; i < 6; i++) await sendSyn(lb, 44000 + i);
    // Each worker keeps its own rotation: the split of six flows varies.
    const onA = lb.stats().services[0]!.backends[0]!.activeFlows;
    expect(onA).toBeGreaterThan(0);
    expect(lb.whatIf({ service: web, remove: { address: a!.address, port: 8080 } })).toMatchObject({
      movedShare: 0.5,
      flowsEnding: onA,
      activeFlows: 6,
    });
    const dns = lb.addService({ address: vip, port: 53, protocol: 'udp', scheduler: 'sh', healthCheck: { type: 'none' } });
    for (const n of [2, 3, 4, 5]) dns.addBackend({ address: backendAddress(n), port: 53 });
    const sampled = lb.whatIf({ service: dns, remove: dns.backends[3]! });
    expect(sampled).toMatchObject({ method: 'sampled', total: 65536 });
    expect(sampled.movedShare).toBeGreaterThan(0.2);
    expect(sampled.movedShare).toBeLessThan(0.3);
    expect(() => lb.whatIf({ service: '198.18.0.100:9/tcp', remove: a! })).toThrow(expect.objectContaining({ code: 'EINVAL_REFERENCE', path: 'service' }));
    expect(() => lb.whatIf({ service: web, remove: { address: backendAddress(9), port: 8080 } })).toThrow(expect.objectContaining({ code: 'EINVAL_REFERENCE' }));
    expect(() => lb.whatIf({ service: web, add: { address: a!.address, port: 8080 } })).toThrow(expect.objectContaining({ code: 'EDUPLICATE' }));
    expect(() => lb.whatIf({ service: web, backend: a!, weight: -1 })).toThrow(expect.objectContaining({ code: 'EINVAL_RANGE' }));
    const hooked = lb.addService({ address: vip, port: 443, scheduler: { name: 'mine', table: () => [0] }, healthCheck: { type: 'none' } });
    hooked.addBackend({ address: backendAddress(2) });
    expect(() => lb.whatIf({ service: hooked, add: { address: backendAddress(3) } })).toThrow(expect.objectContaining({ code: 'EUNSUPPORTED' }));
  });
});
