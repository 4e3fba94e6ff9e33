// The commands `up` and `down` run, computed from hand-made host facts:
// method x interface x namespace, what is already in place, kernel or
// userspace decapsulation, the return path, and the refusals.
import { describe, expect, it } from 'vitest';

import { formatCommand, sysctlName, sysctlPathOfPrinted } from '../../lib/realserver/commands.js';
import { validateUpOptions } from '../../lib/realserver/options.js';
import { type HostFacts, defaultReturnTable, planDown, planUp, sysctlPathsFor, tunnelDeviceName } from '../../lib/realserver/plan.js';
import type { RealServerState } from '../../lib/realserver/state.js';
import type { LinkInfo } from '../../lib/realserver/system.js';

const vip = '198.18.100.1';
const device = 'l4lbc6126401';
const table = defaultReturnTable(vip);

function link(name: string, extra: Partial<LinkInfo> = {}): LinkInfo {
  return { name, up: true, lowerUp: true, mtu: 1500, noArp: false, loopback: false, linkType: 'ether', addresses: [], ...extra };
}

/** A fresh host: lo and eth0 (the default route's), every sysctl at the kernel default. */
function freshFacts(extra: Partial<HostFacts> = {}): HostFacts {
  const sysctls: Record<string, string> = {};
  for (const d of ['all', 'default', 'lo', 'eth0', 'eth1']) {
    for (const s of ['arp_ignore', 'arp_announce', 'rp_filter']) sysctls[`net/ipv4/conf/${d}/${s}`] = '0';
  }
  return {
    links: [link('lo', { loopback: true, linkType: 'loopback', mtu: 65536, addresses: ['127.0.0.1/8'] }), link('eth0', { addresses: ['198.18.0.2/24'] }), link('eth1')],
    sysctls,
    rules: [],
    returnRoutes: [],
    defaultInterface: 'eth0',
    kernelTunnels: { ipip: false, gre: false },
    decapsulatorRunning: false,
    ...extra,
  };
}

function commands(options: Record<string, unknown>, facts = freshFacts(), state?: RealServerState): string[] {
  return planUp(validateUpOptions(options), facts, state).steps.map((s) => formatCommand(s.argv));
}

// `ip` and `sysctl` for a namespace or the host.
function ipIn(netns: string | undefined): (args: string) => string {
  return (args) => (netns ? `ip -n ${netns} ${args}` : `ip ${args}`);
}
function sysctlIn(netns: string | undefined): (setting: string) => string {
  return (setting) => (netns ? `ip netns exec ${netns} sysctl -w ${setting}` : `sysctl -w ${setting}`);
}

