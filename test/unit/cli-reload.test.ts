// The reload difference: old file + new file -> the operations, and the
// files a running instance refuses to switch to.
import { describe, expect, it } from 'vitest';

import { parseConfig } from '../../lib/cli/config-file.js';
import { canonical, describeOperation, firstDifference, planReload, ReloadRefusedError } from '../../lib/cli/reload.js';

const balancer = 'balancer: { interfaces: [eth0, eth1], workers: 1 }\n';

/** A file from a balancer line and service lines. */
function file(services: string, head = balancer, name = 'next.yaml') {
  return parseConfig(`${head}services:\n${services}`, name);
}

const web = (backends: string, extra = '') => `  - address: 198.18.0.100\n    port: 80${extra}\n    backends: [${backends}]\n`;
const dns = (backends: string) => `  - address: 198.18.0.100\n    port: 53\n    protocol: udp\n    backends: [${backends}]\n`;
const a = '{ address: 198.18.1.2, port: 8080 }';
const b = '{ address: 198.18.1.3, port: 8080 }';
const c = '{ address: 198.18.1.4, port: 8080 }';

describe('planReload: the difference, as operations', () => {
  const cases: Array<[string, string, string, string[]]> = [
    ['nothing changed', web(`${a}, ${b}`), web(`${a}, ${b}`), []],
    ['only the order of backends changed', web(`${a}, ${b}`), web(`${b}, ${a}`), []],
    ['a default written out', web(a), web(a, '\n    protocol: tcp\n    method: nat\n    scheduler: wrr'), []],
    ['a backend added', web(a), web(`${a}, ${b}`), ['add backend 198.18.1.3:8080 to 198.18.0.100:80/tcp (weight 1)']],
    ['a backend removed', web(`${a}, ${b}`), web(b), ['remove backend 198.18.1.2:8080 from 198.18.0.100:80/tcp (its flows end)']],
    [
      'a weight changed',
      web(`${a}, ${b}`),
      web(`${a}, { address: 198.18.1.3, port: 8080, weight: 5 }`),
      ['set weight of 198.18.1.3:8080 in 198.18.0.100:80/tcp from 1 to 5'],
    ],
    [
      'drained (weight 0)',
      web(a),
      web('{ address: 198.18.1.2, port: 8080, weight: 0 }'),
      ['set weight of 198.18.1.2:8080 in 198.18.0.100:80/tcp from 1 to 0'],
    ],
    [
      'a backend port changed: another backend',
      web(a),
      web('{ address: 198.18.1.2, port: 8081 }'),
      ['remove backend 198.18.1.2:8080 from 198.18.0.100:80/tcp (its flows end)', 'add backend 198.18.1.2:8081 to 198.18.0.100:80/tcp (weight 1)'],
    ],
    ['a service added', web(a), web(a) + dns(c), ['add service 198.18.0.100:53/udp with 1 backend']],
    ['a service removed', web(a) + dns(c), web(a), ['remove service 198.18.0.100:53/udp (its flows end)']],
    [
      'a service option changed: replaced',
      web(`${a}, ${b}`),
      web(`${a}, ${b}`, '\n    scheduler: maglev'),
      ['replace service 198.18.0.100:80/tcp (scheduler changed; its established flows are reset)'],
    ],
    [
      'health check and persistence changed: one replacement naming both',
      web(a),
      web(a, '\n    healthCheck: { type: tcp, intervalMs: 500 }\n    persistence: { timeoutMs: 1000 }'),
      ['replace service 198.18.0.100:80/tcp (healthCheck, persistenceTimeoutMs changed; its established flows are reset)'],
    ],
    [
      'a regular expression changed',
      web(a, '\n    healthCheck: { type: http, expectBody: "^ok" }'),
      web(a, '\n    healthCheck: { type: http, expectBody: "^OK" }'),
      ['replace service 198.18.0.100:80/tcp (healthCheck changed; its established flows are reset)'],
    ],
    [
      'the same VIP and port on another protocol is another service',
      web(a),
      `  - address: 198.18.0.100\n    port: 80\n    protocol: udp\n    backends: [${a}]\n`,
      ['remove service 198.18.0.100:80/tcp (its flows end)', 'add service 198.18.0.100:80/udp with 1 backend'],
    ],
    [
      'everything at once, in order: removals, replacements, additions, weights',
      web(`${a}, ${b}`) + dns(c),
      web(`{ address: 198.18.1.2, port: 8080, weight: 2 }, ${c}`) + `  - address: 198.18.0.101\n    port: 443\n    backends: [${a}]\n`,
      [
        'remove service 198.18.0.100:53/udp (its flows end)',
        'remove backend 198.18.1.3:8080 from 198.18.0.100:80/tcp (its flows end)',
        'add backend 198.18.1.4:8080 to 198.18.0.100:80/tcp (weight 1)',
        'add service 198.18.0.101:443/tcp with 1 backend',
        'set weight of 198.18.1.2:8080 in 198.18.0.100:80/tcp from 1 to 2',
      ],
    ],
  ];
  it.each(cases)('%s', (_name, before, after, expected) => {
    expect(planReload(file(before, balancer, 'current.yaml'), file(after)).map(describeOperation)).toEqual(expected);
  });

  it('operations carry the place in the new file', () => {
    const operations = planReload(file(web(a)), file(web(`{ address: 198.18.1.2, port: 8080, weight: 3 }, ${b}`)));
    expect(operations.map((o) => ('path' in o ? o.path : undefined))).toEqual(['services[0].backends[1]', 'services[0].backends[0].weight']);
  });

  it('from nothing: every service is added (start-up uses the same path)', () => {
    const empty = parseConfig(`${balancer}services:\n`, 'current.yaml');
    expect(empty.services).toEqual([]);
    expect(planReload(empty, file(web(a) + dns(c))).map(describeOperation)).toEqual([
      'add service 198.18.0.100:80/tcp with 1 backend',
      'add service 198.18.0.100:53/udp with 1 backend',
    ]);
  });
});

