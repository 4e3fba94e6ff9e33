// Real servers in namespaces: `up` and `down` for dr, ipip and gre (this
// kernel has no ipip/ip_gre modules, so tunnels go through the userspace
// decapsulator), real TCP and UDP through the tunnels, replies back inside
// GRE, malformed tunnel packets, ICMP silence, dry runs equal to what ran,
// and `check`.
//
// Topology: lb (198.18.0.1, plays the balancer and, with 198.18.50.1 on its
// lo, the client) -- rs (198.18.0.2, the real server, VIP 198.18.100.1).
// Traffic from the client address to the VIP is routed in lb into a TUN
// device served by a second Decapsulator, whose return path encapsulates it
// toward rs: the same code on both ends, plus packets crafted independently
// (test/support/packets.ts) and sent with a raw socket.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type Host, type Lab, LabProcess } from '../../lib/lab/index.js';
import {
  Decapsulator,
  RecordingRunner,
  check,
  down,
  runDecapsulator,
  runRealServer,
  setupLabRealServer,
  type DecapsulatorStats,
  up,
} from '../../lib/realserver/index.js';
import { ipv4Packet, type L4Spec } from '../support/packets.js';
import { createLab, fixture } from './support.js';

const vip = '198.18.100.1';
const balancerAddress = '198.18.0.1';
const realServerAddress = '198.18.0.2';
const clientAddress = '198.18.50.1';

// A UDP echo server: node -e UDP_ECHO ADDRESS PORT. Prints every datagram.
const udpEcho = `
const dgram = require('node:dgram');
const [address, port] = process.argv.slice(1);
const socket = dgram.createSocket('udp4');
socket.on('message', (message, from) => {
  console.log(JSON.stringify({ event: 'datagram', text: message.toString(), from: from.address }));
  socket.send(message, from.port, from.address);
});
socket.bind(Number(port), address, () => console.log(JSON.stringify({ event: 'listening' })));
process.on('SIGTERM', () => process.exit(0));
`;

// One datagram from SOURCE to ADDRESS:PORT, prints the reply: node -e UDP_ASK ADDRESS PORT SOURCE TEXT
const udpAsk = `
const dgram = require('node:dgram');
const [address, port, source, text] = process.argv.slice(1);
const socket = dgram.createSocket('udp4');
socket.on('message', (message, from) => {
  console.log(JSON.stringify({ reply: message.toString(), from: from.address }));
  process.exit(0);
});
socket.bind(0, source, () => socket.send(text, Number(port), address));
setTimeout(() => { console.log(JSON.stringify({ error: 'no reply within 3 s' })); process.exit(1); }, 3000);
`;

// Sends each hex-encoded IPv4 packet with a raw IPPROTO_RAW socket (the
// kernel fills in the outer total length and header checksum, nothing else).
const rawSend = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for packet in sys.argv[2:]:
    s.sendto(bytes.fromhex(packet), (sys.argv[1], 0))
