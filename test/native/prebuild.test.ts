// `npm run prebuild` produces prebuilds/linux-x64/l4lb.node; a package that
// ships it loads it without compiling, and its install step builds nothing.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadBinding, packageRoot, resolveBindingPath } from '../../lib/native/binding.js';

const work = mkdtempSync(join(tmpdir(), 'l4lb-prebuild-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('prebuilds', () => {
  it('npm run prebuild produces a prebuild that the loader prefers over compiling', () => {
    // A copy of the sources, so the repository's own build/ is not touched.
    for (const entry of ['package.json', 'binding.gyp', 'native', 'tools']) {
      cpSync(join(packageRoot, entry), join(work, entry), { recursive: true });
    }
    symlinkSync(join(packageRoot, 'node_modules'), join(work, 'node_modules'));
    execFileSync('npm', ['run', 'prebuild'], { cwd: work, stdio: 'pipe' });
    const prebuilt = join(work, 'prebuilds', `${process.platform}-${process.arch}`, 'l4lb.node');
    expect(existsSync(prebuilt)).toBe(true);

    // What a user's install gets: sources plus prebuilds, no build/.
    rmSync(join(work, 'build'), { recursive: true, force: true });
    expect(resolveBindingPath(work)).toBe(prebuilt);
    const binding = loadBinding(work);
    expect(binding.dropReasons()).toEqual(loadBinding().dropReasons());

    // The package's install script (node-gyp-build) accepts the prebuild and compiles nothing.
    execFileSync(join(packageRoot, 'node_modules/.bin/node-gyp-build'), [], { cwd: work, stdio: 'pipe' });
    expect(existsSync(join(work, 'build'))).toBe(false);
  });
});