describe('real-server plans', () => {
  describe.each([
    ['on the host, default-route interface', undefined, undefined, 'eth0'],
    ['on the host, named interface', undefined, 'eth1', 'eth1'],
    ['in a namespace, default-route interface', 'rs1', undefined, 'eth0'],
    ['in a namespace, named interface', 'rs1', 'eth1', 'eth1'],
  ])('%s', (_what, netns, iface, arpDevice) => {
    const ip = ipIn(netns);
    const sysctl = sysctlIn(netns);
    const base = { vip, ...(netns ? { netns } : {}), ...(iface ? { interface: iface } : {}) };
    const common = [
      ip(`address add ${vip}/32 dev lo`),
      sysctl('net.ipv4.conf.all.arp_ignore=1'),
      sysctl('net.ipv4.conf.lo.arp_ignore=1'),
      sysctl(`net.ipv4.conf.${arpDevice}.arp_ignore=1`),
      sysctl('net.ipv4.conf.all.arp_announce=2'),
      sysctl('net.ipv4.conf.lo.arp_announce=2'),
      sysctl(`net.ipv4.conf.${arpDevice}.arp_announce=2`),
    ];
    const decapsulator = (method: string, extra = '') =>
      `l4lb realserver decapsulate --vip ${vip} --method ${method} --device ${device}${netns ? ` --netns ${netns}` : ''}${extra}`;

    it('dr: VIP on lo and ARP suppression', () => {
      expect(commands({ ...base, method: 'dr' })).toEqual(common);
    });

    it('ipip, userspace: TUN device with the VIP and the decapsulator', () => {
      expect(commands({ ...base, method: 'ipip' })).toEqual([
        ...common,
        ip(`tuntap add dev ${device} mode tun`),
        ip(`link set dev ${device} mtu 1480`),
        ip(`address add ${vip}/32 dev ${device}`),
        ip(`link set dev ${device} up`),
        decapsulator('ipip'),
      ]);
    });

    it('gre with a key, userspace: MTU leaves room for the key', () => {
      expect(commands({ ...base, method: 'gre', greKey: 42 })).toEqual([
        ...common,
        ip(`tuntap add dev ${device} mode tun`),
        ip(`link set dev ${device} mtu 1472`),
        ip(`address add ${vip}/32 dev ${device}`),
        ip(`link set dev ${device} up`),
        decapsulator('gre', ' --gre-key 42'),
      ]);
    });

    it('gre returning through the tunnel: policy rule and return table into the TUN device', () => {
      const facts = freshFacts({ balancerRoute: { dst: '198.18.0.1', dev: 'eth0', prefsrc: '198.18.0.2' } });
      expect(commands({ ...base, method: 'gre', returnThroughTunnel: { balancer: '198.18.0.1', greKey: 9 } }, facts)).toEqual([
        ...common,
        ip(`tuntap add dev ${device} mode tun`),
        ip(`link set dev ${device} mtu 1472`),
        ip(`address add ${vip}/32 dev ${device}`),
        ip(`link set dev ${device} up`),
        ip(`rule add priority 1000 from ${vip} lookup ${table}`),
        ip(`route add default dev ${device} table ${table}`),
        decapsulator('gre', ' --return-to 198.18.0.1 --return-source 198.18.0.2 --return-gre-key 9'),
      ]);
    });
  });

  it('names the device and table after the VIP', () => {
    expect(tunnelDeviceName('198.18.100.1')).toBe('l4lbc6126401');
    expect(tunnelDeviceName('10.0.0.1')).toBe('l4lb0a000001');
    expect(defaultReturnTable('198.18.100.1')).toBe(0x4c346401);
  });

  it('changes nothing on a host where everything is in place, and says what it found', () => {
    const facts = freshFacts({
      links: [
        link('lo', { loopback: true, addresses: ['127.0.0.1/8', `${vip}/32`] }),
        link('eth0', { addresses: ['198.18.0.2/24'] }),
        link(device, { linkType: 'none', noArp: true, mtu: 1476, addresses: [`${vip}/32`] }),
      ],
      decapsulatorRunning: true,
    });
    for (const d of ['all', 'lo', 'eth0']) {
      facts.sysctls[`net/ipv4/conf/${d}/arp_ignore`] = '1';
      facts.sysctls[`net/ipv4/conf/${d}/arp_announce`] = '2';
    }
    const state: RealServerState = {
      version: 2, vip, method: 'gre', namespace: { inode: 4026532001, cookie: '7', names: [] }, decapsulation: 'userspace', changes: [{ kind: 'link-add', device }], updatedAt: '',
    };
    const plan = planUp(validateUpOptions({ vip, method: 'gre' }), facts, state);
    expect(plan.steps).toEqual([]);
    expect(plan.inPlace).toEqual([
      `${vip}/32 on lo`,
      'net.ipv4.conf.all.arp_ignore = 1',
      'net.ipv4.conf.lo.arp_ignore = 1',
      'net.ipv4.conf.eth0.arp_ignore = 1',
      'net.ipv4.conf.all.arp_announce = 2',
      'net.ipv4.conf.lo.arp_announce = 2',
      'net.ipv4.conf.eth0.arp_announce = 2',
      `TUN device ${device}`,
      `${device} mtu 1476`,
      `${vip}/32 on ${device}`,
      `net.ipv4.conf.${device}.rp_filter = 0`,
      `${device} up`,
      `userspace decapsulator on ${device}`,
    ]);
  });

  it('keeps a stricter arp_ignore (2) and sets only what differs', () => {
    const facts = freshFacts();
    facts.sysctls['net/ipv4/conf/all/arp_ignore'] = '2';
    facts.sysctls['net/ipv4/conf/lo/arp_announce'] = '2';
    expect(commands({ vip, method: 'dr' }, facts)).toEqual([
      `ip address add ${vip}/32 dev lo`,
      'sysctl -w net.ipv4.conf.lo.arp_ignore=1',
      'sysctl -w net.ipv4.conf.eth0.arp_ignore=1',
      'sysctl -w net.ipv4.conf.all.arp_announce=2',
      'sysctl -w net.ipv4.conf.eth0.arp_announce=2',
    ]);
  });

  it.each([
    ['all strict, default off', '1', '0', true],
    ['all off, default strict', '0', '1', true],
    ['all loose', '2', '0', false],
    ['both off', '0', '0', false],
  ])('relaxes rp_filter on the TUN device only when it would be strict: %s', (_what, all, dflt, relaxed) => {
    const facts = freshFacts();
    facts.sysctls['net/ipv4/conf/all/rp_filter'] = all;
    facts.sysctls['net/ipv4/conf/default/rp_filter'] = dflt;
    const planned = commands({ vip, method: 'ipip' }, facts);
    expect(planned.includes(`sysctl -w net.ipv4.conf.${device}.rp_filter=2`)).toBe(relaxed);
    if (relaxed) expect(planned.indexOf(`sysctl -w net.ipv4.conf.${device}.rp_filter=2`)).toBe(planned.indexOf(`ip address add ${vip}/32 dev ${device}`) + 1);
  });

  it('uses the slash form of sysctl names for interfaces with dots', () => {
    const facts = freshFacts({ links: [link('lo', { loopback: true }), link('eth0.100')], defaultInterface: 'eth0.100' });
    facts.sysctls['net/ipv4/conf/eth0.100/arp_ignore'] = '0';
    facts.sysctls['net/ipv4/conf/eth0.100/arp_announce'] = '0';
    const planned = commands({ vip, method: 'dr' }, facts);
    expect(planned).toContain('sysctl -w net/ipv4/conf/eth0.100/arp_ignore=1');
    expect(sysctlName('net/ipv4/conf/eth0.100/rp_filter')).toBe('net/ipv4/conf/eth0.100/rp_filter');
    expect(sysctlName('net/ipv4/conf/all/rp_filter')).toBe('net.ipv4.conf.all.rp_filter');
    expect(sysctlPathOfPrinted('net.ipv4.conf.eth0/100.rp_filter')).toBe('net/ipv4/conf/eth0.100/rp_filter');
  });

  it('reads the sysctls it may change, for the interface it will use', () => {
    const paths = sysctlPathsFor(validateUpOptions({ vip, method: 'gre', interface: 'eth1' }), { kernelTunnels: {} });
    expect(paths).toEqual([
      'net/ipv4/conf/all/arp_ignore', 'net/ipv4/conf/all/arp_announce',
      'net/ipv4/conf/lo/arp_ignore', 'net/ipv4/conf/lo/arp_announce',
      'net/ipv4/conf/eth1/arp_ignore', 'net/ipv4/conf/eth1/arp_announce',
      'net/ipv4/conf/all/rp_filter', 'net/ipv4/conf/default/rp_filter',
      `net/ipv4/conf/${device}/rp_filter`, 'net/ipv4/conf/gre0/rp_filter',
    ]);
  });

  describe('with the kernel modules', () => {
    const kernel = (extraLinks: LinkInfo[] = []) =>
      freshFacts({
        kernelTunnels: { ipip: true, gre: true },
        links: [...freshFacts().links, ...extraLinks],
        balancerRoute: { dst: '198.18.0.1', dev: 'eth0', prefsrc: '198.18.0.2' },
      });
    const arp = commands({ vip, method: 'dr' });

    it('ipip: the VIP on tunl0, brought up', () => {
      const facts = kernel([link('tunl0', { up: false, noArp: true, linkType: 'ipip' })]);
      expect(commands({ vip, method: 'ipip' }, facts)).toEqual([...arp, 'ip link set dev tunl0 up', `ip address add ${vip}/32 dev tunl0`]);
    });

    it('gre without a key: gre0', () => {
      const facts = kernel([link('gre0', { up: true, noArp: true, linkType: 'gre' })]);
      expect(commands({ vip, method: 'gre' }, facts)).toEqual([...arp, `ip address add ${vip}/32 dev gre0`]);
    });

    it('gre with a key returning through the tunnel: one gre device toward the balancer', () => {
      expect(commands({ vip, method: 'gre', greKey: 5, returnThroughTunnel: { balancer: '198.18.0.1' } }, kernel())).toEqual([
        ...arp,
        `ip link add name ${device} type gre remote 198.18.0.1 local 198.18.0.2 key 5`,
        `ip address add ${vip}/32 dev ${device}`,
        `ip link set dev ${device} up`,
        `ip rule add priority 1000 from ${vip} lookup ${table}`,
        `ip route add default dev ${device} table ${table}`,
      ]);
    });

    it('ipip returning through gre: tunl0 receives, a gre device returns', () => {
      const facts = kernel([link('tunl0', { up: true, noArp: true, linkType: 'ipip' })]);
      expect(commands({ vip, method: 'ipip', returnThroughTunnel: { balancer: '198.18.0.1', greKey: 3 } }, facts)).toEqual([
        ...arp,
        `ip address add ${vip}/32 dev tunl0`,
        `ip link add name ${device} type gre remote 198.18.0.1 local 198.18.0.2 okey 3`,
        `ip link set dev ${device} up`,
        `ip rule add priority 1000 from ${vip} lookup ${table}`,
        `ip route add default dev ${device} table ${table}`,
      ]);
    });

    it("'userspace' wins over the kernel when asked for", () => {
      expect(planUp(validateUpOptions({ vip, method: 'gre', decapsulation: 'userspace' }), kernel()).decapsulation).toBe('userspace');
    });
  });

  it.each([
    [
      'a device of that name l4lb did not create',
      { vip, method: 'gre' },
      freshFacts({ links: [...freshFacts().links, link(device)] }),
      'EDEVICE_IN_USE',
      `device ${device} exists but this VIP's record does not say l4lb created it; remove it (ip link del ${device}) or run down first`,
    ],
    [
      'a return table holding other routes',
      { vip, method: 'gre', returnThroughTunnel: { balancer: '198.18.0.1' } },
      freshFacts({ balancerRoute: { dst: '198.18.0.1', dev: 'eth0' }, returnRoutes: [{ dst: '10.0.0.0/8', dev: 'eth0' }] }),
      'ETABLE_IN_USE',
      `returnThroughTunnel.table: routing table ${table} already holds other routes (10.0.0.0/8 dev eth0); choose another table`,
    ],
    [
      'no route to the balancer',
      { vip, method: 'ipip', returnThroughTunnel: { balancer: '198.18.0.1' } },
      freshFacts(),
      'ENO_ROUTE',
      'returnThroughTunnel.balancer: no route to 198.18.0.1; the tunnelled replies could not reach it',
    ],
    [
      'the VIP on an interface that answers ARP',
      { vip, method: 'dr' },
      freshFacts({ links: [link('lo', { loopback: true }), link('eth0', { addresses: [`${vip}/24`] })] }),
      'EVIP_ON_INTERFACE',
      `vip: ${vip} is configured on eth0, where this host would answer ARP for it and draw the balancer's traffic; remove it there first`,
    ],
    [
      "'kernel' without the module",
      { vip, method: 'ipip', decapsulation: 'kernel' },
      freshFacts(),
      'ENO_KERNEL_TUNNEL',
      "decapsulation: the kernel has no ipip support (ip link add ... type ipip: Unknown device type); use 'auto' or 'userspace'",
    ],
    [
      'an interface that does not exist',
      { vip, method: 'dr', interface: 'eth9', netns: 'rs1' },
      freshFacts(),
      'ENO_INTERFACE',
      'interface: "eth9" does not exist in namespace rs1',
    ],
  ])('refuses %s', (_what, options, facts, code, message) => {
    expect(() => planUp(validateUpOptions(options), facts)).toThrow(expect.objectContaining({ code, message }));
  });
});

