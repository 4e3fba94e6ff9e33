// Per-backend In/Out counters (ipvsadm --stats) through the whole engine:
// client packets counted In as received, backend replies Out as sent back,
// exact counts and bytes, per backend.
import { afterEach, describe, expect, it } from 'vitest';

import type { LoadBalancer } from '../../lib/load-balancer.js';
import { backendAddress, backendMac, client, createBalancer, decode, outMac, tcp, toVip, until } from '../support/balancer.js';
import { frame } from '../support/packets.js';

const open: LoadBalancer[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((lb) => lb.close()));
});

describe('per-backend In and Out counters', () => {
  it('counts client packets In and replies Out, exactly, on the backend that got the flow', async () => {
    const lb = await createBalancer();
    open.push(lb);
    const web = lb.addService({ address: '198.18.0.100', port: 80, scheduler: 'rr', healthCheck: { type: 'none' } });
    web.addBackend({ address: backendAddress(2), port: 8080 });
    web.addBackend({ address: backendAddress(3), port: 8080 });
    const toBackend = [toVip(tcp(40001, 'S')), toVip(tcp(40001, 'A')), toVip(tcp(40001, 'PA', 80, { payload: Buffer.alloc(300, 1) }))];
    lb.memoryPort('in').inject(toBackend[0]!);
    const [first] = await lb.memoryPort('out').take({ count: 1, timeoutMs: 2000 });
    const chosen = decode(first!).dstAddress;
    const n = chosen === backendAddress(2) ? 2 : 3;
    for (const f of toBackend.slice(1)) lb.memoryPort('in').inject(f);
    expect(await lb.memoryPort('out').take({ count: 2, timeoutMs: 2000 })).toHaveLength(2);
    const reply = (flags: string, payload = 0) =>
      frame(
        { src: backendMac(n), dst: outMac },
        { src: backendAddress(n), dst: client, l4: { kind: 'tcp', sport: 8080, dport: 40001, flags, seq: 5000, ack: 1001, payload: Buffer.alloc(payload, 2) } },
      );
    const replies = [reply('SA'), reply('PA', 1000)];
    for (const f of replies) lb.memoryPort('out').inject(f);
    expect(await lb.memoryPort('in').take({ count: 2, timeoutMs: 2000 })).toHaveLength(2);
    await until(() => lb.stats().services[0]!.backends.some((b) => b.outPackets === 2), 2000, 'replies counted');
    const stats = lb.stats().services[0]!;
    const used = stats.backends.find((b) => b.address === chosen)!;
    const other = stats.backends.find((b) => b.address !== chosen)!;
    const length = (frames: Buffer[]) => frames.reduce((sum, f) => sum + f.length, 0);
    expect(used).toMatchObject({
      inPackets: 3,
      inBytes: length(toBackend),
      outPackets: 2,
      outBytes: length(replies), // nat rewrites in place: a reply keeps its length
      packets: 5,
      bytes: length(toBackend) + length(replies),
      totalFlows: 1,
    });
    expect(other).toMatchObject({ inPackets: 0, outPackets: 0, inBytes: 0, outBytes: 0 });
    expect(stats).toMatchObject({ inPackets: 3, outPackets: 2, packets: 5 });
    const metrics = await lb.metrics().metrics();
    expect(metrics).toContain(`l4lb_backend_in_packets_total{service="198.18.0.100:80/tcp",backend="${chosen}:8080"} 3`);
    expect(metrics).toContain(`l4lb_backend_out_bytes_total{service="198.18.0.100:80/tcp",backend="${chosen}:8080"} ${length(replies)}`);
  });
});
