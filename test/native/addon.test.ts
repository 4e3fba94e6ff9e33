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
