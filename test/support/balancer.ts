// A two-interface memory-driver topology for LoadBalancer tests:
//
//   client 198.18.0.10 ── router 198.18.0.254 (02:..:00:fe) ── in 198.18.0.1 ┐
//                                                                            ├ balancer
//   backends 198.18.1.2 .. 198.18.1.99 (02:00:00:00:01:NN) ── out 198.18.1.1 ┘
import { LoadBalancer } from '../../lib/load-balancer.js';
import type { LoadBalancerOptions } from '../../lib/config/types.js';
import { frame, type L4Spec } from './packets.js';

export const vip = '198.18.0.100';
export const client = '198.18.0.10';
export const inMac = '02:00:00:00:00:01';
export const outMac = '02:00:00:00:00:02';
export const routerMac = '02:00:00:00:00:fe';

export function backendAddress(n: number): string {
  return `198.18.1.${n}`;
}

export function backendMac(n: number): string {
  return `02:00:00:00:01:${n.toString(16).padStart(2, '0')}`;
}

export function memoryOptions(overrides: Partial<LoadBalancerOptions> = {}): LoadBalancerOptions {
  const neighbours = [{ address: '198.18.0.254', mac: routerMac, interface: 'in' }];
  for (let n = 2; n < 100; n++) neighbours.push({ address: backendAddress(n), mac: backendMac(n), interface: 'out' });
  return {
    driver: 'memory',
    interfaces: ['in', 'out'],
    workers: 2,
    flows: { capacity: 4096 },
    maxBackends: 256,
    memory: {
      interfaces: { in: { mac: inMac, addresses: ['198.18.0.1/24'] }, out: { mac: outMac, addresses: ['198.18.1.1/24'] } },
      neighbours,
      routes: [{ prefix: '0.0.0.0/0', via: '198.18.0.254', interface: 'in' }],
    },
    ...overrides,
  };
}

export function createBalancer(overrides: Partial<LoadBalancerOptions> = {}): Promise<LoadBalancer> {
  return LoadBalancer.create(memoryOptions(overrides));
}

/** A client's packet to the VIP as it arrives on 'in'. */
export function toVip(l4: L4Spec, dst = vip): Buffer {
  return frame({ src: routerMac, dst: inMac }, { src: client, dst, l4 });
}

export function tcp(sport: number, flags: string, dport = 80, extra: Partial<Extract<L4Spec, { kind: 'tcp' }>> = {}): L4Spec {
  return { kind: 'tcp', sport, dport, flags, seq: 1000, ack: flags.includes('A') ? 5000 : 0, ...extra };
}

export interface Forwarded {
  dstMac: string;
  srcAddress: string;
  dstAddress: string;
  protocol: number;
  srcPort: number;
  dstPort: number;
  tcpFlags: number;
}

/** Decodes the headers a test looks at (untagged IPv4 frames). */
export function decode(frameBytes: Buffer): Forwarded {
  const ip = 14;
  const ihl = (frameBytes[ip]! & 0x0f) * 4;
  const l4 = ip + ihl;
  const hex = (b: Buffer) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
  const addr = (at: number) => [...frameBytes.subarray(at, at + 4)].join('.');
  return {
    dstMac: hex(frameBytes.subarray(0, 6)),
    srcAddress: addr(ip + 12),
    dstAddress: addr(ip + 16),
    protocol: frameBytes[ip + 9]!,
    srcPort: frameBytes.readUInt16BE(l4),
    dstPort: frameBytes.readUInt16BE(l4 + 2),
    tcpFlags: frameBytes[ip + 9] === 6 ? frameBytes[l4 + 13]! : 0,
  };
}

export async function until(condition: () => boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
