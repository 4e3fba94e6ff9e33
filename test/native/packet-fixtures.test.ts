import { describe, expect, it } from 'vitest';
import { packetFixtures } from '../fixtures/packets/fixtures.js';
import { runFixture } from '../support/fixture-runner.js';

const hex = (b: Buffer) => b.toString('hex');

// With two workers, successive frames land on alternating workers' rings (as
// the kernel's fanout may do): replies must find flows created elsewhere.
describe.each([1, 2])('packet fixtures through the memory port, %i worker(s)', (workers) => {
  for (const fixture of packetFixtures()) {
    it(`${fixture.name}: ${fixture.description}`, () => {
      const outcomes = runFixture(fixture, { workers });
      fixture.steps.forEach((step, i) => {
        const outcome = outcomes[i]!;
        const label = `${fixture.name} step ${i + 1}`;
        expect(outcome.frames.map((f) => ({ port: f.port, frame: hex(f.frame) })), label).toEqual(
          step.expect.map((e) => ({ port: e.port, frame: hex(e.frame) })),
        );
        expect(outcome.drops, `${label} drops`).toEqual(step.drops ?? {});
        for (const [name, value] of Object.entries(step.counters ?? {})) {
          expect(outcome.counters[name] ?? 0, `${label} counter ${name}`).toBeGreaterThanOrEqual(value);
        }
      });
    });
  }
});
