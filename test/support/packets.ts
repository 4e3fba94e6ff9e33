// Builds packets from scratch with every checksum computed in full: the
// independent oracle the packet fixtures compare the data plane against.
import { ipv4ToNumber } from '../../lib/config/addresses.js';

export { ipv4ToNumber };

export type Mac = string; // '02:00:00:00:00:01'

export interface TcpSpec {
  kind: 'tcp';
  sport: number;
  dport: number;
  seq?: number;
  ack?: number;
  flags?: string; // letters of 'FSRPAUEC', e.g. 'S', 'SA', 'A', 'FA', 'R'
  window?: number;
  payload?: Buffer;
  /** Leave the checksum as a local stack hands it to veth (CHECKSUM_PARTIAL): only the pseudo-header sum. */
  partialChecksum?: boolean;
  /**
   * Make the checksum wrong: it is computed as if the covered bytes summed to
   * `checksumError` more (one's-complement). An incremental update (RFC 1624)
   * carries such an error through unchanged, so the expected output frame is
   * built with the same value.
   */
  checksumError?: number;
}

export interface UdpSpec {
  kind: 'udp';
  sport: number;
  dport: number;
  payload?: Buffer;
  partialChecksum?: boolean;
  checksumError?: number;
  /** Send checksum 0 (no checksum, allowed for UDP over IPv4). */
  noChecksum?: boolean;
}

export interface IcmpSpec {
  kind: 'icmp';
  type: number;
  code: number;
  /** The 4 bytes after the checksum (echo id/sequence, next-hop MTU, unused). */
  rest?: number;
  payload?: Buffer;
}

export interface GreSpec {
  kind: 'gre';
  key?: number;
  sequence?: number;
  checksum?: boolean;
  version?: number;
  protocolType?: number;
  inner: Buffer;
}

export interface IpipSpec {
  kind: 'ipip';
  inner: Buffer;
}

export interface RawSpec {
  kind: 'raw';
  protocol: number;
  payload: Buffer;
}

export type L4Spec = TcpSpec | UdpSpec | IcmpSpec | GreSpec | IpipSpec | RawSpec;

export interface Ipv4Spec {
  src: string;
  dst: string;
  ttl?: number;
  id?: number;
  tos?: number;
  df?: boolean;
  mf?: boolean;
  fragmentOffset?: number; // in 8-byte units
  options?: Buffer; // multiple of 4 bytes
  checksumError?: number;
  l4: L4Spec;
}


export function macBytes(mac: Mac): Buffer {
  const bytes = Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
  if (bytes.length !== 6) throw new Error(`not a MAC address: ${mac}`);
  return bytes;
}

