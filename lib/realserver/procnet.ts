// Parsers for /proc/net/udp, /proc/net/udp6 and /proc/net/raw (one format,
// net/ipv4/udp.c udp4_format_sock and raw.c): what is bound where, inside the
// namespace that reads the file.
import { endianness } from 'node:os';

export interface ProcNetSocket {
  family: 4 | 6;
  localAddress: string;
  /** The local port; for raw sockets, the IP protocol number. */
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  /** TCP-style state number (7 = unconnected, for UDP and raw sockets). */
  state: number;
  uid: number;
  inode: number;
}

// The kernel prints each 32-bit word of an address as the host-order value of
// its network-order bytes (%08X of a __be32): on little-endian machines the
// bytes of each word come out reversed.
function wordBytes(hex: string, byteOrder: 'LE' | 'BE'): number[] {
  const bytes = [0, 2, 4, 6].map((i) => parseInt(hex.slice(i, i + 2), 16));
  return byteOrder === 'LE' ? bytes.reverse() : bytes;
}

function decodeAddress(hex: string, byteOrder: 'LE' | 'BE'): { family: 4 | 6; address: string } | undefined {
  if (!/^[0-9A-Fa-f]+$/.test(hex)) return undefined;
  if (hex.length === 8) return { family: 4, address: wordBytes(hex, byteOrder).join('.') };
  if (hex.length !== 32) return undefined;
  const bytes = [0, 8, 16, 24].flatMap((i) => wordBytes(hex.slice(i, i + 8), byteOrder));
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return { family: 6, address: compressIpv6(groups) };
}

// RFC 5952 text: the longest run of two or more zero groups becomes '::';
// an IPv4-mapped address keeps its dotted tail.
function compressIpv6(groups: string[]): string {
  if (groups.slice(0, 5).every((g) => g === '0') && groups[5] === 'ffff') {
    const v4 = [groups[6]!, groups[7]!].flatMap((g) => {
      const n = parseInt(g, 16);
      return [n >> 8, n & 0xff];
    });
    return `::ffff:${v4.join('.')}`;
  }
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j += 1;
    if (j - i > bestLength && j - i >= 2) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLength).join(':')}`;
}

/**
 * Parses the text of /proc/net/udp, udp6, raw or raw6 (several files may be
 * concatenated: every header line is skipped). Lines that do not parse are
 * ignored.
 */
export function parseProcNetSockets(text: string, byteOrder: 'LE' | 'BE' = endianness()): ProcNetSocket[] {
  const sockets: ProcNetSocket[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
    if (fields.length < 10 || !/^\d+:$/.test(fields[0]!)) continue;
    const [localHex, localPortHex] = fields[1]!.split(':');
    const [remoteHex, remotePortHex] = fields[2]!.split(':');
    const local = decodeAddress(localHex ?? '', byteOrder);
    const remote = decodeAddress(remoteHex ?? '', byteOrder);
    if (!local || !remote || localPortHex === undefined || remotePortHex === undefined) continue;
    sockets.push({
      family: local.family,
      localAddress: local.address,
      localPort: parseInt(localPortHex, 16),
      remoteAddress: remote.address,
      remotePort: parseInt(remotePortHex, 16),
      state: parseInt(fields[3]!, 16),
      uid: Number(fields[7]),
      inode: Number(fields[9]),
    });
  }
  return sockets;
}

/** True for 0.0.0.0 and :: (bound to every address). */
export function isWildcardAddress(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}
