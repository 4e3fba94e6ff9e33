// The benchmark topology, built with lib/lab, and the forwarders it can run:
//
//   gen 198.18.0.10 eth0 ── eth0 198.18.0.1 [lb] eth1 198.18.1.1 ── eth0 198.18.1.2 sink
//   gen 198.18.2.10 cal0 ─────────────── (calibration) ─────────── cal0 198.18.2.2  sink
//
// The generator (gen) sends UDP to the VIP 198.18.100.100:9 through lb's eth0.
// Whatever forwards it (l4lb, the MAC-only forwarder, the kernel's routing or
// nftables DNAT) sends it to the "backend" 198.18.1.3, an address nobody owns
// whose MAC is a permanent neighbour entry: the sink's kernel sees a frame
// for another host and drops it at once, the cheapest receiver there is,
// while the sink's packet socket counts it. The same trick serves the
// calibration link. TCP scenarios use the sink's real address 198.18.1.2 for
// HTTP servers and the generator's namespace for clients.
//
// CPUs: the generator (and the sink's reader) on one, the forwarder's thread
// on the other. On veth the receive work of a frame (the kernel's stack in
// lb, its copy into an AF_PACKET ring) runs on the CPU that sent it
// (DESIGN §4): the generator's CPU pays for lb's receive, and a forwarder's
// CPU for the sink's. So the kernel forwarders (routing, nftables) forward
// on the generator's CPU, and their cost per packet is measured by
// difference against the calibration (generator straight into the sink).
// Steering lb's receive to the forwarder's CPU with RPS was tried: the
// receive work alone then saturates that CPU and starves a user-space
// forwarder, which measures the steering, not the forwarder.
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { Lab, type Host, type LabProcess } from '../../lib/lab/index.js';

export const VIP = '198.18.100.100';
export const UDP_PORT = 9;
export const TCP_PORT = 80;
export const BACKEND_FAKE = '198.18.1.3';
export const BACKEND_REAL = '198.18.1.2';
export const SERVER_PORT = 8080;
export const LB_UPLINK = '198.18.0.1';
export const LB_DOWNLINK = '198.18.1.1';
export const GENERATOR_ADDRESS = '198.18.0.10';
export const FULLNAT_LOCAL = ['198.18.1.50', '198.18.1.51'];
/** A MAC nobody owns: frames to it are dropped by the sink's kernel at L2, after its packet socket saw them. */
export const SINK_FAKE_MAC = '02:be:0c:5e:00:01';


export interface Testbed {
  lab: Lab;
  gen: Host;
  lb: Host;
  sink: Host;
  macs: { genEth0: string; lbEth0: string; lbEth1: string; sinkEth0: string; genCal0: string };
  generatorCpu: number;
  forwarderCpu: number;
  netnsPath(host: Host): string;
}

export async function buildTestbed(options: { generatorCpu: number; forwarderCpu: number }): Promise<Testbed> {
  const lab = await Lab.create();
  const gen = await lab.addHost('gen', { sysctls: { 'net.ipv6.conf.all.disable_ipv6': 1, 'net.ipv6.conf.default.disable_ipv6': 1 } });
  const lb = await lab.addHost('lb', {
    sysctls: { 'net.ipv6.conf.all.disable_ipv6': 1, 'net.ipv6.conf.default.disable_ipv6': 1, 'net.ipv4.conf.all.rp_filter': 0, 'net.ipv4.conf.default.rp_filter': 0 },
  });
  const sink = await lab.addHost('sink', { sysctls: { 'net.ipv6.conf.all.disable_ipv6': 1, 'net.ipv6.conf.default.disable_ipv6': 1 } });
  // The kernel's default offloads, as users have them: the local TCP stacks
  // hand the links 64 KiB aggregates to every forwarder alike.
  const up = await lab.connect(
    { host: gen, name: 'eth0', addresses: [`${GENERATOR_ADDRESS}/24`] },
    { host: lb, name: 'eth0', addresses: [`${LB_UPLINK}/24`] },
    { mtu: 1500 },
  );
  // MTU 1600 toward the backends: a 1500-byte frame still fits once IPIP or
  // GRE adds its 20-28 bytes, as a tunnel deployment provisions it.
  const down = await lab.connect(
    { host: lb, name: 'eth1', addresses: [`${LB_DOWNLINK}/24`] },
    { host: sink, name: 'eth0', addresses: [`${BACKEND_REAL}/24`] },
    { mtu: 1600 },
  );
  const cal = await lab.connect(
    { host: gen, name: 'cal0', addresses: ['198.18.2.10/24'] },
    { host: sink, name: 'cal0', addresses: ['198.18.2.2/24'] },
    { mtu: 1600 },
  );
  await gen.addRoute(`${VIP}/32`, { via: LB_UPLINK });
  await gen.addRoute('198.18.1.0/24', { via: LB_UPLINK });
  await sink.addRoute('default', { via: LB_DOWNLINK });
  await lb.ip(['neigh', 'replace', BACKEND_FAKE, 'lladdr', SINK_FAKE_MAC, 'dev', 'eth1', 'nud', 'permanent']);
  // The real server's MAC too: l4lb resolves a next hop only once traffic
  // to it was dropped for want of one (or a health check made the kernel
  // ARP); a benchmark wants neither in its measurements.
  await lb.ip(['neigh', 'replace', BACKEND_REAL, 'lladdr', down.b.mac, 'dev', 'eth1', 'nud', 'permanent']);
  return {
    lab,
    gen,
    lb,
    sink,
    macs: { genEth0: up.a.mac, lbEth0: up.b.mac, lbEth1: down.a.mac, sinkEth0: down.b.mac, genCal0: cal.a.mac },
    generatorCpu: options.generatorCpu,
    forwarderCpu: options.forwarderCpu,
    netnsPath: (host) => `/run/netns/${host.netns}`,
  };
}

