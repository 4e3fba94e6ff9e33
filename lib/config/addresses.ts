// Address conversions shared by the configuration code.
import { isIPv4 } from 'node:net';

/** '198.18.0.1' -> 0xc6120001. Throws on anything that is not dotted-quad IPv4. */
export function ipv4ToNumber(address: string): number {
  if (!isIPv4(address)) throw new TypeError(`not an IPv4 address: "${address}"`);
  return address.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0) >>> 0;
}

/** The netmask of a prefix length, host order: 24 -> 0xffffff00. */
export function prefixMask(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (~0 << (32 - prefixLength)) >>> 0;
}

export function numberToIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => (value >>> shift) & 0xff).join('.');
}

const macPattern = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

export function isMac(text: string): boolean {
  return macPattern.test(text);
}

/** '02:00:00:00:00:01' -> 6 bytes. */
export function macToBytes(mac: string): Uint8Array {
  if (!isMac(mac)) throw new TypeError(`not a MAC address: "${mac}"`);
  return Uint8Array.from(mac.split(':').map((h) => parseInt(h, 16)));
}
