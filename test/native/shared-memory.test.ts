// The statistics region and the event rings through the addon: headers
// checked against the exported layout, counters equal to what the engine
// reports, the ring's protocol (order, overflow, a hostile head), signals
// raised by real drops, and the buffer's life after close().
import { describe, expect, it } from 'vitest';

import { compileSnapshot } from '../../lib/config/snapshot.js';
import { DataPlaneError } from '../../lib/errors.js';
import { loadBinding, type NativeEngine, type NativeEngineOptions } from '../../lib/native/binding.js';
import { EventRingReader, StatsReader } from '../../lib/shm/stats.js';
import { standardConfig } from '../fixtures/packets/topology.js';
import { frame } from '../support/packets.js';

const binding = loadBinding();
const { layout } = binding;

function engine(options: NativeEngineOptions = {}): NativeEngine {
  return new binding.Engine({ ports: 3, workers: 2, flowSlots: 4096, ringFrames: 64, backendSlots: 64, ...options });
}

function syn(sport: number, dst = '198.18.0.100'): Buffer {
  return frame(
    { src: '02:00:00:00:00:fe', dst: '02:00:00:00:00:01' },
    { src: '198.18.0.10', dst, l4: { kind: 'tcp', sport, dport: 80, flags: 'S' } },
  );
}

function pollAll(e: NativeEngine, nowMs: number): void {
  for (let round = 0; round < 2; round++) e.poll(BigInt(nowMs) * 1_000_000n);
  for (let port = 0; port < 3; port++) while (e.take(port) !== null);
}

describe('statistics region', () => {
  it('exports every layout and constant TypeScript needs', () => {
    expect(layout.stats.region.size).toBe(64);
    expect(layout.stats.eventRecord.size).toBe(32);
    expect(Object.keys(layout.stats.workerCounters.fields)).toContain('rxPackets');
    expect(Object.keys(layout.stats.flowCounters.fields)).toEqual([
      'lookupHits',
      'lookupMisses',
      'inserts',
      'insertExists',
      'insertReverseExists',
      'evictionsHalfOpen',
      'evictionsExpired',
      'insertFailedFull',
      'insertContended',
      'expired',
      'removed',
    ]);
    expect(layout.stats.drops.count).toBe(binding.dropReasons().length);
    expect(layout.stats.eventKinds).toEqual(['flow-table-full', 'no-neighbour', 'no-route', 'no-local-port', 'tx-full', 'port-error']);
    for (const name of ['statsRegionMagic', 'statsBlockMagic', 'eventRingMagic', 'statsLayoutVersion']) {
      expect(layout.constants[name]).toBeTypeOf('number');
    }
  });

  it('holds the counters the engine reports, summed per backend slot', () => {
    const e = engine();
    try {
      e.publish(compileSnapshot(layout, { ...standardConfig(), generation: 1n }));
      const buffer = e.sharedMemory();
      expect(e.sharedMemory()).toBe(buffer);
      const reader = new StatsReader(buffer, layout.stats, layout.constants, binding.dropReasons());
      expect(reader.workers).toBe(2);
      expect(reader.backendSlots).toBe(64);
      for (let i = 0; i < 10; i++) expect(e.inject(0, syn(41000 + i))).toBe(true);
      e.inject(0, Buffer.alloc(10)); // a runt: dropped as malformed
      pollAll(e, 1000);
      const native = e.counters();
      for (let w = 0; w < 2; w++) {
        const shared = reader.worker(w);
        for (const [name, value] of Object.entries(native[w]!)) {
          if (typeof value === 'number') expect(shared.counters[name], name).toBe(value);
        }
        expect(shared.drops).toEqual(native[w]!.drops);
        for (const [name, value] of Object.entries(native[w]!.flows)) expect(shared.flows[name], name).toBe(value);
      }
      const [nat] = e.backendCounters([1]);
      const { activeFlows, ...counters } = nat!;
      expect(activeFlows).toBe(10);
      expect(reader.backend(1)).toEqual(counters);
      expect(reader.backend(1)).toMatchObject({ packets: 10, inPackets: 10, outPackets: 0, outBytes: 0 });
      expect(reader.activeFlows(1)).toBe(10);
      expect(reader.backend(4096)).toEqual({ packets: 0, bytes: 0, inPackets: 0, inBytes: 0, outPackets: 0, outBytes: 0, flowsCreated: 0 });
    } finally {
      e.close();
    }
  });

  it('refuses a region whose header does not match the layout', () => {
    const e = engine();
    try {
      const buffer = e.sharedMemory();
      const copy = buffer.slice(0);
      new DataView(copy).setUint32(layout.stats.region.fields.magic!.offset, 0x12345678, true);
      expect(() => new StatsReader(copy, layout.stats, layout.constants, binding.dropReasons())).toThrow(DataPlaneError);
      expect(() => new StatsReader(copy, layout.stats, layout.constants, binding.dropReasons())).toThrow(
        'statistics region: wrong magic number',
      );
      const shortened = buffer.slice(0, 4096);
      expect(() => new StatsReader(shortened, layout.stats, layout.constants, binding.dropReasons())).toThrow(
        'statistics region: total size differs from the buffer',
      );
    } finally {
      e.close();
    }
  });

  it('is detached by close(), and close() is idempotent', () => {
    const e = engine();
    const buffer = e.sharedMemory();
    expect(buffer.byteLength).toBeGreaterThan(0);
    e.close();
    e.close();
    expect(buffer.byteLength).toBe(0);
    expect(() => e.sharedMemory()).toThrow('the engine is closed');
  });
});

