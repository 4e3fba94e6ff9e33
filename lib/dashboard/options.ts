// Options of the dashboard listener, validated before anything listens. The
// default address is loopback; any other address has to be written out.
import { isIP, isIPv4 } from 'node:net';

import { describe } from '../config/validate.js';
import { ValidationError } from '../errors.js';

export interface DashboardOptions {
  /** Address to listen on: an IPv4 or IPv6 address (default '127.0.0.1'). Anything but loopback must be given here explicitly. */
  host?: string;
  /** TCP port, 0..65535 (default 0: any free port; `url` says which). */
  port?: number;
  /** How often the event stream sends a snapshot (default 1000, 100..60000). */
  intervalMs?: number;
  /** The window of the rates shown (default 5000, 1000..600000): `lb.rates({ windowMs })`. */
  rateWindowMs?: number;
  /** Event-stream clients served at once (default 32, 1..1024); one more is answered 503. */
  maxClients?: number;
}

export interface NormalizedDashboardOptions {
  host: string;
  port: number;
  intervalMs: number;
  rateWindowMs: number;
  maxClients: number;
}

export const dashboardDefaults = { host: '127.0.0.1', port: 0, intervalMs: 1000, rateWindowMs: 5000, maxClients: 32 } as const;

const known = Object.keys(dashboardDefaults);

function fail(code: string, path: string, rule: string, value: unknown): never {
  throw new ValidationError(code, `${path} ${rule}, got ${describe(value)}`, { path });
}

function integer(options: Record<string, unknown>, key: keyof NormalizedDashboardOptions, min: number, max: number): number {
  const value = options[key];
  if (value === undefined) return dashboardDefaults[key] as number;
  if (typeof value !== 'number' || !Number.isFinite(value)) fail('EINVAL_TYPE', key, `must be an integer from ${min} to ${max}`, value);
  if (!Number.isInteger(value) || value < min || value > max) fail('EINVAL_RANGE', key, `must be an integer from ${min} to ${max}`, value);
  return value;
}

/** Whether an address is a loopback address (127.0.0.0/8, ::1, or ::ffff:127.x.x.x). */
export function isLoopback(address: string): boolean {
  if (isIPv4(address)) return address.startsWith('127.');
  if (isIP(address) !== 6) return false;
  // The URL parser writes an IPv6 address in its one compressed form.
  const canonical = new URL(`http://[${address}]/`).hostname;
  return canonical === '[::1]' || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(canonical);
}

/** Checks dashboard options; throws ValidationError (path: the field) and returns a complete copy. */
export function validateDashboardOptions(input: unknown = {}): NormalizedDashboardOptions {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ValidationError('EINVAL_TYPE', `dashboard options must be an object ({ host, port, intervalMs, rateWindowMs, maxClients }), got ${describe(input)}`, { path: '' });
  }
  const options = input as Record<string, unknown>;
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new ValidationError('EINVAL_UNKNOWN_FIELD', `${key} is not an option of the dashboard (known: ${known.join(', ')})`, { path: key });
    }
  }
  const host = options.host ?? dashboardDefaults.host;
  if (typeof host !== 'string' || isIP(host) === 0) {
    fail('EINVAL_ADDRESS', 'host', "must be an IPv4 or IPv6 address to listen on ('127.0.0.1', the default, or '::1' for loopback; '0.0.0.0' for every interface)", host);
  }
  return {
    host,
    port: integer(options, 'port', 0, 65535),
    intervalMs: integer(options, 'intervalMs', 100, 60_000),
    rateWindowMs: integer(options, 'rateWindowMs', 1000, 600_000),
    maxClients: integer(options, 'maxClients', 1, 1024),
  };
}

export interface DashboardListen {
  host: string;
  port: number;
}

/**
 * The command line's and the configuration file's form: 'PORT' (loopback,
 * 127.0.0.1), 'ADDRESS:PORT' with an IPv4 address, or '[ADDRESS]:PORT' with
 * an IPv6 one. Returns the address or the rule the value breaks.
 */
export function parseDashboardAddress(value: unknown): DashboardListen | string {
  const rule = `must be "PORT" (on 127.0.0.1), "ADDRESS:PORT" or "[IPV6]:PORT" with a port 0..65535, got ${JSON.stringify(value)}`;
  const text = typeof value === 'number' ? String(value) : value;
  if (typeof text !== 'string') return rule;
  const match = /^(?:(?:\[([^\]]+)\]|([^:[\]]+)):)?(\d{1,5})$/.exec(text);
  if (!match) return rule;
  const port = Number(match[3]);
  const host = match[1] ?? match[2] ?? dashboardDefaults.host;
  if (port > 65535) return rule;
  if (match[1] !== undefined ? isIP(host) !== 6 : !isIPv4(host)) return rule;
  return { host, port };
}

/** 'http://127.0.0.1:8080/' or 'http://[::1]:8080/'. */
export function dashboardUrl(host: string, port: number): string {
  return `http://${isIPv4(host) ? host : `[${host}]`}:${port}/`;
}
