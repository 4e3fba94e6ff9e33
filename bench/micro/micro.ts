// Micro benchmarks of the packet core with the `benchmark` package. Each
// benchmarked call runs a native loop (native/bench/micro_kernels.h) of
// `iterations` operations, so the N-API crossing is amortised away; the
// reported time per operation is the call's mean divided by the iterations.
import Benchmark from 'benchmark';
import { compileSnapshot } from '../../lib/config/snapshot.js';
import type { NativeBinding } from '../../lib/native/binding.js';
import { packetFixtures } from '../../test/fixtures/packets/fixtures.js';

export interface MicroResult {
  name: string;
  group: 'scheduler' | 'flow-table' | 'maglev' | 'rewrite' | 'engine';
  nsPerOp: number;
  /** Relative margin of error of the mean (benchmark.js, 95%). */
  rme: number;
  samples: number;
  detail?: string;
  /** Flow-table cases: the table behind the measurement. */
  table?: FlowTableMeasure;
}

export interface FlowTableMeasure {
  /** IPv4 nat flows asked for (the table sized as flows.capacity sizes it) and placed. */
  flows: number;
  held: number;
  /** The table's memory by construction, and the process's resident growth while it was built. */
  tableBytes: number;
  residentBytes: number;
}

/** The flows of the capacity measurement: ten million IPv4 nat flows. */
export const capacityFlows = 10_000_000;
/** The flows of the large lookup case. */
export const largeTableFlows = 1_000_000;

interface MicroCase {
  name: string;
  group: MicroResult['group'];
  iterations: number;
  fn: () => unknown;
  detail?: string;
}

function fixtureFrame(name: string): { config: Parameters<typeof compileSnapshot>[1]; port: number; frame: Buffer } {
  const fixture = packetFixtures().find((f) => f.name === name);
  const inject = fixture?.steps.find((s) => s.inject)?.inject;
  if (!fixture || !inject) throw new Error(`no packet fixture ${name}`);
  return { config: { ...fixture.config, generation: 1n }, port: inject.port, frame: inject.frame };
}

const methodFixtures: Record<string, string> = {
  nat: 'nat-udp-request-and-reply',
  fullnat: 'fullnat-request-and-reply',
  dr: 'dr-rewrites-only-mac-addresses',
  ipip: 'ipip-encapsulation',
  gre: 'gre-encapsulation-with-key',
};

/** What each mode measures (quick: the default run; full: --full). */
function selection(quick: boolean) {
  return {
    schedulers: quick ? ['wrr', 'maglev'] : ['rr', 'wrr', 'lc', 'wlc', 'sh', 'maglev'],
    flowCases: quick ? 2 : 3,
    maglevBackends: quick ? [1000] : [10, 100, 1000],
    rewrites: quick ? ['copy', 'nat'] : ['copy', 'parse', 'nat', 'fullnat', 'dr', 'ipip', 'gre'],
    engineMethods: quick ? ['nat'] : Object.keys(methodFixtures),
  };
}

export function microCaseCount(quick: boolean): number {
  const s = selection(quick);
  // + the 1M-flow lookups and the capacity measurement
  return s.schedulers.length + s.flowCases + 3 + s.maglevBackends.length + s.rewrites.length + s.engineMethods.length;
}