describe('real-server undo plans', () => {
  const state: RealServerState = {
    version: 2,
    vip,
    method: 'gre',
    namespace: { inode: 4026532001, cookie: '7', names: ['rs1'] },
    netns: 'rs1',
    decapsulation: 'userspace',
    changes: [
      { kind: 'address', address: `${vip}/32`, device: 'lo' },
      { kind: 'sysctl', path: 'net/ipv4/conf/all/arp_ignore', previous: '0', value: '1' },
      { kind: 'sysctl', path: 'net/ipv4/conf/eth0/arp_announce', previous: '1', value: '2' },
      { kind: 'link-add', device },
      { kind: 'link-set', device, setting: 'mtu' },
      { kind: 'address', address: `${vip}/32`, device },
      { kind: 'sysctl', path: `net/ipv4/conf/${device}/rp_filter`, previous: '0', value: '2', device },
      { kind: 'link-set', device, setting: 'up' },
      { kind: 'rule', priority: 1000, from: vip, table },
      { kind: 'route', table, destination: 'default', device },
      { kind: 'decapsulator', device, pid: 4242 },
    ],
    updatedAt: '',
  };
  const now = {
    links: [link('lo', { loopback: true, addresses: ['127.0.0.1/8', `${vip}/32`] }), link('eth0'), link(device, { addresses: [`${vip}/32`] })],
    sysctls: { 'net/ipv4/conf/all/arp_ignore': '1', 'net/ipv4/conf/eth0/arp_announce': '2', [`net/ipv4/conf/${device}/rp_filter`]: '2' },
    rules: [{ priority: 1000, src: vip, table: String(table) }],
    decapsulator: 'other-process' as const,
  };

  it('undoes newest first, skipping what goes away with the device', () => {
    const plan = planDown(state, now, 'rs1');
    expect(plan.steps.map((s) => formatCommand(s.argv))).toEqual([
      'kill -TERM 4242',
      `ip -n rs1 rule del priority 1000 from ${vip} lookup ${table}`,
      `ip -n rs1 link del dev ${device}`,
      'ip netns exec rs1 sysctl -w net.ipv4.conf.eth0.arp_announce=1',
      'ip netns exec rs1 sysctl -w net.ipv4.conf.all.arp_ignore=0',
      `ip -n rs1 address del ${vip}/32 dev lo`,
    ]);
    expect(plan.steps[0]!.internal).toBe(true);
    expect(plan.leftAlone).toEqual([]);
  });

  it('addresses the namespace as the caller does: a record made with --netns is undone from inside it (ip netns exec)', () => {
    const plan = planDown(state, now, undefined);
    expect(plan.steps.map((s) => formatCommand(s.argv))).toEqual([
      'kill -TERM 4242',
      `ip rule del priority 1000 from ${vip} lookup ${table}`,
      `ip link del dev ${device}`,
      'sysctl -w net.ipv4.conf.eth0.arp_announce=1',
      'sysctl -w net.ipv4.conf.all.arp_ignore=0',
      `ip address del ${vip}/32 dev lo`,
    ]);
  });

  it('leaves alone what someone changed since, and what is already gone', () => {
    const plan = planDown(state, {
      ...now,
      links: [link('lo', { loopback: true }), link('eth0')],
      sysctls: { 'net/ipv4/conf/all/arp_ignore': '2', 'net/ipv4/conf/eth0/arp_announce': '2' },
      rules: [],
      decapsulator: 'gone',
    }, 'rs1');
    expect(plan.steps.map((s) => formatCommand(s.argv))).toEqual(['ip netns exec rs1 sysctl -w net.ipv4.conf.eth0.arp_announce=1']);
    expect(plan.leftAlone).toEqual([
      'decapsulator (process 4242) is no longer running',
      `rule 1000 from ${vip} lookup ${table} is already gone`,
      `${device} is already gone`,
      'net.ipv4.conf.all.arp_ignore is 2 now, not the 1 up set: left as it is',
      `${vip}/32 is no longer on lo`,
    ]);
  });

  it('brings a pre-existing device back down and stops a decapsulator of this process without a kill', () => {
    const plan = planDown(
      { ...state, changes: [{ kind: 'link-up', device: 'tunl0' }, { kind: 'decapsulator', device, pid: process.pid }] },
      { ...now, links: [link('tunl0')], decapsulator: 'this-process' },
      'rs1',
    );
    expect(plan.steps.map((s) => s.shell ?? formatCommand(s.argv))).toEqual([
      `# stop the decapsulator running in this process (${process.pid})`,
      'ip -n rs1 link set dev tunl0 down',
    ]);
  });
});
