// explain(): which backend a flow gets and why. The data plane reports the
// facts (native Engine::explain: the flow entry, the persistence template,
// the scheduler's slot); the verdict and its sentence are decided here, in
// the order the packet path applies its rules (native/core/forward.cc).
import { isIPv4, isIPv6 } from 'node:net';

import { ValidationError } from '../errors.js';
import type { BackendRef, ExplainVerdict, FlowExplanation, FlowTuple } from './types.js';

/** Throws a ValidationError naming the field; returns the tuple with its default protocol. */
export function validateFlowTuple(input: unknown): Required<FlowTuple> {
  if (typeof input !== 'object' || input === null) {
    throw new ValidationError('EINVAL_TYPE', 'explain(flow): flow must be an object { src, sport, dst, dport, proto }', { path: 'flow' });
  }
  const t = input as Record<string, unknown>;
  for (const key of Object.keys(t)) {
    if (!['src', 'sport', 'dst', 'dport', 'proto'].includes(key)) {
      throw new ValidationError('EINVAL_UNKNOWN_FIELD', `unknown field "${key}" (known: src, sport, dst, dport, proto)`, { path: key });
    }
  }
  for (const key of ['src', 'dst'] as const) {
    const value = t[key];
    if (typeof value === 'string' && isIPv6(value)) {
      throw new ValidationError('EUNSUPPORTED', `${key}: IPv6 flows are not balanced yet, got ${value}`, { path: key });
    }
    if (typeof value !== 'string' || !isIPv4(value)) {
      throw new ValidationError('EINVAL_ADDRESS', `${key} must be an IPv4 address, got ${JSON.stringify(value)}`, { path: key });
    }
  }
  for (const key of ['sport', 'dport'] as const) {
    const value = t[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 65535) {
      throw new ValidationError('EINVAL_RANGE', `${key} must be an integer from 0 to 65535, got ${JSON.stringify(value)}`, { path: key });
    }
  }
  const proto = t.proto ?? 'tcp';
  if (proto !== 'tcp' && proto !== 'udp') {
    throw new ValidationError('EINVAL_ENUM', `proto must be 'tcp' or 'udp', got ${JSON.stringify(proto)}`, { path: 'proto' });
  }
  return { src: t.src as string, sport: t.sport as number, dst: t.dst as string, dport: t.dport as number, proto };
}

/** The facts the addon reports (lib/native/binding.ts NativeFlowFacts), with backend ids. */
export interface FlowFacts {
  hash: bigint;
  flow: {
    backendId: number;
    backendPresent: boolean;
    state: string;
    idleMs: number;
    expired: boolean;
    replyRouteDiffers: boolean;
  } | null;
  persistence: { backendId: number; backendPresent: boolean; idleMs: number; timeoutMs: number; expired: boolean } | null;
  pick: { scheduler: string; byHash: boolean; slot: number; tableSize: number; backendId: number | null } | null;
}

/** What the control plane knows of the service the tuple is for. */
export interface ExplainContext {
  service: {
    name: string;
    /** The scheduler's name as configured (a hook's own name for a hook). */
    scheduler: string;
    onBackendRemoved: 'reset' | 'drop';
    allBackendsDown: 'drop-new' | 'fail-open';
    persistenceTimeoutMs: number;
  } | null;
  /** Every backend of the balancer by native id (a flow may hold one of another service). */
  backends: Map<number, BackendRef & { state: 'up' | 'down'; weight: number; serviceName: string }>;
  /** Backends of the service that are up with a weight above 0 (or every backend under fail-open with all down). */
  schedulable: number;
  /** Idle timeout by flow state name. */
  timeoutFor(state: string): number;
}

const ref = (b: BackendRef | undefined): BackendRef | null => (b ? { address: b.address, port: b.port } : null);
const name = (b: BackendRef) => `${b.address}:${b.port}`;