export function microCases(binding: NativeBinding, quick: boolean): MicroCase[] {
  const b = binding.bench;
  const cases: MicroCase[] = [];
  const { schedulers, maglevBackends, rewrites, engineMethods } = selection(quick);
  for (const kind of schedulers) {
    const pick = new b.SchedulerPick(kind, 100);
    cases.push({ name: `scheduler pick: ${kind}, 100 backends`, group: 'scheduler', iterations: 10_000, fn: () => pick.run(10_000) });
  }
  // 65,536 nat flows (131,072 entries) in the table the default capacity (262,144) gives.
  const defaultSlots = b.flowTableSlotsFor(262_144);
  const table = new b.FlowTableMicro(defaultSlots, 65_536);
  const detail = `65,536 nat flows in ${defaultSlots.toLocaleString('en-US')} slots (${(table.bytes() / 2 ** 20).toFixed(0)} MiB)`;
  cases.push({ name: 'flow lookup (hit)', group: 'flow-table', iterations: 10_000, fn: () => table.lookupHits(10_000), detail });
  if (!quick) cases.push({ name: 'flow lookup (miss)', group: 'flow-table', iterations: 10_000, fn: () => table.lookupMisses(10_000), detail });
  cases.push({ name: 'flow insert + remove (nat: 2 entries)', group: 'flow-table', iterations: 10_000, fn: () => table.insertRemove(10_000), detail });
  // A million nat flows in a table sized for them: lookups that miss every
  // cache, one after another and in the engine's prefetched bursts.
  const large = new b.FlowTableMicro(b.flowTableSlotsFor(largeTableFlows), largeTableFlows);
  const largeDetail = `${large.held().toLocaleString('en-US')} nat flows at the design load (${(large.bytes() / 2 ** 20).toFixed(0)} MiB)`;
  cases.push({ name: 'flow lookup (hit), 1,000,000 flows', group: 'flow-table', iterations: 10_000, fn: () => large.lookupHits(10_000), detail: largeDetail });
  cases.push({
    name: 'flow lookup (hit, prefetched bursts), 1,000,000 flows',
    group: 'flow-table',
    iterations: 10_000,
    fn: () => large.lookupBurstHits(10_000),
    detail: `${largeDetail}; bursts of 64 (the engine's) hashed and prefetched first`,
  });
  for (const backends of maglevBackends) {
    cases.push({ name: `maglev build: M = 65537, ${backends} backends`, group: 'maglev', iterations: 1, fn: () => b.maglevBuildNs(backends, 65537) });
  }
  const natFrame = fixtureFrame(methodFixtures.nat!).frame;
  for (const kind of rewrites) {
    const frame = kind in methodFixtures ? fixtureFrame(methodFixtures[kind]!).frame : natFrame;
    const rewrite = new b.Rewrite(kind, frame);
    cases.push({
      name: kind === 'copy' ? 'rewrite loop baseline (frame copy)' : kind === 'parse' ? 'parse' : `rewrite: ${kind} (parse + rewrite)`,
      group: 'rewrite',
      iterations: 10_000,
      fn: () => rewrite.run(10_000),
      detail: `${frame.length}-byte fixture frame`,
    });
  }
  for (const method of engineMethods) {
    const f = fixtureFrame(methodFixtures[method]!);
    const step = new b.EngineStep(compileSnapshot(binding.layout, f.config), f.config.ports.length, f.port, f.frame);
    cases.push({
      name: `engine step: ${method}, tracked flow`,
      group: 'engine',
      iterations: 4096,
      fn: () => step.run(4096),
      detail: 'inject + parse + flow lookup + rewrite + take, memory ports',
    });
  }
  return cases;
}

/**
 * Ten million IPv4 nat flows inserted into a table sized for them as
 * flows.capacity sizes it: the table's bytes, the resident memory it took
 * and the time per insert (one sample: it takes seconds).
 */
export function measureFlowCapacity(binding: NativeBinding): MicroResult {
  const b = binding.bench;
  const before = process.memoryUsage().rss;
  const table = new b.FlowTableMicro(b.flowTableSlotsFor(capacityFlows), capacityFlows);
  try {
    const measure: FlowTableMeasure = { flows: capacityFlows, held: table.held(), tableBytes: table.bytes(), residentBytes: process.memoryUsage().rss - before };
    return {
      name: `flow table: ${capacityFlows.toLocaleString('en-US')} nat flows`,
      group: 'flow-table',
      nsPerOp: table.fillNs() / capacityFlows,
      rme: 0,
      samples: 1,
      detail: `${measure.held.toLocaleString('en-US')} held; table ${(measure.tableBytes / 1e6).toFixed(0)} MB (${(measure.tableBytes / capacityFlows).toFixed(1)} B a flow), resident +${(measure.residentBytes / 1e6).toFixed(0)} MB; ns per insert`,
      table: measure,
    };
  } finally {
    table.release();
  }
}

export function runMicro(binding: NativeBinding, options: { quick: boolean; onProgress?: (name: string) => void }): MicroResult[] {
  const results: MicroResult[] = [];
  options.onProgress?.('flow table capacity');
  results.push(measureFlowCapacity(binding));
  for (const c of microCases(binding, options.quick)) {
    options.onProgress?.(c.name);
    c.fn(); // warm caches and lazily built state
    const bench = new Benchmark(c.name, c.fn, { maxTime: options.quick ? 0.3 : 1, minSamples: 5 });
    bench.run();
    results.push({
      name: c.name,
      group: c.group,
      nsPerOp: (bench.stats.mean * 1e9) / c.iterations,
      rme: bench.stats.rme,
      samples: bench.stats.sample.length,
      ...(c.detail ? { detail: c.detail } : {}),
    });
  }
  return results;
}
