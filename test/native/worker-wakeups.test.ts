// The event-driven worker: with adaptive polling an idle worker sleeps on its
// rings and wakes for nothing; while flows are tracked only the expiry timer
// wakes it; a new configuration still reaches every sleeping worker at once.
import { afterEach, describe, expect, it } from 'vitest';

import type { LoadBalancer } from '../../lib/load-balancer.js';
import { backendAddress, createBalancer, tcp, toVip, until, vip } from '../support/balancer.js';

const open: LoadBalancer[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((lb) => lb.close()));
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function workerCounter(lb: LoadBalancer, name: string): number[] {
  return lb.stats().workers.map((w) => w.counters[name] ?? 0);
}

async function balancerWithService(): Promise<LoadBalancer> {
  const lb = await createBalancer({ workers: 2 });
  open.push(lb);
  const service = lb.addService({ address: vip, port: 80, protocol: 'tcp', method: 'nat', scheduler: 'rr', healthCheck: { type: 'none' } });
  service.addBackend({ address: backendAddress(2), port: 8080 });
  await until(() => lb.stats().workers.every((w) => w.configGeneration >= lb.generation), 2000, 'workers adopting the configuration');
  return lb;
}

describe('adaptive polling', () => {
  it('makes no wake-ups in a second without traffic and an empty flow table', async () => {
    const lb = await balancerWithService();
    // Past the spin that follows start-up and the configuration's arrival.
    await sleep(100);
    const before = workerCounter(lb, 'wakeups');
    const idleBefore = workerCounter(lb, 'idlePolls');
    const ticksBefore = workerCounter(lb, 'expiryTicks');
    await sleep(1000);
    expect(workerCounter(lb, 'wakeups')).toEqual(before);
    // Not even a poll: the worker slept the whole second.
    expect(workerCounter(lb, 'idlePolls')).toEqual(idleBefore);
    expect(workerCounter(lb, 'expiryTicks')).toEqual(ticksBefore);
  });

  it('wakes only for expiry ticks while flows are tracked, and expires them from the timer', async () => {
    const lb = await balancerWithService();
    for (let port = 40000; port < 40010; port++) expect(lb.memoryPort('in').inject(toVip(tcp(port, 'S')))).toBe(true);
    expect(await lb.memoryPort('out').take({ count: 10, timeoutMs: 2000 })).toHaveLength(10);
    expect(lb.stats().services[0]!.activeFlows).toBe(10);
    await sleep(100);
    const before = workerCounter(lb, 'wakeups');
    await sleep(1000);
    const woke = workerCounter(lb, 'wakeups').map((n, w) => n - before[w]!);
    // The default tick is 100 ms: about 10 a second per worker, nothing else.
    for (const count of woke) expect(count).toBeLessThanOrEqual(13);
    expect(woke.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
  });

  it('adopts a new configuration promptly while every worker sleeps', async () => {
    const lb = await balancerWithService();
    await sleep(200);
    const wakeups = workerCounter(lb, 'wakeups');
    const service = lb.services[0]!;
    service.addBackend({ address: backendAddress(3), port: 8080 });
    const generation = lb.generation;
    const started = performance.now();
    await until(() => lb.stats().workers.every((w) => w.configGeneration >= generation), 1000, 'sleeping workers adopting the configuration');
    const adoptedMs = performance.now() - started;
    // Woken by the publication, not by a timer: each worker woke at least once.
    workerCounter(lb, 'wakeups').forEach((n, w) => expect(n).toBeGreaterThan(wakeups[w]!));
    expect(adoptedMs).toBeLessThan(1000);
  });
});
