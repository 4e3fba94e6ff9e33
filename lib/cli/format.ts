// Tables in the style of ipvsadm -L -n (status), --stats and --rate.
import type { LoadBalancerRates, LoadBalancerStats, Method } from '../config/types.js';

// ipvsadm's names for the forwarding methods, plus ours for the ones it lacks.
const forwardNames: Record<Method, string> = { nat: 'Masq', fullnat: 'FullNat', dr: 'Route', ipip: 'Tunnel', gre: 'GRE' };

function pad(text: string | number, width: number, right = false): string {
  const s = String(text);
  return right ? s.padStart(width) : s.padEnd(width);
}

/** Shortens large counts the way ipvsadm does (K, M, G). */
export function human(value: number): string {
  if (value < 100_000) return String(Math.round(value));
  for (const [unit, size] of [['G', 1e9], ['M', 1e6], ['K', 1e3]] as const) {
    if (value >= size * 100) return `${Math.round(value / size)}${unit}`;
  }
  return String(Math.round(value));
}

export function formatStatus(stats: LoadBalancerStats): string {
  const lines = [
    `l4lb  generation ${stats.generation}  workers ${stats.workers.length}  flows ${stats.flows.active}/${stats.flows.capacity}`,
    'Prot LocalAddress:Port Scheduler State',
    '  -> RemoteAddress:Port           Forward Weight ActiveConn TotalConn State',
  ];
  for (const service of stats.services) {
    lines.push(`${pad(service.protocol.toUpperCase(), 4)} ${service.address}:${service.port} ${service.scheduler} ${service.state}`);
    for (const backend of service.backends) {
      lines.push(
        `  -> ${pad(`${backend.address}:${backend.port}`, 28)} ${pad(forwardNames[service.method], 7)} ${pad(backend.weight, 6)} ${pad(backend.activeFlows, 10)} ${pad(backend.totalFlows, 9)} ${backend.state}${backend.nextHopResolved ? '' : ' (next hop unresolved)'}`,
      );
    }
  }
  const drops = Object.entries(stats.drops).filter(([, n]) => n > 0);
  if (drops.length > 0) lines.push(`Drops: ${drops.map(([reason, n]) => `${reason}=${n}`).join(' ')}`);
  return lines.join('\n') + '\n';
}

export function formatStats(stats: LoadBalancerStats): string {
  const lines = [
    'Prot LocalAddress:Port               Conns   Packets     Bytes',
    '  -> RemoteAddress:Port',
  ];
  for (const service of stats.services) {
    lines.push(`${pad(service.protocol.toUpperCase(), 4)} ${pad(`${service.address}:${service.port}`, 28)} ${pad(human(service.totalFlows), 8, true)} ${pad(human(service.packets), 9, true)} ${pad(human(service.bytes), 9, true)}`);
    for (const backend of service.backends) {
      lines.push(`  -> ${pad(`${backend.address}:${backend.port}`, 28)} ${pad(human(backend.totalFlows), 6, true)} ${pad(human(backend.packets), 9, true)} ${pad(human(backend.bytes), 9, true)}`);
    }
  }
  lines.push(`Replies on the ingress path: ${stats.repliesIngressPath} (routing would have differed for ${stats.repliesRouteDiffers})`);
  const drops = Object.entries(stats.drops).filter(([, n]) => n > 0);
  lines.push(`Drops: ${drops.length ? drops.map(([reason, n]) => `${reason}=${n}`).join(' ') : 'none'}`);
  return lines.join('\n') + '\n';
}

export function formatRates(rates: LoadBalancerRates): string {
  const lines = [
    `Rates over the last ${(rates.windowMs / 1000).toFixed(1)} s`,
    'Prot LocalAddress:Port                 CPS    PPS        BPS',
    '  -> RemoteAddress:Port',
  ];
  for (const service of rates.services) {
    lines.push(`${pad(service.protocol.toUpperCase(), 4)} ${pad(`${service.address}:${service.port}`, 28)} ${pad(human(service.flowsPerSec), 6, true)} ${pad(human(service.packetsPerSec), 6, true)} ${pad(human(service.bytesPerSec), 10, true)}`);
    for (const backend of service.backends) {
      lines.push(`  -> ${pad(`${backend.address}:${backend.port}`, 28)} ${pad(human(backend.flowsPerSec), 6, true)} ${pad(human(backend.packetsPerSec), 6, true)} ${pad(human(backend.bytesPerSec), 10, true)}`);
    }
  }
  return lines.join('\n') + '\n';
}
