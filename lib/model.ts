// The balancer's configuration model, shared by LoadBalancer, Service and
// Backend. Records are immutable: every change builds a new ConfigState, so
// a transaction is a draft state that is either published whole or dropped.
import type { Backend } from './backend.js';
import type { NormalizedBackend, NormalizedService } from './config/validate.js';
import type { BackendOptions, BackendState, ServiceState } from './config/types.js';
import type { Service } from './service.js';

export interface BackendRecord {
  /** Native id: slot | generation << 16, never reused while flows may hold it. */
  readonly id: number;
  readonly slot: number;
  readonly options: NormalizedBackend;
  readonly handle: Backend;
}

export interface ServiceRecord {
  readonly id: number;
  readonly options: NormalizedService;
  readonly backends: readonly BackendRecord[];
  readonly handle: Service;
}

export interface ConfigState {
  readonly services: readonly ServiceRecord[];
}

/** What Service and Backend handles ask of their balancer. Internal. */
export interface Controller {
  findService(serviceId: number): ServiceRecord | undefined;
  findBackend(serviceId: number, backendId: number): BackendRecord | undefined;
  addBackend(serviceId: number, options: BackendOptions): Backend;
  removeBackend(serviceId: number, backend: Backend): void;
  setWeight(serviceId: number, backendId: number, weight: number): void;
  backendState(backendId: number): BackendState;
  effectiveWeight(backendId: number): number;
  serviceState(serviceId: number): ServiceState;
}
