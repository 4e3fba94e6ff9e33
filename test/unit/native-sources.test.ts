// One list of native sources (native/sources.json) feeds both builds. This
// test fails when a source file exists that the list does not name, when the
// list names a file that does not exist, or when binding.gyp stops reading it.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const list = JSON.parse(readFileSync(join(root, 'native/sources.json'), 'utf8')) as Record<string, unknown>;
const groups = Object.keys(list).filter((key) => key !== '//');

function sourcesOnDisk(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return path === 'native/test' ? [] : sourcesOnDisk(path);
    return entry.name.endsWith('.cc') ? [path] : [];
  });
}

describe('native source list', () => {
  const listed = groups.flatMap((group) => list[group] as string[]);

  it('names every .cc file of the addon and core, and only existing ones', () => {
    expect([...listed].sort()).toEqual(sourcesOnDisk('native').sort());
    for (const source of listed) expect(existsSync(join(root, source)), source).toBe(true);
  });

  it('is what binding.gyp compiles (the addon: every group but the optional drivers af_xdp and dpdk, l4lb_af_xdp.so and l4lb_dpdk.so, each with group xdp) and what CMake reads', () => {
    const gyp = readFileSync(join(root, 'binding.gyp'), 'utf8');
    const optional = ['af_xdp', 'dpdk', 'xdp'];
    const addonGroups = groups.filter((group) => !optional.includes(group));
    expect(gyp).toContain(`<!@(node tools/native-sources.mjs ${addonGroups.join(' ')})`);
    expect(gyp).toContain('<!@(node tools/native-sources.mjs af_xdp xdp)');
    expect(gyp).toContain('<!@(node tools/native-sources.mjs dpdk xdp)');
    const printed = execFileSync(process.execPath, [join(root, 'tools/native-sources.mjs'), ...groups], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean);
    expect(printed).toEqual(listed);
    const cmake = readFileSync(join(root, 'CMakeLists.txt'), 'utf8');
    for (const group of groups) expect(cmake).toContain(`l4lb_sources(${group} `);
    expect(relative(root, join(root, 'native/sources.json'))).toBe('native/sources.json');
  });
});
