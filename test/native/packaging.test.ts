// What `npm install l4lb` gets: `npm pack` (its prepack step runs `npm run
// prebuild`) puts a linux-x64 prebuild of the addon in the tarball, and an
// install of that tarball into another project, with no compiler, make or
// python3 on the PATH, builds nothing, loads the prebuild and forwards
// packets through the memory driver exactly as this checkout's build does.
// Extra shared objects built into build/Release (optional drivers,
// docs/packaging.md) travel beside the prebuild: the AF_XDP driver,
// l4lb_af_xdp.so, the DPDK driver, l4lb_dpdk.so, and a stand-in probe
// library; the addon itself links neither libxdp, libbpf nor DPDK, so it
// loads where they are missing. The dashboard's page and assets ship too,
// and the installed copy serves them.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { packageRoot } from '../../lib/native/binding.js';
import { backendAddress, backendMac, createBalancer, decode, memoryOptions, tcp, toVip, until, vip } from '../support/balancer.js';

const work = mkdtempSync(join(tmpdir(), 'l4lb-packaging-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const prebuildDir = `prebuilds/${process.platform}-${process.arch}`;
const compilers = ['g++', 'gcc', 'cc', 'c++', 'clang', 'clang++', 'make', 'python3', 'python'];

// The addon builds against the headers installed beside this Node binary when
// there are any, as tools/ensure-addon.mjs does, so no header download is needed.
function buildEnv(): NodeJS.ProcessEnv {
  const prefix = resolve(dirname(process.execPath), '..');
  const env = { ...process.env };
  if (!env.npm_config_nodedir && existsSync(`${prefix}/include/node/node_api.h`)) env.npm_config_nodedir = prefix;
  return env;
}

/** A PATH with node, npm and a shell only. */
function barePath(): string {
  const bin = join(work, 'bare-bin');
  mkdirSync(bin);
  symlinkSync(process.execPath, join(bin, 'node'));
  const npm = execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim();
  symlinkSync(realpathSync(npm), join(bin, 'npm'));
  symlinkSync('/bin/sh', join(bin, 'sh'));
  return bin;
}

// Run inside the installing project: the package by its name, one frame
// through the memory driver, and which addon file was loaded.
const appScript = `
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { LoadBalancer } from 'l4lb';
const [options, vip, backend, frame] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const packageDir = dirname(require.resolve('l4lb/package.json'));
const lb = await LoadBalancer.create(JSON.parse(options));
const web = lb.addService({ address: vip, port: 80, healthCheck: { type: 'none' } });
web.addBackend({ address: backend, port: 8080 });
while (!lb.stats().workers.every((w) => w.configGeneration >= lb.generation)) await new Promise((resolve) => setTimeout(resolve, 10));
lb.memoryPort('in').inject(Buffer.from(frame, 'hex'));
const out = await lb.memoryPort('out').take({ count: 1, timeoutMs: 5000 });
const { nativeLibraryPath, resolveBindingPath } = await import(packageDir + '/dist/native/binding.js');
const board = await lb.serveDashboard();
const fetched = {};
for (const path of ['', 'dashboard.js', 'dashboard.css', 'snapshot.json']) {
  const response = await fetch(board.url + path);
  const body = await response.text();
  fetched[path || '/'] = { status: response.status, type: response.headers.get('content-type'), bytes: body.length };
}
console.log(JSON.stringify({
  dashboard: fetched,
  out: out.map((f) => f.toString('hex')),
  addon: resolveBindingPath(packageDir),
  probeLibrary: nativeLibraryPath('l4lb_optional_probe', packageDir),
  afXdpLibrary: nativeLibraryPath('l4lb_af_xdp', packageDir),
  dpdkLibrary: nativeLibraryPath('l4lb_dpdk', packageDir),
}));
await lb.close();
`;

describe('the packed package', () => {
  it('carries a linux-x64 prebuild (and extra shared objects); installed with no compiler on the PATH, it builds nothing and forwards with the memory driver', async () => {
    // A copy of the checkout, so that this repository's own build/ is not touched.
    const source = join(work, 'source');
    for (const entry of ['package.json', 'package-lock.json', 'binding.gyp', 'CMakeLists.txt', 'README.md', 'tsconfig.json', 'tsconfig.build.json', 'native', 'lib', 'tools', 'examples']) {
      cpSync(join(packageRoot, entry), join(source, entry), { recursive: true });
    }
    symlinkSync(join(packageRoot, 'node_modules'), join(source, 'node_modules'));
    // An optional library, as a driver would add it: a shared_library target built into build/Release.
    cpSync(join(packageRoot, 'test/fixtures/native/optional-library.cc'), join(source, 'native/optional-library.cc'));
    const gyp = JSON.parse(readFileSync(join(source, 'binding.gyp'), 'utf8')) as { targets: object[] };
    gyp.targets.push({ target_name: 'l4lb_optional_probe', type: 'shared_library', product_dir: '<(PRODUCT_DIR)', sources: ['native/optional-library.cc'] });
    writeFileSync(join(source, 'binding.gyp'), JSON.stringify(gyp, null, 2));

    execFileSync('npm', ['pack', '--pack-destination', work], { cwd: source, env: buildEnv(), stdio: 'pipe' });
    const version = (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
    const tarball = join(work, `l4lb-${version}.tgz`);
    const listing = execFileSync('tar', ['tzf', tarball], { encoding: 'utf8' }).split('\n');
    expect(listing).toContain(`package/${prebuildDir}/l4lb.node`);
    expect(listing).toContain(`package/${prebuildDir}/l4lb_optional_probe.so`);
    expect(listing).toContain(`package/${prebuildDir}/l4lb_af_xdp.so`);
    expect(listing).toContain(`package/${prebuildDir}/l4lb_dpdk.so`);
    expect(listing).toContain('package/native/xdp/l4lb_xdp.c'); // compiled on install elsewhere
    expect(listing).toContain('package/tools/build-xdp-object.mjs');
    expect(listing).toContain('package/dist/index.js');
    for (const asset of ['index.html', 'dashboard.js', 'dashboard.css']) expect(listing).toContain(`package/lib/dashboard/assets/${asset}`); // served by the dashboard
    expect(listing.filter((path) => path.startsWith('package/lib/') && !path.startsWith('package/lib/dashboard/assets/'))).toEqual([]);
    expect(listing).toContain('package/tools/native-sources.mjs'); // binding.gyp needs it to compile elsewhere
    expect(listing.filter((path) => path.startsWith('package/build/'))).toEqual([]);

    // A project installing the tarball, with only node, npm and sh on the PATH.
    const app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }));
    writeFileSync(join(app, 'app.mjs'), appScript);
    const path = barePath();
    for (const tool of compilers) {
      expect(spawnSync('sh', ['-c', `command -v ${tool}`], { env: { PATH: path } }).status, `${tool} on the bare PATH`).not.toBe(0);
    }
    const env = { HOME: process.env.HOME ?? '/root', PATH: path, npm_config_nodedir: '/nonexistent' };
    const install = spawnSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=info', tarball], { cwd: app, env, encoding: 'utf8' });
    expect(install.status, `npm install: ${install.stderr}`).toBe(0);
    // The package's install script ran (node-gyp-build: prebuild accepted, nothing compiled).
    expect(install.stderr).toMatch(new RegExp(`run l4lb@${version} install node_modules/l4lb node-gyp-build\\n[^]*run l4lb@${version} install \\{ code: 0`));
    const installed = join(app, 'node_modules/l4lb');
    expect(existsSync(join(installed, 'build')), 'the install compiled something').toBe(false);
    expect(readdirSync(join(installed, prebuildDir)).sort()).toEqual(['l4lb.node', 'l4lb_af_xdp.so', 'l4lb_dpdk.so', 'l4lb_optional_probe.so']);
    const linked = execFileSync('ldd', [join(installed, prebuildDir, 'l4lb.node')], { encoding: 'utf8' });
    expect(linked).not.toMatch(/libxdp|libbpf|librte_/);
    expect(execFileSync('ldd', [join(installed, prebuildDir, 'l4lb_af_xdp.so')], { encoding: 'utf8' })).toMatch(/libxdp\.so/);
    expect(execFileSync('ldd', [join(installed, prebuildDir, 'l4lb_dpdk.so')], { encoding: 'utf8' })).toMatch(/librte_ethdev\.so/);
    expect(readFileSync(join(installed, prebuildDir, 'l4lb_optional_probe.so')).subarray(0, 4)).toEqual(Buffer.from('\x7fELF', 'latin1'));

    const options = memoryOptions({ workers: 1 });
    const input = toVip(tcp(40001, 'S'));
    const ran = spawnSync(process.execPath, ['app.mjs', JSON.stringify(options), vip, backendAddress(7), input.toString('hex')], {
      cwd: app,
      env,
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(ran.status, ran.stderr).toBe(0);
    const result = JSON.parse(ran.stdout) as {
      out: string[];
      addon: string;
      probeLibrary: string;
      afXdpLibrary: string;
      dpdkLibrary: string;
      dashboard: Record<string, { status: number; type: string; bytes: number }>;
    };
    // The installed package's dashboard serves its page and assets (from lib/dashboard/assets of the tarball).
    expect(result.dashboard['/']).toMatchObject({ status: 200, type: 'text/html; charset=utf-8' });
    expect(result.dashboard['dashboard.js']).toMatchObject({ status: 200, type: 'text/javascript; charset=utf-8' });
    expect(result.dashboard['dashboard.css']).toMatchObject({ status: 200, type: 'text/css; charset=utf-8' });
    expect(result.dashboard['snapshot.json']).toMatchObject({ status: 200, type: 'application/json; charset=utf-8' });
    for (const asset of Object.values(result.dashboard)) expect(asset.bytes).toBeGreaterThan(100);
    expect(result.addon).toBe(join(installed, prebuildDir, 'l4lb.node'));
    expect(result.probeLibrary).toBe(join(installed, prebuildDir, 'l4lb_optional_probe.so'));
    expect(result.afXdpLibrary).toBe(join(installed, prebuildDir, 'l4lb_af_xdp.so'));
    expect(result.dpdkLibrary).toBe(join(installed, prebuildDir, 'l4lb_dpdk.so'));
    expect(result.out).toHaveLength(1);
    const forwarded = Buffer.from(result.out[0]!, 'hex');
    expect(decode(forwarded)).toMatchObject({ dstMac: backendMac(7), dstAddress: backendAddress(7), dstPort: 8080 });

    // Byte for byte what this checkout's own build makes of the same frame.
    const lb = await createBalancer({ workers: 1 });
    try {
      const web = lb.addService({ address: vip, port: 80, healthCheck: { type: 'none' } });
      web.addBackend({ address: backendAddress(7), port: 8080 });
      await until(() => lb.stats().workers.every((w) => w.configGeneration >= lb.generation), 5000, 'workers adopting the configuration');
      lb.memoryPort('in').inject(input);
      const [local] = await lb.memoryPort('out').take({ count: 1, timeoutMs: 5000 });
      expect(forwarded.equals(local!)).toBe(true);
    } finally {
      await lb.close();
    }
  }, 400_000);
});
