// The health state machine, driven by sequences of check results.
import { describe, expect, it } from 'vitest';

import { initialHealthState, nextHealthState } from '../../lib/health/state.js';

// 'P' = pass, 'F' = fail; the expected state after each result ('u' up, 'd' down)
// and '^' / 'v' where it flips.
const cases: Array<{ name: string; start: 'up' | 'down'; rise: number; fall: number; results: string; states: string }> = [
  { name: 'comes up after rise passes', start: 'down', rise: 2, fall: 3, results: 'PP', states: 'd^' },
  { name: 'a failure restarts the rise count', start: 'down', rise: 2, fall: 3, results: 'PFPP', states: 'ddd^' },
  { name: 'rise 1 comes up at once', start: 'down', rise: 1, fall: 1, results: 'PFP', states: '^v^' },
  { name: 'goes down after fall failures', start: 'up', rise: 2, fall: 3, results: 'FFF', states: 'uuv' },
  { name: 'a pass restarts the fall count', start: 'up', rise: 2, fall: 3, results: 'FFPFFPFFF', states: 'uuuuuuuuv' },
  { name: 'stays down while failing', start: 'down', rise: 2, fall: 3, results: 'FFFF', states: 'dddd' },
  { name: 'stays up while passing', start: 'up', rise: 2, fall: 3, results: 'PPPP', states: 'uuuu' },
  { name: 'flaps with rise 2 fall 2', start: 'down', rise: 2, fall: 2, results: 'PPFFPPFP', states: 'd^uvd^uu' },
];

describe('nextHealthState', () => {
  it.each(cases)('$name: $results -> $states', ({ start, rise, fall, results, states }) => {
    let state = initialHealthState(start === 'up');
    const seen: string[] = [];
    for (const result of results) {
      const step = nextHealthState(state, result === 'P', { rise, fall });
      state = step.state;
      seen.push(step.changed ? (state.up ? '^' : 'v') : state.up ? 'u' : 'd');
    }
    expect(seen.join('')).toBe(states);
  });
});
