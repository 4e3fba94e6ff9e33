// Balancer behaviour beyond plain forwarding, over each driver: scheduler
// shares, persistence, path symmetry, the host kernel staying silent,
// health-check failover, and close() under traffic. Scheduler shares and
// persistence are the core's and driver-independent: they run over
// af_packet only; everything that depends on what the driver takes from the
// kernel and leaves behind runs over every driver (dpdk: its net_af_xdp
// vdevs; its net_af_packet vdevs in a test of their own).
import { afterEach, describe, expect, it } from 'vitest';
import type { Lab } from '../../lib/lab/index.js';
import type { ServiceOptions } from '../../lib/index.js';
import { setupLabRealServer } from '../../lib/realserver/lab.js';
import { createLab, fixture } from './support.js';
import type { DriverName } from '../../lib/index.js';
import { BalancerProcess, VIP, backendAddresses, demoFile, drivers, routedTopology, runJson, startBackends, type Topology } from './topologies.js';

let lab: Lab | undefined;
let balancer: BalancerProcess | undefined;
afterEach(async () => {
  await balancer?.close();
  balancer = undefined;
  await lab?.destroy();
  lab = undefined;
});

interface LoadResult {
  perBackend: Record<string, number>;
  failures: number;
  firstError: string | null;
}

async function natBalancer(
  driver: DriverName,
  topology: Topology,
  service: Partial<ServiceOptions>,
  weights: number[] = [1, 1, 1],
  options: Record<string, unknown> = {},
): Promise<BalancerProcess> {
  const b = await BalancerProcess.start(topology, {
    options: { driver, workers: 1, ...options },
    services: [
      {
        service: { address: VIP, port: 80, method: 'nat', healthCheck: { type: 'tcp', intervalMs: 200, timeoutMs: 300, rise: 1, fall: 2 }, ...service },
        backends: backendAddresses.map((address, i) => ({ address, port: 8080, weight: weights[i]! })),
      },
    ],
  });
  await b.waitUntilUp();
  return b;
}

