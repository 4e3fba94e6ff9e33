import { describe, expect, it } from 'vitest';
import { expectedAbiVersion, loadBinding } from '../../lib/native/binding.js';

describe('native addon', () => {
  it('loads and reports the ABI this code expects', () => {
    const binding = loadBinding();
    expect(binding.abiVersion).toBe(expectedAbiVersion);
  });

  it('exports the drop-reason names from C++ (never duplicated in TypeScript)', () => {
    const names = loadBinding().dropReasons();
    expect(names).toContain('truncated');
    expect(names).toContain('bad-checksum');
    expect(names).toContain('flow-table-full');
    expect(new Set(names).size).toBe(names.length);
    for (const name of names) expect(name).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/);
  });
});

describe('optional driver library', () => {
  it("driver 'af_xdp' without its library: EDRIVER_UNAVAILABLE naming the file, and the addon goes on working", () => {
    const binding = loadBinding();
    let caught: (Error & { code?: string }) | undefined;
    try {
      new binding.Engine({ ports: 1, afXdp: { library: '/nonexistent/l4lb_af_xdp.so', interfaces: ['eth0'] } });
    } catch (error) {
      caught = error as Error & { code?: string };
    }
    expect(caught?.code).toBe('EDRIVER_UNAVAILABLE');
    expect(caught?.message).toContain('/nonexistent/l4lb_af_xdp.so');
    const engine = new binding.Engine({ ports: 1 });
    engine.close();
  });
});
