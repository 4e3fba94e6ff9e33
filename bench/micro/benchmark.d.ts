// The part of the `benchmark` package's API the micro benchmarks use.
declare module 'benchmark' {
  interface BenchmarkStats {
    /** Mean seconds per call. */
    mean: number;
    /** Relative margin of error, percent. */
    rme: number;
    sample: number[];
  }
  class Benchmark {
    constructor(name: string, fn: () => unknown, options?: { maxTime?: number; minSamples?: number });
    run(options?: { async?: boolean }): this;
    stats: BenchmarkStats;
  }
  export default Benchmark;
}
