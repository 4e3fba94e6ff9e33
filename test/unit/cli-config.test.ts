// The configuration file of `l4lb run`: good files parse into what the API
// takes; every bad file is refused with the file, line, path and rule.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import { ConfigFileError, loadConfig, parseConfig, pathSegments } from '../../lib/cli/config-file.js';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/cli/${name}`, import.meta.url));
const example = (name: string) => fileURLToPath(new URL(`../../examples/${name}`, import.meta.url));

const memoryBalancer = `balancer:
  interfaces: [in, out]
  driver: memory
  memory:
    interfaces:
      in: { mac: "02:00:00:00:00:01", addresses: [198.18.0.1/24] }
      out: { mac: "02:00:00:00:00:02", addresses: [198.18.1.1/24] }
`;
const eth0 = 'balancer: { interfaces: [eth0] }\n';

function refusal(text: string, file = 'l4lb.yaml'): { code: string; message: string; path: string | undefined; line: number | undefined } {
  try {
    parseConfig(text, file);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigFileError);
    const e = error as ConfigFileError;
    return { code: e.code, message: e.message, path: e.path, line: e.line };
  }
  throw new Error('the file was accepted');
}

describe('configuration files that are accepted', () => {
  it('examples/l4lb.yaml validates, with every service and backend', () => {
    const config = loadConfig(example('l4lb.yaml'));
    expect(config.services.map((s) => `${s.key} ${s.normalized.method} ${s.backends.length}`)).toEqual([
      '198.18.0.100:80/tcp nat 3',
      '198.18.0.100:53/udp dr 2',
      '198.18.0.101:443/tcp fullnat 2',
    ]);
    expect(config.controlSocket).toBe('/run/l4lb/l4lb.sock');
    expect(config.metrics).toEqual({ host: '127.0.0.1', port: 9100 });
    expect(config.dashboard).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(config.services[0]!.normalized.healthCheck.expectBody).toEqual(/^ok/);
    expect(config.services[1]!.backends.map((b) => b.key)).toEqual(['198.18.1.20:53', '198.18.1.21:53']);
  });

  it('dashboard: a port alone is on loopback; an address is taken as written', () => {
    expect(parseConfig(`${eth0}dashboard: 8080\n`, 'l4lb.yaml').dashboard).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parseConfig(`${eth0}dashboard: "8080"\n`, 'l4lb.yaml').dashboard).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parseConfig(`${eth0}dashboard: 0.0.0.0:8080\n`, 'l4lb.yaml').dashboard).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(parseConfig(`${eth0}dashboard: "[::1]:8080"\n`, 'l4lb.yaml').dashboard).toEqual({ host: '::1', port: 8080 });
    expect(parseConfig(eth0, 'l4lb.yaml').dashboard).toBeUndefined();
  });

  it('examples/l4lb-memory.yaml validates', () => {
    const config = loadConfig(example('l4lb-memory.yaml'));
    expect(config.normalizedBalancer.driver).toBe('memory');
    expect(config.services).toHaveLength(1);
  });

  it('reads JSON: a hex hashKey becomes 16 bytes, expectBody a RegExp', () => {
    const config = loadConfig(fixture('good.json'));
    expect([...config.normalizedBalancer.hashKey!]).toEqual(Array.from({ length: 16 }, (_, i) => i));
    const web = config.services[0]!;
    expect(web.options.healthCheck).toEqual({ type: 'http', path: '/healthz', expectBody: /^ok$/ });
    expect(web.backends.map((b) => [b.key, b.normalized.weight])).toEqual([
      ['198.18.1.2:8080', 1],
      ['198.18.1.3:8080', 3],
    ]);
  });

  it('balancer.driver takes dpdk with its dpdk options; dpdk options with another driver are refused', () => {
    const dpdk = parseConfig('balancer: { interfaces: [eth0], driver: dpdk, dpdk: { vdev: af_packet, eal: [-m, "1024"], ringSize: 512 } }\n', 'l4lb.yaml');
    expect(dpdk.normalizedBalancer).toMatchObject({ driver: 'dpdk', dpdk: { vdev: 'af_packet', eal: ['-m', '1024'], ringSize: 512 } });
    expect(() => parseConfig('balancer: { interfaces: [eth0], dpdk: { vdev: af_xdp } }\n', 'l4lb.yaml')).toThrow(/dpdk: applies only to driver 'dpdk'/);
  });

  it('balancer.driver takes af_xdp with its afXdp tuning; --driver (an override) replaces the file\'s driver', () => {
    const xdp = parseConfig('balancer: { interfaces: [eth0, eth1], driver: af_xdp, afXdp: { mode: native, ringSize: 4096 } }\n', 'l4lb.yaml');
    expect(xdp.normalizedBalancer).toMatchObject({ driver: 'af_xdp', afXdp: { mode: 'native', ringSize: 4096 } });
    expect(parseConfig(eth0, 'l4lb.yaml', { driver: 'af_xdp' }).normalizedBalancer.driver).toBe('af_xdp');
    expect(parseConfig(eth0, 'l4lb.yaml').normalizedBalancer.driver).toBe('af_packet');
    // The override is validated with the rest of the file.
    expect(() => parseConfig('balancer: { interfaces: [eth0], afPacket: { txMethod: ring } }\n', 'l4lb.yaml', { driver: 'af_xdp' })).toThrow(/afPacket: applies only to driver 'af_packet'/);
    expect(refusal('balancer: { interfaces: [eth0], driver: af_xdp, afXdp: { ringSize: 1000 } }\n')).toMatchObject({ code: 'EINVAL_RANGE', path: 'balancer.afXdp.ringSize' });
  });

  it('balancer.bgp: the route announcement, validated with the rest of the file', () => {
    const config = parseConfig('balancer:\n  interfaces: [eth0]\n  bgp:\n    localAs: 65001\n    neighbours: [{ address: 198.18.0.254, as: 65000 }]\n    communities: ["65001:80"]\n', 'l4lb.yaml');
    expect(config.normalizedBalancer.bgp).toMatchObject({ localAs: 65001, neighbours: [{ address: '198.18.0.254', as: 65000 }], communities: [[65001, 80]] });
    expect(refusal('balancer:\n  interfaces: [eth0]\n  bgp:\n    localAs: 65001\n    neighbours: [{ address: 198.18.0.254, as: 0 }]\n')).toMatchObject({
      code: 'EINVAL_RANGE',
      path: 'balancer.bgp.neighbours[0].as',
    });
  });

  it('fills in defaults: protocol tcp, method nat, backend port = service port', () => {
    const config = parseConfig(`${eth0}services:\n  - { address: 198.18.0.100, port: 80, backends: [{ address: 198.18.1.2 }] }\n`, 'x.yaml');
    expect(config.services[0]!.key).toBe('198.18.0.100:80/tcp');
    expect(config.services[0]!.normalized.method).toBe('nat');
    expect(config.services[0]!.backends[0]!.key).toBe('198.18.1.2:80');
  });

  it('a file without services is a balancer with nothing to balance', () => {
    expect(parseConfig(eth0, 'x.yaml').services).toEqual([]);
  });

  it('pathSegments splits paths as the messages write them', () => {
    expect(pathSegments('services[0].backends[12].weight')).toEqual(['services', 0, 'backends', 12, 'weight']);
  });
});