// ---- kernel forwarders ---------------------------------------------------------------

const nftTable = 'l4lb_bench';

/** Linux routing in lb: forwarding on, the VIP routed to the backend. */
export async function enableRouting(bed: Testbed): Promise<void> {
  await bed.lb.setSysctl('net.ipv4.ip_forward', 1);
  await bed.lb.ip(['route', 'replace', `${VIP}/32`, 'via', BACKEND_FAKE, 'dev', 'eth1']);
}

/** nftables DNAT with conntrack: VIP:9/udp -> 198.18.1.3:9, VIP:80/tcp -> 198.18.1.2:8080. */
export async function enableNftDnat(bed: Testbed): Promise<void> {
  await bed.lb.setSysctl('net.ipv4.ip_forward', 1);
  const rules = [
    `add table ip ${nftTable}`,
    `add chain ip ${nftTable} pre { type nat hook prerouting priority dstnat; }`,
    `add rule ip ${nftTable} pre ip daddr ${VIP} udp dport ${UDP_PORT} dnat to ${BACKEND_FAKE}:${UDP_PORT}`,
    `add rule ip ${nftTable} pre ip daddr ${VIP} tcp dport ${TCP_PORT} dnat to ${BACKEND_REAL}:${SERVER_PORT}`,
  ].join('\n');
  execFileSync('ip', ['netns', 'exec', bed.lb.netns, 'nft', '-f', '-'], { input: rules });
}

export async function disableKernelForwarding(bed: Testbed): Promise<void> {
  await bed.lb.setSysctl('net.ipv4.ip_forward', 0);
  await bed.lb.exec(['nft', 'delete', 'table', 'ip', nftTable]).catch(() => undefined);
  await bed.lb.ip(['route', 'del', `${VIP}/32`]).catch(() => undefined);
  // Conntrack entries of an earlier run would keep old translations.
  await bed.lb.exec(['sh', '-c', 'command -v conntrack >/dev/null && conntrack -F || true']).catch(() => undefined);
}

/** IPVS needs the ip_vs module; "unavailable" says why not. */
export async function ipvsAvailability(bed: Testbed): Promise<{ available: boolean; reason: string }> {
  const proc = await bed.lb.exec(['sh', '-c', 'test -e /proc/net/ip_vs && echo yes || echo no']);
  if (proc.stdout.trim() === 'yes') {
    const ipvsadm = await bed.lb.exec(['sh', '-c', 'command -v ipvsadm || true']);
    if (ipvsadm.stdout.trim() === '') return { available: false, reason: 'the kernel has ip_vs, but ipvsadm (Debian package ipvsadm) is not installed' };
    return { available: true, reason: '' };
  }
  const modprobe = await bed.lb.exec(['sh', '-c', 'command -v modprobe >/dev/null && (modprobe ip_vs 2>&1; test -e /proc/net/ip_vs && echo loaded) || echo "no modprobe"']);
  const out = modprobe.stdout.trim();
  if (out.endsWith('loaded')) return { available: false, reason: 'ip_vs loaded only now; rerun' };
  return { available: false, reason: `this kernel has no ip_vs: /proc/net/ip_vs is missing and \`modprobe ip_vs\` says: ${out || 'nothing'}` };
}

// ---- processes ------------------------------------------------------------------------

export function haproxyPath(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/local/sbin'])) {
    if (dir && existsSync(`${dir}/haproxy`)) return `${dir}/haproxy`;
  }
  return undefined;
}

/** HAProxy in TCP mode, one thread pinned to the forwarder's CPU, listening on lb's own uplink address only. */
export async function startHaproxy(bed: Testbed, binary: string): Promise<LabProcess> {
  const config = [
    'global',
    '  nbthread 1',
    `  cpu-map 1/1 ${bed.forwarderCpu}`,
    // Each connection takes two descriptors; the container's limit is 20000.
    '  maxconn 8000',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 30s',
    '  timeout server 30s',
    'frontend bench',
    `  bind ${LB_UPLINK}:${TCP_PORT}`,
    '  default_backend servers',
    'backend servers',
    `  server s1 ${BACKEND_REAL}:${SERVER_PORT}`,
  ].join('\n');
  const file = `/tmp/${bed.lb.netns}-haproxy.cfg`;
  writeFileSync(file, config + '\n');
  const proc = bed.lb.spawn(['taskset', '-c', String(bed.forwarderCpu), binary, '-db', '-f', file]);
  void proc.exited.then(() => rmSync(file, { force: true }));
  // HAProxy prints nothing when it starts well: wait until the port answers.
  for (let i = 0; i < 50; i++) {
    const probe = await bed.gen.exec(['sh', '-c', `timeout 0.2 bash -c '</dev/tcp/${LB_UPLINK}/${TCP_PORT}' && echo open || echo closed`]).catch(() => ({ stdout: 'closed' }));
    if (probe.stdout.includes('open')) return proc;
    if (!proc.running) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`haproxy did not start:\n${proc.log}`);
}
