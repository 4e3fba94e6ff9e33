// The control plane: services and backends, validation, transactions, health
// checks, scheduler hooks, statistics and events, over one native engine.
//
// Every change is compiled into a complete snapshot and published at once
// (synchronously, so the workers run it at their next batch, well within a
// millisecond); inside transaction(fn) changes accumulate in a draft and are
// published as one snapshot when fn returns. A change that fails validation,
// or a snapshot the data plane refuses, changes nothing.
import { EventEmitter } from 'node:events';

import { Backend } from './backend.js';
import { compileModel, type CompiledModel, type ModelService } from './config/compile.js';
import { compileSnapshot } from './config/snapshot.js';
import type {
  BackendOptions,
  BackendState,
  BackendStateEvent,
  BackendStats,
  DataPlaneSignal,
  LoadBalancerOptions,
  LoadBalancerRates,
  InterfaceStats,
  LoadBalancerStats,
  RateOptions,
  SchedulerHook,
  ServiceOptions,
  ServiceState,
  ServiceStateEvent,
  ServiceStats,
  WorkerStats,
} from './config/types.js';
import {
  type NormalizedOptions,
  validateBackendOptions,
  validateLoadBalancerOptions,
  validateServiceOptions,
  validateWeight,
} from './config/validate.js';
import { createDriver, type DataPlaneDriver, MemoryPort } from './driver/index.js';
import { VipAnnouncements } from './bgp/index.js';
import { DriverError, fromNativeError, type L4lbError, SchedulerHookError, StateError, ValidationError } from './errors.js';
import { checkFor, HealthMonitor } from './health/index.js';
import type { BackendRecord, ConfigState, Controller, ServiceRecord } from './model.js';
import { loadBinding, type NativeBinding, type NativeEngine } from './native/binding.js';
import { runSchedulerHook, weightedTable } from './schedulers/hook.js';
import { Service } from './service.js';
import {
  type BackendCounterValues,
  backendCounterNames,
  EventRingReader,
  type FlowEventRecord,
  FlowEventRingReader,
  StatsReader,
  zeroBackendCounters,
} from './shm/stats.js';
import { ipv4ToNumber, numberToIpv4 } from './config/addresses.js';
import { BackendSlots } from './backend-slots.js';
import { composeExplanation, type ExplainContext, timeoutForState, validateFlowTuple } from './insight/explain.js';
import type { BackendRef, FlowEndReason, FlowEvent, FlowExplanation, FlowTuple, WhatIfChange, WhatIfResult } from './insight/types.js';
import { type SchedulingBackend, whatIfResult } from './insight/what-if.js';
import { createMetricsRegistry } from './stats/metrics.js';
import type { Dashboard, DashboardOptions } from './dashboard/index.js';
import { startDashboard } from './dashboard/server.js';
import { RateSampler } from './stats/rates.js';
import type { Registry } from 'prom-client';

export interface LoadBalancerEvents {
  /** A backend's health flipped. */
  'backend-state': [BackendStateEvent];
  /** No backend of the service is up any more (the `allBackendsDown` policy applies). */
  'service-down': [ServiceStateEvent];
  /** A backend of a service that was down is up again. */
  'service-up': [ServiceStateEvent];
  /** A rate-limited signal from a worker: flow table full, unresolved next hops, ... */
  dataplane: [DataPlaneSignal];
  /** A flow created or ended (only with the flowEvents option; bounded and lossy: see stats().flowEvents). */
  flow: [FlowEvent];
  /** A background failure: a scheduler hook, a republication. Without a listener it becomes a process warning. */
  error: [L4lbError];
  /** close() finished. */
  close: [];
}

interface BackendRuntime {
  up: boolean;
  monitor: HealthMonitor | undefined;
  slowStart: { since: number; timer: NodeJS.Timeout | undefined } | undefined;
}

interface HookRuntime {
  /** Inputs of the last run: backend ids, weights in force, health. */
  signature: string | undefined;
  /** The table in force, as backend ids (so it survives changes of the backend list). */
  tableIds: number[] | undefined;
  runNow: boolean;
  timer: NodeJS.Timeout | undefined;
}

interface Draft {
  state: ConfigState;
  /** Backend slots taken by this draft (returned if it is dropped). */
  allocated: number[];
  baselines: Map<number, BackendCounterValues>;
}

interface PublishOutcome {
  hookUpdates: Map<number, { signature: string; tableIds: number[] | undefined }>;
  hookErrors: SchedulerHookError[];
}

const constructing = Symbol('LoadBalancer.create');
// The workers signal new event records (onEvents); this slow read is the
// timer that keeps a running balancer's process alive, and a safety net.
const eventPollMs = 1000;
const zeroCounters: BackendCounterValues = zeroBackendCounters();
// Removed backends whose flows may still end and be reported: the latest ones, by id.
const retiredBackendsKept = 4096;
const flowEndReasons: readonly FlowEndReason[] = ['expired', 'removed', 'evicted'];

function isThenable(value: unknown): boolean {
  return typeof (value as { then?: unknown })?.then === 'function';
}

function schedulerName(scheduler: ServiceRecord['options']['scheduler']): string {
  return typeof scheduler === 'string' ? scheduler : scheduler.name;
}

export class LoadBalancer extends EventEmitter<LoadBalancerEvents> {
  readonly #options: NormalizedOptions;
  readonly #binding: NativeBinding;
  readonly #driver: DataPlaneDriver;
  readonly #controller: Controller;
  readonly #slots: BackendSlots;
  readonly #runtime = new Map<number, BackendRuntime>();
  readonly #hooks = new Map<number, HookRuntime>();
  readonly #serviceUp = new Map<number, boolean>();
  readonly #baselines = new Map<number, BackendCounterValues>();
  readonly #memoryPorts = new Map<string, MemoryPort>();
  #engine: NativeEngine | undefined;
  #reader: StatsReader | undefined;
  #rings: EventRingReader[] = [];
  #flowRings: FlowEventRingReader[] = [];
  /** Route announcement of the VIPs (option bgp). */
  #routes: VipAnnouncements | undefined;
  /** The flow table's size as the data plane built it (set at start). */
  #flowTableSize = { capacity: 0, memoryBytes: 0, slots: 0 };
  #flowEventsDelivered = 0;
  readonly #retired = new Map<number, BackendRef & { service: string }>();
  #committed: ConfigState = { services: [] };
  #draft: Draft | undefined;
  #generation = 0n;
  #nextServiceId = 1;
  #lastCompile: CompiledModel | undefined;
  #eventTimer: NodeJS.Timeout | undefined;
  #sampler: RateSampler | undefined;
  #closing: Promise<void> | undefined;
  #metrics: Registry | undefined;
  readonly #dashboards = new Set<Dashboard>();