describe('configuration files that are refused, with file, line, path and rule', () => {
  const services = (text: string) => `${memoryBalancer}services:\n${text}`;
  const cases: Array<[string, string, string, string]> = [
    [
      'a weight out of range',
      services('  - address: 198.18.0.100\n    port: 80\n    backends:\n      - { address: 198.18.1.2 }\n      - { address: 198.18.1.3, weight: -1 }\n'),
      'EINVAL_RANGE',
      'l4lb.yaml:13: services[0].backends[1].weight: must be an integer from 0 to 65535, got -1',
    ],
    ['an unknown top-level key', `${memoryBalancer}servics: []\n`, 'EINVAL_UNKNOWN_FIELD', 'l4lb.yaml:8: servics: is not a setting of the file (known: balancer, services, control, metrics, dashboard)'],
    ['YAML syntax', services('  - address: [1\n'), 'EPARSE_CONFIG', 'l4lb.yaml:10: column 1: Flow sequence in block collection must be sufficiently indented and end with a ]'],
    ['a key written twice', services('  - address: 198.18.0.100\n    address: 198.18.0.101\n'), 'EPARSE_CONFIG', 'l4lb.yaml:10: column 5: Map keys must be unique'],
    ['port 0', services('  - { address: 198.18.0.100, port: 0 }\n'), 'EINVAL_RANGE', 'l4lb.yaml:9: services[0].port: must be an integer from 1 to 65535, got 0'],
    [
      'an IPv6 VIP',
      services('  - { address: "2001:db8::1", port: 80 }\n'),
      'EUNSUPPORTED',
      'l4lb.yaml:9: services[0].address: is an IPv6 address; this version balances IPv4 only, got "2001:db8::1"',
    ],
    [
      'fullnat without local addresses',
      services('  - { address: 198.18.0.100, port: 80, method: fullnat }\n'),
      'EINVAL_CONFLICT',
      "l4lb.yaml:9: services[0].method: 'fullnat' needs balancer.localAddresses (the source addresses toward backends)",
    ],
    [
      'a scheduler hook',
      services('  - { address: 198.18.0.100, port: 80, scheduler: { name: x } }\n'),
      'EINVAL_TYPE',
      'l4lb.yaml:9: services[0].scheduler: must be a scheduler name; scheduler hooks are functions and need the API',
    ],
    [
      'an unknown scheduler',
      services('  - { address: 198.18.0.100, port: 80, scheduler: fastest }\n'),
      'EINVAL_ENUM',
      `l4lb.yaml:9: services[0].scheduler: must be one of 'rr', 'wrr', 'lc', 'wlc', 'sh', 'maglev' or a scheduler hook, got "fastest"`,
    ],
    [
      'a broken regular expression',
      services('  - { address: 198.18.0.100, port: 80, healthCheck: { type: http, expectBody: "(" } }\n'),
      'EINVAL_REGEX',
      'l4lb.yaml:9: services[0].healthCheck.expectBody: is not a valid regular expression: Invalid regular expression: /(/: Unterminated group',
    ],
    [
      'a health check type that is not a name',
      services('  - { address: 198.18.0.100, port: 80, healthCheck: { type: 3 } }\n'),
      'EINVAL_ENUM',
      "l4lb.yaml:9: services[0].healthCheck.type: must be one of 'tcp', 'http', 'udp', 'none' (function checks need the API)",
    ],
    [
      'the same service twice',
      services('  - { address: 198.18.0.100, port: 80 }\n  - { address: 198.18.0.100, port: 80, protocol: tcp }\n'),
      'EDUPLICATE',
      'l4lb.yaml:10: services[1]: 198.18.0.100:80/tcp is already services[0]',
    ],
    [
      'the same backend twice (port defaulted)',
      services('  - address: 198.18.0.100\n    port: 80\n    backends: [{ address: 198.18.1.2, port: 80 }, { address: 198.18.1.2 }]\n'),
      'EDUPLICATE',
      'l4lb.yaml:11: services[0].backends[1]: 198.18.1.2:80 is already services[0].backends[0]',
    ],
    [
      'a backend option on a service',
      services('  - { address: 198.18.0.100, port: 80, weight: 3 }\n'),
      'EINVAL_UNKNOWN_FIELD',
      'l4lb.yaml:9: services[0].weight: is not an option of a service (known: address, port, protocol, method, scheduler, persistence, healthCheck, slowStartMs, onBackendRemoved, allBackendsDown, greKey, ipOptions)',
    ],
    [
      'backends that are not a list',
      `${eth0}services:\n  - { address: 198.18.0.100, port: 80, backends: 3 }\n`,
      'EINVAL_TYPE',
      'l4lb.yaml:3: services[0].backends: must be a list',
    ],
    ['no balancer section', 'services: []\n', 'EINVAL_TYPE', 'l4lb.yaml:1: balancer: is required: a mapping with at least "interfaces"'],
    ['no interfaces', 'balancer: { driver: memory }\n', 'EINVAL_TYPE', 'l4lb.yaml:1: balancer.interfaces: must be an array, got undefined'],
    ['memory driver without its world', 'balancer: { interfaces: [eth0], driver: memory }\n', 'EINVAL_TYPE', "l4lb.yaml:1: balancer.memory: is required with driver 'memory'"],
    ['a hashKey that is not hex', 'balancer: { interfaces: [eth0], hashKey: xyz }\n', 'EINVAL_TYPE', 'l4lb.yaml:1: balancer.hashKey: must be 32 hexadecimal digits (16 bytes)'],
    [
      'metrics on a host name',
      `${eth0}metrics: localhost:9100\n`,
      'EINVAL_ADDRESS',
      'l4lb.yaml:2: metrics: must be "address:port" with an IPv4 address and a port 0..65535, got "localhost:9100"',
    ],
    [
      'a dashboard on a host name',
      `${eth0}dashboard: localhost:8080\n`,
      'EINVAL_ADDRESS',
      'l4lb.yaml:2: dashboard: must be "PORT" (on 127.0.0.1), "ADDRESS:PORT" or "[IPV6]:PORT" with a port 0..65535, got "localhost:8080"',
    ],
    [
      'a dashboard port out of range',
      `${eth0}dashboard: 80000\n`,
      'EINVAL_ADDRESS',
      'l4lb.yaml:2: dashboard: must be "PORT" (on 127.0.0.1), "ADDRESS:PORT" or "[IPV6]:PORT" with a port 0..65535, got 80000',
    ],
    ['a relative control socket', `${eth0}control: { socket: relative.sock }\n`, 'EINVAL_TYPE', 'l4lb.yaml:2: control.socket: must be an absolute path'],
    ['an unknown control setting', `${eth0}control: { port: 80 }\n`, 'EINVAL_UNKNOWN_FIELD', 'l4lb.yaml:2: control.port: is not a setting of control (known: socket)'],
    [
      'more backends than maxBackends',
      'balancer: { interfaces: [eth0], maxBackends: 1 }\nservices:\n  - address: 198.18.0.100\n    port: 80\n    backends: [{ address: 198.18.1.2 }, { address: 198.18.1.3 }]\n',
      'ELIMIT',
      'l4lb.yaml:5: services[0].backends[1]: is one backend more than balancer.maxBackends (1) allows',
    ],
    [
      'a VIP that is a fullnat source address',
      'balancer: { interfaces: [eth0], localAddresses: [198.18.0.100] }\nservices:\n  - { address: 198.18.0.100, port: 80 }\n',
      'EINVAL_CONFLICT',
      'l4lb.yaml:3: services[0].address: 198.18.0.100 is one of balancer.localAddresses',
    ],
    ['a list instead of a mapping', '- a\n- b\n', 'EINVAL_TYPE', 'l4lb.yaml:1: must be a mapping with "balancer" and "services"'],
    ['JSON: workers 0', '{"balancer": {"interfaces": ["eth0"], "workers": 0}}', 'EINVAL_RANGE', 'l4lb.yaml:1: balancer.workers: must be an integer from 1 to 64, got 0'],
    ['JSON syntax', '{"balancer": {"interfaces": ["eth0"],, "workers": 1}}', 'EPARSE_CONFIG', 'l4lb.yaml:1: column 38: Unexpected , in flow map'],
  ];
  it.each(cases)('%s', (_name, text, code, message) => {
    const error = refusal(text);
    expect(error.message).toBe(message);
    expect(error.code).toBe(code);
  });

  it('a JSON file: file, line and path of the weight', () => {
    const error = (() => {
      try {
        loadConfig(fixture('bad-weight.json'));
      } catch (e) {
        return e as ConfigFileError;
      }
      throw new Error('accepted');
    })();
    expect(error.message).toBe(`${fixture('bad-weight.json')}:9: services[0].backends[1].weight: must be an integer from 0 to 65535, got 70000`);
    expect(error).toMatchObject({ code: 'EINVAL_RANGE', path: 'services[0].backends[1].weight', line: 9, rule: 'must be an integer from 0 to 65535, got 70000' });
  });

  it('a YAML file: file, line and path of the method', () => {
    expect(() => loadConfig(fixture('bad-method.yaml'))).toThrow(
      `${fixture('bad-method.yaml')}:6: services[0].method: must be one of 'nat', 'fullnat', 'dr', 'ipip', 'gre', got "masq"`,
    );
  });

  it('a file that cannot be read', () => {
    expect(() => loadConfig('/nonexistent/l4lb.yaml')).toThrow('/nonexistent/l4lb.yaml: cannot be read (ENOENT)');
  });
});
