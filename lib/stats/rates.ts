// Rates over a window, from samples of the cumulative counters: one every
// second (an unref'd timer) and one at every call, kept for ten minutes.
import type { LoadBalancerRates, ServiceRates } from '../config/types.js';
import type { ServiceRecord } from '../model.js';
import type { BackendCounterValues } from '../shm/stats.js';

export interface CounterSample {
  /** performance.now() */
  at: number;
  packets: number;
  bytes: number;
  drops: Record<string, number>;
  /** By backend id. */
  backends: Map<number, BackendCounterValues>;
}

export class RateSampler {
  readonly #samples: CounterSample[] = [];
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly take: () => CounterSample,
    intervalMs = 1000,
    private readonly keepMs = 600_000,
  ) {
    this.#push(take());
    this.#timer = setInterval(() => this.#push(this.take()), intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #push(sample: CounterSample): void {
    this.#samples.push(sample);
    while (this.#samples.length > 2 && sample.at - this.#samples[0]!.at > this.keepMs) this.#samples.shift();
  }

  rates(windowMs: number, services: readonly ServiceRecord[]): LoadBalancerRates {
    const now = this.take();
    const last = this.#samples[this.#samples.length - 1]!;
    let older: CounterSample = this.#samples[0]!;
    for (const sample of this.#samples) {
      if (sample.at <= now.at - windowMs) older = sample;
    }
    if (now.at - last.at >= 100) this.#push(now);
    const seconds = (now.at - older.at) / 1000;
    const per = (a: number, b: number) => (seconds > 0 ? Math.max(0, a - b) / seconds : 0);
    const dropsPerSec: Record<string, number> = {};
    for (const [reason, value] of Object.entries(now.drops)) dropsPerSec[reason] = per(value, older.drops[reason] ?? 0);
    const zero = { packets: 0, bytes: 0, flowsCreated: 0 };
    const serviceRates: ServiceRates[] = services.map((service) => {
      const backends = service.backends.map((b) => {
        const a = now.backends.get(b.id) ?? zero;
        const o = older.backends.get(b.id) ?? zero;
        return {
          address: b.options.address,
          port: b.options.port,
          packetsPerSec: per(a.packets, o.packets),
          bytesPerSec: per(a.bytes, o.bytes),
          flowsPerSec: per(a.flowsCreated, o.flowsCreated),
        };
      });
      const sum = (key: 'packetsPerSec' | 'bytesPerSec' | 'flowsPerSec') => backends.reduce((n, b) => n + b[key], 0);
      return {
        address: service.options.address,
        port: service.options.port,
        protocol: service.options.protocol,
        packetsPerSec: sum('packetsPerSec'),
        bytesPerSec: sum('bytesPerSec'),
        flowsPerSec: sum('flowsPerSec'),
        backends,
      };
    });
    return {
      windowMs: Math.round(now.at - older.at),
      packetsPerSec: per(now.packets, older.packets),
      bytesPerSec: per(now.bytes, older.bytes),
      dropsPerSec,
      services: serviceRates,
    };
  }
}
