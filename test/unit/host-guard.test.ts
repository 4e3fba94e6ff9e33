import { describe, expect, it } from 'vitest';
import { guardRuleset } from '../../lib/host/guard.js';

describe('host guard ruleset', () => {
  it('drops VIP traffic, nat replies, tunnel returns and fullnat replies on every served interface', () => {
    const ruleset = guardRuleset({
      interfaces: ['eth1', 'eth2'],
      vips: ['198.18.0.100', '198.18.0.100'],
      natBackends: ['198.18.1.2'],
      hostAddresses: ['198.18.1.1'],
      tunnelEndpoints: ['198.18.1.1'],
      fullnat: { addresses: ['198.18.1.1'], portMin: 61000, portMax: 65535 },
    });
    expect(ruleset).toContain('set vips { type ipv4_addr; elements = { 198.18.0.100 }; }');
    expect(ruleset).toContain('type filter hook ingress device "eth1" priority -500; policy accept;');
    expect(ruleset).toContain('type filter hook ingress device "eth2" priority -500; policy accept;');
    expect(ruleset).toContain('ip saddr @nat_backends ip daddr != @host_addresses counter drop');
    expect(ruleset).toContain('ip daddr @fullnat_addresses tcp dport 61000-65535 counter drop');
    expect(ruleset.match(/ip daddr @vips counter drop/g)).toHaveLength(2);
    // Replace atomically: ensure, delete, recreate, in one nft -f transaction.
    expect(ruleset.startsWith('table netdev l4lb\ndelete table netdev l4lb\ntable netdev l4lb {')).toBe(true);
  });

  it('leaves out fullnat rules when fullnat does not share host addresses', () => {
    const ruleset = guardRuleset({ interfaces: ['eth1'], vips: [], natBackends: [], hostAddresses: [], tunnelEndpoints: [] });
    expect(ruleset).not.toContain('@fullnat_addresses tcp dport');
    expect(ruleset).toContain('set vips { type ipv4_addr; }');
  });

  it.each([
    [{ interfaces: ['eth1; drop'], vips: [], natBackends: [], hostAddresses: [], tunnelEndpoints: [] }, 'EINVAL_INTERFACE'],
    [{ interfaces: ['eth1'], vips: ['1.2.3'], natBackends: [], hostAddresses: [], tunnelEndpoints: [] }, 'EINVAL_ADDRESS'],
  ])('refuses input that would inject rules (%#)', (config, code) => {
    expect(() => guardRuleset(config)).toThrow(expect.objectContaining({ code }));
  });
});
