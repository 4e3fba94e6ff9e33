// The issue's targets, evaluated on one report (ratios within one run).
import type { BenchReport, HogScenario, IdleScenario, StormScenario, Target, TcpScenario, UdpScenario } from './types.js';

const udp = (r: BenchReport) => r.scenarios.filter((s): s is UdpScenario => s.kind === 'udp' && s.status === 'ok');

function find(r: BenchReport, forwarder: string, frameSize: number, flows: number[]): UdpScenario | undefined {
  for (const f of flows) {
    const s = udp(r).find((x) => x.forwarder === forwarder && x.frameSize === frameSize && x.flows === f);
    if (s) return s;
  }
  return undefined;
}

const pct = (x: number) => `${(x * 100).toFixed(3)}%`;
const ns = (x: number | undefined) => (x === undefined ? 'n/a' : `${x.toFixed(0)} ns`);

export function evaluateTargets(r: BenchReport): Target[] {
  const targets: Target[] = [];

  // 1. No loss at the calibrated single-core rate, 64-byte frames.
  for (const method of ['nat', 'dr', 'ipip', 'gre']) {
    const runs = udp(r).filter((s) => s.forwarder === `l4lb-${method}` && s.frameSize === 64 && s.atCalibratedRate);
    if (runs.length === 0) continue;
    const worst = runs.reduce((a, b) => (b.atCalibratedRate!.loss > a.atCalibratedRate!.loss ? b : a));
    const loss = worst.atCalibratedRate!.loss;
    const thread = worst.throughput?.forwarderThreadNsPerPacket;
    const calibrated = r.calibration['64']?.throughput?.offeredPps;
    const bound = thread && calibrated ? `; CPU-bound capacity ${(1e6 / thread).toFixed(0)} kpps vs the calibrated ${(calibrated / 1000).toFixed(0)} kpps` : '';
    targets.push({
      name: `no loss at the calibrated rate: ${method}, 64 B`,
      target: '< 0.1% loss',
      measured: runs.map((s) => `${s.flows} flow${s.flows > 1 ? 's' : ''}: ${pct(s.atCalibratedRate!.loss)} of ${(s.atCalibratedRate!.offeredPps / 1000).toFixed(0)} kpps`).join('; '),
      met: loss < 0.001,
      ...(loss >= 0.001 ? { gap: `${(loss / 0.001).toFixed(0)}x the allowed loss; delivered ${(worst.atCalibratedRate!.deliveredPps / 1000).toFixed(0)} kpps${bound}` } : {}),
    });
  }

  // 2. nat with 65,536 flows <= 1.1x the MAC-only forwarder's CPU per
  // packet: the forwarding threads' CPU time per received frame (both run
  // the same loop and spin the same time after traffic). The busy-time
  // accounting (wall time of batches that received frames) is beside it.
  const nat = find(r, 'l4lb-nat', 64, [65536, 1]);
  const mac = nat ? find(r, 'mac-only', 64, [nat.flows]) : undefined;
  const natThread = nat?.throughput?.forwarderThreadNsPerPacket;
  const macThread = mac?.throughput?.forwarderThreadNsPerPacket;
  const natBusy = nat?.throughput?.forwarderBusyNsPerPacket;
  const macBusy = mac?.throughput?.forwarderBusyNsPerPacket;
  if (nat && mac && natThread && macThread) {
    const ratio = natThread / macThread;
    const busy = natBusy && macBusy ? `; busy time ${ns(natBusy)} vs ${ns(macBusy)}: ${(natBusy / macBusy).toFixed(2)}x` : '';
    targets.push({
      name: `L4 work is cheap: nat, ${nat.flows} flows, 64 B, vs MAC-only`,
      target: "<= 1.1x the MAC-only forwarder's thread CPU per packet",
      measured: `${ns(natThread)} vs ${ns(macThread)}: ${ratio.toFixed(2)}x${busy}`,
      met: ratio <= 1.1,
      ...(ratio > 1.1 ? { gap: `${(ratio / 1.1).toFixed(2)}x the limit` } : {}),
    });
  }

  // 2b. The AF_XDP driver: nat with 65,536 flows at most 0.8x nftables
  // DNAT's CPU per packet and below the same nat over AF_PACKET.
  const xdp = find(r, 'l4lb-af_xdp-nat', 64, [65536, 1]);
  const xdpPacket = xdp ? find(r, 'l4lb-nat', 64, [xdp.flows]) : undefined;
  const xdpNft = xdp ? find(r, 'nftables-dnat', 64, [xdp.flows]) : undefined;
  if (xdp?.addedNsPerPacket !== undefined && xdpNft?.addedNsPerPacket !== undefined) {
    const ratio = xdp.addedNsPerPacket / xdpNft.addedNsPerPacket;
    const versusPacket = xdpPacket?.addedNsPerPacket !== undefined ? xdp.addedNsPerPacket / xdpPacket.addedNsPerPacket : undefined;
    const met = ratio <= 0.8 && (versusPacket === undefined || versusPacket < 1);
    targets.push({
      name: `af_xdp: nat, ${xdp.flows} flows, 64 B, vs nftables DNAT and vs af_packet`,
      target: "<= 0.8x nftables DNAT's CPU added per packet, and below af_packet's",
      measured: `${ns(xdp.addedNsPerPacket)} vs nftables ${ns(xdpNft.addedNsPerPacket)}: ${ratio.toFixed(2)}x` +
        (versusPacket !== undefined ? `; vs af_packet ${ns(xdpPacket!.addedNsPerPacket)}: ${versusPacket.toFixed(2)}x` : ''),
      met,
      ...(met ? {} : { gap: ratio > 0.8 ? `${(ratio / 0.8).toFixed(2)}x the limit` : `${versusPacket!.toFixed(2)}x af_packet's cost` }),
    });
  }

  // 2c. The L4 work over AF_XDP against the AF_XDP floor (the MAC-only forwarder on the same driver).
  const xdpMac = xdp ? find(r, 'mac-only-af_xdp', 64, [xdp.flows]) : undefined;
  const xdpThread = xdp?.throughput?.forwarderThreadNsPerPacket;
  const xdpMacThread = xdpMac?.throughput?.forwarderThreadNsPerPacket;
  if (xdp && xdpMac && xdpThread && xdpMacThread) {
    const ratio = xdpThread / xdpMacThread;
    targets.push({
      name: `L4 work is cheap over af_xdp: nat, ${xdp.flows} flows, 64 B, vs MAC-only over af_xdp`,
      target: "<= 1.1x the MAC-only forwarder's thread CPU per packet on the same driver",
      measured: `${ns(xdpThread)} vs ${ns(xdpMacThread)}: ${ratio.toFixed(2)}x`,
      met: ratio <= 1.1,
      ...(ratio > 1.1 ? { gap: `${(ratio / 1.1).toFixed(2)}x the limit` } : {}),
    });
  }

  // 2d. The DPDK driver over net_af_xdp vdevs: on veth it runs the same
  // AF_XDP sockets through DPDK's poll-mode driver, so its CPU per packet is
  // expected near af_xdp's (within 1.25x), with af_packet's beside it.
  const dpdk = find(r, 'l4lb-dpdk-nat', 64, [65536, 1]);
  const dpdkXdp = dpdk ? find(r, 'l4lb-af_xdp-nat', 64, [dpdk.flows]) : undefined;
  const dpdkPacket = dpdk ? find(r, 'l4lb-nat', 64, [dpdk.flows]) : undefined;
  if (dpdk?.addedNsPerPacket !== undefined && dpdkXdp?.addedNsPerPacket !== undefined) {
    const ratio = dpdk.addedNsPerPacket / dpdkXdp.addedNsPerPacket;
    const versusPacket = dpdkPacket?.addedNsPerPacket !== undefined ? dpdk.addedNsPerPacket / dpdkPacket.addedNsPerPacket : undefined;
    targets.push({
      name: `dpdk (net_af_xdp): nat, ${dpdk.flows} flows, 64 B, vs af_xdp and af_packet`,
      target: "<= 1.25x af_xdp's CPU added per packet",
      measured: `${ns(dpdk.addedNsPerPacket)} vs af_xdp ${ns(dpdkXdp.addedNsPerPacket)}: ${ratio.toFixed(2)}x` +
        (versusPacket !== undefined ? `; vs af_packet ${ns(dpdkPacket!.addedNsPerPacket)}: ${versusPacket.toFixed(2)}x` : ''),
      met: ratio <= 1.25,
      ...(ratio > 1.25 ? { gap: `${(ratio / 1.25).toFixed(2)}x the limit` } : {}),
    });
  }

  // 3. Ahead of the kernel: nat below nftables DNAT's per-packet cost.
  const nft = nat ? find(r, 'nftables-dnat', 64, [nat.flows]) : undefined;
  if (nat?.addedNsPerPacket !== undefined && nft?.addedNsPerPacket !== undefined) {
    const ratio = nat.addedNsPerPacket / nft.addedNsPerPacket;
    const worker = natThread !== undefined ? `; l4lb's worker thread alone ${ns(natThread)}: ${(natThread / nft.addedNsPerPacket).toFixed(2)}x` : '';
    targets.push({
      name: `ahead of the kernel: nat vs nftables DNAT, ${nat.flows} flows, 64 B`,
      target: 'below nftables DNAT (CPU added per packet over the calibration)',
      measured: `${ns(nat.addedNsPerPacket)} vs ${ns(nft.addedNsPerPacket)}: ${ratio.toFixed(2)}x${worker}`,
      met: ratio < 1,
      ...(ratio >= 1 ? { gap: `${ratio.toFixed(2)}x nftables' cost` } : {}),
    });
  }

  // 4. TCP against HAProxy.
  const tcp = (name: string) => r.scenarios.find((s): s is TcpScenario => s.kind === 'tcp' && s.forwarder === name && s.status === 'ok');
  const l4lbTcp = tcp('l4lb-nat');
  const haproxy = tcp('haproxy');
  const mineSame = l4lbTcp?.connectionsAtSameRate ?? l4lbTcp?.connections;
  const theirsSame = haproxy?.connectionsAtSameRate ?? haproxy?.connections;
  if (mineSame?.forwarderCpuNsPerConnection && theirsSame?.forwarderCpuNsPerConnection) {
    const mine = mineSame.forwarderCpuNsPerConnection;
    const theirs = theirsSame.forwarderCpuNsPerConnection;
    const ratio = mine / theirs;
    const flat = l4lbTcp!.connections?.forwarderCpuNsPerConnection && haproxy!.connections?.forwarderCpuNsPerConnection
      ? `; flat out ${(l4lbTcp!.connections.forwarderCpuNsPerConnection / 1000).toFixed(1)} us at ${l4lbTcp!.connections.connectionsPerSecond.toFixed(0)} conn/s vs ${(haproxy!.connections.forwarderCpuNsPerConnection / 1000).toFixed(1)} us at ${haproxy!.connections.connectionsPerSecond.toFixed(0)} conn/s`
      : '';
    targets.push({
      name: 'TCP: CPU per short connection vs HAProxy',
      target: "<= 1/3 of HAProxy's at the same connection rate (l4lb worker thread vs HAProxy process CPU)",
      measured: `${(mine / 1000).toFixed(1)} us vs ${(theirs / 1000).toFixed(1)} us: ${ratio.toFixed(2)}x at ${mineSame.connectionsPerSecond.toFixed(0)} and ${theirsSame.connectionsPerSecond.toFixed(0)} conn/s${flat}`,
      met: ratio <= 1 / 3,
      ...(ratio > 1 / 3 ? { gap: `${(ratio * 3).toFixed(2)}x the limit` } : {}),
    });
  }
  if (l4lbTcp?.connections && haproxy?.connections) {
    const ratio = l4lbTcp.connections.connectionsPerSecond / haproxy.connections.connectionsPerSecond;
    targets.push({
      name: 'TCP: connection rate flat out vs HAProxy',
      target: '>= HAProxy',
      measured: `${l4lbTcp.connections.connectionsPerSecond.toFixed(0)} vs ${haproxy.connections.connectionsPerSecond.toFixed(0)} conn/s: ${ratio.toFixed(2)}x`,
      met: ratio >= 1,
      ...(ratio < 1 ? { gap: `${((1 - ratio) * 100).toFixed(0)}% below` } : {}),
    });
  }
  if (l4lbTcp?.bulk && haproxy?.bulk) {
    const ratio = l4lbTcp.bulk.bitsPerSecond / haproxy.bulk.bitsPerSecond;
    targets.push({
      name: 'TCP: bulk throughput vs HAProxy',
      target: '>= HAProxy',
      measured: `${(l4lbTcp.bulk.bitsPerSecond / 1e9).toFixed(2)} vs ${(haproxy.bulk.bitsPerSecond / 1e9).toFixed(2)} Gbit/s: ${ratio.toFixed(2)}x`,
      met: ratio >= 1,
      ...(ratio < 1 ? { gap: `${((1 - ratio) * 100).toFixed(0)}% below` } : {}),
    });
  }
  if ((!l4lbTcp || !haproxy) && r.scenarios.some((s) => s.kind === 'tcp')) {
    const h = r.scenarios.find((s) => s.kind === 'tcp' && s.forwarder === 'haproxy');
    targets.push({ name: 'TCP vs HAProxy', target: 'CPU/conn <= 1/3, bulk >= HAProxy', measured: h?.reason ?? 'not run', met: null });
  }

  // 5. Latency at 10 kpps in adaptive polling, over the direct path.
  const calLow = r.calibration['64']?.latencyLow;
  const low = find(r, 'l4lb-nat', 64, [1, 65536])?.latencyLow;
  if (low && calLow) {
    const p99 = low.latency.p99Us - calLow.latency.p99Us;
    const p50 = low.latency.p50Us - calLow.latency.p50Us;
    const met = p99 <= 50 && p50 <= 10;
    targets.push({
      name: 'added latency at 10 kpps (nat, adaptive polling)',
      target: 'p99 <= 50 us and p50 <= 10 us over the direct path',
      measured: `p50 ${low.latency.p50Us.toFixed(1)} / p99 ${low.latency.p99Us.toFixed(1)} us through l4lb, ${calLow.latency.p50Us.toFixed(1)} / ${calLow.latency.p99Us.toFixed(1)} us direct: +${p50.toFixed(1)} / +${p99.toFixed(1)} us`,
      met,
      ...(!met ? { gap: `${Math.max(p99 / 50, p50 / 10).toFixed(1)}x the limit` } : {}),
    });
  }

  // 6. Idle CPU, the whole balancer process: with an empty table and with 65,536 tracked flows.
  const idles = r.scenarios.filter((s): s is IdleScenario => s.kind === 'idle' && s.status === 'ok' && s.processCpu !== undefined);
  if (idles.length > 0) {
    const worst = Math.max(...idles.map((s) => s.processCpu!));
    targets.push({
      name: 'idle CPU in adaptive polling (balancer process)',
      target: '<= 0.5% of a core, with 0 and with 65,536 flows tracked',
      measured: idles
        .map((s) => `${(s.flows ?? 0).toLocaleString('en-US')} flows: balancer process ${(s.processCpu! * 100).toFixed(2)}% (worker ${(s.workerCpu! * 100).toFixed(2)}%)`)
        .join('; '),
      met: worst <= 0.005,
      ...(worst > 0.005 ? { gap: `${(worst / 0.005).toFixed(1)}x the limit` } : {}),
    });
  }

  // 10. A CPU hog on the forwarder's core: degrade in proportion, no collapse.
  const hog = r.scenarios.find((s): s is HogScenario => s.kind === 'hog' && s.forwarder === 'l4lb-nat' && s.status === 'ok');
  if (hog?.retained !== undefined && hog.alone && hog.withHog) {
    const kernel = r.scenarios.find((s): s is HogScenario => s.kind === 'hog' && s.forwarder === 'nftables-dnat' && s.status === 'ok');
    const beside = kernel?.retained !== undefined ? `; nftables DNAT under the same hog keeps ${(kernel.retained * 100).toFixed(0)}%` : '';
    targets.push({
      name: "graceful under contention: a CPU hog on the forwarder's core (nat, 64 B, 65,536 flows)",
      target: '>= 0.5x the unhogged delivered rate',
      measured: `${(hog.withHog.deliveredPps / 1000).toFixed(0)} kpps with the hog vs ${(hog.alone.deliveredPps / 1000).toFixed(0)} alone: ${hog.retained.toFixed(2)}x${beside}`,
      met: hog.retained >= 0.5,
      ...(hog.retained < 0.5 ? { gap: `${(0.5 / Math.max(hog.retained, 1e-9)).toFixed(1)}x short` } : {}),
    });
  }

  // 7. Memory per flow and 8. a million flows.
  const held = r.scenarios.find((s): s is StormScenario => s.kind === 'storm' && s.name === 'flows-1m-l4lb-nat' && s.status === 'ok');
  const storm = held ?? r.scenarios.find((s): s is StormScenario => s.kind === 'storm' && s.forwarder.startsWith('l4lb') && s.status === 'ok');
  if (storm?.tableBytesPerFlow !== undefined) {
    const bytes = storm.tableBytesPerFlow;
    targets.push({
      name: 'memory per tracked flow (nat)',
      target: '<= 64 bytes',
      measured: `${bytes} bytes by construction (2 slots of ${bytes / 2} bytes)${storm.rssBytesPerFlow !== undefined ? `; ${storm.rssBytesPerFlow.toFixed(0)} resident bytes per flow held, the table sized for its capacity at the 90% design load` : ''}`,
      met: bytes <= 64,
      ...(bytes > 64 ? { gap: `${(bytes / 64).toFixed(2)}x the limit` } : {}),
    });
  }
  if (held) {
    targets.push({
      name: '1,000,000 flows held',
      target: '>= 1,000,000 tracked at once',
      measured: `${held.flowsHeld?.toLocaleString('en-US')} held (capacity ${held.capacity?.toLocaleString('en-US')}), ${held.flowTableFull ?? 0} refused as table full`,
      met: (held.flowsHeld ?? 0) >= 1_000_000,
      ...((held.flowsHeld ?? 0) < 1_000_000 ? { gap: `${(1_000_000 - (held.flowsHeld ?? 0)).toLocaleString('en-US')} short` } : {}),
    });
  }

  // Flow table v2: ten million flows in a gigabyte, and lookups in a table of a million.
  const capacity = r.micro.find((m) => m.table && m.table.flows >= 10_000_000);
  if (capacity?.table) {
    const t = capacity.table;
    const worst = Math.max(t.tableBytes, t.residentBytes);
    const met = t.held >= t.flows && worst <= 1e9;
    targets.push({
      name: `${t.flows.toLocaleString('en-US')} IPv4 nat flows held`,
      target: '<= 1 GB (table and resident growth), every flow placed',
      measured: `${t.held.toLocaleString('en-US')} held; table ${(t.tableBytes / 1e6).toFixed(0)} MB, resident +${(t.residentBytes / 1e6).toFixed(0)} MB (${(t.tableBytes / t.flows).toFixed(1)} B a flow); ${capacity.nsPerOp.toFixed(0)} ns per insert`,
      met,
      ...(!met ? { gap: t.held < t.flows ? `${(t.flows - t.held).toLocaleString('en-US')} flows refused` : `${(worst / 1e9).toFixed(2)}x the limit` } : {}),
    });
  }
  const burst = r.micro.find((m) => m.name === 'flow lookup (hit, prefetched bursts), 1,000,000 flows');
  if (burst) {
    const serial = r.micro.find((m) => m.name === 'flow lookup (hit), 1,000,000 flows');
    targets.push({
      name: 'flow lookup hit, 1,000,000 flows tracked (micro)',
      target: '<= 100 ns',
      measured: `${burst.nsPerOp.toFixed(0)} ns in the engine's prefetched bursts${serial ? `; ${serial.nsPerOp.toFixed(0)} ns one after another (a DRAM miss each)` : ''}`,
      met: burst.nsPerOp <= 100,
      ...(burst.nsPerOp > 100 ? { gap: `${(burst.nsPerOp / 100).toFixed(2)}x the limit` } : {}),
    });
  }

  // 9. Maglev build.
  const maglev = r.micro.find((m) => m.name === 'maglev build: M = 65537, 1000 backends');
  if (maglev) {
    targets.push({
      name: 'Maglev table build, M = 65537, 1000 backends',
      target: '<= 2 ms',
      measured: `${(maglev.nsPerOp / 1e6).toFixed(2)} ms`,
      met: maglev.nsPerOp <= 2e6,
      ...(maglev.nsPerOp > 2e6 ? { gap: `${(maglev.nsPerOp / 2e6).toFixed(2)}x the limit` } : {}),
    });
  }
  return targets;
}
