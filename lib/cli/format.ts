// Tables in the style of `ipvsadm -L -n` (status), `--stats` and `--rate`:
// one line per service, one indented `->` line per backend, columns aligned
// the way ipvsadm aligns them (a 33-character address column, numbers
// right-aligned in 8). `stats` splits packets and bytes into In (client ->
// backend) and Out (replies through the balancer) as ipvsadm --stats does.
import type { BackendStats, LoadBalancerRates, LoadBalancerStats, Method, ServiceStats } from '../config/types.js';
import type { FlowExplanation } from '../insight/types.js';
import type { InstanceInfo } from './runner.js';

// ipvsadm's names for the forwarding methods, and ours for the ones it lacks.
const forwardNames: Record<Method, string> = { nat: 'Masq', fullnat: 'FullNat', dr: 'Route', ipip: 'Tunnel', gre: 'GRE' };

export interface NumberStyle {
  /** Print every digit instead of shortening large numbers with K, M, G (ipvsadm --exact). */
  exact?: boolean;
}

/**
 * Shortens large numbers as ipvsadm does (its print_largenum): exact up to
 * eight digits, then K, M, G, T with the digits below cut off.
 */
export function human(value: number, style: NumberStyle = {}): string {
  const rounded = Math.round(value);
  if (style.exact || rounded < 1e8) return String(rounded);
  if (rounded < 1e9) return `${Math.floor(rounded / 1e3)}K`;
  if (rounded < 1e11) return `${Math.floor(rounded / 1e6)}M`;
  if (rounded < 1e14) return `${Math.floor(rounded / 1e9)}G`;
  return `${Math.floor(rounded / 1e12)}T`;
}

function serviceColumn(protocol: string, address: string, port: number): string {
  return `${protocol.toUpperCase().padEnd(4)} ${address}:${port}`.padEnd(33);
}

function backendColumn(backend: { address: string; port: number }): string {
  return `  -> ${backend.address}:${backend.port}`.padEnd(33);
}

/** Rates: one decimal below 10 per second, where rounding would hide a trickle. */
export function rate(value: number, style: NumberStyle = {}): string {
  if (value === 0) return '0';
  return value < 10 ? value.toFixed(1) : human(value, style);
}

function numbers(values: number[], style: NumberStyle, show = human): string {
  return values.map((v) => ` ${show(v, style).padStart(8)}`).join('');
}

