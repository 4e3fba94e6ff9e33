// The lab only ever uses the benchmarking ranges: 198.18.0.0/15 (RFC 2544) and
// the documentation prefix 2001:db8::/32 (RFC 3849), so nothing it configures
// can collide with, or route to, a real network.
import { isIPv4, isIPv6 } from 'node:net';
import { LabError } from '../errors.js';
import { ipv4ToNumber } from '../config/addresses.js';


function expandIpv6(address: string): number[] {
  const [head, tail] = address.includes('::') ? address.split('::') : [address, undefined];
  const parse = (part: string | undefined) => (part ? part.split(':').filter((x) => x !== '') : []);
  const headWords = parse(head);
  const tailWords = parse(tail);
  const fill = tail === undefined ? [] : new Array(8 - headWords.length - tailWords.length).fill('0');
  return [...headWords, ...fill, ...tailWords].map((word) => parseInt(word, 16));
}

/** True when `address` lies in 198.18.0.0/15 or 2001:db8::/32. */
export function isLabAddress(address: string): boolean {
  if (isIPv4(address)) return ipv4ToNumber(address) >>> 17 === ipv4ToNumber('198.18.0.0') >>> 17;
  if (isIPv6(address) && !address.includes('.')) {
    const words = expandIpv6(address);
    return words[0] === 0x2001 && words[1] === 0x0db8;
  }
  return false;
}

export interface ParsedPrefix {
  address: string;
  length: number;
  family: 4 | 6;
}

/**
 * Parses 'ADDRESS/LEN' (or a bare address, taken as a host route) and checks
 * that the whole prefix lies inside the lab ranges.
 */
export function parseLabPrefix(text: string, field: string): ParsedPrefix {
  const [address, lengthText, extra] = text.split('/');
  const family = isIPv4(address ?? '') ? 4 : isIPv6(address ?? '') ? 6 : 0;
  if (family === 0 || extra !== undefined) {
    throw new LabError('EINVAL_ADDRESS', `${field}: "${text}" is not an IP address or prefix`, { path: field });
  }
  const maxLength = family === 4 ? 32 : 128;
  const length = lengthText === undefined ? maxLength : Number(lengthText);
  if (!Number.isInteger(length) || length < 0 || length > maxLength || (lengthText ?? '0').trim() === '') {
    throw new LabError('EINVAL_ADDRESS', `${field}: prefix length in "${text}" must be 0..${maxLength}`, { path: field });
  }
  const minimum = family === 4 ? 15 : 32;
  if (!isLabAddress(address!) || length < minimum) {
    throw new LabError(
      'EADDRESS_OUTSIDE_LAB',
      `${field}: "${text}" is outside the lab ranges 198.18.0.0/15 and 2001:db8::/32`,
      { path: field },
    );
  }
  return { address: address!, length, family };
}
