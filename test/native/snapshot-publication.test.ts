// The configuration hand-off under stress: a threaded worker forwards while
// the control thread publishes snapshots as fast as it can. Every backend of
// snapshot g carries g in its port, its address and its next-hop MAC; a
// forwarded frame whose three disagree would come from a torn snapshot (or
// from one freed while the worker still read it).
import { describe, expect, it } from 'vitest';

import { compileSnapshot, type SnapshotInput } from '../../lib/config/snapshot.js';
import { loadBinding } from '../../lib/native/binding.js';
import { decode } from '../support/balancer.js';
import { frame } from '../support/packets.js';

const binding = loadBinding();

function snapshot(generation: bigint): SnapshotInput {
  const g = Number(generation);
  const tag = g % 50_000;
  return {
    generation,
    ports: [
      { mac: '02:00:00:00:00:01', mtu: 1500, address: '198.18.0.1', prefixLength: 24 },
      { mac: '02:00:00:00:00:02', mtu: 1500, address: '198.18.1.1', prefixLength: 24 },
    ],
    services: [
      {
        id: 1,
        address: '198.18.0.100',
        port: 80,
        protocol: 'udp',
        method: 'nat',
        scheduler: g % 2 === 0 ? 'maglev' : 'wrr',
        backends: [0, 1, 2, 3].map((i) => ({
          // Same ids in every snapshot: flows stay valid, their packets are
          // rewritten from whichever snapshot is current.
          id: i + 1,
          // Distinct per backend (Maglev needs distinct identities), tag in the low 16 bits.
          address: `198.${18 + i}.${tag >> 8}.${tag & 0xff}`,
          port: 10_000 + tag,
          weight: 1 + ((g + i) % 4),
          up: true,
          egressPort: 1,
          nextHopMac: `02:${i.toString(16).padStart(2, '0')}:00:${((tag >> 16) & 0xff).toString(16).padStart(2, '0')}:${((tag >> 8) & 0xff)
            .toString(16)
            .padStart(2, '0')}:${(tag & 0xff).toString(16).padStart(2, '0')}`,
        })),
      },
    ],
  };
}

function tagOfPort(port: number): number {
  return port - 10_000;
}
function tagOfAddress(address: string): number {
  const [, , third, fourth] = address.split('.').map(Number);
  return (third! << 8) | fourth!;
}
function tagOfMac(mac: string): number {
  const bytes = mac.split(':').map((h) => parseInt(h, 16));
  return (bytes[3]! << 16) | (bytes[4]! << 8) | bytes[5]!;
}

describe('snapshot publication', () => {
  it('a worker never forwards with a torn or freed snapshot while a publisher races it', async () => {
    const engine = new binding.Engine({ ports: 2, workers: 1, threaded: true, polling: 'busy', flowSlots: 1 << 14, ringFrames: 1024 });
    try {
      let generation = 1n;
      engine.publish(compileSnapshot(binding.layout, snapshot(generation)));
      engine.start();
      const published = new Set<number>([1]);
      const deadline = Date.now() + 1500;
      let checked = 0;
      let sport = 1024;
      while (Date.now() < deadline) {
        for (let i = 0; i < 20; i++) {
          generation += 1n;
          published.add(Number(generation) % 50_000);
          engine.publish(compileSnapshot(binding.layout, snapshot(generation)));
        }
        for (let i = 0; i < 32; i++) {
          sport = sport >= 60_000 ? 1024 : sport + 1;
          engine.inject(
            0,
            frame(
              { src: '02:00:00:00:00:fe', dst: '02:00:00:00:00:01' },
              { src: '198.18.0.10', dst: '198.18.0.100', l4: { kind: 'udp', sport, dport: 80, payload: Buffer.from('x') } },
            ),
          );
        }
        for (let f = engine.take(1); f !== null; f = engine.take(1)) {
          const d = decode(f);
          const tag = tagOfPort(d.dstPort);
          expect(published.has(tag)).toBe(true);
          expect(tagOfAddress(d.dstAddress)).toBe(tag);
          expect(tagOfMac(d.dstMac)).toBe(tag);
          checked += 1;
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(generation).toBeGreaterThan(200n);
      expect(checked).toBeGreaterThan(100);
    } finally {
      engine.close();
    }
  });
});
