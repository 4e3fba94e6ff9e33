// The DPDK driver in a bad environment: each failure a DriverError with a
// code and the remedy, and nothing left on the interface; the XDP program a
// killed balancer's net_af_xdp vdev left is removed by the next one, a live
// one's is not touched.
import { afterEach, describe, expect, it } from 'vitest';
import type { Host, Lab } from '../../lib/lab/index.js';
import { holdBalancer, openBalancer, xdpAttached } from './driver-environment.js';
import { createLab } from './support.js';

let lab: Lab | undefined;
afterEach(async () => {
  await lab?.destroy();
  lab = undefined;
});

async function balancerHost(): Promise<Host> {
  lab = await createLab();
  const peer = await lab.addHost('peer');
  const host = await lab.addHost('balancer');
  await lab.connect({ host: peer, name: 'eth0', addresses: ['198.18.0.10/24'] }, { host, name: 'eth0', addresses: ['198.18.0.1/24'] });
  return host;
}

describe('dpdk driver: environment', () => {
  it("a live balancer's interface is busy; the program a killed one left is removed by the next open", async () => {
    const host = await balancerHost();
    const holder = holdBalancer(host, 'dpdk', { interfaces: ['eth0'] });
    await holder.waitForLine(/"ok":true/, 30_000);
    expect(await xdpAttached(host)).toEqual(['l4lb_xdp']);
    const busy = await openBalancer(host, 'dpdk', { interfaces: ['eth0'] });
    expect(busy).toMatchObject({ name: 'DriverError', code: 'EXDP_BUSY' });
    expect(busy.message).toContain(`l4lb process ${holder.child.pid}`);
    holder.child.kill('SIGKILL');
    await holder.exited;
    expect(await xdpAttached(host)).toEqual(['l4lb_xdp']); // left behind by the killed process
    expect(await openBalancer(host, 'dpdk', { interfaces: ['eth0'] })).toEqual({ ok: true, modes: ['dpdk_af_xdp'] });
    expect(await xdpAttached(host)).toEqual([]);
  });

  it('an EAL argument EAL refuses: EDPDK_EAL quoting its arguments and log, nothing left on the interface', async () => {
    const host = await balancerHost();
    const outcome = await openBalancer(host, 'dpdk', { interfaces: ['eth0'], dpdk: { eal: ['--no-such-eal-option'] } });
    expect(outcome).toMatchObject({ name: 'DriverError', code: 'EDPDK_EAL' });
    expect(outcome.message).toContain('--no-such-eal-option');
    expect(outcome.message).toMatch(/fix dpdk\.eal/);
    expect(await xdpAttached(host)).toEqual([]);
  });

  it('no such interface: ENO_INTERFACE naming it', async () => {
    const host = await balancerHost();
    expect(await openBalancer(host, 'dpdk', { interfaces: ['eth9'] })).toMatchObject({ name: 'DriverError', code: 'ENO_INTERFACE' });
  });
});
