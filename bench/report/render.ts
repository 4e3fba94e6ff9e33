// The report as a Markdown document, a console headline table and an SVG bar chart.
import type { BenchReport, HogScenario, IdleScenario, StormScenario, TcpScenario, UdpScenario } from './types.js';
import type { UdpRunResult } from '../throughput/udp.js';

const kpps = (x: number | undefined) => (x === undefined ? '–' : (x / 1000).toFixed(0));
const ns = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(0));
const us = (x: number | undefined) => (x === undefined ? '–' : x < 10 ? x.toFixed(1) : x.toFixed(0));
const pct = (x: number | undefined, digits = 2) => (x === undefined ? '–' : `${(x * 100).toFixed(digits)}%`);
const flowsLabel = (n: number) => (n === 1 ? '1' : n.toLocaleString('en-US'));

function table(header: string[], rows: string[][], align?: string[]): string {
  const a = align ?? header.map((_, i) => (i === 0 ? '---' : '---:'));
  return [`| ${header.join(' | ')} |`, `| ${a.join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

function cores(run: UdpRunResult | undefined): string {
  return run ? run.cores.map((c) => `${(c.busy * 100).toFixed(0)}%`).join(' / ') : '–';
}

function latency(run: UdpRunResult | undefined): string {
  return run ? `${us(run.latency.p50Us)} / ${us(run.latency.p99Us)} / ${us(run.latency.p999Us)}` : '–';
}

export function udpRows(report: BenchReport): string[][] {
  const rows: string[][] = [];
  for (const cal of Object.entries(report.calibration)) {
    const [size, c] = cal;
    rows.push([
      `calibration (generator → sink), ${size} B`, kpps(c.throughput?.offeredPps), kpps(c.throughput?.deliveredPps), pct(c.throughput?.loss, 3),
      '–', '–', `(${ns(c.throughput?.threadsNsPerPacket)})`, latency(c.latencyLow), '–', cores(c.throughput), '–',
    ]);
  }
  for (const s of report.scenarios.filter((x): x is UdpScenario => x.kind === 'udp')) {
    const name = `${s.forwarder}, ${s.frameSize} B, ${flowsLabel(s.flows)} flow${s.flows === 1 ? '' : 's'}`;
    if (s.status !== 'ok') {
      rows.push([name, s.status, '', '', '', '', '', '', '', '', (s.reason ?? '').slice(0, 160)]);
      continue;
    }
    const t = s.throughput;
    const ratio = s.ratios
      ? Object.entries(s.ratios).map(([b, r]) => `${b}: ${r.delivered.toFixed(2)}x pps, ${r.cost.toFixed(2)}x ns`).join('; ')
      : '';
    rows.push([
      name, kpps(t?.offeredPps), kpps(t?.deliveredPps), pct(t?.loss, 3),
      t?.forwarderThreadNsPerPacket !== undefined ? `${ns(t.forwarderThreadNsPerPacket)} (${ns(t.forwarderBusyNsPerPacket)})` : '–',
      t?.forwarderThreadNsPerPacket ? kpps(1e9 / t.forwarderThreadNsPerPacket) : '–', ns(s.addedNsPerPacket),
      latency(s.latencyLow), latency(s.latencyHigh), cores(t), ratio || '–',
    ]);
  }
  return rows;
}

export const udpHeader = [
  'scenario', 'offered kpps', 'delivered kpps', 'loss', 'fwd thread ns/pkt (busy)', 'CPU-bound kpps', 'added ns/pkt',
  'µs p50/p99/p99.9 @10 kpps', 'µs p50/p99/p99.9 @80%', 'cores busy (gen / fwd)', 'l4lb vs baseline',
];

export function renderMarkdown(report: BenchReport): string {
  const m = report.machine;
  const out: string[] = [];
  out.push(`### Machine\n`);
  out.push(
    `${m.nproc} CPUs (${m.cpuModel}), ${m.memoryGiB.toFixed(0)} GiB, kernel ${m.kernel}, Node ${m.node}; ` +
      `load average ${m.loadAverageStart.toFixed(2)} at the start, ${m.loadAverageEnd.toFixed(2)} at the end; ` +
      `generator and sink on CPU ${m.generatorCpu}, forwarder on CPU ${m.forwarderCpu}; ${m.date}; mode ${report.mode}, ${report.durationS.toFixed(0)} s.\n`,
  );
  out.push(`### UDP through each forwarder\n`);
  out.push(
    'Flat out (the generator offers what one core can); fwd thread ns/pkt = the forwarding thread\'s CPU time per received frame (user-space forwarders), with the engine\'s busy-time accounting (wall time of non-empty batches) in parentheses; ' +
      'CPU-bound kpps = 1 s / fwd thread ns/pkt, what the forwarder would deliver with its CPU to itself; ' +
      'added ns/pkt = CPU time of every thread the run used (generator, sink reader, forwarder thread, ksoftirqd: on veth they carry the kernel work their sends trigger, a kernel forwarder\'s included) per delivered packet, less the calibration\'s (in parentheses) at the same frame size; ' +
      `latency = sink's kernel receive time − generator stamp, at ${report.settings.lowRatePps / 1000} kpps and at ${report.settings.highRateFraction * 100}% of the delivered rate.\n`,
  );
  out.push(table(udpHeader, udpRows(report)));
  const paced = report.scenarios.filter((x): x is UdpScenario => x.kind === 'udp' && x.atCalibratedRate !== undefined);
  if (paced.length > 0) {
    out.push(`\n#### At the generator's calibrated single-core rate\n`);
    out.push(
      table(
        ['scenario', 'offered kpps', 'delivered kpps', 'loss', 'fwd thread ns/pkt (busy)', 'drops (forwarder)'],
        paced.map((s) => [
          `${s.forwarder}, ${s.frameSize} B, ${flowsLabel(s.flows)} flow${s.flows === 1 ? '' : 's'}`, kpps(s.atCalibratedRate!.offeredPps), kpps(s.atCalibratedRate!.deliveredPps),
          pct(s.atCalibratedRate!.loss, 3), `${ns(s.atCalibratedRate!.forwarderThreadNsPerPacket)} (${ns(s.atCalibratedRate!.forwarderBusyNsPerPacket)})`,
          Object.entries(s.atCalibratedRate!.forwarderDrops ?? {}).map(([k, v]) => `${k} ${v}`).join(', ') || '–',
        ]),
      ),
    );
  }
  const storms = report.scenarios.filter((x): x is StormScenario => x.kind === 'storm');
  if (storms.length > 0) {
    out.push(`\n### New-flow storm and flow memory\n`);
    out.push(
      table(
        ['scenario', 'status', 'offered kpps', 'delivered kpps', 'loss', 'fwd thread ns/pkt (busy)', 'added ns/pkt', 'flows held', 'table bytes/flow', 'RSS bytes/flow'],
        storms.map((s) => [
          `${s.name} (${s.forwarder})`, s.status === 'ok' ? 'ok' : `${s.status}: ${s.reason ?? ''}`, kpps(s.run?.offeredPps), kpps(s.run?.deliveredPps), pct(s.run?.loss, 3),
          s.run?.forwarderThreadNsPerPacket !== undefined ? `${ns(s.run.forwarderThreadNsPerPacket)} (${ns(s.run.forwarderBusyNsPerPacket)})` : '–', ns(s.addedNsPerPacket), s.flowsHeld?.toLocaleString('en-US') ?? '–',
          ns(s.tableBytesPerFlow), ns(s.rssBytesPerFlow),
        ]),
      ),
    );
  }
  const tcp = report.scenarios.filter((x): x is TcpScenario => x.kind === 'tcp');
  if (tcp.length > 0) {
    out.push(`\n### TCP through each forwarder\n`);
    out.push(
      "Client and HTTP server on the generator's CPU, the forwarder on the other. forwarder µs/conn = the forwarder's own CPU time " +
        "(l4lb: worker thread; HAProxy: process) per completed connection; forwarder CPU µs/conn = that CPU's busy time (other tenants included); " +
        "both cores = all busy time less other tenants' visible use. The kernel forwarders work on the sender's CPU (veth), so only 'both cores' applies to them.\n",
    );
    out.push(
      table(
        ['forwarder', 'conn/s', 'failed', 'forwarder µs/conn', 'l4lb busy µs/conn', 'forwarder CPU µs/conn', 'both cores µs/conn', 'at the same rate: conn/s, forwarder µs/conn', 'bulk Gbit/s', 'forwarder ms/GB'],
        tcp.map((s) =>
          s.status !== 'ok'
            ? [s.forwarder, `${s.status}: ${s.reason ?? ''}`, '', '', '', '', '', '', '', '']
            : [
                s.forwarder, s.connections?.connectionsPerSecond.toFixed(0) ?? '–', String(s.connections?.failed ?? '–'),
                us(s.connections?.forwarderCpuNsPerConnection !== undefined ? s.connections.forwarderCpuNsPerConnection / 1000 : undefined),
                us(s.connections?.workerBusyNsPerConnection !== undefined ? s.connections.workerBusyNsPerConnection / 1000 : undefined),
                us(s.connections ? s.connections.forwarderCoreNsPerConnection / 1000 : undefined),
                us(s.connections ? s.connections.systemNsPerConnection / 1000 : undefined),
                s.connectionsAtSameRate
                  ? `${s.connectionsAtSameRate.connectionsPerSecond.toFixed(0)}, ${us(s.connectionsAtSameRate.forwarderCpuNsPerConnection !== undefined ? s.connectionsAtSameRate.forwarderCpuNsPerConnection / 1000 : undefined)}`
                  : '–',
                s.bulk ? (s.bulk.bitsPerSecond / 1e9).toFixed(2) : '–',
                s.bulk?.forwarderCpuNsPerMegabyte !== undefined ? (s.bulk.forwarderCpuNsPerMegabyte / 1e3).toFixed(1) : '–',
              ],
        ),
      ),
    );
  }
  const idles = report.scenarios.filter((x): x is IdleScenario => x.kind === 'idle');
  if (idles.length > 0) {
    out.push(`\n### Idle\n`);
    out.push(
      table(
        ['scenario', 'flows tracked', 'seconds', 'worker thread', 'balancer process', 'forwarder CPU busy'],
        idles.map((s) =>
          s.status === 'ok'
            ? [s.name, (s.flows ?? 0).toLocaleString('en-US'), s.seconds?.toFixed(1) ?? '–', pct(s.workerCpu), pct(s.processCpu), pct(s.forwarderCore?.busy)]
            : [s.name, `${s.status}: ${s.reason}`, '', '', '', ''],
        ),
      ),
    );
  }
  const hogs = report.scenarios.filter((x): x is HogScenario => x.kind === 'hog');
  if (hogs.length > 0) {
    out.push(`\n### Under a CPU hog on the forwarder's core\n`);
    out.push(
      table(
        ['scenario', 'alone: delivered kpps', 'loss', 'with the hog: delivered kpps', 'loss', 'retained'],
        hogs.map((s) =>
          s.status === 'ok' && s.alone && s.withHog
            ? [s.name, (s.alone.deliveredPps / 1000).toFixed(0), pct(s.alone.loss), (s.withHog.deliveredPps / 1000).toFixed(0), pct(s.withHog.loss), `${((s.retained ?? 0) * 100).toFixed(0)}%`]
            : [s.name, `${s.status}: ${s.reason ?? ''}`, '', '', '', ''],
        ),
      ),
    );
  }
  out.push(`\n### IPVS\n\n${report.ipvs.available ? 'available' : `unavailable: ${report.ipvs.reason}`}`);
  if (report.micro.length > 0) {
    out.push(`\n### Micro benchmarks\n`);
    out.push(
      table(
        ['benchmark', 'ns/op', '±', 'samples', 'setting'],
        report.micro.map((m) => [m.name, m.nsPerOp >= 1e5 ? `${(m.nsPerOp / 1e6).toFixed(3)} ms` : m.nsPerOp.toFixed(1), `${m.rme.toFixed(1)}%`, String(m.samples), m.detail ?? '']),
      ),
    );
  }
  if (report.targets.length > 0) {
    out.push(`\n### Targets\n`);
    out.push(
      table(
        ['target', 'limit', 'measured', 'met', 'gap'],
        report.targets.map((t) => [t.name, t.target, t.measured, t.met === null ? 'n/a' : t.met ? 'yes' : '**no**', t.gap ?? '']),
        ['---', '---', '---', '---', '---'],
      ),
    );
  }
  return out.join('\n') + '\n';
}

/** The few lines printed at the end of a run. */
export function renderHeadline(report: BenchReport): string {
  const rows = udpRows(report).map((r) => (r[1] === 'failed' || r[1] === 'unavailable' ? [r[0]!, r[1]!, '', '', '', '', r[10]!] : [r[0]!, r[2]!, r[3]!, r[4]!, r[6]!, r[7]!, '']));
  const header = ['scenario', 'delivered kpps', 'loss', 'fwd thread (busy) ns/pkt', 'added ns/pkt', 'µs p50/p99/p99.9 @10k', ''];
  for (const s of report.scenarios.filter((x): x is TcpScenario => x.kind === 'tcp' && x.status === 'ok')) {
    const cpu = s.connections?.forwarderCpuNsPerConnection;
    rows.push([`tcp ${s.forwarder}`, `${s.connections?.connectionsPerSecond.toFixed(0) ?? '–'} conn/s`, '', cpu !== undefined ? `${us(cpu / 1000)} µs/conn` : '', s.bulk ? `${(s.bulk.bitsPerSecond / 1e9).toFixed(2)} Gbit/s` : '', '', '']);
  }
  const last = header.length - 1;
  const widths = header.map((h, i) => (i === last ? 0 : Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length))));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === last ? c : i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  const out = [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
  if (report.targets.length > 0) {
    out.push('', 'targets:');
    for (const t of report.targets) out.push(`  ${t.met === null ? 'n/a ' : t.met ? 'met ' : 'MISS'}  ${t.name}: ${t.measured}${t.gap ? ` (${t.gap})` : ''}`);
  }
  return out.join('\n');
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Two bar panels: delivered kpps and added ns per packet, one bar per forwarder (64-byte frames, most flows measured). */
export function renderSvg(report: BenchReport): string {
  const picked = new Map<string, UdpScenario>();
  for (const s of report.scenarios.filter((x): x is UdpScenario => x.kind === 'udp' && x.status === 'ok' && x.frameSize === 64)) {
    const seen = picked.get(s.forwarder);
    if (!seen || s.flows > seen.flows) picked.set(s.forwarder, s);
  }
  const bars = [...picked.values()];
  const panels = [
    { title: 'delivered kpps (64 B, flat out)', value: (s: UdpScenario) => (s.throughput?.deliveredPps ?? 0) / 1000, unit: 'kpps' },
    { title: 'CPU added per packet over the calibration (ns)', value: (s: UdpScenario) => s.addedNsPerPacket ?? 0, unit: 'ns' },
  ];
  const barHeight = 22;
  const gap = 8;
  const labelWidth = 220;
  const plotWidth = 420;
  const panelHeight = 40 + bars.length * (barHeight + gap);
  const width = labelWidth + plotWidth + 80;
  const height = 50 + panels.length * panelHeight;
  const colour = (forwarder: string) => (forwarder.startsWith('l4lb') ? '#2f6fb0' : forwarder.startsWith('mac-only') ? '#7a9a3a' : '#b0692f');
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="22" font-size="15" font-weight="bold">${escapeXml(`l4lb benchmark — ${report.machine.nproc} CPUs, ${report.machine.kernel}, load ${report.machine.loadAverageStart.toFixed(1)}`)}</text>`,
  ];
  panels.forEach((panel, p) => {
    const top = 40 + p * panelHeight;
    const max = Math.max(1, ...bars.map(panel.value));
    parts.push(`<text x="10" y="${top + 14}" font-weight="bold">${escapeXml(panel.title)}</text>`);
    bars.forEach((s, i) => {
      const y = top + 26 + i * (barHeight + gap);
      const v = panel.value(s);
      const w = (v / max) * plotWidth;
      const label = `${s.forwarder}${s.flows > 1 ? ` (${s.flows.toLocaleString('en-US')} flows)` : ''}`;
      parts.push(`<text x="${labelWidth - 8}" y="${y + barHeight / 2 + 4}" text-anchor="end">${escapeXml(label)}</text>`);
      parts.push(`<rect x="${labelWidth}" y="${y}" width="${w.toFixed(1)}" height="${barHeight}" fill="${colour(s.forwarder)}"/>`);
      parts.push(`<text x="${(labelWidth + w + 6).toFixed(1)}" y="${y + barHeight / 2 + 4}">${v.toFixed(0)} ${panel.unit}</text>`);
    });
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
