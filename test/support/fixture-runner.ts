// Runs packet fixtures through the addon's engine with the memory port: one
// worker stepped by hand, a fixed hash key, the clock under test control.
import { compileSnapshot } from '../../lib/config/snapshot.js';
import { loadBinding, type NativeEngine, type NativeWorkerCounters } from '../../lib/native/binding.js';
import type { PacketFixture } from '../fixtures/packets/fixtures.js';

export const fixtureHashKey = Uint8Array.from({ length: 16 }, (_, i) => i + 1);

export interface StepOutcome {
  frames: Array<{ port: number; frame: Buffer }>;
  drops: Record<string, number>;
  counters: Record<string, number>;
}

function flatCounters(workers: NativeWorkerCounters[]): { drops: Record<string, number>; counters: Record<string, number> } {
  const drops: Record<string, number> = {};
  const counters: Record<string, number> = {};
  for (const worker of workers) {
    for (const [name, value] of Object.entries(worker.drops)) drops[name] = (drops[name] ?? 0) + value;
    for (const [name, value] of Object.entries(worker)) {
      if (typeof value === 'number') counters[name] = (counters[name] ?? 0) + value;
    }
  }
  return { drops, counters };
}

function delta(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, value] of Object.entries(after)) {
    const d = value - (before[name] ?? 0);
    if (d !== 0) out[name] = d;
  }
  return out;
}

/** Runs every step of a fixture; returns what each step produced. */
export function runFixture(fixture: PacketFixture, engineOptions: { workers?: number } = {}): StepOutcome[] {
  const binding = loadBinding();
  const engine: NativeEngine = new binding.Engine({
    ports: fixture.config.ports.length,
    workers: engineOptions.workers ?? 1,
    hashKey: fixtureHashKey,
    ringFrames: 64,
    flowSlots: 4096,
  });
  try {
    let generation = 1n;
    engine.publish(compileSnapshot(binding.layout, { ...fixture.config, generation }));
    let nowMs = 1000;
    const outcomes: StepOutcome[] = [];
    for (const step of fixture.steps) {
      nowMs = step.atMs !== undefined ? 1000 + step.atMs : nowMs + 1;
      if (step.publish) {
        generation += 1n;
        engine.publish(compileSnapshot(binding.layout, { ...step.publish, generation }));
      }
      const before = flatCounters(engine.counters());
      if (step.inject) {
        const flags = step.inject.checksumPartial ? binding.frameFlags.checksumPartial : 0;
        if (!engine.inject(step.inject.port, step.inject.frame, flags)) throw new Error('inject refused');
      }
      // Every worker polls once per round; two rounds cover a frame injected into any worker's ring.
      for (let round = 0; round < 2; round++) engine.poll(BigInt(nowMs) * 1_000_000n);
      const frames: StepOutcome['frames'] = [];
      for (let port = 0; port < fixture.config.ports.length; port++) {
        for (let f = engine.take(port); f !== null; f = engine.take(port)) frames.push({ port, frame: f });
      }
      const after = flatCounters(engine.counters());
      outcomes.push({ frames, drops: delta(after.drops, before.drops), counters: delta(after.counters, before.counters) });
    }
    return outcomes;
  } finally {
    engine.close();
  }
}