describe('event rings', () => {
  it('delivers records in order, counts what a full ring loses, and frees slots when the head moves', () => {
    const e = engine({ workers: 1, eventRecords: 4 });
    try {
      const buffer = e.sharedMemory();
      const ring = new EventRingReader(buffer, layout.stats, layout.constants, 0);
      const portError = layout.stats.eventKinds.indexOf('port-error');
      for (let i = 0; i < 6; i++) expect(e.postEvent(0, portError, i + 1, 100 + i)).toBe(i < 4);
      expect(ring.lost).toBe(2);
      expect(ring.takeLost()).toBe(2);
      expect(ring.takeLost()).toBe(0);
      const events = ring.drain();
      expect(events.map((ev) => [ev.kind, ev.worker, ev.count, ev.detail])).toEqual([
        ['port-error', 0, 1, 100],
        ['port-error', 0, 2, 101],
        ['port-error', 0, 3, 102],
        ['port-error', 0, 4, 103],
      ]);
      expect(ring.drain()).toEqual([]);
      // Slots are free again: the indexes wrap past the capacity.
      for (let i = 0; i < 4; i++) expect(e.postEvent(0, portError, 1, i)).toBe(true);
      expect(ring.drain().map((ev) => ev.detail)).toEqual([0, 1, 2, 3]);
    } finally {
      e.close();
    }
  });

  it('signals the reader once per read: records after eventsDrained() signal again', async () => {
    let signals = 0;
    const e = engine({ workers: 1, onEvents: () => (signals += 1) });
    // A few loop turns: the signal is an async handle the loop serves in its poll phase.
    const turn = () => new Promise((resolve) => setTimeout(resolve, 20));
    try {
      const ring = new EventRingReader(e.sharedMemory(), layout.stats, layout.constants, 0);
      const kind = layout.stats.eventKinds.indexOf('port-error');
      await turn();
      expect(signals).toBe(0);
      for (let i = 0; i < 3; i++) expect(e.postEvent(0, kind, 1, i)).toBe(true);
      await turn();
      expect(signals).toBe(1);
      e.eventsDrained();
      expect(ring.drain().map((ev) => ev.detail)).toEqual([0, 1, 2]);
      await turn();
      expect(signals).toBe(1);
      expect(e.postEvent(0, kind, 1, 3)).toBe(true);
      await turn();
      expect(signals).toBe(2);
    } finally {
      e.close();
    }
  });

  it('never lets a hostile head make the producer overwrite unread records', () => {
    const e = engine({ workers: 1, eventRecords: 4 });
    try {
      const buffer = e.sharedMemory();
      const ring = new EventRingReader(buffer, layout.stats, layout.constants, 0);
      const headOffset = layout.stats.region.fields.ring_offset!.offset;
      const ringBase = new DataView(buffer).getUint32(headOffset, true);
      const head = new Uint32Array(buffer, ringBase + layout.stats.eventRing.fields.head!.offset, 1);
      const kind = layout.stats.eventKinds.indexOf('port-error');
      expect(e.postEvent(0, kind, 1, 1)).toBe(true);
      expect(e.postEvent(0, kind, 1, 2)).toBe(true);
      // Beyond the tail: ignored (as if nothing had been consumed).
      Atomics.store(head, 0, 1000);
      expect(e.postEvent(0, kind, 1, 3)).toBe(true);
      expect(e.postEvent(0, kind, 1, 4)).toBe(true);
      expect(e.postEvent(0, kind, 1, 5)).toBe(false);
      // Backwards, behind what was consumed before: ignored too.
      Atomics.store(head, 0, 0xfffffff0);
      expect(e.postEvent(0, kind, 1, 6)).toBe(false);
      Atomics.store(head, 0, 0);
      expect(ring.drain().map((ev) => ev.detail)).toEqual([1, 2, 3, 4]);
    } finally {
      e.close();
    }
  });

  it('raises rate-limited signals for drops that need action', () => {
    const e = engine({ workers: 1, signalIntervalMs: 100 });
    try {
      const config = standardConfig();
      config.services[0]!.backends[0]!.nextHopMac = undefined; // nat:80's backend unresolved
      e.publish(compileSnapshot(layout, { ...config, generation: 1n }));
      const ring = new EventRingReader(e.sharedMemory(), layout.stats, layout.constants, 0);
      for (let i = 0; i < 5; i++) e.inject(0, syn(42000 + i));
      pollAll(e, 1000);
      expect(ring.drain().map((ev) => [ev.kind, ev.count, ev.detail])).toEqual([['no-neighbour', 5, 5]]);
      // Within the interval: counted, not reported yet.
      for (let i = 0; i < 3; i++) e.inject(0, syn(43000 + i));
      pollAll(e, 1050);
      expect(ring.drain()).toEqual([]);
      pollAll(e, 1100);
      expect(ring.drain().map((ev) => [ev.kind, ev.count, ev.detail, ev.timeNs])).toEqual([['no-neighbour', 3, 8, 1_100_000_000n]]);
    } finally {
      e.close();
    }
  });

  it('reports a full flow table', () => {
    // 16 slots: nat flows take two each; the rest of the SYNs find no room.
    const e = engine({ workers: 1, flowSlots: 16 });
    try {
      e.publish(compileSnapshot(layout, { ...standardConfig(), generation: 1n }));
      const ring = new EventRingReader(e.sharedMemory(), layout.stats, layout.constants, 0);
      for (let i = 0; i < 40; i++) e.inject(0, frame(
        { src: '02:00:00:00:00:fe', dst: '02:00:00:00:00:01' },
        { src: '198.18.0.10', dst: '198.18.0.100', l4: { kind: 'udp', sport: 44000 + i, dport: 53, payload: Buffer.from('q') } },
      ));
      pollAll(e, 1000);
      const events = ring.drain();
      expect(events.map((ev) => ev.kind)).toEqual(['flow-table-full']);
      expect(events[0]!.count).toBe(e.counters()[0]!.drops['flow-table-full']);
    } finally {
      e.close();
    }
  });
});