`;

let lab: Lab;
let lb: Host;
let rs: Host;
let stateDir: string;

async function snapshot(host: Host) {
  const json = async (args: string[]) => JSON.parse((await host.ip(['-j', ...args])).stdout || '[]') as unknown;
  return {
    addresses: await json(['address', 'show']),
    links: await json(['link', 'show']),
    rules: await json(['rule', 'show']),
    routes: await json(['route', 'show', 'table', 'all']),
    sysctls: (await host.exec(['sysctl', 'net.ipv4.conf'])).stdout.split('\n').filter(Boolean).sort(),
  };
}

/** ICMP destination-unreachable messages the host's kernel sent or wanted to send (rate limited). */
async function icmpUnreachables(host: Host): Promise<number> {
  const lines = (await host.exec(['cat', '/proc/net/snmp'])).stdout.split('\n').filter((l) => l.startsWith('Icmp:'));
  const names = lines[0]!.split(/\s+/).slice(1);
  const values = lines[1]!.split(/\s+/).slice(1).map(Number);
  const get = (name: string) => values[names.indexOf(name)] ?? 0;
  return get('OutDestUnreachs') + get('OutRateLimitGlobal') + get('OutRateLimitHost');
}

/**
 * Whether rs answers ARP for the VIP on the shared link: lb sends a datagram
 * to the VIP as an on-link destination and watches its neighbour entry.
 */
async function arpAnsweredForVip(): Promise<boolean> {
  await lb.ip(['neigh', 'flush', 'dev', 'rs']);
  await lb.exec([process.execPath, '-e', "const s = require('node:dgram').createSocket('udp4'); s.send('arp?', 9, process.argv[1], () => s.close());", vip]);
  const deadline = Date.now() + 1500;
  while (Date.now() < deadline) {
    const entries = JSON.parse((await lb.ip(['-j', 'neigh', 'show', 'to', vip, 'dev', 'rs'])).stdout || '[]') as Array<{ state?: string[] }>;
    if (entries.some((e) => e.state?.some((state) => ['REACHABLE', 'STALE', 'DELAY'].includes(state)))) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

async function sendRaw(from: Host, destination: string, packets: Buffer[]): Promise<void> {
  await from.exec(['python3', '-c', rawSend, destination, ...packets.map((p) => p.toString('hex'))]);
}

async function eventually<T>(read: () => T | Promise<T>, accept: (value: T) => boolean, what: string, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (accept(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(value)} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function tunnelled(l4: L4Spec): Buffer {
  return ipv4Packet({ src: balancerAddress, dst: realServerAddress, l4 });
}

function datagram(text: string, destination = vip, port = 7001): Buffer {
  return ipv4Packet({ src: clientAddress, dst: destination, l4: { kind: 'udp', sport: 40000, dport: port, payload: Buffer.from(text) } });
}

/**
 * The balancer's end of the tunnel in lb: packets from the client address to
 * the VIP are routed into a TUN device and leave encapsulated toward rs;
 * tunnelled replies for the client address come back out of it.
 */
async function balancerEnd(type: 'ipip' | 'gre') {
  const device = 'lbtun0';
  await lb.ip(['tuntap', 'add', 'dev', device, 'mode', 'tun']);
  // Room for the outer header, as a kernel tunnel device would leave: the
  // client then sizes its segments to fit once encapsulated (a balancer
  // answers with ICMP fragmentation-needed instead).
  await lb.ip(['link', 'set', 'dev', device, 'mtu', type === 'ipip' ? '1480' : '1476', 'up']);
  await lb.ip(['route', 'add', `${vip}/32`, 'dev', device, 'src', clientAddress]);
  const decapsulator = Decapsulator.start({
    netns: lb.netns,
    device,
    vips: [clientAddress],
    accept: ['gre'],
    returnTo: { destination: realServerAddress, source: balancerAddress, type },
  });
  return {
    decapsulator,
    async stop() {
      decapsulator.stop();
      await lb.ip(['link', 'del', 'dev', device]);
    },
  };
}

async function tcpTransfer(size: number): Promise<{ received: number; identical: boolean }> {
  const { stdout } = await lb.exec(['timeout', '10', process.execPath, fixture('servers/tcp-send.mjs'), vip, '7000', String(size)]);
  return JSON.parse(stdout) as { received: number; identical: boolean };
}

async function udpRoundTrip(text: string): Promise<{ reply?: string; from?: string; error?: string }> {
  const { stdout } = await lb.exec([process.execPath, '-e', udpAsk, vip, '7001', clientAddress, text]);
  return JSON.parse(stdout) as { reply?: string; from?: string };
}

beforeAll(async () => {
  lab = await createLab();
  stateDir = mkdtempSync(join(tmpdir(), 'l4lb-realserver-e2e-'));
  lb = await lab.addHost('lb');
  // Strict reverse-path filtering, as many distributions ship it: tunnelled
  // traffic only gets through if `up` relaxes it where needed.
  rs = await lab.addHost('rs', { sysctls: { 'net.ipv4.conf.all.rp_filter': 1 } });
  await lab.connect({ host: lb, addresses: [`${balancerAddress}/24`] }, { host: rs, addresses: [`${realServerAddress}/24`] });
  await rs.addRoute('default', { via: balancerAddress });
  await lb.addAddress('lo', `${clientAddress}/32`);
});

afterAll(async () => {
  await lab?.destroy();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('real server', () => {
  it('dr: up puts the VIP on lo and quiets ARP, a second up changes nothing, check flags a wildcard UDP socket, down restores exactly what was', async () => {
    // Already set before up: must still be set after down.
    await rs.setSysctl('net.ipv4.conf.lo.arp_ignore', 1);
    // Control: with the VIP on lo and default ARP settings, rs answers ARP for it.
    await lb.ip(['route', 'add', `${vip}/32`, 'dev', 'rs']);
    await rs.ip(['address', 'add', `${vip}/32`, 'dev', 'lo']);
    expect(await arpAnsweredForVip()).toBe(true);
    await rs.ip(['address', 'del', `${vip}/32`, 'dev', 'lo']);
    const before = await snapshot(rs);

    const first = await up({ vip, method: 'dr', netns: rs.netns, stateDir });
    expect(first).toMatchObject({ changed: true, decapsulation: 'none', interface: 'lb' });
    expect(first.inPlace).toContain('net.ipv4.conf.lo.arp_ignore = 1');
    expect((await rs.interface('lo')).addresses).toContain(`${vip}/32`);
    for (const device of ['all', 'lo', 'lb']) {
      expect(await rs.getSysctl(`net.ipv4.conf.${device}.arp_ignore`)).toBe('1');
      expect(await rs.getSysctl(`net.ipv4.conf.${device}.arp_announce`)).toBe('2');
    }
    expect(await arpAnsweredForVip()).toBe(false);
    await lb.ip(['route', 'del', `${vip}/32`, 'dev', 'rs']);
    const second = await up({ vip, method: 'dr', netns: rs.netns, stateDir });
    expect(second.changed).toBe(false);
    expect(second.steps).toEqual([]);
    expect(second.report).toMatch(/already up, nothing changed/);
    await expect(up({ vip, method: 'gre', netns: rs.netns, stateDir })).rejects.toMatchObject({ code: 'EALREADY_UP' });

    const wildcard = rs.spawn([process.execPath, '-e', udpEcho, '0.0.0.0', '7100']);
    await wildcard.waitForLine(/listening/);
    const flagged = await check({ vip, method: 'dr', netns: rs.netns, port: 7100 });
    expect(flagged.ok).toBe(false);
    expect(flagged.findings.filter((f) => f.status === 'problem').map((f) => f.id)).toEqual(['udp-wildcard']);
    expect(flagged.report).toMatch(/0\.0\.0\.0:7100 .* bound to every address/);
    expect(flagged.report).toMatch(/fix: bind the service to 198\.18\.100\.1:7100 .*IP_PKTINFO/);
    await wildcard.stop();
    const onVip = rs.spawn([process.execPath, '-e', udpEcho, vip, '7100']);
    await onVip.waitForLine(/listening/);
    const passed = await check({ vip, method: 'dr', netns: rs.netns, port: 7100 });
    expect(passed.ok).toBe(true);
    expect(passed.findings).toContainEqual(expect.objectContaining({ id: 'udp-bound-to-vip', status: 'ok' }));
    await onVip.stop();

    const undone = await down({ vip, netns: rs.netns, stateDir });
    expect(undone.changed).toBe(true);
    expect(undone.commands).not.toContain(`ip netns exec ${rs.netns} sysctl -w net.ipv4.conf.lo.arp_ignore=0`);
    expect(await snapshot(rs)).toEqual(before);
    expect((await down({ vip, netns: rs.netns, stateDir })).changed).toBe(false);
    const missing = await check({ vip, method: 'dr', netns: rs.netns });
    expect(missing.findings.filter((f) => f.status === 'problem').map((f) => f.id)).toEqual(['vip-on-loopback', 'arp-ignore', 'arp-announce']);
  });

  it('gre: the dry run is what up runs; TCP and UDP reach the VIP, replies return inside GRE; malformed packets are counted; no ICMP unreachable leaves; down restores the namespace', async () => {
    const before = await snapshot(rs);
    // Control: with nothing to take GRE, the kernel answers it with ICMP protocol-unreachable.
    const silent = await icmpUnreachables(rs);
    await sendRaw(lb, realServerAddress, [tunnelled({ kind: 'gre', inner: datagram('before up') })]);
    await eventually(() => icmpUnreachables(rs), (n) => n === silent + 1, 'ICMP unreachables without a decapsulator');

    const options = { vip, method: 'gre', netns: rs.netns, stateDir, returnThroughTunnel: { balancer: balancerAddress } } as const;
    const dry = await up({ ...options, dryRun: true });
    const recorder = new RecordingRunner();
    const real = await up({ ...options, runner: recorder });
    expect(real.steps).toEqual(dry.steps);
    expect(recorder.changes).toEqual(dry.steps.filter((s) => !s.internal).map((s) => s.command));
    expect(dry.steps.filter((s) => s.internal).map((s) => s.command)).toEqual([
      `l4lb realserver decapsulate --vip ${vip} --method gre --device l4lbc6126401 --netns ${rs.netns} --return-to ${balancerAddress} --return-source ${realServerAddress}`,
    ]);
    expect(real).toMatchObject({ changed: true, decapsulation: 'userspace', tunnelDevice: 'l4lbc6126401' });
    expect(real.decapsulator?.running).toBe(true);
    expect(await rs.getSysctl('net.ipv4.conf.l4lbc6126401.rp_filter')).toBe('2');
    expect((await up(options)).changed).toBe(false);
    const quiet = await icmpUnreachables(rs);

    const decapsulator = real.decapsulator!;
    const end = await balancerEnd('gre');
    const echo = rs.spawnNode(fixture('servers/tcp-echo.mjs'), [vip, '7000']);
    const udp = rs.spawn([process.execPath, '-e', udpEcho, vip, '7001']);
    try {
      await echo.waitForLine(/"listening"/);
      await udp.waitForLine(/listening/);
      expect(await tcpTransfer(1_000_000)).toMatchObject({ received: 1_000_000, identical: true });
      expect(await udpRoundTrip('hello over gre')).toEqual({ reply: 'hello over gre', from: vip });
      const afterTraffic = decapsulator.stats();
      expect(afterTraffic.decapsulated).toBeGreaterThan(20);
      expect(afterTraffic.returned).toBeGreaterThan(20);
      // The replies reached the balancer's address inside GRE: its end took them out of the tunnel.
      expect(end.decapsulator.stats().decapsulated).toBeGreaterThanOrEqual(afterTraffic.returned);
      expect(end.decapsulator.stats().malformed).toEqual(Object.fromEntries(Object.keys(afterTraffic.malformed).map((k) => [k, 0])));

      // Crafted independently: a GRE packet with checksum, key and sequence number.
      await sendRaw(lb, realServerAddress, [tunnelled({ kind: 'gre', checksum: true, key: 7, sequence: 1, inner: datagram('crafted') })]);
      await udp.waitForLine(/"text":"crafted"/);

      const lying = datagram('lies');
      lying.writeUInt16BE(lying.length + 100, 2);
      await sendRaw(lb, realServerAddress, [
        tunnelled({ kind: 'gre', version: 1, inner: datagram('v1') }),
        tunnelled({ kind: 'gre', protocolType: 0x86dd, inner: datagram('v6?') }),
        tunnelled({ kind: 'raw', protocol: 47, payload: Buffer.from([0x20, 0x00, 0x08, 0x00]) }),
        tunnelled({ kind: 'gre', inner: lying }),
        tunnelled({ kind: 'gre', checksum: true, inner: datagram('bad sum') }).fill(0, 24, 26),
        tunnelled({ kind: 'gre', inner: datagram('elsewhere', '198.18.100.99') }),
      ]);
      const counted = await eventually(
        () => decapsulator.stats(),
        (s: DecapsulatorStats) => s.notForUs['inner-destination'] === 1,
        'decapsulator counters',
      );
      expect(counted.malformed).toMatchObject({
        'gre-version': 1,
        'gre-protocol': 1,
        'gre-truncated': 1,
        'inner-bad-length': 1,
        'gre-checksum': 1,
      });
      expect(Object.values(counted.malformed).reduce((a, b) => a + b, 0)).toBe(5);
      expect(counted.running).toBe(true);
      expect(await tcpTransfer(50_000)).toMatchObject({ received: 50_000, identical: true });
      expect(await icmpUnreachables(rs)).toBe(quiet);
    } finally {
      await echo.stop();
      await udp.stop();
      await end.stop();
    }

    const downDry = await down({ vip, netns: rs.netns, stateDir, dryRun: true });
    const downRecorder = new RecordingRunner();
    const undone = await down({ vip, netns: rs.netns, stateDir, runner: downRecorder });
    expect(undone.steps).toEqual(downDry.steps);
    expect(downRecorder.changes).toEqual(downDry.steps.filter((s) => !s.internal).map((s) => s.command));
    expect(undone.decapsulatorStats?.decapsulated).toBeGreaterThan(0);
    expect(decapsulator.running).toBe(false);
    expect(await snapshot(rs)).toEqual(before);
  });

  it('ipip through the lab helper: TCP reaches the VIP, replies go straight back, down restores the namespace', async () => {
    const before = await snapshot(rs);
    const server = await setupLabRealServer(rs, { vip, method: 'ipip' });
    expect(server.result).toMatchObject({ decapsulation: 'userspace', changed: true });
    const end = await balancerEnd('ipip');
    const echo = rs.spawnNode(fixture('servers/tcp-echo.mjs'), [vip, '7000']);
    const udp = rs.spawn([process.execPath, '-e', udpEcho, vip, '7001']);
    try {
      await echo.waitForLine(/"listening"/);
      await udp.waitForLine(/listening/);
      expect(await tcpTransfer(300_000)).toMatchObject({ received: 300_000, identical: true });
      await sendRaw(lb, realServerAddress, [tunnelled({ kind: 'ipip', inner: datagram('crafted ipip') })]);
      await udp.waitForLine(/"text":"crafted ipip"/);
      const stats = server.stats()!;
      expect(stats.decapsulated).toBeGreaterThan(10);
      expect(stats.returned).toBe(0);
      expect(end.decapsulator.stats().decapsulated).toBe(0);
      const ready = await check({ vip, method: 'ipip', netns: rs.netns });
      expect(ready.findings.filter((f) => f.status === 'problem')).toEqual([]);
      expect(ready.findings).toContainEqual(expect.objectContaining({ id: 'decapsulation', status: 'ok' }));
    } finally {
      await echo.stop();
      await udp.stop();
      await end.stop();
      await server.down();
    }
    expect(await snapshot(rs)).toEqual(before);
    const gone = await check({ vip, method: 'ipip', netns: rs.netns });
    expect(gone.findings.find((f) => f.id === 'decapsulation')).toMatchObject({ status: 'problem' });
  });

  it('long-running modes end on their signal: runRealServer undoes its up, also when down comes from another process; runDecapsulator takes its TUN device away', async () => {
    const before = await snapshot(rs);
    const controller = new AbortController();
    const reports: string[] = [];
    const running = runRealServer({
      vip,
      method: 'gre',
      netns: rs.netns,
      stateDir,
      signal: controller.signal,
      onUp: (result) => reports.push(`${result.report.split('\n')[0]} running=${result.decapsulator?.running}`),
    });
    await eventually(() => reports.length, (n) => n === 1, 'runRealServer up');
    expect(reports[0]).toMatch(/^up 198\.18\.100\.1 \(gre, userspace decapsulation, .*\): \d+ changes: running=true$/);
    controller.abort();
    const { up: upResult, down: downResult } = await running;
    expect(upResult.changed).toBe(true);
    expect(downResult.changed).toBe(true);
    expect(downResult.decapsulatorStats?.running).toBe(false);
    expect(await snapshot(rs)).toEqual(before);

    // The CLI's case: `up` keeps running in one process, `down` comes from another.
    const child = new LabProcess('runRealServer', process.execPath, [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `import { runRealServer } from ${JSON.stringify(new URL('../../lib/realserver/index.ts', import.meta.url).pathname)};
       await runRealServer({ vip: '${vip}', method: 'gre', netns: '${rs.netns}', stateDir: '${stateDir}', onUp: (r) => console.log('up changed=' + r.changed) });
       console.log('down done');`,
    ]);
    try {
      await child.waitForLine(/^up changed=true$/, 20_000);
      const fromElsewhere = await down({ vip, netns: rs.netns, stateDir });
      expect(fromElsewhere.commands).toEqual([expect.stringMatching(/^kill -TERM \d+$/)]);
      expect(fromElsewhere.leftAlone).toEqual([expect.stringMatching(/^process \d+ undid its own set-up when it stopped$/)]);
      await child.waitForLine(/^down done$/);
      expect(await child.exited).toBe(0);
    } finally {
      await child.stop();
    }
    expect(await snapshot(rs)).toEqual(before);

    const stop = new AbortController();
    const decapsulating = runDecapsulator({ vips: [vip], accept: ['ipip'], device: 'l4lbtest0', netns: rs.netns, signal: stop.signal });
    expect((await rs.interface('l4lbtest0')).name).toBe('l4lbtest0');
    stop.abort();
    expect((await decapsulating).running).toBe(false);
    await expect(rs.interface('l4lbtest0')).rejects.toThrow(/l4lbtest0/);
    expect(await snapshot(rs)).toEqual(before);
  });
});
