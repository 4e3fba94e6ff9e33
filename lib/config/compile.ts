// From the balancer's model (services, backends, health, hook tables) and
// the driver's view of the network (interfaces, next hops, routes) to the
// input of the snapshot compiler. Pure: no addon, no state.
//
// Order: services sorted by (address, port, protocol), as the data plane
// searches them; each service's backends in the order they were added,
// which is the order of the indexes a scheduler hook's table uses.
import { ipv4ToNumber } from './addresses.js';
import type { NextHop, DriverInterface, DriverRoute } from '../driver/driver.js';
import type { SchedulerName, SnapshotInput, SnapshotServiceInput } from './snapshot.js';
import type { Method, Protocol } from './types.js';

export interface ModelBackend {
  /** Native id: slot | generation << 16. */
  id: number;
  address: string;
  port: number;
  /** Weight in force (configured, or ramped by slow start). */
  weight: number;
  up: boolean;
}

export interface ModelService {
  id: number;
  address: string;
  port: number;
  protocol: Protocol;
  method: Method;
  scheduler: SchedulerName;
  /** Scheduler 'table': indexes into `backends`. */
  table?: number[];
  persistenceTimeoutMs?: number;
  greKey?: number;
  dropIpOptions: boolean;
  removeResetsFlows: boolean;
  /** 'fail-open': when no backend is up, schedule over all of them as if they were. */
  failOpen: boolean;
  backends: ModelBackend[];
}

export interface ModelNetwork {
  interfaces: readonly DriverInterface[];
  resolveNextHop(address: string): NextHop | undefined;
  routes(): DriverRoute[];
}

export interface ModelSettings {
  localAddresses: string[];
  fullnatPorts: { min: number; max: number };
  dropBadChecksum: boolean;
  answerEcho: boolean;
}

export interface CompiledModel {
  snapshot: Omit<SnapshotInput, 'generation'>;
  /** Backend addresses whose next hop is unresolved (or has no route), for the driver to probe. */
  unresolved: string[];
  /** Backend ids whose next hop is resolved. */
  resolved: Set<number>;
}

const protocolOrder: Record<Protocol, number> = { tcp: 6, udp: 17 };

export function compareServices(a: { address: string; port: number; protocol: Protocol }, b: typeof a): number {
  return (
    ipv4ToNumber(a.address) - ipv4ToNumber(b.address) || a.port - b.port || protocolOrder[a.protocol] - protocolOrder[b.protocol]
  );
}

export function compileModel(services: readonly ModelService[], network: ModelNetwork, settings: ModelSettings): CompiledModel {
  const unresolved = new Set<string>();
  const resolved = new Set<number>();
  const hops = new Map<string, NextHop | undefined>();
  const hopOf = (address: string) => {
    if (!hops.has(address)) hops.set(address, network.resolveNextHop(address));
    return hops.get(address);
  };
  const compiled: SnapshotServiceInput[] = [...services].sort(compareServices).map((service) => {
    const failOpen = service.failOpen && service.backends.length > 0 && !service.backends.some((b) => b.up);
    return {
      id: service.id,
      address: service.address,
      port: service.port,
      protocol: service.protocol,
      method: service.method,
      scheduler: service.scheduler,
      table: service.table,
      persistenceTimeoutMs: service.persistenceTimeoutMs,
      greKey: service.greKey,
      dropIpOptions: service.dropIpOptions,
      removeResetsFlows: service.removeResetsFlows,
      backends: service.backends.map((backend) => {
        const hop = hopOf(backend.address);
        if (hop?.mac) resolved.add(backend.id);
        else unresolved.add(hop?.gateway ?? backend.address);
        return {
          id: backend.id,
          address: backend.address,
          port: backend.port,
          weight: backend.weight,
          up: backend.up || failOpen,
          egressPort: hop?.interfaceIndex ?? 0,
          nextHopMac: hop?.mac,
        };
      }),
    };
  });
  return {
    snapshot: {
      dropBadChecksum: settings.dropBadChecksum,
      answerEcho: settings.answerEcho,
      fullnatPortMin: settings.fullnatPorts.min,
      fullnatPortMax: settings.fullnatPorts.max,
      ports: network.interfaces.map((i) => ({
        mac: i.mac,
        mtu: i.mtu,
        address: i.address,
        prefixLength: i.prefixLength,
        answerArpForVips: i.answerArp,
      })),
      services: compiled,
      routes: network.routes().map((r) => ({
        prefix: r.prefix,
        prefixLength: r.prefixLength,
        egressPort: r.interfaceIndex,
        gateway: r.gateway,
        nextHopMac: r.mac,
      })),
      localAddresses: settings.localAddresses,
    },
    unresolved: [...unresolved],
    resolved,
  };
}