export function composeExplanation(tuple: Required<FlowTuple>, facts: FlowFacts, context: ExplainContext): FlowExplanation {
  const lookup = (id: number | null | undefined) => (id === null || id === undefined ? undefined : context.backends.get(id));
  const service = context.service;
  const flowBackend = facts.flow ? lookup(facts.flow.backendId) : undefined;
  const existingFlow = facts.flow
    ? {
        backend: ref(flowBackend),
        state: facts.flow.state,
        idleMs: facts.flow.idleMs,
        timeoutMs: context.timeoutFor(facts.flow.state),
        expired: facts.flow.expired,
        replyRouteDiffers: facts.flow.replyRouteDiffers,
      }
    : null;
  const persistedBackend = facts.persistence ? lookup(facts.persistence.backendId) : undefined;
  const persistence = facts.persistence
    ? { backend: ref(persistedBackend), idleMs: facts.persistence.idleMs, timeoutMs: facts.persistence.timeoutMs, expired: facts.persistence.expired }
    : null;
  const pickedBackend = facts.pick ? lookup(facts.pick.backendId) : undefined;
  const scheduler = facts.pick && service
    ? {
        name: service.scheduler,
        byHash: facts.pick.byHash,
        slot: facts.pick.byHash && facts.pick.slot < facts.pick.tableSize ? facts.pick.slot : null,
        tableSize: facts.pick.byHash ? facts.pick.tableSize : null,
        backend: ref(pickedBackend),
      }
    : null;

  let verdict: ExplainVerdict;
  let backend: FlowExplanation['backend'] = null;
  let reason: string;
  const withState = (b: typeof flowBackend) => (b ? { address: b.address, port: b.port, state: b.state, weight: b.weight } : null);
  const usable = (b: typeof flowBackend) => b !== undefined && b.state === 'up' && b.weight > 0;
  // The order of the packet path: service, then the flow entry, then
  // persistence, then the scheduler.
  if (!service) {
    verdict = 'no-service';
    reason = `no service for ${tuple.dst}:${tuple.dport}/${tuple.proto}: the packet is not the balancer's and is passed`;
  } else if (facts.flow && !facts.flow.expired) {
    if (!facts.flow.backendPresent || !flowBackend || flowBackend.serviceName !== service.name) {
      verdict = 'backend-removed';
      const ending = service.onBackendRemoved === 'drop' ? 'it is dropped (onBackendRemoved: drop)' : 'a TCP packet is answered with a reset (UDP: dropped)';
      reason = `the tuple is a tracked flow (${facts.flow.state}) whose backend was removed: its next packet ends it and ${ending}`;
    } else {
      verdict = 'existing-flow';
      backend = withState(flowBackend);
      const note = usable(flowBackend) ? '' : ` (the backend is ${flowBackend.weight === 0 ? 'draining' : 'down'}: established flows continue)`;
      reason = `the tuple is a tracked flow (${facts.flow.state}, idle ${facts.flow.idleMs} ms): it stays on ${name(flowBackend)} whatever the scheduler says now${note}`;
    }
  } else if (facts.persistence && !facts.persistence.expired && usable(persistedBackend)) {
    verdict = 'persistence';
    backend = withState(persistedBackend);
    reason = `a new flow: client ${tuple.src} has a persistence template for ${service.name} (idle ${facts.persistence.idleMs} of ${facts.persistence.timeoutMs} ms), so it goes to ${name(persistedBackend!)}`;
  } else if (pickedBackend) {
    verdict = 'scheduler';
    backend = withState(pickedBackend);
    const how = facts.pick!.byHash
      ? scheduler!.slot !== null
        ? `${service.scheduler} hashes it to slot ${scheduler!.slot} of ${scheduler!.tableSize}`
        : `${service.scheduler} finds no schedulable backend in the entries it probes and falls back to one by hash`
      : `${service.scheduler} sends it to the backend with the fewest active flows for its weight now`;
    const notes: string[] = [];
    if (facts.persistence) notes.push('the persistence template names a backend that is gone, down or draining, so a new pick replaces it');
    if (pickedBackend.state === 'down') notes.push('fail-open: every backend is down, so new flows go to them as if up');
    reason = `a new flow: ${how}, which holds ${name(pickedBackend)}${notes.length ? ` (${notes.join('; ')})` : ''}`;
  } else if (facts.pick && !facts.pick.byHash && (facts.pick.scheduler === 'rr' || facts.pick.scheduler === 'wrr') && context.schedulable > 0) {
    verdict = 'scheduler';
    reason = `a new flow: ${service.scheduler} sends it to the next backend in the rotation of the worker that receives it (not a function of the tuple)`;
  } else {
    verdict = 'no-backend';
    reason = `a new flow: no backend of ${service.name} is up with a weight above 0, so it is dropped (no-backend)`;
  }
  return {
    flow: tuple,
    service: service?.name ?? null,
    verdict,
    backend,
    reason,
    existingFlow,
    persistence,
    scheduler,
    hash: facts.hash.toString(16).padStart(16, '0'),
  };
}

/** The idle timeout of a flow state name (native FlowState names, lib/native). */
export function timeoutForState(
  state: string,
  timeouts: { tcpSynTimeoutMs: number; tcpEstablishedTimeoutMs: number; tcpClosingTimeoutMs: number; tcpClosedTimeoutMs: number; udpTimeoutMs: number },
): number {
  switch (state) {
    case 'syn-seen':
      return timeouts.tcpSynTimeoutMs;
    case 'established':
      return timeouts.tcpEstablishedTimeoutMs;
    case 'fin-from-client':
    case 'fin-from-backend':
      return timeouts.tcpClosingTimeoutMs;
    case 'closed':
      return timeouts.tcpClosedTimeoutMs;
    case 'udp':
      return timeouts.udpTimeoutMs;
    default:
      return 60_000;
  }
}

