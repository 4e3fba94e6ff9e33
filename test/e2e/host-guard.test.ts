// The host guard in a real namespace: installed, counted, replaced
// atomically, removed, and the reserved fullnat ports restored.
import { afterEach, describe, expect, it } from 'vitest';
import { HostGuard } from '../../lib/host/guard.js';
import type { Lab } from '../../lib/lab/index.js';
import { createLab, fixture } from './support.js';

let lab: Lab | undefined;
afterEach(async () => {
  await lab?.destroy();
  lab = undefined;
});

describe('host guard', () => {
  it('keeps the host kernel from answering VIP traffic, keeps the host address reachable, and cleans up', async () => {
    lab = await createLab();
    const client = await lab.addHost('client');
    const balancer = await lab.addHost('balancer');
    await lab.connect({ host: client, addresses: ['198.18.0.10/24'] }, { host: balancer, name: 'eth1', addresses: ['198.18.0.1/24'] });
    // The VIP is (wrongly) local to the balancer's kernel: without the guard
    // its TCP stack answers; with the guard it never sees the packets.
    await balancer.addAddress('lo', '198.18.0.100/32');
    await client.addRoute('198.18.0.100/32', { via: '198.18.0.1' });
    const echo = balancer.spawnNode(fixture('servers/tcp-echo.mjs'), ['198.18.0.100', '7000']);
    await echo.waitForLine(/listening/);
    const before = JSON.parse((await client.exec([process.execPath, fixture('servers/tcp-send.mjs'), '198.18.0.100', '7000', '100'])).stdout);
    expect(before).toMatchObject({ identical: true });

    const reservedBefore = await balancer.getSysctl('net.ipv4.ip_local_reserved_ports');
    const guard = await HostGuard.install(
      {
        interfaces: ['eth1'],
        vips: ['198.18.0.100'],
        natBackends: [],
        hostAddresses: ['198.18.0.1'],
        tunnelEndpoints: ['198.18.0.1'],
        fullnat: { addresses: ['198.18.0.1'], portMin: 61000, portMax: 61999 },
      },
      { netns: balancer.netns },
    );
    expect(await balancer.getSysctl('net.ipv4.ip_local_reserved_ports')).toBe('61000-61999');
    const blocked = await client.exec([process.execPath, fixture('servers/tcp-connect-timeout.mjs'), '198.18.0.100', '7000', '700']);
    expect(JSON.parse(blocked.stdout)).toEqual({ outcome: 'timeout' });
    expect((await guard.counters())['served by the l4lb data plane']).toBeGreaterThan(0);
    // The host's own address stays reachable.
    const own = balancer.spawnNode(fixture('servers/tcp-echo.mjs'), ['198.18.0.1', '7001']);
    await own.waitForLine(/listening/);
    expect(JSON.parse((await client.exec([process.execPath, fixture('servers/tcp-send.mjs'), '198.18.0.1', '7001', '100'])).stdout)).toMatchObject({ identical: true });

    // A table left by a balancer whose process died is removed by the next install.
    await balancer.exec(['nft', 'add', 'table', 'netdev', 'l4lb_2147483646_0']);
    expect(await HostGuard.removeStale(balancer.netns)).toEqual(['l4lb_2147483646_0']);

    await guard.remove();
    await guard.remove();
    expect(await balancer.getSysctl('net.ipv4.ip_local_reserved_ports')).toBe(reservedBefore);
    expect((await balancer.exec(['nft', 'list', 'tables'])).stdout).not.toContain('l4lb');
  });
});
