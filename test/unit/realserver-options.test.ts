// Bad input to up/down/check: a ValidationError with a stable code, the
// field's path and an exact message, before anything is read or changed.
import { describe, expect, it } from 'vitest';

import { ValidationError } from '../../lib/errors.js';
import { check, down, up } from '../../lib/realserver/index.js';
import { validateCheckOptions, validateDownOptions, validateUpOptions } from '../../lib/realserver/options.js';

describe('real-server option validation', () => {
  it.each([
    [{ vip: '198.18.0.300', method: 'dr' }, 'EINVAL_ADDRESS', 'vip', 'vip: "198.18.0.300" is not an IPv4 address'],
    [{ vip: '2001:db8::1', method: 'dr' }, 'EINVAL_ADDRESS', 'vip', 'vip: "2001:db8::1" is an IPv6 address; real-server setup supports IPv4 only'],
    [{ vip: 17, method: 'dr' }, 'EINVAL_ADDRESS', 'vip', 'vip: must be an IPv4 address (a string like "198.18.0.100")'],
    [{ vip: '127.0.0.2', method: 'dr' }, 'EINVAL_ADDRESS', 'vip', 'vip: "127.0.0.2" is a loopback address'],
    [{ vip: '0.0.0.0', method: 'dr' }, 'EINVAL_ADDRESS', 'vip', 'vip: "0.0.0.0" is the unspecified address'],
    [{ vip: '224.0.0.5', method: 'dr' }, 'EINVAL_ADDRESS', 'vip', 'vip: "224.0.0.5" is a multicast address'],
    [{ vip: '255.255.255.255', method: 'dr' }, 'EINVAL_ADDRESS', 'vip', 'vip: "255.255.255.255" is a reserved or broadcast address'],
    [{ vip: '198.18.0.100', method: 'nat' }, 'EINVAL_METHOD', 'method', 'method: "nat" is not one of dr, ipip, gre'],
    [{ vip: '198.18.0.100' }, 'EINVAL_METHOD', 'method', 'method: undefined is not one of dr, ipip, gre'],
    [{ vip: '198.18.0.100', method: 'dr', interface: 'eth0/1' }, 'EINVAL_INTERFACE', 'interface', 'interface: "eth0/1" is not an interface name (1-15 characters, no "/", ":" or spaces)'],
    [{ vip: '198.18.0.100', method: 'dr', interface: 'averyveryverylongname' }, 'EINVAL_INTERFACE', 'interface', 'interface: "averyveryverylongname" is not an interface name (1-15 characters, no "/", ":" or spaces)'],
    [{ vip: '198.18.0.100', method: 'dr', netns: '../etc' }, 'EINVAL_NETNS', 'netns', 'netns: "../etc" is not a network namespace name (letters, digits, "_", "-", ".")'],
    [{ vip: '198.18.0.100', method: 'gre', greKey: -1 }, 'EINVAL_GRE_KEY', 'greKey', 'greKey: -1 is not a GRE key (an integer 0..4294967295)'],
    [{ vip: '198.18.0.100', method: 'gre', greKey: 2 ** 32 }, 'EINVAL_GRE_KEY', 'greKey', 'greKey: 4294967296 is not a GRE key (an integer 0..4294967295)'],
    [{ vip: '198.18.0.100', method: 'ipip', greKey: 1 }, 'EINVAL_GRE_KEY', 'greKey', 'greKey: applies to method gre, not ipip'],
    [{ vip: '198.18.0.100', method: 'dr', returnThroughTunnel: { balancer: '198.18.0.1' } }, 'EINVAL_RETURN', 'returnThroughTunnel', 'returnThroughTunnel: needs a tunnel method (ipip or gre); in dr replies go straight to the client'],
    [{ vip: '198.18.0.100', method: 'gre', returnThroughTunnel: { balancer: 'lb' } }, 'EINVAL_ADDRESS', 'returnThroughTunnel.balancer', 'returnThroughTunnel.balancer: "lb" is not an IPv4 address'],
    [{ vip: '198.18.0.100', method: 'gre', returnThroughTunnel: { balancer: '198.18.0.1', table: 254 } }, 'EINVAL_TABLE', 'returnThroughTunnel.table', 'returnThroughTunnel.table: 254 is not a free routing table (1..4294967295, not 253, 254 or 255)'],
    [{ vip: '198.18.0.100', method: 'gre', returnThroughTunnel: { balancer: '198.18.0.1', key: 1 } }, 'EUNKNOWN_OPTION', 'returnThroughTunnel.key', 'returnThroughTunnel.key: unknown option (expected one of balancer, greKey, table)'],
    [{ vip: '198.18.0.100', method: 'dr', decapsulation: 'kernel' }, 'EINVAL_DECAPSULATION', 'decapsulation', 'decapsulation: applies to ipip and gre; dr needs no decapsulation'],
    [{ vip: '198.18.0.100', method: 'gre', decapsulation: 'ebpf' }, 'EINVAL_DECAPSULATION', 'decapsulation', 'decapsulation: "ebpf" is not one of auto, kernel, userspace'],
    [{ vip: '198.18.0.100', method: 'dr', localAddress: '198.18.0.2' }, 'EINVAL_ADDRESS', 'localAddress', 'localAddress: applies to ipip and gre, not dr'],
    [{ vip: '198.18.0.100', method: 'dr', dryrun: true }, 'EUNKNOWN_OPTION', 'dryrun', 'dryrun: unknown option (expected one of vip, method, interface, netns, greKey, returnThroughTunnel, decapsulation, localAddress, stateDir, dryRun, runner)'],
    [{ vip: '198.18.0.100', method: 'dr', dryRun: 'yes' }, 'EINVAL_DRY_RUN', 'dryRun', 'dryRun: must be true or false'],
  ])('up(%j) -> %s', (options, code, path, message) => {
    let thrown: unknown;
    try {
      validateUpOptions(options);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ValidationError);
    expect(thrown).toMatchObject({ code, path, message });
  });

  it('normalizes good options', () => {
    expect(validateUpOptions({ vip: '198.18.0.100', method: 'gre', greKey: 0, returnThroughTunnel: { balancer: '198.18.0.1' } })).toEqual({
      vip: '198.18.0.100',
      method: 'gre',
      greKey: 0,
      returnThroughTunnel: { balancer: '198.18.0.1' },
      decapsulation: 'auto',
      dryRun: false,
    });
    expect(validateDownOptions({ vip: '198.18.0.100', netns: 'rs', dryRun: true })).toEqual({ vip: '198.18.0.100', netns: 'rs', dryRun: true, force: false });
    expect(validateDownOptions({ vip: '198.18.0.100', force: true })).toMatchObject({ force: true });
    expect(() => validateDownOptions({ vip: '198.18.0.100', force: 'yes' })).toThrow(expect.objectContaining({ code: 'EINVAL_TYPE', path: 'force', message: 'force: must be true or false' }));
    expect(validateCheckOptions({ vip: '198.18.0.100', method: 'dr', port: 53 })).toEqual({ vip: '198.18.0.100', method: 'dr', port: 53 });
  });

  it('check and down validate too', () => {
    expect(() => validateCheckOptions({ vip: '198.18.0.100', method: 'dr', port: 70000 })).toThrow(
      expect.objectContaining({ code: 'EINVAL_PORT', path: 'port', message: 'port: 70000 is not a port (1..65535)' }),
    );
    expect(() => validateDownOptions({ vip: 'x' })).toThrow(expect.objectContaining({ code: 'EINVAL_ADDRESS', path: 'vip' }));
  });

  it('the public functions reject before touching anything', async () => {
    const runner = { run: () => Promise.reject(new Error('no command may run')) };
    await expect(up({ vip: 'nope', method: 'dr', runner })).rejects.toMatchObject({ code: 'EINVAL_ADDRESS', path: 'vip' });
    await expect(down({ vip: 'nope', runner })).rejects.toMatchObject({ code: 'EINVAL_ADDRESS' });
    await expect(check({ vip: '198.18.0.1', method: 'ipvs' as never, runner })).rejects.toMatchObject({ code: 'EINVAL_METHOD' });
    await expect(up({ vip: '198.18.0.1', method: 'dr', netns: 'l4lb-no-such-namespace', runner })).rejects.toMatchObject({
      code: 'ENO_NETNS',
      path: 'netns',
      message: 'netns: network namespace "l4lb-no-such-namespace" does not exist (see ip netns list)',
    });
  });
});
