// Reloading a configuration file: the difference between the running file
// and the new one, as a list of operations (a pure function, so it is tested
// as a table), and applying that list to a balancer as ONE transaction.
//
// Identity: a service is its protocol, VIP and port ('198.18.0.100:80/tcp');
// a backend is its address and port within its service. Only what differs is
// touched, so the established flows of every unchanged backend stay where
// they are. A service whose own options changed (method, scheduler, health
// check, ...) is replaced: the API has no way to change them in place, and a
// new service means new backend ids, so its established flows end (TCP reset
// or drop, per its old onBackendRemoved) and its backends start their health
// checks over. Settings of the balancer itself cannot change while it runs.
import type { Backend } from '../backend.js';
import type { DriverName } from '../config/types.js';
import type { LoadBalancer } from '../load-balancer.js';
import type { Service } from '../service.js';
import { L4lbError } from '../errors.js';
import { type BackendConfig, type ConfigFile, ConfigFileError, type ServiceConfig } from './config-file.js';

export type ReloadOperation =
  | { kind: 'add-service'; service: string; path: string; config: ServiceConfig }
  | { kind: 'remove-service'; service: string }
  | { kind: 'replace-service'; service: string; path: string; config: ServiceConfig; changed: string[] }
  | { kind: 'add-backend'; service: string; backend: string; path: string; config: BackendConfig }
  | { kind: 'remove-backend'; service: string; backend: string }
  | { kind: 'set-weight'; service: string; backend: string; path: string; from: number; to: number };

/** Settings that a running instance cannot change, and whether the command line fixed them. */
export interface FixedSettings {
  /** `--socket` was given: the file's control.socket is not used. */
  socketFromCommandLine?: boolean;
  /** `--metrics` was given: the file's metrics is not used. */
  metricsFromCommandLine?: boolean;
  /** `--dashboard` was given: the file's dashboard is not used. */
  dashboardFromCommandLine?: boolean;
  /** `--driver` was given: it replaces the file's balancer.driver, at start and in every reload. */
  driver?: DriverName;
}

/** A file the running instance cannot switch to without a restart. */
export class ReloadRefusedError extends ConfigFileError {}

/** A stable text for comparing option values: RegExps and bytes by content, undefined fields dropped. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v instanceof RegExp) return `/${v.source}/${v.flags}`;
    if (v instanceof Uint8Array) return `bytes:${Buffer.from(v).toString('hex')}`;
    if (typeof v === 'function') return `function:${v.name}`;
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    }
    return v;
  });
}

/** The first path (below `base`) at which two values differ, or undefined when they are equal. */
export function firstDifference(a: unknown, b: unknown, base: string): string | undefined {
  if (canonical(a) === canonical(b)) return undefined;
  const plain = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !(v instanceof RegExp) && !(v instanceof Uint8Array);
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) {
    for (let i = 0; i < a.length; i++) {
      const inner = firstDifference(a[i], b[i], `${base}[${i}]`);
      if (inner) return inner;
    }
  }
  if (plain(a) && plain(b) && !Array.isArray(a) && !Array.isArray(b)) {
    for (const key of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
      const inner = firstDifference(a[key], b[key], `${base}.${key}`);
      if (inner) return inner;
    }
  }
  return base;
}