  /** Use LoadBalancer.create(). */
  private constructor(token: symbol, options: NormalizedOptions, binding: NativeBinding, driver: DataPlaneDriver) {
    super();
    if (token !== constructing) throw new TypeError('use LoadBalancer.create(options)');
    this.#options = options;
    this.#binding = binding;
    this.#driver = driver;
    this.#slots = new BackendSlots(options.maxBackends);
    this.#controller = this.#makeController();
  }

  /**
   * Validates the options, starts the data plane (native workers) and
   * returns the balancer. Rejects with a ValidationError on bad options and
   * with a DriverError when the driver cannot start (an interface that does
   * not exist, a missing tool, unreadable kernel tables).
   */
  static async create(options: LoadBalancerOptions): Promise<LoadBalancer> {
    const normalized = validateLoadBalancerOptions(options);
    // Driver errors at run time (kernel tables, host guard) surface as 'error' events of the balancer.
    let reportDriverError: (error: L4lbError) => void = () => {};
    const driver = await createDriver(normalized, (error) => reportDriverError(error));
    const lb = new LoadBalancer(constructing, normalized, loadBinding(), driver);
    reportDriverError = (error) => lb.#emitError(error);
    try {
      await lb.#start();
      if (normalized.bgp) lb.#routes = await VipAnnouncements.start(normalized.bgp, () => lb.stats().services, (error) => lb.#emitError(error));
    } catch (error) {
      await lb.close();
      throw error instanceof Error && 'code' in error ? error : fromNativeError(error);
    }
    return lb;
  }

