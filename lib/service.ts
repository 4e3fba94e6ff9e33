// A virtual service (VIP:port/protocol): its configuration read-only, its
// backends, addBackend and removeBackend.
import type { Backend } from './backend.js';
import type { NormalizedService } from './config/validate.js';
import type {
  BackendOptions,
  BuiltinScheduler,
  Method,
  Protocol,
  SchedulerHook,
  ServiceState,
} from './config/types.js';
import type { Controller } from './model.js';

export class Service {
  readonly #controller: Controller;
  readonly #options: NormalizedService;
  #lastBackends: readonly Backend[] = [];

  /** @internal Created by LoadBalancer.addService. */
  constructor(
    controller: Controller,
    /** Stable for the service's life. */
    readonly id: number,
    options: NormalizedService,
  ) {
    this.#controller = controller;
    this.#options = options;
  }

  get address(): string {
    return this.#options.address;
  }
  get port(): number {
    return this.#options.port;
  }
  get protocol(): Protocol {
    return this.#options.protocol;
  }
  get method(): Method {
    return this.#options.method;
  }
  /** The builtin scheduler, or the hook. */
  get scheduler(): BuiltinScheduler | SchedulerHook {
    return this.#options.scheduler;
  }
  get persistence(): { timeoutMs: number } | undefined {
    return this.#options.persistenceTimeoutMs === undefined ? undefined : { timeoutMs: this.#options.persistenceTimeoutMs };
  }
  get slowStartMs(): number {
    return this.#options.slowStartMs;
  }
  get onBackendRemoved(): 'reset' | 'drop' {
    return this.#options.onBackendRemoved;
  }
  get allBackendsDown(): 'drop-new' | 'fail-open' {
    return this.#options.allBackendsDown;
  }
  /** 'address:port/protocol', e.g. '198.18.0.100:80/tcp'. */
  get name(): string {
    return `${this.address}:${this.port}/${this.protocol}`;
  }

  /** False once removed (or when the transaction that added it failed). */
  get active(): boolean {
    return this.#controller.findService(this.id) !== undefined;
  }

  /** The backends, in the order they were added (the index order of hook tables). */
  get backends(): readonly Backend[] {
    const record = this.#controller.findService(this.id);
    if (record) this.#lastBackends = record.backends.map((b) => b.handle);
    return this.#lastBackends;
  }

  /** 'up' while at least one backend is up. */
  get state(): ServiceState {
    return this.active ? this.#controller.serviceState(this.id) : 'down';
  }

  addBackend(options: BackendOptions): Backend {
    return this.#controller.addBackend(this.id, options);
  }

  /** Removes a backend; its established flows end (TCP reset toward the client, or drop: `onBackendRemoved`). */
  removeBackend(backend: Backend): void {
    this.#controller.removeBackend(this.id, backend);
  }

  /** The backend at `address` (and `port`, when given), if any. */
  findBackend(address: string, port?: number): Backend | undefined {
    return this.backends.find((b) => b.address === address && (port === undefined || b.port === port));
  }

  toJSON(): { address: string; port: number; protocol: Protocol; method: Method; scheduler: string; backends: readonly Backend[] } {
    const scheduler = typeof this.scheduler === 'string' ? this.scheduler : this.scheduler.name;
    return { address: this.address, port: this.port, protocol: this.protocol, method: this.method, scheduler, backends: this.backends };
  }
}
