// The ipvsadm-style tables of `l4lb status`, `l4lb stats` and `--rate`,
// against fixed statistics: exact text.
import { describe, expect, it } from 'vitest';

import { formatRates, formatStats, formatStatus, human, rate, type StatusService } from '../../lib/cli/format.js';
import type { BackendStats, LoadBalancerRates, LoadBalancerStats } from '../../lib/config/types.js';

function backend(address: string, port: number, values: Partial<BackendStats> = {}): BackendStats {
  const packets = values.packets ?? 0;
  const bytes = values.bytes ?? 0;
  // In and Out: three fifths of the packets in, unless the test says otherwise.
  const inPackets = values.inPackets ?? Math.round((packets * 3) / 5);
  const inBytes = values.inBytes ?? Math.round((bytes * 3) / 5);
  return {
    address, port, state: 'up', weight: 1, effectiveWeight: 1, nextHopResolved: true, packets, bytes,
    inPackets, outPackets: packets - inPackets, inBytes, outBytes: bytes - inBytes, activeFlows: 0, totalFlows: 0, ...values,
  };
}

const stats: LoadBalancerStats & { services: StatusService[] } = {
  generation: 7,
  packets: 123_456,
  bytes: 98_765_432,
  services: [
    {
      address: '198.18.0.100',
      port: 80,
      protocol: 'tcp',
      method: 'nat',
      scheduler: 'wrr',
      state: 'up',
      packets: 1500,
      bytes: 120_000,
      inPackets: 900,
      outPackets: 600,
      inBytes: 72_000,
      outBytes: 48_000,
      activeFlows: 3,
      totalFlows: 12,
      backends: [
        backend('198.18.1.2', 8080, { packets: 1000, bytes: 80_000, activeFlows: 2, totalFlows: 8 }),
        backend('198.18.1.3', 8080, { weight: 5, effectiveWeight: 2, packets: 500, bytes: 40_000, activeFlows: 1, totalFlows: 4 }),
        backend('198.18.1.4', 8080, { weight: 0, effectiveWeight: 0 }),
      ],
    },
    {
      address: '198.18.0.100',
      port: 53,
      protocol: 'udp',
      method: 'dr',
      scheduler: 'sh',
      state: 'down',
      persistenceTimeoutMs: 300_000,
      packets: 2_500_000,
      bytes: 1_234_567_890,
      inPackets: 2_500_000,
      outPackets: 0,
      inBytes: 1_234_567_890,
      outBytes: 0,
      activeFlows: 0,
      totalFlows: 150_000,
      backends: [
        backend('198.18.1.20', 53, {
          state: 'down', nextHopResolved: false, packets: 2_500_000, bytes: 1_234_567_890, inPackets: 2_500_000, inBytes: 1_234_567_890, totalFlows: 150_000,
        }),
      ],
    },
  ],
  drops: { 'no-backend': 4, truncated: 0, 'bad-checksum': 2 },
  workers: [
    { packets: 0, bytes: 0, busyNsPerPacket: 0, configGeneration: 7, counters: {} },
    { packets: 0, bytes: 0, busyNsPerPacket: 0, configGeneration: 7, counters: {} },
  ],
  repliesIngressPath: 42,
  repliesRouteDiffers: 1,
  flows: { active: 3, capacity: 4096, memoryBytes: 332_480, slots: 9104, counters: {} },
  interfaces: [
    { name: 'eth1', rxPackets: 61_728, rxBytes: 49_382_716, txPackets: 1200, txBytes: 96_000, txDropped: 0, kernelDrops: 3, mode: 'tpacket_v2' },
    { name: 'eth2', rxPackets: 61_728, rxBytes: 49_382_716, txPackets: 2_501_500, txBytes: 123_456_789_012, txDropped: 5, kernelDrops: 0, mode: 'tpacket_v2' },
  ],
  counters: {},
  flowEvents: { enabled: false, events: 0, dropped: 0 },
};

const rates: LoadBalancerRates = {
  windowMs: 10_000,
  packetsPerSec: 250.4,
  bytesPerSec: 150_000,
  dropsPerSec: { 'no-backend': 0.4, truncated: 0 },
  services: [
    {
      address: '198.18.0.100',
      port: 80,
      protocol: 'tcp',
      packetsPerSec: 250.4,
      bytesPerSec: 150_000,
      flowsPerSec: 2.5,
      backends: [
        { address: '198.18.1.2', port: 8080, packetsPerSec: 200, bytesPerSec: 120_000, flowsPerSec: 2 },
        { address: '198.18.1.3', port: 8080, packetsPerSec: 50.4, bytesPerSec: 30_000, flowsPerSec: 0.5 },
      ],
    },
  ],
};

const lines = (...text: string[]) => text.join('\n') + '\n';

