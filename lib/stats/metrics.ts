// Prometheus exposition with prom-client: a Registry whose metrics read the
// balancer's counters when scraped (collect callbacks; no timers). One
// stats() call serves a whole scrape.
import { Counter, Gauge, Registry } from 'prom-client';

import type { LoadBalancerStats } from '../config/types.js';

/** What the registry reads: a LoadBalancer, or anything with the same stats(). */
export interface StatsSource {
  stats(): LoadBalancerStats;
  readonly closed?: boolean;
}

export interface MetricsOptions {
  /** Register into this registry instead of a new one. */
  registry?: Registry;
  /** Metric name prefix (default 'l4lb_'). */
  prefix?: string;
  /** Labels added to every metric (e.g. { instance: 'lb1' }). */
  labels?: Record<string, string>;
}

/**
 * A prom-client Registry exposing the balancer's statistics. Mount it in any
 * HTTP server: `res.setHeader('Content-Type', registry.contentType);
 * res.end(await registry.metrics())`.
 */
export function createMetricsRegistry(source: StatsSource, options: MetricsOptions = {}): Registry {
  const registry = options.registry ?? new Registry();
  const prefix = options.prefix ?? 'l4lb_';
  if (options.labels) registry.setDefaultLabels(options.labels);

  // One stats() per scrape: registry.metrics() collects every metric within
  // one turn of the event loop; the memo is dropped at the next one.
  let memo: LoadBalancerStats | undefined;
  const current = (): LoadBalancerStats | undefined => {
    if (source.closed) return undefined;
    if (!memo) {
      memo = source.stats();
      setImmediate(() => (memo = undefined));
    }
    return memo;
  };

  const backendLabels = ['service', 'backend'] as const;
  type BackendLabel = (typeof backendLabels)[number];
  const perBackend = (
    name: string,
    help: string,
    kind: 'counter' | 'gauge',
    value: (b: LoadBalancerStats['services'][number]['backends'][number]) => number,
  ) => {
    const collect = function (this: Counter<BackendLabel> | Gauge<BackendLabel>) {
      this.reset();
      const stats = current();
      if (!stats) return;
      for (const service of stats.services) {
        const serviceLabel = `${service.address}:${service.port}/${service.protocol}`;
        for (const backend of service.backends) {
          const labels = { service: serviceLabel, backend: `${backend.address}:${backend.port}` };
          if (this instanceof Counter) this.inc(labels, value(backend));
          else this.set(labels, value(backend));
        }
      }
    };
    const config = { name: prefix + name, help, labelNames: backendLabels, registers: [registry], collect };
    return kind === 'counter' ? new Counter(config) : new Gauge(config);
  };

  perBackend('backend_packets_total', 'Packets of the backend\'s flows, both directions.', 'counter', (b) => b.packets);
  perBackend('backend_bytes_total', 'Bytes of the backend\'s flows, both directions.', 'counter', (b) => b.bytes);
  perBackend('backend_in_packets_total', 'Packets from clients to the backend (ipvsadm InPkts).', 'counter', (b) => b.inPackets);
  perBackend('backend_out_packets_total', 'Replies of the backend through the balancer (ipvsadm OutPkts).', 'counter', (b) => b.outPackets);
  perBackend('backend_in_bytes_total', 'Bytes from clients to the backend (ipvsadm InBytes).', 'counter', (b) => b.inBytes);
  perBackend('backend_out_bytes_total', 'Bytes of the backend\'s replies through the balancer (ipvsadm OutBytes).', 'counter', (b) => b.outBytes);
  perBackend('backend_flows_total', 'Flows scheduled to the backend.', 'counter', (b) => b.totalFlows);
  perBackend('backend_active_flows', 'Flows tracked for the backend now.', 'gauge', (b) => b.activeFlows);
  perBackend('backend_up', 'Backend health: 1 up, 0 down.', 'gauge', (b) => (b.state === 'up' ? 1 : 0));
  perBackend('backend_weight', 'Weight in force (slow start ramps it).', 'gauge', (b) => b.effectiveWeight);

  new Gauge({
    name: `${prefix}service_up`,
    help: 'Service state: 1 while at least one backend is up.',
    labelNames: ['service'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of current()?.services ?? []) this.set({ service: `${s.address}:${s.port}/${s.protocol}` }, s.state === 'up' ? 1 : 0);
    },
  });

  new Counter({
    name: `${prefix}drops_total`,
    help: 'Frames dropped by the data plane, by reason.',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, value] of Object.entries(current()?.drops ?? {})) this.inc({ reason }, value);
    },
  });

  const perWorker = (name: string, help: string, value: (w: LoadBalancerStats['workers'][number]) => number) =>
    new Counter({
      name: prefix + name,
      help,
      labelNames: ['worker'],
      registers: [registry],
      collect() {
        this.reset();
        (current()?.workers ?? []).forEach((w, i) => this.inc({ worker: String(i) }, value(w)));
      },
    });
  perWorker('worker_packets_total', 'Frames received by the worker.', (w) => w.packets);
  perWorker('worker_bytes_total', 'Bytes received by the worker.', (w) => w.bytes);
  perWorker('worker_busy_seconds_total', 'Time the worker spent on non-empty batches.', (w) => (w.counters.busyNs ?? 0) / 1e9);

  const total = (name: string, help: string, value: (s: LoadBalancerStats) => number) =>
    new Counter({
      name: prefix + name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        const stats = current();
        if (stats) this.inc(value(stats));
      },
    });
  total('forwarded_total', 'Packets forwarded from clients to backends.', (s) => s.counters.forwarded ?? 0);
  total('replies_total', 'Replies translated back to clients (nat, fullnat).', (s) => s.counters.replies ?? 0);
  total('passed_total', 'Frames not for the balancer, left alone.', (s) => s.counters.passed ?? 0);
  total('replies_ingress_path_total', "Replies sent on their flow's ingress path.", (s) => s.repliesIngressPath);
  total('replies_route_differs_total', 'Replies on the ingress path where routing would have chosen another port.', (s) => s.repliesRouteDiffers);
  total('flow_inserts_total', 'Flow-table entries created.', (s) => s.flows.counters.inserts ?? 0);
  total('flow_insert_failed_full_total', 'Flows not tracked: nothing evictable.', (s) => s.flows.counters.insertFailedFull ?? 0);

  const gauge = (name: string, help: string, value: (s: LoadBalancerStats) => number) =>
    new Gauge({
      name: prefix + name,
      help,
      registers: [registry],
      collect() {
        const stats = current();
        if (stats) this.set(value(stats));
      },
    });
  gauge('flows_active', 'Flows tracked now.', (s) => s.flows.active);
  gauge('flows_capacity', 'Flows the table is sized for.', (s) => s.flows.capacity);
  gauge('flows_memory_bytes', 'Bytes the flow table takes.', (s) => s.flows.memoryBytes);
  gauge('config_generation', 'Generation of the configuration last published.', (s) => s.generation);
  return registry;
}
