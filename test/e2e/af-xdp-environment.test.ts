// The AF_XDP driver in a bad environment: each failure a DriverError with a
// code and the remedy, and nothing left attached to any interface; a
// program left by a killed balancer is removed by the next one, a live one
// is not touched.
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
  // A bridge: an interface whose driver has no native XDP.
  await host.ip(['link', 'add', 'bridge0', 'type', 'bridge']);
  await host.ip(['link', 'set', 'dev', 'bridge0', 'up']);
  return host;
}

describe('af_xdp driver: environment', () => {
  it('native on veth; an interface without native XDP fails in mode native, runs generic in mode auto', async () => {
    const host = await balancerHost();
    expect(await openBalancer(host, 'af_xdp', { interfaces: ['eth0'] })).toEqual({ ok: true, modes: ['xdp_native'] });
    const refused = await openBalancer(host, 'af_xdp', { interfaces: ['eth0', 'bridge0'], afXdp: { mode: 'native' } });
    expect(refused).toMatchObject({ name: 'DriverError', code: 'EXDP_UNSUPPORTED' });
    expect(refused.message).toMatch(/bridge0 has no native XDP support.*mode 'auto' or 'generic'/);
    expect(await xdpAttached(host)).toEqual([]);  // eth0's program went with the failure
    expect(await openBalancer(host, 'af_xdp', { interfaces: ['eth0', 'bridge0'] })).toEqual({ ok: true, modes: ['xdp_native', 'xdp_generic'] });
    expect(await openBalancer(host, 'af_xdp', { interfaces: ['nosuch0'] })).toMatchObject({ name: 'DriverError', code: 'ENO_INTERFACE' });
    expect(await xdpAttached(host)).toEqual([]);
  });

  it('without CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN: EXDP_PERMISSION naming the capabilities', async () => {
    const host = await balancerHost();
    const drop = ['setpriv', '--bounding-set=-bpf,-net_admin,-sys_admin,-perfmon', '--inh-caps=-bpf,-net_admin,-sys_admin,-perfmon', '--'];
    const outcome = await openBalancer(host, 'af_xdp', { interfaces: ['eth0'] }, drop);
    expect(outcome).toMatchObject({ name: 'DriverError', code: 'EXDP_PERMISSION' });
    expect(outcome.message).toMatch(/CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF/);
    expect(await xdpAttached(host)).toEqual([]);
  });

  it('a locked-memory limit below the UMEM, without CAP_IPC_LOCK: EXDP_MEMLOCK naming RLIMIT_MEMLOCK', async () => {
    const host = await balancerHost();
    const limit = ['prlimit', '--memlock=1048576', 'setpriv', '--bounding-set=-ipc_lock', '--inh-caps=-ipc_lock', '--'];
    const outcome = await openBalancer(host, 'af_xdp', { interfaces: ['eth0'] }, limit);
    expect(outcome).toMatchObject({ name: 'DriverError', code: 'EXDP_MEMLOCK' });
    expect(outcome.message).toMatch(/RLIMIT_MEMLOCK.*CAP_IPC_LOCK/);
    expect(await xdpAttached(host)).toEqual([]);
  });

  it("a live balancer's interface is busy; a killed one's program is removed by the next open", async () => {
    const host = await balancerHost();
    const holder = holdBalancer(host, 'af_xdp', { interfaces: ['eth0'] });
    await holder.waitForLine(/"ok":true/, 20_000);
    expect(await xdpAttached(host)).toEqual(['l4lb_xdp']);
    const busy = await openBalancer(host, 'af_xdp', { interfaces: ['eth0'] });
    expect(busy).toMatchObject({ name: 'DriverError', code: 'EXDP_BUSY' });
    expect(busy.message).toContain(`l4lb process ${holder.child.pid}`);
    holder.child.kill('SIGKILL');
    await holder.exited;
    expect(await xdpAttached(host)).toEqual(['l4lb_xdp']);  // left behind by the killed process
    expect(await openBalancer(host, 'af_xdp', { interfaces: ['eth0'] })).toEqual({ ok: true, modes: ['xdp_native'] });
    expect(await xdpAttached(host)).toEqual([]);
  });
});