  #newEngine(): NativeEngine {
    const o = this.#options;
    return new this.#binding.Engine({
      workers: o.workers,
      threaded: true,
      polling: o.polling,
      spinUs: Math.round(o.spinMs * 1000),
      ...(o.flows.memoryBytes !== undefined ? { flowMemoryBytes: o.flows.memoryBytes } : { flowCapacity: o.flows.capacity }),
      backendSlots: o.maxBackends,
      ...(o.hashKey ? { hashKey: o.hashKey } : {}),
      timeouts: {
        tcpSynMs: o.flows.tcpSynTimeoutMs,
        tcpEstablishedMs: o.flows.tcpEstablishedTimeoutMs,
        tcpClosingMs: o.flows.tcpClosingTimeoutMs,
        tcpClosedMs: o.flows.tcpClosedTimeoutMs,
        udpMs: o.flows.udpTimeoutMs,
      },
      ...this.#driver.engineOptions(),
      ...(o.flowEventRecords > 0 ? { flowEventRecords: o.flowEventRecords } : {}),
      onEvents: () => this.#drainEvents(),
    });
  }

  async #start(): Promise<void> {
    let engine: NativeEngine;
    try {
      engine = this.#newEngine();
    } catch (error) {
      const driverError = this.#driver.openError?.(error);
      if (driverError) throw driverError;
      // The one resource the engine allocates up front: its flow table.
      if ((error as { code?: unknown })?.code === 'ENOMEM') throw fromNativeError(error, 'flows');
      throw error;
    }
    this.#engine = engine;
    const { capacity, memoryBytes, slots } = engine.flowTable();
    this.#flowTableSize = { capacity, memoryBytes, slots };
    const layout = this.#binding.layout;
    const buffer = engine.sharedMemory();
    this.#reader = new StatsReader(buffer, layout.stats, layout.constants, this.#binding.dropReasons());
    this.#rings = Array.from({ length: this.#reader.workers }, (_, w) => new EventRingReader(buffer, layout.stats, layout.constants, w));
    for (let w = 0; w < this.#reader.workers; w++) {
      const ring = FlowEventRingReader.forWorker(buffer, layout.stats, layout.constants, w);
      if (ring) this.#flowRings.push(ring);
    }
    this.#publishState(this.#committed);
    await this.#driver.start({ engine, nextHopsChanged: () => this.#republish() });
    engine.start();
    this.#sampler = new RateSampler(() => this.#sample());
    // Ref'd on purpose: a running balancer keeps its process alive, as a
    // listening server does; close() releases it.
    this.#eventTimer = setInterval(() => this.#drainEvents(), eventPollMs);
  }

  // ---- public API --------------------------------------------------------------------

  /** True once close() was called. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** The services, in the order they were added. */
  get services(): readonly Service[] {
    return this.#visible().services.map((s) => s.handle);
  }

  /** The generation of the configuration last published (increases with every publication). */
  get generation(): number {
    return Number(this.#generation);
  }

  /** Interfaces served, in port order. */
  get interfaces(): readonly string[] {
    return this.#options.interfaces;
  }

  /** Adds a virtual service; throws ValidationError (nothing changes) on bad options or a duplicate. */
  addService(options: ServiceOptions): Service {
    this.#assertOpen();
    const normalized = validateServiceOptions(options);
    return this.#mutate((draft) => {
      const name = `${normalized.address}:${normalized.port}/${normalized.protocol}`;
      if (draft.state.services.some((s) => s.handle.name === name)) {
        throw new ValidationError('EDUPLICATE', `a service for ${name} exists already`, { path: 'address' });
      }
      if (normalized.method === 'fullnat' && this.#options.localAddresses.length === 0) {
        throw new ValidationError('EINVAL_CONFLICT', "method 'fullnat' needs localAddresses in the load balancer's options", {
          path: 'method',
        });
      }
      if (this.#options.localAddresses.includes(normalized.address)) {
        throw new ValidationError('EINVAL_CONFLICT', `address ${normalized.address} is one of the fullnat localAddresses`, {
          path: 'address',
        });
      }
      const id = this.#nextServiceId++;
      const handle = new Service(this.#controller, id, normalized);
      draft.state = { services: [...draft.state.services, { id, options: normalized, backends: [], handle }] };
      return handle;
    });
  }

  /** Removes a service: its VIP:port is no longer balanced (its flow entries expire). */
  removeService(service: Service): void {
    this.#assertOpen();
    if (!(service instanceof Service)) {
      throw new ValidationError('EINVAL_TYPE', 'service must be a Service returned by addService', { path: 'service' });
    }
    this.#mutate((draft) => {
      if (!draft.state.services.some((s) => s.handle === service)) {
        throw new StateError('EREMOVED', `service ${service.name} is not part of this load balancer`);
      }
      draft.state = { services: draft.state.services.filter((s) => s.handle !== service) };
    });
  }

  /**
   * Runs `fn` and publishes every change it made as one snapshot. If `fn`
   * throws (or a change is invalid, or the data plane refuses the result),
   * nothing changes and the error is rethrown. `fn` must be synchronous.
   * Nested calls join the outer transaction (an inner one that throws
   * undoes only its own changes).
   */
  transaction<T>(fn: () => T): T {
    this.#assertOpen();
    if (typeof fn !== 'function') throw new ValidationError('EINVAL_TYPE', 'transaction(fn): fn must be a function', { path: 'fn' });
    const outer = this.#draft;
    if (outer) {
      const saved = outer.state;
      const allocated = outer.allocated.length;
      try {
        return fn();
      } catch (error) {
        outer.state = saved;
        for (const slot of outer.allocated.splice(allocated).reverse()) this.#slots.giveBack(slot);
        throw error;
      }
    }
    const draft: Draft = { state: this.#committed, allocated: [], baselines: new Map() };
    this.#draft = draft;
    let result: T;
    try {
      result = fn();
      if (isThenable(result)) {
        throw new StateError('ETRANSACTION', 'transaction(fn): fn must be synchronous, it returned a promise; nothing was changed');
      }
      this.#assertOpen();
    } catch (error) {
      this.#draft = undefined;
      this.#dropDraft(draft);
      throw error;
    }
    // Listeners of the events the commit emits see the committed state and
    // start transactions of their own.
    this.#draft = undefined;
    try {
      this.#commit(draft);
    } catch (error) {
      this.#dropDraft(draft);
      throw error;
    }
    return result;
  }

  /** The frames of one interface of the memory driver. */
  memoryPort(name: string): MemoryPort {
    this.#assertOpen();
    if (this.#driver.name !== 'memory') {
      throw new DriverError('ENOT_MEMORY_DRIVER', `memoryPort("${name}"): only with driver 'memory', this balancer uses '${this.#driver.name}'`);
    }
    const index = this.#options.interfaces.indexOf(name);
    if (index < 0) {
      throw new ValidationError(
        'EINVAL_REFERENCE',
        `name must be one of the balancer's interfaces (${this.#options.interfaces.join(', ')}), got ${JSON.stringify(name)}`,
        { path: 'name' },
      );
    }
    let port = this.#memoryPorts.get(name);
    if (!port) {
      port = new MemoryPort(name, index, () => (this.closed ? undefined : this.#engine), this.#binding.frameFlags.checksumPartial);
      this.#memoryPorts.set(name, port);
    }
    return port;
  }

  /** Counters of the data plane, per service, backend and worker (sums over the workers' blocks). */
  stats(): LoadBalancerStats {
    this.#assertOpen();
    const reader = this.#reader!;
    const workers: WorkerStats[] = [];
    const counters: Record<string, number> = {};
    const drops: Record<string, number> = {};
    const flowCounters: Record<string, number> = {};
    for (let w = 0; w < reader.workers; w++) {
      const values = reader.worker(w);
      for (const [name, value] of Object.entries(values.counters)) counters[name] = (counters[name] ?? 0) + value;
      for (const [name, value] of Object.entries(values.drops)) drops[name] = (drops[name] ?? 0) + value;
      for (const [name, value] of Object.entries(values.flows)) flowCounters[name] = (flowCounters[name] ?? 0) + value;
      const packets = values.counters.rxPackets ?? 0;
      workers.push({
        packets,
        bytes: values.counters.rxBytes ?? 0,
        busyNsPerPacket: packets === 0 ? 0 : (values.counters.busyNs ?? 0) / packets,
        configGeneration: values.counters.configGeneration ?? 0,
        counters: values.counters,
      });
    }
    let active = 0;
    for (let slot = 0; slot < reader.backendSlots; slot++) active += reader.activeFlows(slot);
    return {
      generation: Number(this.#generation),
      packets: counters.rxPackets ?? 0,
      bytes: counters.rxBytes ?? 0,
      services: this.#committed.services.map((s) => this.#serviceStats(s)),
      drops,
      workers,
      repliesIngressPath: counters.repliesIngressPath ?? 0,
      repliesRouteDiffers: counters.repliesRouteDiffers ?? 0,
      flows: { active, ...this.#flowTableSize, counters: flowCounters },
      interfaces: this.#interfaceStats(),
      counters,
      flowEvents: {
        enabled: this.#flowRings.length > 0,
        events: this.#flowEventsDelivered,
        dropped: this.#flowRings.reduce((n, ring) => n + ring.lost, 0),
      },
      ...(this.#routes ? { bgp: this.#routes.stats() } : {}),
    };
  }

  /** Per-interface port counters (AF_PACKET: summed over the workers' sockets; memory: zeros). */
  #interfaceStats(): InterfaceStats[] {
    const ports = this.#engine!.portCounters();
    return this.#driver.interfaces.map((i, p) => {
      const c = ports[p];
      return {
        name: i.name,
        rxPackets: c?.rxPackets ?? 0,
        rxBytes: c?.rxBytes ?? 0,
        txPackets: c?.txPackets ?? 0,
        txBytes: c?.txBytes ?? 0,
        txDropped: c?.txDropped ?? 0,
        kernelDrops: c?.kernelDrops ?? 0,
        mode: c?.mode ?? '',
      };
    });
  }

  /** Rates over the last `windowMs` (samples are taken every second and at each call). */
  rates(options: RateOptions = {}): LoadBalancerRates {
    this.#assertOpen();
    const windowMs = options.windowMs ?? 10_000;
    if (!Number.isInteger(windowMs) || windowMs < 1) {
      throw new ValidationError('EINVAL_RANGE', `windowMs must be a positive integer, got ${String(windowMs)}`, { path: 'windowMs' });
    }
    return this.#sampler!.rates(windowMs, this.#committed.services);
  }

  /**
   * Which backend a client's packet of this tuple goes to, and why: the
   * service it is for, a tracked flow holding it, the client's persistence
   * template, the scheduler's choice (Maglev/sh/hook-table slot). Reads the
   * data plane's flow table and configuration and changes nothing. IPv4;
   * throws ValidationError on a malformed tuple.
   */
  explain(flow: FlowTuple): FlowExplanation {
    this.#assertOpen();
    const tuple = validateFlowTuple(flow);
    const facts = this.#engine!.explainFlow({
      protocol: tuple.proto === 'udp' ? 17 : 6,
      src: ipv4ToNumber(tuple.src),
      sport: tuple.sport,
      dst: ipv4ToNumber(tuple.dst),
      dport: tuple.dport,
    });
    const name = `${tuple.dst}:${tuple.dport}/${tuple.proto}`;
    const record = this.#committed.services.find((s) => s.handle.name === name);
    const backends: ExplainContext['backends'] = new Map();
    for (const service of this.#committed.services) {
      for (const b of service.backends) {
        backends.set(b.id, {
          address: b.options.address,
          port: b.options.port,
          state: this.#isUp(b.id, service) ? 'up' : 'down',
          weight: this.#effectiveWeightOf(b, service),
          serviceName: service.handle.name,
        });
      }
    }
    const flows = this.#options.flows;
    return composeExplanation(tuple, facts, {
      service:
        record && facts.serviceIndex >= 0
          ? {
              name,
              scheduler: schedulerName(record.options.scheduler),
              onBackendRemoved: record.options.onBackendRemoved,
              allBackendsDown: record.options.allBackendsDown,
              persistenceTimeoutMs: record.options.persistenceTimeoutMs ?? 0,
            }
          : null,
      backends,
      schedulable: record ? this.#schedulingBackends(record).filter((b) => b.up && b.weight > 0).length : 0,
      timeoutFor: (state) => timeoutForState(state, flows),
    });
  }

  /**
   * What a change would do before it is made: the share of new flows that
   * would go to another backend (Maglev: its lookup-table slots compared,
   * exact; sh: sampled; rr/wrr/lc/wlc: each backend's share by weight), the
   * tracked flows a removal would end, and each backend's share before and
   * after. An added backend is counted as up (as it is once its health
   * checks pass). Nothing is applied. A SchedulerHook's next table is its
   * own code's to compute: EUNSUPPORTED.
   */
  whatIf(change: WhatIfChange): WhatIfResult {
    this.#assertOpen();
    if (typeof change !== 'object' || change === null) {
      throw new ValidationError('EINVAL_TYPE', 'whatIf(change): change must be { service, add } | { service, remove } | { service, backend, weight }', { path: 'change' });
    }
    const wanted = change.service;
    const record = this.#committed.services.find((s) => s.handle === wanted || s.handle.name === wanted);
    if (!record) {
      throw new ValidationError('EINVAL_REFERENCE', `service must be a Service of this balancer or its name ('198.18.0.100:80/tcp'), got ${String(wanted)}`, { path: 'service' });
    }
    const scheduler = record.options.scheduler;
    if (typeof scheduler !== 'string') {
      throw new ValidationError('EUNSUPPORTED', `whatIf: service ${record.handle.name} uses the scheduler hook "${scheduler.name}", whose next table only its own code computes; call its table() with the changed list and compare`, { path: 'service' });
    }
    const before = this.#schedulingBackends(record);
    const find = (target: Backend | BackendRef, path: string) => {
      const port = target.port ?? record.options.port;
      const index = before.findIndex((b) => b.address === target.address && b.port === port);
      if (index < 0) throw new ValidationError('EINVAL_REFERENCE', `${path}: ${target.address}:${port} is not a backend of ${record.handle.name}`, { path });
      return index;
    };
    let after: SchedulingBackend[];
    let removed: SchedulingBackend[] = [];
    if ('add' in change) {
      const added = validateBackendOptions(change.add, record.options.port, 'add');
      if (before.some((b) => b.address === added.address && b.port === added.port)) {
        throw new ValidationError('EDUPLICATE', `backend ${added.address}:${added.port} is in service ${record.handle.name} already`, { path: 'add.address' });
      }
      after = [...before, { address: added.address, port: added.port, weight: added.weight, up: true, activeFlows: 0 }];
    } else if ('remove' in change) {
      const index = find(change.remove, 'remove');
      removed = [before[index]!];
      after = before.filter((_, i) => i !== index);
    } else if ('backend' in change && 'weight' in change) {
      const index = find(change.backend, 'backend');
      const weight = validateWeight(change.weight);
      after = before.map((b, i) => (i === index ? { ...b, weight } : b));
    } else {
      throw new ValidationError('EINVAL_TYPE', 'whatIf(change): change must have add, remove, or backend and weight', { path: 'change' });
    }
    const native = (list: SchedulingBackend[]) => list.map((b) => ({ address: ipv4ToNumber(b.address), port: b.port, weight: b.weight, up: b.up }));
    const comparison = scheduler === 'maglev' || scheduler === 'sh' ? this.#binding.compareSchedulers(scheduler, native(before), native(after)) : null;
    return whatIfResult(record.handle.name, scheduler, before, after, removed, comparison);
  }

  /** A service's backends as its scheduler sees them now (weights in force, health, fail-open). */
  #schedulingBackends(service: ServiceRecord): SchedulingBackend[] {
    const list = service.backends.map((b) => ({
      address: b.options.address,
      port: b.options.port,
      weight: this.#effectiveWeightOf(b, service),
      up: this.#isUp(b.id, service),
      activeFlows: this.#reader!.activeFlows(b.slot),
    }));
    const failOpen = service.options.allBackendsDown === 'fail-open' && list.length > 0 && !list.some((b) => b.up);
    return failOpen ? list.map((b) => ({ ...b, up: true })) : list;
  }

  /**
   * A prom-client Registry with this balancer's metrics (collected on
   * scrape), created on the first call. Mount it in your HTTP server, or use
   * createMetricsRegistry(lb, { registry }) to add them to your own.
   */
  metrics(): Registry {
    this.#metrics ??= createMetricsRegistry(this);
    return this.#metrics;
  }

  /**
   * Serves the live dashboard of this balancer (services, backends, rates,
   * drops, path symmetry, flow-table use; updated every second over
   * Server-Sent Events) on `host` (default 127.0.0.1: any other address
   * must be given explicitly) and `port` (default 0: any free one; see
   * `url`). Read-only. close() of the balancer closes it too. Rejects with
   * ValidationError for bad options, L4lbError 'EDASHBOARD_LISTEN' when the
   * address cannot be bound, StateError 'ECLOSED' after close().
   */
  async serveDashboard(options: DashboardOptions = {}): Promise<Dashboard> {
    this.#assertOpen();
    const dashboard: Dashboard = await startDashboard(this, options, () => this.#dashboards.delete(dashboard));
    if (this.#closing) {
      await dashboard.close();
      throw new StateError('ECLOSED', 'the load balancer is closed');
    }
    this.#dashboards.add(dashboard);
    return dashboard;
  }

  /**
   * Stops health checks and timers, stops the workers and frees the engine
   * (threads, rings, memory). Idempotent: every call returns the same promise.
   */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closing = (async () => {
      // Withdrawn first: the routers move the traffic to other balancers while this one still forwards.
      await this.#routes?.close().catch(() => undefined);
      this.#routes = undefined;
      await Promise.allSettled([...this.#dashboards].map((dashboard) => dashboard.close()));
      if (this.#eventTimer) clearInterval(this.#eventTimer);
      this.#eventTimer = undefined;
      this.#sampler?.stop();
      for (const hook of this.#hooks.values()) if (hook.timer) clearInterval(hook.timer);
      const stopping: Promise<void>[] = [];
      for (const runtime of this.#runtime.values()) {
        if (runtime.slowStart?.timer) clearTimeout(runtime.slowStart.timer);
        if (runtime.monitor) stopping.push(runtime.monitor.stop());
      }
      await Promise.allSettled(stopping);
      try {
        await this.#driver.stop();
      } finally {
        this.#engine?.close();
        this.#engine = undefined;
        this.emit('close');
      }
    })();
    return this.#closing;
  }

  // ---- transactions and publication ----------------------------------------------------

  #assertOpen(): void {
    if (this.#closing) throw new StateError('ECLOSED', 'the load balancer is closed');
  }

  #visible(): ConfigState {
    return this.#draft?.state ?? this.#committed;
  }

  #mutate<T>(change: (draft: Draft) => T): T {
    if (this.#draft) return change(this.#draft);
    return this.transaction(() => change(this.#draft!));
  }

  #dropDraft(draft: Draft): void {
    for (const slot of draft.allocated.reverse()) this.#slots.giveBack(slot);
  }

  #commit(draft: Draft): void {
    const outcome = this.#publishState(draft.state);
    const previous = this.#committed;
    this.#committed = draft.state;
    for (const [id, baseline] of draft.baselines) this.#baselines.set(id, baseline);
    this.#applyHookOutcome(outcome);

    const nextBackends = new Map<number, { backend: BackendRecord; service: ServiceRecord }>();
    for (const service of draft.state.services) {
      for (const backend of service.backends) nextBackends.set(backend.id, { backend, service });
    }
    for (const service of previous.services) {
      for (const backend of service.backends) {
        if (nextBackends.has(backend.id)) continue;
        this.#retireBackend(backend, service);
      }
    }
    for (const { backend, service } of nextBackends.values()) {
      if (!this.#runtime.has(backend.id)) this.#startBackend(backend, service);
    }
    const nextServices = new Set(draft.state.services.map((s) => s.id));
    for (const [id, hook] of this.#hooks) {
      if (nextServices.has(id)) continue;
      if (hook.timer) clearInterval(hook.timer);
      this.#hooks.delete(id);
    }
    for (const service of draft.state.services) {
      if (typeof service.options.scheduler === 'object') this.#startHook(service);
    }
    for (const error of outcome.hookErrors) this.#emitError(error);
    this.#updateServiceStates();
  }

  #retireBackend(backend: BackendRecord, service: ServiceRecord): void {
    const runtime = this.#runtime.get(backend.id);
    if (runtime) {
      if (runtime.slowStart?.timer) clearTimeout(runtime.slowStart.timer);
      void runtime.monitor?.stop();
      this.#runtime.delete(backend.id);
    }
    this.#baselines.delete(backend.id);
    this.#slots.release(backend.slot);
    if (this.#flowRings.length > 0) {
      this.#retired.set(backend.id, { address: backend.options.address, port: backend.options.port, service: service.handle.name });
      if (this.#retired.size > retiredBackendsKept) this.#retired.delete(this.#retired.keys().next().value!);
    }
  }

  #startBackend(backend: BackendRecord, service: ServiceRecord): void {
    const check = service.options.healthCheck;
    const runtime: BackendRuntime = { up: check.type === 'none', monitor: undefined, slowStart: undefined };
    this.#runtime.set(backend.id, runtime);
    if (check.type === 'none') return;
    const custom = check.fn ? (signal: AbortSignal) => check.fn!(backend.handle, signal) : async () => false;
    runtime.monitor = new HealthMonitor({
      check: checkFor(check, { address: backend.options.address, port: backend.options.port }, custom),
      intervalMs: check.intervalMs,
      timeoutMs: check.timeoutMs,
      rise: check.rise,
      fall: check.fall,
      jitter: check.jitter,
      initiallyUp: false,
      onChange: (up, reason) => this.#onHealthChange(service.id, backend.id, up, reason),
    });
    runtime.monitor.start();
  }

  /** Idempotent: the hook's runtime state, and its interval timer when it has one. */
  #startHook(service: ServiceRecord): void {
    const hook = service.options.scheduler as SchedulerHook;
    const runtime: HookRuntime = this.#hooks.get(service.id) ?? { signature: undefined, tableIds: undefined, runNow: false, timer: undefined };
    this.#hooks.set(service.id, runtime);
    if (hook.intervalMs !== undefined && runtime.timer === undefined) {
      runtime.timer = setInterval(() => {
        runtime.runNow = true;
        this.#republish();
      }, hook.intervalMs);
      runtime.timer.unref();
    }
  }

  /** Compiles `state` with the runtime (health, slow start, hook tables, next hops) and publishes it. */
  #publishState(state: ConfigState): PublishOutcome {
    const engine = this.#engine;
    if (!engine) throw new StateError('ECLOSED', 'the load balancer is closed');
    const outcome: PublishOutcome = { hookUpdates: new Map(), hookErrors: [] };
    const now = Date.now();
    const model: ModelService[] = state.services.map((service) => {
      const o = service.options;
      const backends = service.backends.map((b) => ({
        id: b.id,
        address: b.options.address,
        port: b.options.port,
        weight: this.#effectiveWeightOf(b, service, now),
        up: this.#isUp(b.id, service),
      }));
      let scheduler: ModelService['scheduler'] = typeof o.scheduler === 'string' ? o.scheduler : 'table';
      let table: number[] | undefined;
      if (typeof o.scheduler === 'object') {
        table = this.#hookTable(service, o.scheduler, backends, outcome);
        if (!table) scheduler = 'rr'; // no backends: nothing to index; new flows drop as 'no-backend'
      }
      return {
        id: service.id,
        address: o.address,
        port: o.port,
        protocol: o.protocol,
        method: o.method,
        scheduler,
        table,
        persistenceTimeoutMs: o.persistenceTimeoutMs,
        greKey: o.greKey,
        dropIpOptions: o.ipOptions === 'drop',
        removeResetsFlows: o.onBackendRemoved === 'reset',
        failOpen: o.allBackendsDown === 'fail-open',
        backends,
      };
    });
    const compiled = compileModel(model, this.#driver, {
      localAddresses: this.#options.localAddresses,
      fullnatPorts: this.#options.fullnatPortsGiven
        ? this.#options.fullnatPorts
        : (this.#driver.defaultFullnatPorts?.(this.#options.localAddresses) ?? this.#options.fullnatPorts),
      dropBadChecksum: this.#options.checksums === 'drop',
      answerEcho: this.#options.answerEcho,
    });
    const generation = this.#generation + 1n;
    const bytes = compileSnapshot(this.#binding.layout, { ...compiled.snapshot, generation });
    try {
      engine.publish(bytes);
    } catch (error) {
      throw fromNativeError(error);
    }
    this.#generation = generation;
    this.#lastCompile = compiled;
    this.#driver.configurationChanged?.(compiled.snapshot);
    return outcome;
  }

  /** Republishes the committed configuration after a runtime change (health, slow start, hook interval, next hops). */
  #republish(): void {
    if (this.#closing || !this.#engine) return;
    try {
      const outcome = this.#publishState(this.#committed);
      this.#applyHookOutcome(outcome);
      for (const error of outcome.hookErrors) this.#emitError(error);
    } catch (error) {
      this.#emitError(error instanceof Error && 'code' in error ? (error as L4lbError) : fromNativeError(error));
    }
  }

  #applyHookOutcome(outcome: PublishOutcome): void {
    for (const [id, update] of outcome.hookUpdates) {
      const runtime = this.#hooks.get(id) ?? { signature: undefined, tableIds: undefined, runNow: false, timer: undefined };
      runtime.signature = update.signature;
      runtime.runNow = false;
      if (update.tableIds) runtime.tableIds = update.tableIds;
      this.#hooks.set(id, runtime);
    }
  }

  /**
   * The table of a hook service: the hook's fresh table when its inputs
   * changed (or its interval came), else the table in force, remapped onto
   * the current backend list. undefined when the service has no backends.
   */
  #hookTable(
    service: ServiceRecord,
    hook: SchedulerHook,
    backends: Array<{ id: number; weight: number; up: boolean }>,
    outcome: PublishOutcome,
  ): number[] | undefined {
    if (backends.length === 0) return undefined;
    const runtime = this.#hooks.get(service.id);
    const signature = backends.map((b) => `${b.id}:${b.weight}:${b.up ? 1 : 0}`).join(',');
    let tableIds = runtime?.tableIds;
    if (!runtime || runtime.signature !== signature || runtime.runNow) {
      const result = runSchedulerHook(
        hook,
        service.backends.map((b) => b.handle),
        this.#serviceStats(service),
        'scheduler',
      );
      if ('table' in result) {
        tableIds = result.table.map((index) => backends[index]!.id);
      } else {
        outcome.hookErrors.push(result.error);
      }
      outcome.hookUpdates.set(service.id, { signature, tableIds });
    }
    if (!tableIds) return weightedTable(backends.map((b) => b.weight));
    const indexOf = new Map(backends.map((b, i) => [b.id, i]));
    let spare = 0;
    // Entries of removed backends go to the remaining ones in turn.
    return tableIds.map((id) => indexOf.get(id) ?? spare++ % backends.length);
  }

  // ---- runtime state -----------------------------------------------------------------

  #isUp(backendId: number, service: ServiceRecord): boolean {
    return this.#runtime.get(backendId)?.up ?? service.options.healthCheck.type === 'none';
  }

  #effectiveWeightOf(backend: BackendRecord, service: ServiceRecord, now = Date.now()): number {
    const weight = backend.options.weight;
    const slowStart = this.#runtime.get(backend.id)?.slowStart;
    if (weight === 0 || !slowStart || service.options.slowStartMs === 0) return weight;
    const fraction = Math.min(1, (now - slowStart.since) / service.options.slowStartMs);
    return Math.max(1, Math.round(weight * fraction));
  }

  #onHealthChange(serviceId: number, backendId: number, up: boolean, reason: string): void {
    if (this.#closing) return;
    const runtime = this.#runtime.get(backendId);
    const service = this.#committed.services.find((s) => s.id === serviceId);
    const backend = service?.backends.find((b) => b.id === backendId);
    if (!runtime || !service || !backend) return;
    runtime.up = up;
    if (runtime.slowStart?.timer) clearTimeout(runtime.slowStart.timer);
    runtime.slowStart = undefined;
    if (up && service.options.slowStartMs > 0) this.#startSlowStart(runtime, service.options.slowStartMs);
    this.#republish();
    this.emit('backend-state', { service: service.handle, backend: backend.handle, state: up ? 'up' : 'down', reason });
    this.#updateServiceStates();
  }

  /** Ramps the weight in about ten republished steps. */
  #startSlowStart(runtime: BackendRuntime, slowStartMs: number): void {
    const slowStart: NonNullable<BackendRuntime['slowStart']> = { since: Date.now(), timer: undefined };
    runtime.slowStart = slowStart;
    const step = Math.max(10, Math.floor(slowStartMs / 10));
    const tick = () => {
      if (runtime.slowStart !== slowStart || this.#closing) return;
      const done = Date.now() - slowStart.since >= slowStartMs;
      if (done) runtime.slowStart = undefined;
      this.#republish();
      if (!done) {
        slowStart.timer = setTimeout(tick, step);
        slowStart.timer.unref();
      }
    };
    slowStart.timer = setTimeout(tick, step);
    slowStart.timer.unref();
  }

  #updateServiceStates(): void {
    const present = new Set<number>();
    for (const service of this.#committed.services) {
      present.add(service.id);
      const up = service.backends.some((b) => this.#isUp(b.id, service));
      const before = this.#serviceUp.get(service.id);
      this.#serviceUp.set(service.id, up);
      if (before === undefined || before === up) continue;
      this.emit(up ? 'service-up' : 'service-down', { service: service.handle, state: up ? 'up' : 'down' });
    }
    for (const id of this.#serviceUp.keys()) if (!present.has(id)) this.#serviceUp.delete(id);
    // A health flip reaches the routers now, not at the next periodic read
    // (once this change is committed: poke reads stats()).
    if (this.#routes) setImmediate(() => void this.#routes?.poke());
  }

  #emitError(error: L4lbError): void {
    if (this.listenerCount('error') > 0) {
      this.emit('error', error);
    } else {
      process.emitWarning(error.message, { code: error.code, type: error.name });
    }
  }

  #drainEvents(): void {
    if (this.#closing || !this.#engine) return;
    // Before reading: a record that lands while we read signals again.
    this.#engine.eventsDrained();
    let probe = false;
    let lost = 0;
    for (const ring of this.#rings) {
      for (const event of ring.drain()) {
        if (event.kind === 'no-neighbour' || event.kind === 'no-route') probe = true;
        this.emit('dataplane', { kind: event.kind, worker: event.worker, count: event.count, detail: event.detail });
      }
      lost += ring.takeLost();
    }
    if (lost > 0) this.emit('dataplane', { kind: 'events-lost', worker: -1, count: lost, detail: 0 });
    const listening = this.listenerCount('flow') > 0;
    for (const ring of this.#flowRings) {
      for (const record of ring.drain()) {
        this.#flowEventsDelivered += 1;
        if (listening) this.emit('flow', this.#flowEvent(record));
      }
    }
    if (probe && this.#lastCompile && this.#lastCompile.unresolved.length > 0) {
      this.#driver.requestResolution(this.#lastCompile.unresolved);
    }
  }

  #flowEvent(record: FlowEventRecord): FlowEvent {
    const protocol = record.protocol === 17 ? 'udp' : 'tcp';
    const vip = numberToIpv4(record.dst);
    const serviceName = `${vip}:${record.dport}/${protocol}`;
    let backend: (BackendRef & { service: string }) | undefined = this.#retired.get(record.backendId);
    for (const service of this.#committed.services) {
      const found = service.backends.find((b) => b.id === record.backendId);
      if (found) backend = { address: found.options.address, port: found.options.port, service: service.handle.name };
    }
    const ended = record.kind === 'ended';
    return {
      type: record.kind,
      service: backend?.service ?? (this.#committed.services.some((s) => s.handle.name === serviceName) ? serviceName : null),
      backend: backend ? { address: backend.address, port: backend.port } : null,
      protocol,
      client: { address: numberToIpv4(record.src), port: record.sport },
      vip: { address: vip, port: record.dport },
      worker: record.worker,
      timeNs: record.timeNs,
      reason: ended ? (flowEndReasons[record.reason] ?? 'removed') : null,
      durationMs: record.durationMs,
      inPackets: record.inPackets,
      inBytes: record.inBytes,
      outPackets: record.outPackets,
      outBytes: record.outBytes,
    };
  }

  // ---- statistics ----------------------------------------------------------------------

  #backendCounters(backend: BackendRecord): BackendCounterValues {
    const now = this.#reader!.backend(backend.slot);
    const base = this.#baselines.get(backend.id) ?? this.#draft?.baselines.get(backend.id) ?? zeroCounters;
    const c = zeroBackendCounters();
    for (const name of backendCounterNames) c[name] = now[name] - (base[name] ?? 0);
    c.packets = c.inPackets + c.outPackets;
    c.bytes = c.inBytes + c.outBytes;
    return c;
  }

  #serviceStats(service: ServiceRecord): ServiceStats {
    const now = Date.now();
    const backends: BackendStats[] = service.backends.map((b) => {
      const c = this.#backendCounters(b);
      return {
        address: b.options.address,
        port: b.options.port,
        state: this.#isUp(b.id, service) ? 'up' : 'down',
        weight: b.options.weight,
        effectiveWeight: this.#effectiveWeightOf(b, service, now),
        nextHopResolved: this.#lastCompile?.resolved.has(b.id) ?? false,
        packets: c.packets,
        bytes: c.bytes,
        inPackets: c.inPackets,
        outPackets: c.outPackets,
        inBytes: c.inBytes,
        outBytes: c.outBytes,
        activeFlows: this.#reader!.activeFlows(b.slot),
        totalFlows: c.flowsCreated,
      };
    });
    const sum = (key: 'packets' | 'bytes' | 'inPackets' | 'outPackets' | 'inBytes' | 'outBytes' | 'activeFlows' | 'totalFlows') =>
      backends.reduce((n, b) => n + b[key], 0);
    return {
      address: service.options.address,
      port: service.options.port,
      protocol: service.options.protocol,
      method: service.options.method,
      scheduler: schedulerName(service.options.scheduler),
      state: backends.some((b) => b.state === 'up') ? 'up' : 'down',
      packets: sum('packets'),
      bytes: sum('bytes'),
      inPackets: sum('inPackets'),
      outPackets: sum('outPackets'),
      inBytes: sum('inBytes'),
      outBytes: sum('outBytes'),
      activeFlows: sum('activeFlows'),
      totalFlows: sum('totalFlows'),
      backends,
    };
  }

  #sample() {
    const reader = this.#reader!;
    let packets = 0;
    let bytes = 0;
    const drops: Record<string, number> = {};
    for (let w = 0; w < reader.workers; w++) {
      const values = reader.worker(w);
      packets += values.counters.rxPackets ?? 0;
      bytes += values.counters.rxBytes ?? 0;
      for (const [name, value] of Object.entries(values.drops)) drops[name] = (drops[name] ?? 0) + value;
    }
    const backends = new Map<number, BackendCounterValues>();
    for (const service of this.#committed.services) {
      for (const backend of service.backends) backends.set(backend.id, this.#backendCounters(backend));
    }
    return { at: performance.now(), packets, bytes, drops, backends };
  }

  // ---- handles' view -------------------------------------------------------------------

  #makeController(): Controller {
    return {
      findService: (serviceId) => this.#visible().services.find((s) => s.id === serviceId),
      findBackend: (serviceId, backendId) =>
        this.#visible()
          .services.find((s) => s.id === serviceId)
          ?.backends.find((b) => b.id === backendId),
      addBackend: (serviceId, options) => this.#addBackend(serviceId, options),
      removeBackend: (serviceId, backend) => this.#removeBackend(serviceId, backend),
      setWeight: (serviceId, backendId, weight) => this.#setWeight(serviceId, backendId, weight),
      backendState: (backendId): BackendState => {
        const service = this.#visible().services.find((s) => s.backends.some((b) => b.id === backendId));
        return service && this.#isUp(backendId, service) ? 'up' : 'down';
      },
      effectiveWeight: (backendId) => {
        for (const service of this.#visible().services) {
          const backend = service.backends.find((b) => b.id === backendId);
          if (backend) return this.#effectiveWeightOf(backend, service);
        }
        return 0;
      },
      serviceState: (serviceId): ServiceState => {
        const service = this.#visible().services.find((s) => s.id === serviceId);
        return service?.backends.some((b) => this.#isUp(b.id, service)) ? 'up' : 'down';
      },
    };
  }

  #serviceInDraft(draft: Draft, serviceId: number): ServiceRecord {
    const service = draft.state.services.find((s) => s.id === serviceId);
    if (!service) throw new StateError('EREMOVED', 'the service is not part of this load balancer any more');
    return service;
  }

  #replaceService(draft: Draft, service: ServiceRecord, backends: readonly BackendRecord[]): void {
    draft.state = { services: draft.state.services.map((s) => (s === service ? { ...s, backends } : s)) };
  }

  #addBackend(serviceId: number, options: BackendOptions): Backend {
    this.#assertOpen();
    return this.#mutate((draft) => {
      const service = this.#serviceInDraft(draft, serviceId);
      const normalized = validateBackendOptions(options, service.options.port);
      if (service.backends.some((b) => b.options.address === normalized.address && b.options.port === normalized.port)) {
        throw new ValidationError(
          'EDUPLICATE',
          `backend ${normalized.address}:${normalized.port} is in service ${service.handle.name} already`,
          { path: 'address' },
        );
      }
      const reader = this.#reader!;
      const taken = this.#slots.allocate((slot) => reader.activeFlows(slot));
      if (!taken) {
        throw new ValidationError('ELIMIT', `the load balancer holds ${this.#options.maxBackends} backends already (maxBackends)`, {
          path: 'maxBackends',
        });
      }
      draft.allocated.push(taken.slot);
      draft.baselines.set(taken.id, reader.backend(taken.slot));
      const handle = new Backend(this.#controller, service.handle, taken.id, normalized.address, normalized.port, normalized.weight);
      this.#replaceService(draft, service, [...service.backends, { id: taken.id, slot: taken.slot, options: normalized, handle }]);
      return handle;
    });
  }

  #removeBackend(serviceId: number, backend: Backend): void {
    this.#assertOpen();
    if (!(backend instanceof Backend)) {
      throw new ValidationError('EINVAL_TYPE', 'backend must be a Backend returned by addBackend', { path: 'backend' });
    }
    this.#mutate((draft) => {
      const service = this.#serviceInDraft(draft, serviceId);
      if (!service.backends.some((b) => b.handle === backend)) {
        throw new StateError('EREMOVED', `backend ${backend.address}:${backend.port} is not part of service ${service.handle.name}`);
      }
      this.#replaceService(draft, service, service.backends.filter((b) => b.handle !== backend));
    });
  }

  #setWeight(serviceId: number, backendId: number, weight: number): void {
    this.#assertOpen();
    const value = validateWeight(weight);
    this.#mutate((draft) => {
      const service = this.#serviceInDraft(draft, serviceId);
      const backend = service.backends.find((b) => b.id === backendId);
      if (!backend) throw new StateError('EREMOVED', 'the backend is not part of its service any more');
      if (backend.options.weight === value) return;
      this.#replaceService(
        draft,
        service,
        service.backends.map((b) => (b === backend ? { ...b, options: { ...b.options, weight: value } } : b)),
      );
    });
  }
}