function durationText(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function dropsLine(drops: Record<string, number>, label: string, style: NumberStyle, show = human): string {
  const nonZero = Object.entries(drops)
    .filter(([, n]) => n > 0)
    .sort(([a], [b]) => (a < b ? -1 : 1));
  return `${label}: ${nonZero.length ? nonZero.map(([reason, n]) => `${reason} ${show(n, style)}`).join(', ') : 'none'}`;
}

function backendState(backend: BackendStats): string {
  const notes: string[] = [];
  if (backend.weight === 0) notes.push('draining');
  else if (backend.effectiveWeight !== backend.weight) notes.push(`slow start at weight ${backend.effectiveWeight}`);
  if (!backend.nextHopResolved) notes.push('next hop unresolved');
  return notes.length ? `${backend.state} (${notes.join(', ')})` : backend.state;
}

/** A service's line in `status`: its stats, and its persistence timeout when it has one. */
export type StatusService = ServiceStats & { persistenceTimeoutMs?: number };

function serviceFlags(service: StatusService): string {
  const flags = [service.scheduler];
  if (service.persistenceTimeoutMs !== undefined) flags.push(`persistent ${durationText(service.persistenceTimeoutMs)}`);
  if (service.state === 'down') flags.push('DOWN');
  return flags.join(' ');
}

/** `l4lb status`: services, backends, weights, connections and health (ipvsadm -L -n). */
export function formatStatus(stats: LoadBalancerStats & { services: StatusService[] }, instance?: InstanceInfo): string {
  const lines: string[] = [];
  if (instance) {
    lines.push(`l4lb pid ${instance.pid}, config ${instance.file}, reloads ${instance.reloads}`);
    if (instance.lastReload && !instance.lastReload.ok) lines.push(`Last reload rejected: ${instance.lastReload.message}`);
  }
  lines.push(
    `Generation ${stats.generation}, workers ${stats.workers.length}, flows ${stats.flows.active}/${stats.flows.capacity}`,
    'Prot LocalAddress:Port Scheduler Flags',
    '  -> RemoteAddress:Port           Forward Weight ActiveConn TotalConn  State',
  );
  for (const service of stats.services) {
    lines.push(`${service.protocol.toUpperCase().padEnd(4)} ${service.address}:${service.port} ${serviceFlags(service)}`);
    for (const backend of service.backends) {
      lines.push(
        `${backendColumn(backend)} ${forwardNames[service.method].padEnd(8)}${String(backend.weight).padEnd(7)}${String(backend.activeFlows).padEnd(11)}${String(backend.totalFlows).padEnd(11)}${backendState(backend)}`,
      );
    }
  }
  return lines.join('\n') + '\n';
}

/**
 * `l4lb stats`: totals since each service and backend was added (ipvsadm -L
 * -n --stats), then the data plane's ports (KernDrop: frames the kernel
 * dropped because a receive ring was full).
 */
export function formatStats(stats: LoadBalancerStats, style: NumberStyle = {}): string {
  const lines = [
    `${'Prot LocalAddress:Port'.padEnd(33)}${['Conns', 'InPkts', 'OutPkts', 'InBytes', 'OutBytes'].map((h) => ` ${h.padStart(8)}`).join('')}`,
    '  -> RemoteAddress:Port',
  ];
  const columns = (c: Pick<ServiceStats, 'totalFlows' | 'inPackets' | 'outPackets' | 'inBytes' | 'outBytes'>) => [
    c.totalFlows,
    c.inPackets,
    c.outPackets,
    c.inBytes,
    c.outBytes,
  ];
  for (const service of stats.services) {
    lines.push(`${serviceColumn(service.protocol, service.address, service.port)}${numbers(columns(service), style)}`);
    for (const backend of service.backends) lines.push(`${backendColumn(backend)}${numbers(columns(backend), style)}`);
  }
  if (stats.interfaces.length > 0) {
    const headings = ['RxPkts', 'RxBytes', 'TxPkts', 'TxBytes', 'TxDrop', 'KernDrop'];
    lines.push(`${'Interface'.padEnd(16)}${headings.map((h) => ` ${h.padStart(8)}`).join('')}`);
    for (const port of stats.interfaces) {
      lines.push(`${port.name.padEnd(16)}${numbers([port.rxPackets, port.rxBytes, port.txPackets, port.txBytes, port.txDropped, port.kernelDrops], style)}`);
    }
  }
  lines.push(
    `Received: ${human(stats.packets, style)} packets, ${human(stats.bytes, style)} bytes`,
    dropsLine(stats.drops, 'Drops', style),
    `Replies on their flow's ingress path: ${human(stats.repliesIngressPath, style)} (routing would have chosen another port for ${human(stats.repliesRouteDiffers, style)})`,
  );
  return lines.join('\n') + '\n';
}

/** `l4lb stats --rate`: per-second rates over a window (ipvsadm -L -n --rate). */
export function formatRates(rates: LoadBalancerRates, style: NumberStyle = {}): string {
  const lines = [
    `Rates per second over the last ${(rates.windowMs / 1000).toFixed(1)} s`,
    `${'Prot LocalAddress:Port'.padEnd(33)}${['CPS', 'PPS', 'BPS'].map((h) => ` ${h.padStart(8)}`).join('')}`,
    '  -> RemoteAddress:Port',
  ];
  for (const service of rates.services) {
    lines.push(
      `${serviceColumn(service.protocol, service.address, service.port)}${numbers([service.flowsPerSec, service.packetsPerSec, service.bytesPerSec], style, rate)}`,
    );
    for (const backend of service.backends) {
      lines.push(`${backendColumn(backend)}${numbers([backend.flowsPerSec, backend.packetsPerSec, backend.bytesPerSec], style, rate)}`);
    }
  }
  lines.push(
    `Received: ${rate(rates.packetsPerSec, style)} packets/s, ${rate(rates.bytesPerSec, style)} bytes/s`,
    dropsLine(rates.dropsPerSec, 'Drops/s', style, rate),
  );
  return lines.join('\n') + '\n';
}

/** `l4lb trace`: where a tuple goes and why, one fact a line. */
export function formatExplanation(e: FlowExplanation): string {
  const address = (b: { address: string; port: number } | null) => (b ? `${b.address}:${b.port}` : 'none');
  const lines = [
    `${e.flow.proto.toUpperCase()} ${e.flow.src}:${e.flow.sport} -> ${e.flow.dst}:${e.flow.dport}`,
    `Service:     ${e.service ?? 'none'}`,
    `Backend:     ${e.backend ? `${address(e.backend)} (${e.backend.state}, weight ${e.backend.weight})` : 'none'}`,
    `Verdict:     ${e.verdict}: ${e.reason}`,
  ];
  if (e.existingFlow) {
    const f = e.existingFlow;
    lines.push(`Flow entry:  ${address(f.backend)}, ${f.state}, idle ${f.idleMs} ms of ${f.timeoutMs} ms${f.expired ? ', expired' : ''}`);
  }
  if (e.persistence) {
    const p = e.persistence;
    lines.push(`Persistence: ${address(p.backend)}, idle ${p.idleMs} ms of ${p.timeoutMs} ms${p.expired ? ', expired' : ''}`);
  }
  if (e.scheduler) {
    const s = e.scheduler;
    const slot = s.slot !== null ? `slot ${s.slot} of ${s.tableSize}` : s.byHash ? 'fallback by hash' : 'not by hash';
    lines.push(`Scheduler:   ${s.name}, ${slot}, ${s.backend ? address(s.backend) : 'depends on the rotation'}`);
  }
  lines.push(`Hash:        ${e.hash}`);
  return lines.join('\n') + '\n';
}
