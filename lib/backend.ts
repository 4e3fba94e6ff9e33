// A backend (real server) of a service: its configuration read-only, its
// health state, and setWeight (0 drains: established flows continue, no new
// ones). Health-check functions and scheduler hooks receive these.
import type { BackendState } from './config/types.js';
import { StateError } from './errors.js';
import type { Controller } from './model.js';
import type { Service } from './service.js';

export class Backend {
  readonly #controller: Controller;
  readonly #serviceId: number;
  #lastWeight: number;

  /** @internal Created by Service.addBackend. */
  constructor(
    controller: Controller,
    readonly service: Service,
    /** Stable for the backend's life; the data plane's flows refer to it. */
    readonly id: number,
    readonly address: string,
    readonly port: number,
    weight: number,
  ) {
    this.#controller = controller;
    this.#serviceId = service.id;
    this.#lastWeight = weight;
  }

  /** False once removed (or when the transaction that added it failed). */
  get active(): boolean {
    return this.#controller.findBackend(this.#serviceId, this.id) !== undefined;
  }

  /** The configured weight (0 = draining). */
  get weight(): number {
    const record = this.#controller.findBackend(this.#serviceId, this.id);
    if (record) this.#lastWeight = record.options.weight;
    return this.#lastWeight;
  }

  /** The weight in force: lower than `weight` while slow start ramps it up. */
  get effectiveWeight(): number {
    return this.active ? this.#controller.effectiveWeight(this.id) : 0;
  }

  /** Health: 'down' until it passes `rise` checks (always 'up' with healthCheck type 'none'). */
  get state(): BackendState {
    return this.active ? this.#controller.backendState(this.id) : 'down';
  }

  /** Sets the weight, 0..65535; 0 drains. Published at once (or with the transaction). */
  setWeight(weight: number): void {
    if (!this.active) {
      throw new StateError('EREMOVED', `backend ${this.address}:${this.port} is not part of its service any more`);
    }
    this.#controller.setWeight(this.#serviceId, this.id, weight);
  }

  toJSON(): { address: string; port: number; weight: number; state: BackendState } {
    return { address: this.address, port: this.port, weight: this.weight, state: this.state };
  }
}
