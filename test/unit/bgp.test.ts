import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BirdAnnouncer, birdConfig, parseProtocols, vipStates } from '../../lib/bgp/bird.js';
import { validateLoadBalancerOptions } from '../../lib/config/validate.js';
import { RouteAnnouncementError, ValidationError } from '../../lib/errors.js';

const bgp = (extra: Record<string, unknown> = {}) =>
  validateLoadBalancerOptions({ interfaces: ['eth0'], bgp: { localAs: 65001, neighbours: [{ address: '198.18.0.254', as: 65000 }], ...extra } }).bgp!;

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('did not throw');
}

describe('bgp options', () => {
  it('fills in the defaults', () => {
    expect(bgp()).toEqual({
      localAs: 65001,
      routerId: undefined,
      neighbours: [{ address: '198.18.0.254', as: 65000, password: undefined }],
      nextHop: undefined,
      communities: [],
      med: { up: 0, draining: 100 },
      holdTimeS: 9,
      birdPath: 'bird',
      birdcPath: 'birdc',
      runDirectory: undefined,
    });
  });

  it.each([
    ['no neighbour', { neighbours: [] }, 'EINVAL_RANGE', 'bgp.neighbours'],
    ['a neighbour twice', { neighbours: [{ address: '198.18.0.254', as: 1 }, { address: '198.18.0.254', as: 2 }] }, 'EDUPLICATE', 'bgp.neighbours[1].address'],
    ['a bad AS', { localAs: 0 }, 'EINVAL_RANGE', 'bgp.localAs'],
    ['a bad community', { communities: ['65000:70000'] }, 'EINVAL_TYPE', 'bgp.communities[0]'],
    ['a password that would break the configuration', { neighbours: [{ address: '198.18.0.254', as: 1, password: 'a"; }' }] }, 'EINVAL_TYPE', 'bgp.neighbours[0].password'],
    ['a hold time without keepalives', { holdTimeS: 0 }, 'EINVAL_RANGE', 'bgp.holdTimeS'],
    ['a relative run directory', { runDirectory: 'run' }, 'EINVAL_TYPE', 'bgp.runDirectory'],
    ['an unknown key', { asn: 1 }, 'EINVAL_UNKNOWN_FIELD', 'bgp.asn'],
  ])('rejects %s', (_, extra, code, path) => {
    const error = thrown(() => bgp(extra));
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ code, path });
  });
});

describe('VIP states and the BIRD configuration', () => {
  it('announces a VIP while one of its services has an up backend of weight > 0, with the draining MED while up backends all drain', () => {
    const states = vipStates([
      { address: '198.18.100.1', state: 'up', backends: [{ state: 'up', weight: 1 }] },
      { address: '198.18.100.2', state: 'up', backends: [{ state: 'up', weight: 0 }, { state: 'down', weight: 5 }] },
      { address: '198.18.100.3', state: 'down', backends: [{ state: 'down', weight: 1 }] },
      // Two services of one VIP: the better state wins.
      { address: '198.18.100.4', state: 'down', backends: [{ state: 'down', weight: 1 }] },
      { address: '198.18.100.4', state: 'up', backends: [{ state: 'up', weight: 1 }] },
    ]);
    expect([...states]).toEqual([
      ['198.18.100.1', 'up'],
      ['198.18.100.2', 'draining'],
      ['198.18.100.3', 'down'],
      ['198.18.100.4', 'up'],
    ]);
    const config = birdConfig(bgp({ communities: ['65001:7'], med: { up: 5, draining: 50 }, nextHop: '198.18.0.100' }), states);
    expect(config).toContain('  route 198.18.100.1/32 blackhole;\n  route 198.18.100.2/32 blackhole;\n  route 198.18.100.4/32 blackhole;\n}');
    expect(config).not.toContain('198.18.100.3');
    expect(config).toContain('  if net ~ [ 198.18.100.2/32 ] then bgp_med = 50; else bgp_med = 5;\n  bgp_community.add((65001, 7));');
    expect(config).toContain('  neighbor 198.18.0.254 as 65000;');
    expect(config).toContain('    next hop address 198.18.0.100;');
  });

  it("reads the sessions' states from birdc show protocols", () => {
    const output = [
      'BIRD 2.0.12 ready.',
      'Name       Proto      Table      State  Since         Info',
      'device1    Device     ---        up     02:22:50.000',
      'l4lb_vips  Static     master4    up     02:22:50.000',
      'l4lb_peer1 BGP        ---        up     02:22:51.123  Established',
      'l4lb_peer2 BGP        ---        start  02:22:51.123  Active        Socket: Connection refused',
    ].join('\n');
    const options = bgp({ neighbours: [{ address: '198.18.0.254', as: 65000 }, { address: '198.18.0.253', as: 65000 }, { address: '198.18.0.252', as: 65000 }] });
    expect(parseProtocols(output, options)).toEqual([
      { address: '198.18.0.254', as: 65000, state: 'Established' },
      { address: '198.18.0.253', as: 65000, state: 'Active' },
      { address: '198.18.0.252', as: 65000, state: 'unknown' },
    ]);
  });

  it('without bird: EBGP_UNAVAILABLE naming the Debian package', async () => {
    const root = mkdtempSync(join(tmpdir(), 'l4lb-bgp-'));
    try {
      const runDirectory = join(root, 'run');
      const error = await BirdAnnouncer.start(bgp({ birdPath: '/nonexistent/bird', runDirectory }), () => {}).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RouteAnnouncementError);
      expect(error).toMatchObject({ code: 'EBGP_UNAVAILABLE' });
      expect((error as Error).message).toMatch(/install Debian package bird2/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