describe('formatStatus (ipvsadm -L -n)', () => {
  it('services, backends, forward method, weights, connections and states', () => {
    expect(formatStatus(stats)).toBe(
      lines(
        'Generation 7, workers 2, flows 3/4096',
        'Prot LocalAddress:Port Scheduler Flags',
        '  -> RemoteAddress:Port           Forward Weight ActiveConn TotalConn  State',
        'TCP  198.18.0.100:80 wrr',
        '  -> 198.18.1.2:8080              Masq    1      2          8          up',
        '  -> 198.18.1.3:8080              Masq    5      1          4          up (slow start at weight 2)',
        '  -> 198.18.1.4:8080              Masq    0      0          0          up (draining)',
        'UDP  198.18.0.100:53 sh persistent 300s DOWN',
        '  -> 198.18.1.20:53               Route   1      0          150000     down (next hop unresolved)',
      ),
    );
  });

  it('with the instance: pid, file, reloads and a rejected reload', () => {
    const text = formatStatus(stats, {
      pid: 100,
      file: '/etc/l4lb.yaml',
      startedAt: '2025-01-01T00:00:00.000Z',
      reloads: 2,
      lastReload: { at: '2025-01-01T00:01:00.000Z', ok: false, message: 'l4lb.yaml:3: services[0].port: must be an integer from 1 to 65535, got 0' },
    });
    expect(text.split('\n').slice(0, 3)).toEqual([
      'l4lb pid 100, config /etc/l4lb.yaml, reloads 2',
      'Last reload rejected: l4lb.yaml:3: services[0].port: must be an integer from 1 to 65535, got 0',
      'Generation 7, workers 2, flows 3/4096',
    ]);
  });

  it('no services: the headers only', () => {
    expect(formatStatus({ ...stats, services: [] })).toBe(
      lines(
        'Generation 7, workers 2, flows 3/4096',
        'Prot LocalAddress:Port Scheduler Flags',
        '  -> RemoteAddress:Port           Forward Weight ActiveConn TotalConn  State',
      ),
    );
  });
});

describe('formatStats (ipvsadm -L -n --stats)', () => {
  it('totals with large numbers shortened', () => {
    expect(formatStats(stats)).toBe(
      lines(
        'Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes',
        '  -> RemoteAddress:Port',
        'TCP  198.18.0.100:80                    12      900      600    72000    48000',
        '  -> 198.18.1.2:8080                     8      600      400    48000    32000',
        '  -> 198.18.1.3:8080                     4      300      200    24000    16000',
        '  -> 198.18.1.4:8080                     0        0        0        0        0',
        'UDP  198.18.0.100:53                150000  2500000        0    1234M        0',
        '  -> 198.18.1.20:53                 150000  2500000        0    1234M        0',
        'Interface          RxPkts  RxBytes   TxPkts  TxBytes   TxDrop KernDrop',
        'eth1                61728 49382716     1200    96000        0        3',
        'eth2                61728 49382716  2501500     123G        5        0',
        'Received: 123456 packets, 98765432 bytes',
        'Drops: bad-checksum 2, no-backend 4',
        "Replies on their flow's ingress path: 42 (routing would have chosen another port for 1)",
      ),
    );
  });

  it('--exact prints every digit', () => {
    expect(formatStats(stats, { exact: true }).split('\n')[6]).toBe('UDP  198.18.0.100:53                150000  2500000        0 1234567890        0');
  });

  it('no drops', () => {
    expect(formatStats({ ...stats, drops: { truncated: 0 } }).split('\n')[12]).toBe('Drops: none');
  });
});

describe('formatRates (ipvsadm -L -n --rate)', () => {
  it('per-second rates, one decimal below 10', () => {
    expect(formatRates(rates)).toBe(
      lines(
        'Rates per second over the last 10.0 s',
        'Prot LocalAddress:Port                 CPS      PPS      BPS',
        '  -> RemoteAddress:Port',
        'TCP  198.18.0.100:80                   2.5      250   150000',
        '  -> 198.18.1.2:8080                   2.0      200   120000',
        '  -> 198.18.1.3:8080                   0.5       50    30000',
        'Received: 250 packets/s, 150000 bytes/s',
        'Drops/s: no-backend 0.4',
      ),
    );
  });
});

describe('numbers', () => {
  it.each([
    [0, '0'],
    [99_999_999, '99999999'],
    [100_000_000, '100000K'],
    [999_999_999, '999999K'],
    [1_000_000_000, '1000M'],
    [123_456_789_012, '123G'],
    [123_456_789_012_345, '123T'],
  ])('human(%d) = %s', (value, text) => {
    expect(human(value)).toBe(text);
  });

  it.each([
    [0, '0'],
    [0.04, '0.0'],
    [9.94, '9.9'],
    [10, '10'],
    [150.6, '151'],
  ])('rate(%d) = %s', (value, text) => {
    expect(rate(value)).toBe(text);
  });
});
