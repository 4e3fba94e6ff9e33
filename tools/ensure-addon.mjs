#!/usr/bin/env node
// Brings the addon in build/Release up to date before the native and e2e
// tiers run: an incremental `node-gyp build` when the build is configured
// and its source list has not changed since, a full `node-gyp rebuild`
// otherwise (the list is expanded into the Makefile at configure time).
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requirePackages } from './system-packages.mjs';

requirePackages(['addon'], 'building the addon (node-gyp)');

const root = fileURLToPath(new URL('..', import.meta.url));
const nodeGyp = createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js');
const configured = `${root}build/Makefile`;
const stale =
  !existsSync(configured) ||
  ['binding.gyp', 'native/sources.json'].some((input) => statSync(`${root}${input}`).mtimeMs > statSync(configured).mtimeMs);
const verb = stale ? 'rebuild' : 'build';
// Build against the headers installed beside this Node binary when there are
// any (distribution packages ship them), so no header download is needed.
const prefix = resolve(dirname(process.execPath), '..');
const env = { ...process.env };
if (!env.npm_config_nodedir && existsSync(`${prefix}/include/node/node_api.h`)) env.npm_config_nodedir = prefix;
const result = spawnSync(process.execPath, [nodeGyp, verb], { cwd: root, env, stdio: ['ignore', 'ignore', 'inherit'] });
if (result.status !== 0) {
  console.error(`ensure-addon: node-gyp ${verb} failed`);
  process.exit(result.status ?? 1);
}
