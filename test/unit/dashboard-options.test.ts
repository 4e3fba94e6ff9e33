// The dashboard's options and its listen-address syntax (command line and
// configuration file), and which addresses count as loopback.
import { describe, expect, it } from 'vitest';

import { dashboardUrl, isLoopback, parseDashboardAddress, validateDashboardOptions } from '../../lib/dashboard/options.js';
import { ValidationError } from '../../lib/errors.js';

describe('dashboard options', () => {
  it('default to loopback, any free port, a snapshot a second', () => {
    expect(validateDashboardOptions()).toEqual({ host: '127.0.0.1', port: 0, intervalMs: 1000, rateWindowMs: 5000, maxClients: 32 });
    expect(validateDashboardOptions({ host: '::1', port: 8080 })).toMatchObject({ host: '::1', port: 8080 });
  });

  it('throw ValidationError with the field path', () => {
    const attempt = (options: unknown) => {
      try {
        validateDashboardOptions(options);
      } catch (error) {
        expect(error).toBeInstanceOf(ValidationError);
        return [(error as ValidationError).code, (error as ValidationError).path];
      }
      return undefined;
    };
    expect(attempt({ host: 'example.org' })).toEqual(['EINVAL_ADDRESS', 'host']);
    expect(attempt({ port: 65536 })).toEqual(['EINVAL_RANGE', 'port']);
    expect(attempt({ rateWindowMs: 'long' })).toEqual(['EINVAL_TYPE', 'rateWindowMs']);
    expect(attempt({ maxClients: 0 })).toEqual(['EINVAL_RANGE', 'maxClients']);
    expect(attempt({ hots: '127.0.0.1' })).toEqual(['EINVAL_UNKNOWN_FIELD', 'hots']);
    expect(attempt(null)).toEqual(['EINVAL_TYPE', '']);
  });
});

describe('parseDashboardAddress', () => {
  it('reads PORT (on 127.0.0.1), ADDRESS:PORT and [IPV6]:PORT', () => {
    expect(parseDashboardAddress('8080')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parseDashboardAddress(8080)).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parseDashboardAddress('127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseDashboardAddress('0.0.0.0:8080')).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(parseDashboardAddress('[::1]:8080')).toEqual({ host: '::1', port: 8080 });
    expect(parseDashboardAddress('[2001:db8::1]:80')).toEqual({ host: '2001:db8::1', port: 80 });
  });

  it('returns the rule for anything else', () => {
    for (const value of ['', 'localhost:8080', '127.0.0.1', '127.0.0.1:', '127.0.0.1:65536', '::1:8080', '[127.0.0.1]:80', '[::1]', '1.2.3.4:80x', ' 8080', 8080.5, null, undefined, {}]) {
      expect(parseDashboardAddress(value), JSON.stringify(value)).toMatch(/^must be "PORT" \(on 127\.0\.0\.1\), "ADDRESS:PORT" or "\[IPV6\]:PORT" with a port 0\.\.65535, got /);
    }
  });
});

describe('isLoopback', () => {
  it('knows 127.0.0.0/8, ::1 in any spelling and IPv4-mapped loopback', () => {
    for (const address of ['127.0.0.1', '127.255.0.9', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1']) expect(isLoopback(address), address).toBe(true);
    for (const address of ['0.0.0.0', '::', '198.18.0.1', '::2', '::ffff:198.18.0.1', '2001:db8::1', 'localhost', '128.0.0.1']) expect(isLoopback(address), address).toBe(false);
  });
});

describe('dashboardUrl', () => {
  it('brackets IPv6 addresses', () => {
    expect(dashboardUrl('127.0.0.1', 8080)).toBe('http://127.0.0.1:8080/');
    expect(dashboardUrl('::1', 8080)).toBe('http://[::1]:8080/');
  });
});
