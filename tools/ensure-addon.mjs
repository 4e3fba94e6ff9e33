#!/usr/bin/env node
// Brings the addon in build/Release up to date before the native and e2e
// tiers run: an incremental `node-gyp build` when the build is configured,
// a full `node-gyp rebuild` otherwise.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const nodeGyp = createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js');
const verb = existsSync(`${root}build/config.gypi`) ? 'build' : 'rebuild';
const result = spawnSync(process.execPath, [nodeGyp, verb], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
if (result.status !== 0) {
  console.error(`ensure-addon: node-gyp ${verb} failed`);
  process.exit(result.status ?? 1);
}
