import { describe, expect, it } from 'vitest';
import { isLabAddress, parseLabPrefix } from '../../lib/lab/addresses.js';

describe('lab address ranges', () => {
  it.each([
    ['198.18.0.1', true],
    ['198.19.255.254', true],
    ['198.17.255.255', false],
    ['198.20.0.0', false],
    ['10.0.0.1', false],
    ['2001:db8::1', true],
    ['2001:db8:ffff::1', true],
    ['2001:db9::1', false],
    ['::ffff:198.18.0.1', false],
    ['fe80::1', false],
    ['not-an-address', false],
  ])('%s is a lab address: %s', (address, expected) => {
    expect(isLabAddress(address)).toBe(expected);
  });

  it('parses prefixes inside the ranges', () => {
    expect(parseLabPrefix('198.18.0.1/24', 'f')).toEqual({ address: '198.18.0.1', length: 24, family: 4 });
    expect(parseLabPrefix('2001:db8::2', 'f')).toEqual({ address: '2001:db8::2', length: 128, family: 6 });
  });

  it.each([
    ['10.1.1.1/24', 'EADDRESS_OUTSIDE_LAB', 'host.eth0: "10.1.1.1/24" is outside the lab ranges 198.18.0.0/15 and 2001:db8::/32'],
    ['198.18.0.1/8', 'EADDRESS_OUTSIDE_LAB', 'host.eth0: "198.18.0.1/8" is outside the lab ranges 198.18.0.0/15 and 2001:db8::/32'],
    ['198.18.0.1/33', 'EINVAL_ADDRESS', 'host.eth0: prefix length in "198.18.0.1/33" must be 0..32'],
    ['198.18.0.1/', 'EINVAL_ADDRESS', 'host.eth0: prefix length in "198.18.0.1/" must be 0..32'],
    ['banana', 'EINVAL_ADDRESS', 'host.eth0: "banana" is not an IP address or prefix'],
    ['2001:db8::1/16', 'EADDRESS_OUTSIDE_LAB', 'host.eth0: "2001:db8::1/16" is outside the lab ranges 198.18.0.0/15 and 2001:db8::/32'],
  ])('rejects %s with %s', (text, code, message) => {
    expect(() => parseLabPrefix(text, 'host.eth0')).toThrow(expect.objectContaining({ code, message, path: 'host.eth0' }));
  });
});