function show(value: unknown): string {
  if (value === undefined) return 'unset';
  const text = canonical(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function valueAt(root: unknown, path: string): unknown {
  let value = root;
  for (const match of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string, unknown>)[match[2] ?? match[1]!];
  }
  return value;
}

function refuseChange(next: ConfigFile, path: string, before: unknown, after: unknown, remedy: string): never {
  const line = next.lineOf(path);
  throw new ReloadRefusedError(next.file, 'ERELOAD_FIXED', path, `cannot change while l4lb runs (${show(before)} -> ${show(after)}); ${remedy}`, {
    ...(line !== undefined ? { line } : {}),
  });
}

/**
 * The operations that turn the running configuration `current` into `next`,
 * in the order they are applied: removals, replacements, additions, weights.
 * Throws ReloadRefusedError when `next` changes what cannot change live.
 */
export function planReload(current: ConfigFile, next: ConfigFile, fixed: FixedSettings = {}): ReloadOperation[] {
  const balancerChange = firstDifference(current.normalizedBalancer, next.normalizedBalancer, 'balancer');
  if (balancerChange) {
    const inner = balancerChange.slice('balancer'.length);
    refuseChange(
      next,
      balancerChange,
      valueAt(current.normalizedBalancer, inner),
      valueAt(next.normalizedBalancer, inner),
      'the balancer section applies at start: restart l4lb to use it',
    );
  }
  if (!fixed.socketFromCommandLine && current.controlSocket !== next.controlSocket) {
    refuseChange(next, 'control.socket', current.controlSocket, next.controlSocket, 'restart l4lb to move its control socket');
  }
  if (!fixed.metricsFromCommandLine && canonical(current.metrics) !== canonical(next.metrics)) {
    refuseChange(next, 'metrics', current.metrics, next.metrics, 'restart l4lb to move its metrics listener');
  }
  if (!fixed.dashboardFromCommandLine && canonical(current.dashboard) !== canonical(next.dashboard)) {
    refuseChange(next, 'dashboard', current.dashboard, next.dashboard, 'restart l4lb to move its dashboard listener');
  }

  const removals: ReloadOperation[] = [];
  const replacements: ReloadOperation[] = [];
  const additions: ReloadOperation[] = [];
  const weights: ReloadOperation[] = [];
  const before = new Map(current.services.map((s) => [s.key, s]));
  const after = new Set(next.services.map((s) => s.key));
  for (const service of current.services) {
    if (!after.has(service.key)) removals.push({ kind: 'remove-service', service: service.key });
  }
  for (const service of next.services) {
    const old = before.get(service.key);
    if (!old) {
      additions.push({ kind: 'add-service', service: service.key, path: service.path, config: service });
      continue;
    }
    const changed = Object.keys(service.normalized)
      .filter((field) => canonical((old.normalized as unknown as Record<string, unknown>)[field]) !== canonical((service.normalized as unknown as Record<string, unknown>)[field]))
      .sort();
    if (changed.length > 0) {
      replacements.push({ kind: 'replace-service', service: service.key, path: service.path, config: service, changed });
      continue;
    }
    const oldBackends = new Map(old.backends.map((b) => [b.key, b]));
    const newKeys = new Set(service.backends.map((b) => b.key));
    for (const backend of old.backends) {
      if (!newKeys.has(backend.key)) removals.push({ kind: 'remove-backend', service: service.key, backend: backend.key });
    }
    for (const backend of service.backends) {
      const previous = oldBackends.get(backend.key);
      if (!previous) {
        additions.push({ kind: 'add-backend', service: service.key, backend: backend.key, path: backend.path, config: backend });
      } else if (previous.normalized.weight !== backend.normalized.weight) {
        weights.push({
          kind: 'set-weight',
          service: service.key,
          backend: backend.key,
          path: `${backend.path}.weight`,
          from: previous.normalized.weight,
          to: backend.normalized.weight,
        });
      }
    }
  }
  return [...removals, ...replacements, ...additions, ...weights];
}

/** One line per operation, for logs and the `reload` command's answer. */
export function describeOperation(operation: ReloadOperation): string {
  switch (operation.kind) {
    case 'add-service': {
      const n = operation.config.backends.length;
      return `add service ${operation.service} with ${n} backend${n === 1 ? '' : 's'}`;
    }
    case 'remove-service':
      return `remove service ${operation.service} (its flows end)`;
    case 'replace-service':
      return `replace service ${operation.service} (${operation.changed.join(', ')} changed; its established flows are reset)`;
    case 'add-backend':
      return `add backend ${operation.backend} to ${operation.service} (weight ${operation.config.normalized.weight})`;
    case 'remove-backend':
      return `remove backend ${operation.backend} from ${operation.service} (its flows end)`;
    case 'set-weight':
      return `set weight of ${operation.backend} in ${operation.service} from ${operation.from} to ${operation.to}`;
  }
}

function findService(lb: LoadBalancer, key: string): Service {
  const service = lb.services.find((s) => s.name === key);
  if (!service) throw new L4lbError('ENOT_RUNNING', `service ${key} is not running`);
  return service;
}

function findBackend(service: Service, key: string): Backend {
  const backend = service.backends.find((b) => `${b.address}:${b.port}` === key);
  if (!backend) throw new L4lbError('ENOT_RUNNING', `backend ${key} is not running in ${service.name}`);
  return backend;
}

function addService(lb: LoadBalancer, config: ServiceConfig): void {
  const service = lb.addService(config.options);
  for (const backend of config.backends) {
    try {
      service.addBackend(backend.options);
    } catch (error) {
      throw Object.assign(error as object, { operationPath: backend.path });
    }
  }
}

function applyOperation(lb: LoadBalancer, operation: ReloadOperation): void {
  switch (operation.kind) {
    case 'add-service':
      return addService(lb, operation.config);
    case 'remove-service':
      return lb.removeService(findService(lb, operation.service));
    case 'replace-service':
      lb.removeService(findService(lb, operation.service));
      return addService(lb, operation.config);
    case 'add-backend':
      findService(lb, operation.service).addBackend(operation.config.options);
      return;
    case 'remove-backend': {
      const service = findService(lb, operation.service);
      return service.removeBackend(findBackend(service, operation.backend));
    }
    case 'set-weight':
      return findBackend(findService(lb, operation.service), operation.backend).setWeight(operation.to);
  }
}

/**
 * Applies `operations` (from planReload toward `next`) as one transaction:
 * all of them are published in one snapshot, or, when one fails, none. A
 * refusal by the balancer (a limit, a conflict) becomes a ConfigFileError
 * naming the place in `next` that caused it.
 */
export function applyReload(lb: LoadBalancer, next: ConfigFile, operations: readonly ReloadOperation[]): void {
  if (operations.length === 0) return;
  let current: ReloadOperation | undefined;
  try {
    lb.transaction(() => {
      for (const operation of operations) {
        current = operation;
        applyOperation(lb, operation);
      }
      current = undefined;
    });
  } catch (error) {
    if (current && error instanceof L4lbError) {
      const place = (error as { operationPath?: string }).operationPath ?? ('path' in current ? current.path : undefined);
      const line = place !== undefined ? next.lineOf(place) : undefined;
      throw new ConfigFileError(next.file, error.code, place, `${describeOperation(current)}: ${error.message}`, {
        cause: error,
        ...(line !== undefined ? { line } : {}),
      });
    }
    throw error;
  }
}