async function waitForNewOutput(b: BalancerProcess, offset: number, pattern: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(b.process.log.slice(offset))) {
    if (Date.now() > deadline) throw new Error(`no output matching ${pattern} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function nstat(host: Topology['client'], names: string[]): Promise<Record<string, number>> {
  const { stdout } = await host.exec(['nstat', '-az', '-j', ...names]);
  const parsed = JSON.parse(stdout) as { kernel: Record<string, number> };
  return parsed.kernel;
}

describe.each(drivers)('balancer behaviour through %s', (driver) => {
  if (driver === 'af_packet') it('maglev spreads 300 connections within ±25% of a third; wrr follows weights 1:2:3 within ±6 connections', async () => {
    lab = await createLab();
    const topology = await routedTopology(lab, { driver });
    await startBackends(topology);
    balancer = await natBalancer(driver, topology, { scheduler: 'maglev' });
    const maglev = await runJson<LoadResult>(topology.client, 'servers/http-load.mjs', [VIP, 80, 300, 4]);
    expect(maglev.failures, maglev.firstError ?? '').toBe(0);
    for (const name of ['b1', 'b2', 'b3']) expect(Math.abs((maglev.perBackend[name] ?? 0) - 100), JSON.stringify(maglev.perBackend)).toBeLessThanOrEqual(25);
    await balancer.close();

    balancer = await natBalancer(driver, topology, { scheduler: 'wrr' }, [1, 2, 3]);
    const wrr = await runJson<LoadResult>(topology.client, 'servers/http-load.mjs', [VIP, 80, 240, 1]);
    expect(wrr.failures, wrr.firstError ?? '').toBe(0);
    expect(Math.abs((wrr.perBackend.b1 ?? 0) - 40)).toBeLessThanOrEqual(6);
    expect(Math.abs((wrr.perBackend.b2 ?? 0) - 80)).toBeLessThanOrEqual(6);
    expect(Math.abs((wrr.perBackend.b3 ?? 0) - 120)).toBeLessThanOrEqual(6);
  });

  if (driver === 'af_packet') it('sh and persistence keep one client on one backend', async () => {
    lab = await createLab();
    const topology = await routedTopology(lab, { driver });
    await startBackends(topology);
    balancer = await natBalancer(driver, topology, { scheduler: 'sh' });
    const sh = await runJson<LoadResult>(topology.client, 'servers/http-load.mjs', [VIP, 80, 60, 2]);
    expect(sh.failures).toBe(0);
    expect(Object.keys(sh.perBackend)).toHaveLength(1);
    await balancer.close();

    balancer = await natBalancer(driver, topology, { scheduler: 'rr', persistence: { timeoutMs: 60_000 } });
    const persistent = await runJson<LoadResult>(topology.client, 'servers/http-load.mjs', [VIP, 80, 60, 2]);
    expect(persistent.failures).toBe(0);
    expect(Object.keys(persistent.perBackend)).toHaveLength(1);
  });

  it('path symmetry: requests entering by the second uplink are answered by it, although the default route is the first', async () => {
    lab = await createLab();
    const topology = await routedTopology(lab, { secondUplink: true, driver });
    await startBackends(topology);
    balancer = await natBalancer(driver, topology, { scheduler: 'rr' });
    const before = await balancer.stats();
    const load = await runJson<LoadResult>(topology.client, 'servers/http-load.mjs', [VIP, 80, 50, 2]);
    expect(load.failures, load.firstError ?? '').toBe(0);
    const after = await balancer.stats();
    const replies = after.repliesIngressPath - before.repliesIngressPath;
    expect(replies).toBeGreaterThan(100);
    // Every reply took the ingress path where routing would have sent it out eth0.
    expect(after.repliesRouteDiffers - before.repliesRouteDiffers).toBe(replies);
  });

  it('gre with replies returned through the tunnel: requests entering by the second uplink are answered by it', async () => {
    lab = await createLab();
    const topology = await routedTopology(lab, { secondUplink: true, driver });
    const realServers = await Promise.all(
      topology.backends.map((host) => setupLabRealServer(host, { vip: VIP, method: 'gre', interface: 'eth0', returnThroughTunnel: { balancer: '198.18.1.1' } })),
    );
    try {
      await startBackends(topology, { port: 80, udpBind: VIP });
      balancer = await BalancerProcess.start(topology, {
        options: { driver, workers: 1 },
        services: [
          {
            service: { address: VIP, port: 80, method: 'gre', scheduler: 'rr', healthCheck: { type: 'tcp', intervalMs: 200, rise: 1 } },
            backends: backendAddresses.map((address) => ({ address, port: 80 })),
          },
        ],
      });
      await balancer.waitUntilUp();
      const before = await balancer.stats();
      const load = await runJson<LoadResult>(topology.client, 'servers/http-load.mjs', [VIP, 80, 50, 2]);
      expect(load.failures, load.firstError ?? '').toBe(0);
      const after = await balancer.stats();
      const viaTunnel = after.counters.repliesViaTunnel! - before.counters.repliesViaTunnel!;
      expect(viaTunnel).toBeGreaterThan(100);
      // Each returned reply left on the flow's ingress path (eth2), where routing would have used eth0.
      expect(after.repliesIngressPath - before.repliesIngressPath).toBe(viaTunnel);
      expect(after.repliesRouteDiffers - before.repliesRouteDiffers).toBe(viaTunnel);
    } finally {
      await balancer?.close();
      balancer = undefined;
      for (const server of realServers) await server.down();
    }
  });

  it('ICMP: ping to the VIP is answered by the data plane; a DF datagram too big for the ipip tunnel gets fragmentation-needed', async () => {
    lab = await createLab();
    const topology = await routedTopology(lab, { driver });
    const realServers = await Promise.all(topology.backends.map((host) => setupLabRealServer(host, { vip: VIP, method: 'ipip', interface: 'eth0' })));
    try {
      await startBackends(topology, { port: 80, udpBind: VIP });
      balancer = await BalancerProcess.start(topology, {
        options: { driver, workers: 1 },
        // The tcp service's health checks resolve the backends' next hops.
        services: (['tcp', 'udp'] as const).map((protocol) => ({
          service: { address: VIP, port: 80, protocol, method: 'ipip' as const, healthCheck: protocol === 'tcp' ? { type: 'tcp' as const, intervalMs: 200, rise: 1 } : { type: 'none' as const } },
          backends: backendAddresses.map((address) => ({ address, port: 80 })),
        })),
      });
      await balancer.waitUntilUp();
      const ping = JSON.parse((await topology.client.exec(['python3', fixture('servers/icmp-echo.py'), VIP, '3'])).stdout) as { received: number };
      expect(ping.received).toBe(3);
      // 1472 bytes of UDP payload fill the client's 1500-byte MTU; the outer
      // IPv4 header of the tunnel would make it 1520.
      const send = "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.IPPROTO_IP, 10, 2); s.sendto(b'x' * 1472, (sys.argv[1], 80))";
      // Sent again, as an application doing path-MTU discovery would, while
      // the client's kernel has not learnt the MTU (a datagram or its answer
      // can be lost on a busy machine).
      let route = '';
      let sent = 0;
      for (let i = 0; i < 50 && !/mtu 1480/.test(route); i++) {
        if (i % 10 === 0) {
          await topology.client.exec(['python3', '-c', send, VIP]);
          sent++;
        }
        await new Promise((r) => setTimeout(r, 50));
        route = (await topology.client.exec(['ip', 'route', 'get', VIP])).stdout;
      }
      const stats = await balancer.stats();
      expect(route, `fragmentation-needed sent ${stats.counters.icmpFragNeededSent} for ${sent} datagrams`).toMatch(/mtu 1480/);
      expect(stats.counters.echoReplies).toBe(3);
      expect(stats.counters.icmpFragNeededSent).toBeGreaterThanOrEqual(1);
      expect(stats.counters.icmpFragNeededSent).toBeLessThanOrEqual(sent);
    } finally {
      await balancer?.close();
      balancer = undefined;
      for (const server of realServers) await server.down();
    }
  });

  it('the host kernel sends no reset, ICMP or duplicate toward the client', async () => {
    lab = await createLab();
    const topology = await routedTopology(lab, { driver });
    await startBackends(topology);
    // A balancer kernel that would forward if it could: the host guard
    // (af_packet) or the XDP program taking the frames (af_xdp) must stop it.
    await topology.balancer.setSysctl('net.ipv4.ip_forward', 1);
    balancer = await natBalancer(driver, topology, { scheduler: 'rr' });
    const counters = ['TcpInSegs', 'TcpInErrs', 'TcpInRsts', 'IcmpInMsgs', 'TcpExtTCPDSACKOldSent', 'TcpExtTCPDSACKOfoSent'];
    const before = await nstat(topology.client, counters);
    const load = await runJson<LoadResult>(topology.client, 'servers/http-load.mjs', [VIP, 80, 100, 4]);
    expect(load.failures, load.firstError ?? '').toBe(0);
    const download = await runJson<{ intact: boolean }>(topology.client, 'servers/http-download.mjs', [VIP, 80, 5 * 1024 * 1024]);
    expect(download.intact).toBe(true);
    const after = await nstat(topology.client, counters);
    const delta = (name: string) => (after[name] ?? 0) - (before[name] ?? 0);
    // No reset and no ICMP at all from the balancer host's kernel.
    for (const name of ['TcpInErrs', 'TcpInRsts', 'IcmpInMsgs']) expect(delta(name), name).toBe(0);
    // A kernel that forwarded replies too would duplicate every one of the
    // thousands of segments; a busy machine may make a backend retransmit a
    // few segments early (each shows up as a DSACK) without that: allow 1%.
    // Segments as the client's stack counts them: with the default offloads
    // an aggregate of up to 64 KiB arrives (and counts) as one.
    const duplicates = delta('TcpExtTCPDSACKOldSent') + delta('TcpExtTCPDSACKOfoSent');
    expect(delta('TcpInSegs')).toBeGreaterThan(300);
    expect(duplicates).toBeLessThanOrEqual(delta('TcpInSegs') / 100);
  });

  it('a stopped backend is marked down within fall x interval + timeout and skipped; restarted, it comes back after rise checks', async () => {
    lab = await createLab();
    const topology = await routedTopology(lab, { driver });
    const servers = await startBackends(topology);
    balancer = await natBalancer(driver, topology, { scheduler: 'rr', healthCheck: { type: 'http', path: '/', intervalMs: 200, timeoutMs: 300, rise: 2, fall: 2 } });
    const logBeforeStop = balancer.process.log.length;
    const stoppedAt = Date.now();
    await servers[1]!.stop();
    await waitForNewOutput(balancer, logBeforeStop, /"backend-state".*198\.18\.1\.3.*"state":"down"/, 5000);
    // fall (2) x interval (200 ms) + one timeout (300 ms), plus scheduling slack.
    expect(Date.now() - stoppedAt).toBeLessThanOrEqual(2 * 200 + 300 + 600);
    const during = await runJson<LoadResult>(topology.client, 'servers/http-load.mjs', [VIP, 80, 40, 2]);
    expect(during.failures).toBe(0);
    expect(during.perBackend.b2 ?? 0).toBe(0);

    const logBeforeRestart = balancer.process.log.length;
    const restarted = topology.backends[1]!.spawnNode(demoFile('servers/backend.mjs'), ['b2', '0.0.0.0', '8080']);
    await restarted.waitForLine(/"listening"/);
    await waitForNewOutput(balancer, logBeforeRestart, /"backend-state".*198\.18\.1\.3.*"state":"up"/, 5000);
    const after = await runJson<LoadResult>(topology.client, 'servers/http-load.mjs', [VIP, 80, 30, 1]);
    expect(after.failures).toBe(0);
    expect(after.perBackend.b2 ?? 0).toBeGreaterThanOrEqual(9);
  });

  if (driver === 'dpdk') it('net_af_packet vdevs: nat through the host guard (60 connections, 5 MB intact from senders without aggregates), the host kernel silent, the guard removed on close', async () => {
    lab = await createLab();
    const topology = await routedTopology(lab, { driver });
    await startBackends(topology);
    await topology.balancer.setSysctl('net.ipv4.ip_forward', 1);
    // net_af_packet has no virtio_net_hdr: a packet socket's frame must fit
    // one of its ring slots, so the senders make no 64 KiB aggregates.
    for (const host of [topology.client, ...topology.backends]) await host.exec(['ip', 'link', 'set', 'dev', 'eth0', 'gso_max_size', '1500']);
    balancer = await natBalancer(driver, topology, { scheduler: 'rr' }, [1, 1, 1], { dpdk: { vdev: 'af_packet' } });
    // A packet socket only taps: the host guard keeps the kernel out, and no XDP program is attached.
    expect((await topology.balancer.exec(['nft', 'list', 'tables'])).stdout).toMatch(/l4lb_/);
    expect((await topology.balancer.exec(['ip', '-d', 'link', 'show'])).stdout).not.toMatch(/prog\/xdp/);
    const before = await nstat(topology.client, ['TcpInRsts', 'IcmpInMsgs']);
    const load = await runJson<LoadResult>(topology.client, 'servers/http-load.mjs', [VIP, 80, 60, 2]);
    expect(load.failures, load.firstError ?? '').toBe(0);
    for (const name of ['b1', 'b2', 'b3']) expect(load.perBackend[name]).toBe(20);
    const download = await runJson<{ intact: boolean }>(topology.client, 'servers/http-download.mjs', [VIP, 80, 5 * 1024 * 1024]);
    expect(download.intact).toBe(true);
    const after = await nstat(topology.client, ['TcpInRsts', 'IcmpInMsgs']);
    for (const name of ['TcpInRsts', 'IcmpInMsgs']) expect((after[name] ?? 0) - (before[name] ?? 0), name).toBe(0);
    const stats = await balancer.stats();
    expect(stats.interfaces.map((i) => i.mode)).toEqual(['dpdk_af_packet', 'dpdk_af_packet']);
    await balancer.close();
    balancer = undefined;
    expect((await topology.balancer.exec(['nft', 'list', 'tables'])).stdout).not.toMatch(/l4lb_/);
  });

  it(`close() during traffic stops the workers cleanly and removes ${driver === 'af_packet' ? 'the host guard' : 'the XDP program, leaving the interfaces as they were'}`, async () => {
    lab = await createLab();
    const topology = await routedTopology(lab, { driver, workers: 2 });
    await startBackends(topology);
    const links = async () => (await topology.balancer.exec(['ip', '-d', 'link', 'show'])).stdout;
    const linksBefore = await links();
    balancer = await natBalancer(driver, topology, { scheduler: 'rr' }, [1, 1, 1], { workers: 2 });
    const tables = (await topology.balancer.exec(['nft', 'list', 'tables'])).stdout;
    if (driver === 'af_packet') {
      expect(tables).toMatch(/l4lb_/);
    } else {
      // No host guard with af_xdp: the program takes the balancer's frames.
      expect(tables).not.toMatch(/l4lb_/);
      expect(await links()).toMatch(/prog\/xdp id \d+ name l4lb_xdp/);
    }
    const traffic = topology.client.spawnNode(fixture('servers/http-load.mjs'), [VIP, '80', '100000', '4']);
    await new Promise((r) => setTimeout(r, 500));
    const closing = Date.now();
    const balancerProcess = balancer.process;
    await balancer.close();
    balancer = undefined;
    expect(await balancerProcess.exited).toBe(0);
    expect(Date.now() - closing).toBeLessThan(5000);
    expect(balancerProcess.log).toContain('"event":"closed"');
    expect((await topology.balancer.exec(['nft', 'list', 'tables'])).stdout).not.toMatch(/l4lb_/);
    expect(await links()).toBe(linksBefore);
    await traffic.stop();
  });
});
