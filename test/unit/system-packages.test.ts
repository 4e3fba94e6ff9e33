// The Debian packages the project needs are listed once
// (tools/system-packages.mjs). This test fails when the README's apt-get line
// names other packages than that list or .ci/run stops installing from it,
// and shows that the test scripts name a missing package instead of failing
// inside CMake or node-gyp.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const listed = execFileSync(process.execPath, ['tools/system-packages.mjs'], { cwd: root, encoding: 'utf8' }).trim().split('\n');

// A PATH holding only node: every other program is missing.
const bare = mkdtempSync(join(tmpdir(), 'l4lb-bare-path-'));
symlinkSync(process.execPath, join(bare, 'node'));
afterAll(() => rmSync(bare, { recursive: true, force: true }));

function runBare(script: string, args: string[] = []) {
  return spawnSync(process.execPath, [script, ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, PATH: bare } });
}

describe('system packages', () => {
  it('the README has one apt-get install line, naming exactly the listed packages', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const lines = readme.split('\n').filter((line) => /\bapt-get install\b/.test(line) && !line.includes('`apt-get install X`'));
    expect(lines).toHaveLength(1);
    const names = lines[0]!.replace(/^.*apt-get install\s+/, '').split(/\s+/).filter((word) => word && !word.startsWith('-') && !word.startsWith('#'));
    expect([...names].sort()).toEqual([...listed].sort());
  });

  it('.ci/run installs the list itself', () => {
    const script = readFileSync(join(root, '.ci/run'), 'utf8');
    expect(script).toMatch(/^apt-get install -y --no-install-recommends \$\(node tools\/system-packages\.mjs\)$/m);
    expect(listed).toEqual(expect.arrayContaining(['iproute2', 'nftables', 'cmake', 'g++', 'libgtest-dev']));
  });

  it('npm run test:cpp without cmake, g++ and make names their packages and runs nothing else', () => {
    const result = runBare('tools/cpp-tests.mjs');
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('install Debian package cmake (apt-get install cmake)');
    expect(result.stderr).toContain('install Debian package g++ (apt-get install g++)');
    expect(result.stderr).toContain('install Debian package make (apt-get install make)');
    expect(result.stderr).not.toMatch(/CMake Error|cannot run cmake/);
    expect(result.stdout).toBe('');
  });

  it('fuzzing without clang names clang; the addon build without a compiler names g++', () => {
    const fuzz = runBare('tools/cpp-tests.mjs', ['--fuzz', 'parse', '1']);
    expect(fuzz.status).toBe(1);
    expect(fuzz.stderr).toContain('install Debian package clang (apt-get install clang)');
    const addon = runBare('tools/ensure-addon.mjs');
    expect(addon.status).toBe(1);
    expect(addon.stderr).toMatch(/^building the addon \(node-gyp\): Debian packages are not installed:\n/);
    expect(addon.stderr).toContain('install Debian package g++ (apt-get install g++)');
    expect(addon.stderr).toContain('install Debian package python3 (apt-get install python3)');
  });

  it('the e2e preflight names iproute2 and nftables; with everything installed it passes', () => {
    const e2e = runBare('tools/system-packages.mjs', ['--check', 'e2e']);
    expect(e2e.status).toBe(1);
    expect(e2e.stderr).toContain('"ip" is not on the PATH: install Debian package iproute2 (apt-get install iproute2)');
    expect(e2e.stderr).toContain('"nft" is not on the PATH: install Debian package nftables (apt-get install nftables)');
    const unknown = spawnSync(process.execPath, ['tools/system-packages.mjs', '--check', 'nonsense'], { cwd: root, encoding: 'utf8' });
    expect(unknown.status).not.toBe(0);
    expect(unknown.stderr).toMatch(/unknown group "nonsense"/);
    const browser = runBare('tools/system-packages.mjs', ['--check', 'browser']);
    expect(browser.status).toBe(1);
    expect(browser.stderr).toContain('"chromium" is not on the PATH: install Debian package chromium (apt-get install chromium)');
    // This machine (and CI, after .ci/run) has all of them.
    const all = spawnSync(process.execPath, ['tools/system-packages.mjs', '--check', 'addon', 'cpp', 'fuzz', 'e2e', 'demo', 'browser'], { cwd: root, encoding: 'utf8' });
    expect(all.stderr).toBe('');
    expect(all.status).toBe(0);
  });
});
