// whatIf(): the share of new flows a change would send elsewhere, computed
// without applying the change. Hash-based schedulers are compared on their
// lookup tables by the addon (the tables the data plane would build); for
// the others, which flow goes where depends on each worker's rotation and
// the load, so the answer is the change in each backend's share by weight.
import type { BackendRef, WhatIfResult } from './types.js';

/** A backend as a scheduler sees it: the weight in force and whether it is up. */
export interface SchedulingBackend extends BackendRef {
  weight: number;
  up: boolean;
  activeFlows: number;
}

/** Each backend's share of new flows by weight among the schedulable ones (up, weight > 0); all 0 when none is. */
export function weightShares(backends: readonly SchedulingBackend[]): number[] {
  const total = backends.reduce((n, b) => n + (b.up && b.weight > 0 ? b.weight : 0), 0);
  return backends.map((b) => (total > 0 && b.up && b.weight > 0 ? b.weight / total : 0));
}

const keyOf = (b: BackendRef) => `${b.address}:${b.port}`;

/**
 * The share of new flows that go to another backend when the shares change
 * from `before` to `after` at best (the total variation distance): what
 * backends lose is what others gain.
 */
export function movedByShares(before: readonly SchedulingBackend[], after: readonly SchedulingBackend[]): number {
  const a = new Map(before.map((b, i) => [keyOf(b), weightShares(before)[i]!]));
  const b = new Map(after.map((x, i) => [keyOf(x), weightShares(after)[i]!]));
  let moved = 0;
  for (const [key, share] of a) moved += Math.max(0, share - (b.get(key) ?? 0));
  // Nothing schedulable before: every new flow was dropped, any share now is a change.
  if (a.size === 0 || [...a.values()].every((s) => s === 0)) return [...b.values()].some((s) => s > 0) ? 1 : 0;
  return moved;
}

export interface Comparison {
  exact: boolean;
  moved: number;
  total: number;
}

/** The result of whatIf() from the two backend lists and, for hash-based schedulers, the addon's comparison. */
export function whatIfResult(
  service: string,
  scheduler: string,
  before: readonly SchedulingBackend[],
  after: readonly SchedulingBackend[],
  removed: readonly SchedulingBackend[],
  comparison: Comparison | null,
): WhatIfResult {
  const sharesBefore = new Map(before.map((b, i) => [keyOf(b), weightShares(before)[i]!]));
  const sharesAfter = new Map(after.map((b, i) => [keyOf(b), weightShares(after)[i]!]));
  const everyone = [...before, ...after.filter((b) => !sharesBefore.has(keyOf(b)))];
  return {
    service,
    scheduler,
    method: comparison === null ? 'weights' : comparison.exact ? 'table-slots' : 'sampled',
    movedShare: comparison === null ? movedByShares(before, after) : comparison.total > 0 ? comparison.moved / comparison.total : 0,
    changed: comparison?.moved ?? null,
    total: comparison?.total ?? null,
    flowsEnding: removed.reduce((n, b) => n + b.activeFlows, 0),
    activeFlows: before.reduce((n, b) => n + b.activeFlows, 0),
    backends: everyone.map((b) => ({
      address: b.address,
      port: b.port,
      shareBefore: sharesBefore.get(keyOf(b)) ?? 0,
      shareAfter: sharesAfter.get(keyOf(b)) ?? 0,
    })),
  };
}
