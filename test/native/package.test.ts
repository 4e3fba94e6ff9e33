// The package is importable from its root by name once installed (addon
// built, dist/ compiled by `prepare`).
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../lib/native/binding.js';

describe('package', () => {
  it('imports as "l4lb" and "l4lb/lab" from the package root', () => {
    const out = execFileSync(
      process.execPath,
      ['--input-type=module', '-e', "const m = await import('l4lb'); const lab = await import('l4lb/lab'); console.log(JSON.stringify({ main: Object.keys(m).sort(), lab: typeof lab.Lab }))"],
      { cwd: packageRoot, encoding: 'utf8' },
    );
    const result = JSON.parse(out) as { main: string[]; lab: string };
    expect(result.main).toEqual(expect.arrayContaining(['L4lbError', 'Lab', 'LabError', 'ValidationError', 'LoadBalancer', 'serveDashboard']));
    expect(result.lab).toBe('function');
  });
});