describe('planReload: what a running instance cannot change', () => {
  const refused = (current: ReturnType<typeof file>, next: ReturnType<typeof file>, fixed = {}) => {
    try {
      planReload(current, next, fixed);
    } catch (error) {
      expect(error).toBeInstanceOf(ReloadRefusedError);
      return (error as ReloadRefusedError).message;
    }
    return 'accepted';
  };

  it.each([
    ['workers', 'balancer: { interfaces: [eth0, eth1], workers: 2 }\n', 'next.yaml:1: balancer.workers: cannot change while l4lb runs (1 -> 2); the balancer section applies at start: restart l4lb to use it'],
    ['interfaces', 'balancer: { interfaces: [eth0], workers: 1 }\n', 'next.yaml:1: balancer.interfaces: cannot change while l4lb runs (["eth0","eth1"] -> ["eth0"]); the balancer section applies at start: restart l4lb to use it'],
    [
      'a nested setting',
      'balancer: { interfaces: [eth0, eth1], workers: 1, flows: { capacity: 1024 } }\n',
      'next.yaml:1: balancer.flows.capacity: cannot change while l4lb runs (262144 -> 1024); the balancer section applies at start: restart l4lb to use it',
    ],
    [
      'the hash key',
      'balancer: { interfaces: [eth0, eth1], workers: 1, hashKey: 000102030405060708090a0b0c0d0e0f }\n',
      'next.yaml:1: balancer.hashKey: cannot change while l4lb runs (unset -> "bytes:000102030405060708090a0b0c0d0e0f"); the balancer section applies at start: restart l4lb to use it',
    ],
  ])('balancer: %s', (_name, head, message) => {
    expect(refused(file(web(a)), file(web(a), head))).toBe(message);
  });

  it('writing out a balancer default is not a change', () => {
    expect(planReload(file(web(a)), file(web(a), 'balancer: { interfaces: [eth0, eth1], workers: 1, polling: adaptive, driver: af_packet }\n'))).toEqual([]);
  });

  it('control.socket and metrics, unless the command line fixed them', () => {
    const current = file(web(a));
    const moved = file(web(a), `${balancer}control: { socket: /run/other.sock }\nmetrics: 127.0.0.1:9100\n`);
    expect(refused(current, moved)).toBe(
      'next.yaml:2: control.socket: cannot change while l4lb runs (unset -> "/run/other.sock"); restart l4lb to move its control socket',
    );
    expect(refused(current, moved, { socketFromCommandLine: true })).toBe(
      'next.yaml:3: metrics: cannot change while l4lb runs (unset -> {"host":"127.0.0.1","port":9100}); restart l4lb to move its metrics listener',
    );
    expect(planReload(current, moved, { socketFromCommandLine: true, metricsFromCommandLine: true })).toEqual([]);
  });

  it('dashboard, unless the command line fixed it; the same address written otherwise is not a change', () => {
    const current = file(web(a), `${balancer}dashboard: 8080\n`);
    const moved = file(web(a), `${balancer}dashboard: 127.0.0.1:8081\n`);
    expect(refused(current, moved)).toBe(
      'next.yaml:2: dashboard: cannot change while l4lb runs ({"host":"127.0.0.1","port":8080} -> {"host":"127.0.0.1","port":8081}); restart l4lb to move its dashboard listener',
    );
    expect(planReload(current, moved, { dashboardFromCommandLine: true })).toEqual([]);
    expect(planReload(current, file(web(a), `${balancer}dashboard: "127.0.0.1:8080"\n`))).toEqual([]);
  });
});

describe('comparison helpers', () => {
  it('canonical ignores key order and compares RegExps and bytes by content', () => {
    expect(canonical({ b: 1, a: [/x/i, new Uint8Array([1, 2])] })).toBe(canonical({ a: [/x/i, Uint8Array.from([1, 2])], b: 1 }));
    expect(canonical(/x/)).not.toBe(canonical(/x/i));
  });

  it('firstDifference names the deepest differing path', () => {
    expect(firstDifference({ a: { b: [1, 2] } }, { a: { b: [1, 3] } }, 'root')).toBe('root.a.b[1]');
    expect(firstDifference({ a: [1] }, { a: [1, 2] }, 'root')).toBe('root.a');
    expect(firstDifference({ a: 1 }, { a: 1 }, 'root')).toBeUndefined();
  });
});