/** RFC 1071 one's-complement sum, not yet inverted. */
export function onesSum(data: Buffer, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < data.length; i += 2) sum += data.readUInt16BE(i);
  if (data.length % 2 === 1) sum += data[data.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

export function internetChecksum(data: Buffer, error = 0): number {
  return ~onesAdd(onesSum(data), error) & 0xffff;
}

/** One's-complement addition of two 16-bit values. */
export function onesAdd(a: number, b: number): number {
  const sum = a + b;
  return (sum & 0xffff) + (sum >>> 16);
}

function pseudoHeaderSum(src: string, dst: string, protocol: number, length: number): number {
  const pseudo = Buffer.alloc(12);
  pseudo.writeUInt32BE(ipv4ToNumber(src), 0);
  pseudo.writeUInt32BE(ipv4ToNumber(dst), 4);
  pseudo[9] = protocol;
  pseudo.writeUInt16BE(length, 10);
  return onesSum(pseudo);
}

const tcpFlagBits: Record<string, number> = { F: 0x01, S: 0x02, R: 0x04, P: 0x08, A: 0x10, U: 0x20, E: 0x40, C: 0x80 };

function l4Bytes(ip: Ipv4Spec): { protocol: number; bytes: Buffer } {
  const l4 = ip.l4;
  switch (l4.kind) {
    case 'tcp': {
      const payload = l4.payload ?? Buffer.alloc(0);
      const b = Buffer.alloc(20 + payload.length);
      b.writeUInt16BE(l4.sport, 0);
      b.writeUInt16BE(l4.dport, 2);
      b.writeUInt32BE((l4.seq ?? 1000) >>> 0, 4);
      b.writeUInt32BE((l4.ack ?? 0) >>> 0, 8);
      b[12] = 5 << 4;
      b[13] = [...(l4.flags ?? 'S')].reduce((acc, letter) => acc | (tcpFlagBits[letter] ?? 0), 0);
      b.writeUInt16BE(l4.window ?? 65535, 14);
      payload.copy(b, 20);
      const pseudo = pseudoHeaderSum(ip.src, ip.dst, 6, b.length);
      const sum = l4.partialChecksum ? pseudo : ~onesAdd(onesSum(b, pseudo), l4.checksumError ?? 0) & 0xffff;
      b.writeUInt16BE(sum, 16);
      return { protocol: 6, bytes: b };
    }
    case 'udp': {
      const payload = l4.payload ?? Buffer.alloc(0);
      const b = Buffer.alloc(8 + payload.length);
      b.writeUInt16BE(l4.sport, 0);
      b.writeUInt16BE(l4.dport, 2);
      b.writeUInt16BE(b.length, 4);
      payload.copy(b, 8);
      const pseudo = pseudoHeaderSum(ip.src, ip.dst, 17, b.length);
      let sum = l4.partialChecksum ? pseudo : ~onesAdd(onesSum(b, pseudo), l4.checksumError ?? 0) & 0xffff;
      if (!l4.partialChecksum && sum === 0) sum = 0xffff; // RFC 768: zero is sent as all ones
      b.writeUInt16BE(l4.noChecksum ? 0 : sum, 6);
      return { protocol: 17, bytes: b };
    }
    case 'icmp': {
      const payload = l4.payload ?? Buffer.alloc(0);
      const b = Buffer.alloc(8 + payload.length);
      b[0] = l4.type;
      b[1] = l4.code;
      b.writeUInt32BE((l4.rest ?? 0) >>> 0, 4);
      payload.copy(b, 8);
      b.writeUInt16BE(internetChecksum(b), 2);
      return { protocol: 1, bytes: b };
    }
    case 'gre': {
      const hasChecksum = l4.checksum ?? false;
      const size = 4 + (hasChecksum ? 4 : 0) + (l4.key !== undefined ? 4 : 0) + (l4.sequence !== undefined ? 4 : 0);
      const b = Buffer.alloc(size + l4.inner.length);
      b[0] = (hasChecksum ? 0x80 : 0) | (l4.key !== undefined ? 0x20 : 0) | (l4.sequence !== undefined ? 0x10 : 0);
      b[1] = l4.version ?? 0;
      b.writeUInt16BE(l4.protocolType ?? 0x0800, 2);
      let offset = 4;
      const checksumOffset = offset;
      if (hasChecksum) offset += 4;
      if (l4.key !== undefined) {
        b.writeUInt32BE(l4.key >>> 0, offset);
        offset += 4;
      }
      if (l4.sequence !== undefined) {
        b.writeUInt32BE(l4.sequence >>> 0, offset);
        offset += 4;
      }
      l4.inner.copy(b, offset);
      if (hasChecksum) b.writeUInt16BE(internetChecksum(b), checksumOffset);
      return { protocol: 47, bytes: b };
    }
    case 'ipip':
      return { protocol: 4, bytes: Buffer.from(l4.inner) };
    case 'raw':
      return { protocol: l4.protocol, bytes: Buffer.from(l4.payload) };
  }
}

/** An IPv4 packet (header + payload) with correct checksums unless told otherwise. */
export function ipv4Packet(spec: Ipv4Spec): Buffer {
  const { protocol, bytes } = l4Bytes(spec);
  const options = spec.options ?? Buffer.alloc(0);
  if (options.length % 4 !== 0 || options.length > 40) throw new Error('IPv4 options must be a multiple of 4 bytes, at most 40');
  const headerLength = 20 + options.length;
  const header = Buffer.alloc(headerLength);
  header[0] = 0x40 | (headerLength / 4);
  header[1] = spec.tos ?? 0;
  header.writeUInt16BE(headerLength + bytes.length, 2);
  header.writeUInt16BE(spec.id ?? 0x1234, 4);
  header.writeUInt16BE(((spec.df ?? true) ? 0x4000 : 0) | (spec.mf ? 0x2000 : 0) | (spec.fragmentOffset ?? 0), 6);
  header[8] = spec.ttl ?? 64;
  header[9] = protocol;
  header.writeUInt32BE(ipv4ToNumber(spec.src), 12);
  header.writeUInt32BE(ipv4ToNumber(spec.dst), 16);
  options.copy(header, 20);
  header.writeUInt16BE(internetChecksum(header, spec.checksumError ?? 0), 10);
  return Buffer.concat([header, bytes]);
}

export interface EthernetSpec {
  src: Mac;
  dst: Mac;
  vlan?: number; // 802.1Q VLAN id (TCI)
  etherType?: number; // default 0x0800
}

/** An Ethernet frame around `payload`. */
export function ethernetFrame(eth: EthernetSpec, payload: Buffer): Buffer {
  const header = Buffer.alloc(eth.vlan === undefined ? 14 : 18);
  macBytes(eth.dst).copy(header, 0);
  macBytes(eth.src).copy(header, 6);
  let offset = 12;
  if (eth.vlan !== undefined) {
    header.writeUInt16BE(0x8100, 12);
    header.writeUInt16BE(eth.vlan, 14);
    offset = 16;
  }
  header.writeUInt16BE(eth.etherType ?? 0x0800, offset);
  return Buffer.concat([header, payload]);
}

/** Shorthand: Ethernet + IPv4 + L4. */
export function frame(eth: EthernetSpec, ip: Ipv4Spec): Buffer {
  return ethernetFrame(eth, ipv4Packet(ip));
}

/** An ARP request or reply (RFC 826) for IPv4 over Ethernet. */
export function arpFrame(spec: {
  op: 'request' | 'reply';
  srcMac: Mac;
  dstMac: Mac;
  senderMac: Mac;
  senderIp: string;
  targetMac: Mac;
  targetIp: string;
}): Buffer {
  const arp = Buffer.alloc(28);
  arp.writeUInt16BE(1, 0);
  arp.writeUInt16BE(0x0800, 2);
  arp[4] = 6;
  arp[5] = 4;
  arp.writeUInt16BE(spec.op === 'request' ? 1 : 2, 6);
  macBytes(spec.senderMac).copy(arp, 8);
  arp.writeUInt32BE(ipv4ToNumber(spec.senderIp), 14);
  macBytes(spec.targetMac).copy(arp, 18);
  arp.writeUInt32BE(ipv4ToNumber(spec.targetIp), 24);
  return ethernetFrame({ src: spec.srcMac, dst: spec.dstMac, etherType: 0x0806 }, arp);
}
