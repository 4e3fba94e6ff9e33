// Loads the native addon: a prebuild from prebuilds/<platform>-<arch>/ when one
// matches, else the local build in build/Release (node-gyp-build's rules).
//
// The interface below is the only hand-written declaration of native code in
// the project (DESIGN.md §3.11); layouts and names come from the addon at run
// time, never duplicated here.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** The addon's exports, as seen from TypeScript. */
export interface NativeBinding {
  /** Changes whenever a verb or shared layout changes meaning. */
  readonly abiVersion: number;
  /** Names of the drop reasons, indexed by the native DropReason value. */
  dropReasons(): string[];
}

/** The ABI version this TypeScript code was written against. */
export const expectedAbiVersion = 1;

const require = createRequire(import.meta.url);
const nodeGypBuild = require('node-gyp-build') as ((dir: string) => unknown) & {
  resolve(dir: string): string;
};

/** The package root: both lib/native (sources) and dist/native (compiled) sit two levels below it. */
export const packageRoot = fileURLToPath(new URL('../..', import.meta.url));

let cached: NativeBinding | undefined;

/** The path of the addon file that `loadBinding(dir)` would load. */
export function resolveBindingPath(dir: string = packageRoot): string {
  return nodeGypBuild.resolve(dir);
}

/** Loads (once per package root) and checks the addon. */
export function loadBinding(dir: string = packageRoot): NativeBinding {
  if (dir === packageRoot && cached) return cached;
  const binding = nodeGypBuild(dir) as NativeBinding;
  if (binding.abiVersion !== expectedAbiVersion) {
    throw new Error(
      `l4lb: native addon ABI ${binding.abiVersion} does not match ${expectedAbiVersion}; rebuild it (npm rebuild l4lb)`,
    );
  }
  if (dir === packageRoot) cached = binding;
  return binding;
}
