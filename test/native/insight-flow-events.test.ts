// Flow events through the whole engine with two workers (the memory driver
// spreads a flow's packets over both): created with its backend, ended with
// exact In/Out packets and bytes, its duration and why it ended; and the
// bound: a ring that overflows drops events and counts them.
import { afterEach, describe, expect, it } from 'vitest';

import type { FlowEvent } from '../../lib/insight/types.js';
import type { LoadBalancer } from '../../lib/load-balancer.js';
import { backendAddress, backendMac, client, createBalancer, outMac, tcp, toVip, until, vip } from '../support/balancer.js';
import { frame } from '../support/packets.js';

const open: LoadBalancer[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((lb) => lb.close()));
});

const length = (frames: Buffer[]) => frames.reduce((sum, f) => sum + f.length, 0);

describe('flow events', () => {
  it('created and ended, with the backend, exact In/Out counts and the reason', async () => {
    const lb = await createBalancer({ flowEvents: true, flows: { capacity: 4096, udpTimeoutMs: 300 } });
    open.push(lb);
    const events: FlowEvent[] = [];
    lb.on('flow', (e) => events.push(e));
    const web = lb.addService({ address: vip, port: 80, scheduler: 'rr', healthCheck: { type: 'none' } });
    const backend = web.addBackend({ address: backendAddress(2), port: 8080 });
    const toBackend = [toVip(tcp(45001, 'S')), toVip(tcp(45001, 'A')), toVip(tcp(45001, 'PA', 80, { payload: Buffer.alloc(300, 1) }))];
    const reply = (flags: string, payload = 0) =>
      frame(
        { src: backendMac(2), dst: outMac },
        { src: backendAddress(2), dst: client, l4: { kind: 'tcp', sport: 8080, dport: 45001, flags, seq: 5000, ack: 1001, payload: Buffer.alloc(payload, 2) } },
      );
    const replies = [reply('SA'), reply('PA', 1000)];
    for (const f of toBackend) {
      lb.memoryPort('in').inject(f);
      expect(await lb.memoryPort('out').take({ count: 1, timeoutMs: 2000 })).toHaveLength(1);
    }
    for (const f of replies) lb.memoryPort('out').inject(f);
    expect(await lb.memoryPort('in').take({ count: 2, timeoutMs: 2000 })).toHaveLength(2);
    await until(() => events.length >= 1, 2000, 'created event');
    expect(events[0]).toMatchObject({
      type: 'created',
      service: `${vip}:80/tcp`,
      backend: { address: backendAddress(2), port: 8080 },
      protocol: 'tcp',
      client: { address: client, port: 45001 },
      vip: { address: vip, port: 80 },
      reason: null,
    });
    // Removing the backend ends the flow at its next packet (a reset back to the client).
    web.removeBackend(backend);
    lb.memoryPort('in').inject(toVip(tcp(45001, 'A')));
    await until(() => events.length >= 2, 2000, 'ended event');
    expect(events[1]).toMatchObject({
      type: 'ended',
      reason: 'removed',
      service: `${vip}:80/tcp`,
      backend: { address: backendAddress(2), port: 8080 },
      client: { address: client, port: 45001 },
      inPackets: 3,
      inBytes: length(toBackend),
      outPackets: 2,
      outBytes: length(replies),
    });
    expect(events[1]!.durationMs).toBeGreaterThanOrEqual(0);
    expect(events[1]!.timeNs).toBeGreaterThanOrEqual(events[0]!.timeNs);

    // A UDP flow that times out: ended by expiry, its duration from its first packet to its last.
    const dns = lb.addService({ address: vip, port: 53, protocol: 'udp', scheduler: 'rr', healthCheck: { type: 'none' } });
    dns.addBackend({ address: backendAddress(3), port: 53 });
    const query = toVip({ kind: 'udp', sport: 45002, dport: 53, payload: Buffer.alloc(40, 3) });
    lb.memoryPort('in').inject(query);
    await new Promise((resolve) => setTimeout(resolve, 200));
    lb.memoryPort('in').inject(query);
    expect(await lb.memoryPort('out').take({ count: 2, timeoutMs: 2000 })).toHaveLength(2);
    await until(() => events.some((e) => e.type === 'ended' && e.protocol === 'udp'), 8000, 'the UDP flow expiring');
    const expired = events.find((e) => e.type === 'ended' && e.protocol === 'udp')!;
    expect(expired).toMatchObject({ reason: 'expired', backend: { address: backendAddress(3), port: 53 }, inPackets: 2, inBytes: 2 * query.length, outPackets: 0 });
    expect(expired.durationMs).toBeGreaterThanOrEqual(150);
    expect(expired.durationMs).toBeLessThan(1000);
    expect(lb.stats().flowEvents).toEqual({ enabled: true, events: events.length, dropped: 0 });
  });

  it('is bounded: events the reader cannot take in time are dropped and counted', async () => {
    const lb = await createBalancer({ flowEvents: { records: 16 } });
    open.push(lb);
    let created = 0;
    lb.on('flow', (e) => (created += e.type === 'created' ? 1 : 0));
    const web = lb.addService({ address: vip, port: 80, scheduler: 'rr', healthCheck: { type: 'none' } });
    web.addBackend({ address: backendAddress(2), port: 8080 });
    const flows = 100;
    for (let i = 0; i < flows; i++) expect(lb.memoryPort('in').inject(toVip(tcp(46000 + i, 'S')))).toBe(true);
    // Keep the JS thread (the rings' reader) busy while the workers fill their 16-record rings.
    const until_ = Date.now() + 100;
    while (Date.now() < until_);
    expect(await lb.memoryPort('out').take({ count: flows, timeoutMs: 3000 })).toHaveLength(flows);
    await until(() => created + lb.stats().flowEvents.dropped === flows, 3000, 'every event delivered or counted');
    const { dropped, events } = lb.stats().flowEvents;
    expect(dropped).toBeGreaterThan(0);
    expect(events).toBe(created);
    expect(created).toBeGreaterThanOrEqual(16);
  });

  it('is off unless asked for; bad options are ValidationErrors', async () => {
    const lb = await createBalancer();
    open.push(lb);
    expect(lb.stats().flowEvents).toEqual({ enabled: false, events: 0, dropped: 0 });
    await expect(createBalancer({ flowEvents: { records: 8 } })).rejects.toMatchObject({ code: 'EINVAL_RANGE', path: 'flowEvents.records' });
    await expect(createBalancer({ flowEvents: 'yes' as unknown as boolean })).rejects.toMatchObject({ code: 'EINVAL_TYPE', path: 'flowEvents' });
  });
});
