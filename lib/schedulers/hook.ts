// Scheduler hooks: a user function returns a lookup table of backend
// indexes; each new flow of the service hashes into it. The table is
// validated here, before publication, and the native side validates it
// again. A hook that throws or returns an invalid table leaves the previous
// table in force (the balancer emits the SchedulerHookError as 'error').
import { SchedulerHookError } from '../errors.js';
import { describe } from '../config/validate.js';

/** Longest table a hook may return. */
export const maxHookTableLength = 1 << 20;

/**
 * Checks a hook's table: an array (or typed array) whose length is a power
 * of two from 1 to 2^20, every entry an integer index into the service's
 * backends. Returns a plain copy; throws SchedulerHookError 'EHOOK_TABLE'.
 */
export function validateHookTable(table: unknown, backendCount: number, hookName: string, path = 'scheduler'): number[] {
  const reject = (rule: string): never => {
    throw new SchedulerHookError('EHOOK_TABLE', `scheduler hook "${hookName}" returned ${rule}; the previous table stays in force`, {
      path,
    });
  };
  const isArrayLike = Array.isArray(table) || (ArrayBuffer.isView(table) && !(table instanceof DataView));
  if (!isArrayLike) reject(`${describe(table)} instead of an array of backend indexes`);
  const entries = table as ArrayLike<unknown>;
  const length = entries.length;
  if (length === 0 || length > maxHookTableLength || (length & (length - 1)) !== 0) {
    reject(`a table of length ${length}: the length must be a power of two from 1 to ${maxHookTableLength}`);
  }
  if (backendCount === 0) reject('a table for a service without backends');
  const copy = new Array<number>(length);
  for (let i = 0; i < length; i++) {
    const entry = entries[i];
    if (typeof entry !== 'number' && typeof entry !== 'bigint') reject(`entry ${i} = ${describe(entry)}: entries must be integers`);
    const value = Number(entry);
    if (!Number.isInteger(value)) reject(`entry ${i} = ${describe(entry)}: entries must be integers`);
    if (value < 0 || value >= backendCount) {
      reject(`entry ${i} = ${value}: entries must index the service's ${backendCount} backend${backendCount === 1 ? '' : 's'} (0 to ${backendCount - 1})`);
    }
    copy[i] = value;
  }
  return copy;
}

/**
 * Calls a hook and validates its table. Never throws: a hook that throws or
 * returns an invalid table yields `{ error }`.
 */
export function runSchedulerHook<B, S>(
  hook: { name: string; table(backends: readonly B[], stats: S): ArrayLike<number> },
  backends: readonly B[],
  stats: S,
  path = 'scheduler',
): { table: number[] } | { error: SchedulerHookError } {
  let result: unknown;
  try {
    result = hook.table(backends, stats);
  } catch (cause) {
    const why = cause instanceof Error ? cause.message : String(cause);
    return {
      error: new SchedulerHookError('EHOOK_THREW', `scheduler hook "${hook.name}" threw: ${why}; the previous table stays in force`, {
        path,
        cause,
      }),
    };
  }
  try {
    return { table: validateHookTable(result, backends.length, hook.name, path) };
  } catch (error) {
    return { error: error as SchedulerHookError };
  }
}

/**
 * A lookup table that gives each backend a share of entries proportional to
 * its weight, interleaved (smooth weighted round robin) so that neighbouring
 * entries name different backends. For hooks that compute weights (from
 * latency, load, ...) and for the table a hook service starts with.
 * `length` must be a power of two; by default the smallest one that is at
 * least 64 entries per backend (at most 2^16).
 */
export function weightedTable(weights: readonly number[], length?: number): number[] {
  const n = weights.length;
  if (n === 0) return [];
  let size = length ?? 1;
  if (length === undefined) while (size < Math.min(64 * n, 1 << 16)) size <<= 1;
  if (size <= 0 || (size & (size - 1)) !== 0 || size > maxHookTableLength) {
    throw new RangeError(`weightedTable: length must be a power of two from 1 to ${maxHookTableLength}, got ${size}`);
  }
  const positive = weights.map((w) => (Number.isFinite(w) && w > 0 ? w : 0));
  const total = positive.reduce((a, b) => a + b, 0);
  const effective = total > 0 ? positive : weights.map(() => 1);
  const sum = total > 0 ? total : n;
  const current = new Array<number>(n).fill(0);
  const table = new Array<number>(size);
  for (let i = 0; i < size; i++) {
    let best = 0;
    for (let b = 0; b < n; b++) {
      current[b]! += effective[b]!;
      if (current[b]! > current[best]!) best = b;
    }
    current[best]! -= sum;
    table[i] = best;
  }
  return table;
}
