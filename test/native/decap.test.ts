// The decapsulator's pure functions through the addon: tunnel packets built
// from scratch by test/support/packets.ts go in, the inner packet comes out
// byte for byte, or the counter a malformed packet would increment.
import { describe, expect, it } from 'vitest';

import { Decapsulator, decapsulatePacket, encapsulateReturnPacket } from '../../lib/realserver/index.js';
import { ipv4Packet, type L4Spec } from '../support/packets.js';

const balancer = '198.18.0.1';
const realServer = '198.18.0.2';
const client = '198.18.50.7';
const vip = '198.18.100.1';

const syn = ipv4Packet({ src: client, dst: vip, id: 77, l4: { kind: 'tcp', sport: 40001, dport: 80, flags: 'S', seq: 123456 } });
const datagram = ipv4Packet({ src: client, dst: vip, df: false, l4: { kind: 'udp', sport: 5353, dport: 7000, payload: Buffer.from('hello') } });

function outer(l4: L4Spec, tos = 0): Buffer {
  return ipv4Packet({ src: balancer, dst: realServer, tos, l4 });
}

const filter = { vips: [vip], accept: ['ipip', 'gre'] as Array<'ipip' | 'gre'> };

describe('decapsulator packet functions', () => {
  it.each([
    ['IPIP, TCP SYN', outer({ kind: 'ipip', inner: syn }), syn, 'ipip'],
    ['IPIP, UDP', outer({ kind: 'ipip', inner: datagram }), datagram, 'ipip'],
    ['GRE', outer({ kind: 'gre', inner: syn }), syn, 'gre'],
    ['GRE with key', outer({ kind: 'gre', key: 0xdeadbeef, inner: datagram }), datagram, 'gre'],
    ['GRE with checksum and sequence', outer({ kind: 'gre', checksum: true, sequence: 9, inner: syn }), syn, 'gre'],
    ['GRE with checksum, key and sequence', outer({ kind: 'gre', checksum: true, key: 1, sequence: 2, inner: datagram }), datagram, 'gre'],
  ])('%s: delivers the inner packet byte for byte', (_what, packet, inner, tunnel) => {
    const result = decapsulatePacket(packet, filter);
    expect(result).toMatchObject({ verdict: 'deliver', tunnel });
    expect(result.inner!.equals(inner)).toBe(true);
  });

  const lying = Buffer.from(datagram);
  lying.writeUInt16BE(datagram.length + 64, 2);
  const badSum = outer({ kind: 'gre', checksum: true, inner: datagram });
  badSum.writeUInt16BE(badSum.readUInt16BE(24) ^ 0x0101, 24);

  it.each([
    ['a GRE header cut short', outer({ kind: 'raw', protocol: 47, payload: Buffer.from([0x20, 0, 8, 0]) }), 'malformed', 'gre-truncated'],
    ['GRE version 1', outer({ kind: 'gre', version: 1, inner: syn }), 'malformed', 'gre-version'],
    ['an unknown GRE protocol type', outer({ kind: 'gre', protocolType: 0x88b5, inner: syn }), 'malformed', 'gre-protocol'],
    ['a wrong GRE checksum', badSum, 'malformed', 'gre-checksum'],
    ['an inner length that lies', outer({ kind: 'gre', inner: lying }), 'malformed', 'inner-bad-length'],
    ['an inner packet of 12 bytes', outer({ kind: 'ipip', inner: syn.subarray(0, 12) }), 'malformed', 'inner-truncated'],
    ['CE over a not-ECT inner packet', outer({ kind: 'ipip', inner: datagram }, 0x03), 'malformed', 'ecn'],
    ['plain UDP', datagram, 'malformed', 'not-a-tunnel'],
    ['a packet cut inside its IPv4 header', syn.subarray(0, 15), 'malformed', 'outer-truncated'],
    ['another VIP', outer({ kind: 'gre', inner: ipv4Packet({ src: client, dst: '198.18.100.2', l4: { kind: 'udp', sport: 1, dport: 2 } }) }), 'not-for-us', 'inner-destination'],
  ])('%s: %s (%s)', (_what, packet, verdict, reason) => {
    expect(decapsulatePacket(packet, filter)).toMatchObject({ verdict, reason });
  });

  it('applies the GRE key, tunnel type and local-address filters', () => {
    const keyed = outer({ kind: 'gre', key: 5, inner: syn });
    expect(decapsulatePacket(keyed, { ...filter, greKey: 5 }).verdict).toBe('deliver');
    expect(decapsulatePacket(keyed, { ...filter, greKey: 6 })).toMatchObject({ verdict: 'not-for-us', reason: 'gre-key' });
    expect(decapsulatePacket(keyed, { vips: [vip], accept: ['ipip'] })).toMatchObject({ verdict: 'not-for-us', reason: 'tunnel-type' });
    expect(decapsulatePacket(keyed, { ...filter, localAddresses: ['198.18.0.3'] })).toMatchObject({ verdict: 'not-for-us', reason: 'outer-destination' });
  });

  it('puts replies from the VIP into GRE toward the balancer, and the balancer side gets them back unchanged', () => {
    const reply = ipv4Packet({ src: vip, dst: client, tos: 0xb8, id: 5, l4: { kind: 'tcp', sport: 80, dport: 40001, flags: 'SA', ack: 123457 } });
    const result = encapsulateReturnPacket(reply, { destination: balancer, source: realServer, greKey: 11, vips: [vip], identification: 0x4242 });
    expect(result.ok).toBe(true);
    const expected = ipv4Packet({ src: realServer, dst: balancer, tos: 0xb8, id: 0x4242, l4: { kind: 'gre', key: 11, inner: reply } });
    expect((result as { packet: Buffer }).packet.toString('hex')).toBe(expected.toString('hex'));
    const back = decapsulatePacket((result as { packet: Buffer }).packet, { vips: [client], accept: ['gre'], greKey: 11 });
    expect(back.inner!.equals(reply)).toBe(true);
    expect(encapsulateReturnPacket(datagram, { destination: balancer, vips: [vip] })).toEqual({ ok: false, reason: 'not-from-vip' });
  });

  it('reports a namespace it cannot join as a typed error', () => {
    expect(() => Decapsulator.start({ vips: [vip], accept: ['gre'], device: 'l4lbtest0', netns: 'l4lb-no-such-namespace' })).toThrow(
      expect.objectContaining({
        name: 'RealServerError',
        code: 'ENETNS',
        message: 'decapsulator: open /run/netns/l4lb-no-such-namespace: No such file or directory',
      }),
    );
    expect(() => Decapsulator.start({ vips: [], accept: ['gre'], device: 'x' })).toThrow(expect.objectContaining({ code: 'EINVAL_ADDRESS', path: 'vips' }));
  });
});
