// Scheduler hook tables: validated before publication; a hook that throws
// or returns a bad table yields a typed error instead of a table.
import { describe, expect, it } from 'vitest';

import { SchedulerHookError } from '../../lib/errors.js';
import { runSchedulerHook, validateHookTable, weightedTable } from '../../lib/schedulers/hook.js';

describe('validateHookTable', () => {
  it.each([
    ['an array', [0, 1, 2, 1], 3],
    ['a typed array', Uint32Array.from([0, 0]), 1],
    ['length 1', [0], 1],
    ['length 2^20', new Array(1 << 20).fill(1), 2],
  ])('accepts %s', (_, table, backends) => {
    const entries = table as ArrayLike<number>;
    const copy = validateHookTable(table, backends, 'h');
    expect(Array.isArray(copy) && copy.length === entries.length && copy.every((v, i) => v === entries[i])).toBe(true);
  });

  const suffix = '; the previous table stays in force';
  it.each([
    ['not an array', 'oops', 2, 'scheduler hook "h" returned "oops" instead of an array of backend indexes'],
    ['empty', [], 2, 'scheduler hook "h" returned a table of length 0: the length must be a power of two from 1 to 1048576'],
    ['length 3', [0, 1, 0], 2, 'scheduler hook "h" returned a table of length 3: the length must be a power of two from 1 to 1048576'],
    ['too long', new Array(1 << 21).fill(0), 2, 'scheduler hook "h" returned a table of length 2097152: the length must be a power of two from 1 to 1048576'],
    ['an index out of range', [0, 2], 2, "scheduler hook \"h\" returned entry 1 = 2: entries must index the service's 2 backends (0 to 1)"],
    ['a negative index', [0, -1], 2, "scheduler hook \"h\" returned entry 1 = -1: entries must index the service's 2 backends (0 to 1)"],
    ['a fraction', [0, 0.5], 2, 'scheduler hook "h" returned entry 1 = 0.5: entries must be integers'],
    ['NaN', [NaN, 0], 2, 'scheduler hook "h" returned entry 0 = NaN: entries must be integers'],
    ['a string entry', ['0', 0], 2, 'scheduler hook "h" returned entry 0 = "0": entries must be integers'],
    ['a table without backends', [0], 0, 'scheduler hook "h" returned a table for a service without backends'],
  ])('rejects %s', (_, table, backends, message) => {
    try {
      validateHookTable(table, backends, 'h');
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(SchedulerHookError);
      expect(error).toMatchObject({ code: 'EHOOK_TABLE', path: 'scheduler', message: message + suffix });
    }
  });
});

describe('runSchedulerHook', () => {
  it('returns the table, or the error of a hook that throws or returns garbage', () => {
    expect(runSchedulerHook({ name: 'ok', table: () => [1, 0] }, ['a', 'b'], {})).toEqual({ table: [1, 0] });
    const threw = runSchedulerHook({ name: 'boom', table: () => { throw new Error('no data'); } }, ['a'], {});
    expect('error' in threw && threw.error).toMatchObject({ code: 'EHOOK_THREW', message: 'scheduler hook "boom" threw: no data; the previous table stays in force' });
    const bad = runSchedulerHook({ name: 'bad', table: () => [5] }, ['a'], {});
    expect('error' in bad && bad.error.code).toBe('EHOOK_TABLE');
  });

  it('passes the backends and stats through', () => {
    let seen: unknown[] = [];
    runSchedulerHook({ name: 'spy', table: (b, s) => { seen = [b, s]; return [0]; } }, ['x'], { packets: 1 });
    expect(seen).toEqual([['x'], { packets: 1 }]);
  });
});

describe('weightedTable', () => {
  it('gives shares proportional to the weights, interleaved', () => {
    const table = weightedTable([1, 3], 8);
    expect(table.filter((i) => i === 0)).toHaveLength(2);
    expect(table.filter((i) => i === 1)).toHaveLength(6);
    expect(table.slice(0, 4)).toEqual([1, 0, 1, 1]);
  });

  it('sizes itself at 64 entries per backend, a power of two', () => {
    expect(weightedTable([1, 1, 1])).toHaveLength(256);
    expect(weightedTable([5])).toEqual(new Array(64).fill(0));
  });

  it('spreads evenly when no weight is positive, and rejects a bad length', () => {
    expect(weightedTable([0, 0], 4).sort()).toEqual([0, 0, 1, 1]);
    expect(() => weightedTable([1], 3)).toThrow(RangeError);
  });
});
