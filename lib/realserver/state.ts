// The record of what `up` changed, so that `down` restores exactly that and
// nothing more. One JSON file per (network namespace, VIP), rewritten
// (atomically) after every change, so that a failure half-way leaves a
// record of the half that was done. The namespace is named by its identity
// (inode and cookie), not by how the caller reached it: `--netns rs1` and
// `ip netns exec rs1 l4lb ...` find the same record, and two namespaces
// never share one.
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import type { NetnsIdentity } from './commands.js';
import { RealServerError } from './errors.js';
import type { RealServerMethod } from './options.js';

export const defaultStateDir = '/run/l4lb/realserver';

/** One change `up` made, with what `down` needs to undo it. */
export type Change =
  /** An address added to a device: undone by deleting it. */
  | { kind: 'address'; address: string; device: string }
  /** A sysctl set (a /proc/sys path): undone by writing `previous` back, if it still holds `value`. */
  | { kind: 'sysctl'; path: string; previous: string; value: string; device?: string }
  /** A device created: undone by deleting it (which takes its routes and settings with it). */
  | { kind: 'link-add'; device: string }
  /** An existing device brought up: undone by setting it down. */
  | { kind: 'link-up'; device: string }
  /** A setting of a device `up` created (MTU, up): goes away with the device. */
  | { kind: 'link-set'; device: string; setting: string }
  /** A policy rule: undone by deleting it. */
  | { kind: 'rule'; priority: number; from: string; table: number }
  /** A route in the return table through `device`. */
  | { kind: 'route'; table: number; destination: string; device: string }
  /** The userspace decapsulator started in process `pid` (started at `startTime`, clock ticks after boot), attached to `device`. */
  | { kind: 'decapsulator'; device: string; pid: number; startTime?: number };

/** The namespace a record belongs to: its identity, and its `ip netns` names when `up` ran. */
export interface RecordedNamespace extends NetnsIdentity {
  names: string[];
}

export const stateVersion = 2;

export interface RealServerState {
  version: typeof stateVersion;
  vip: string;
  method: RealServerMethod;
  namespace: RecordedNamespace;
  /** The name `up` was given (`netns`), if any. */
  netns?: string;
  interface?: string;
  decapsulation: 'none' | 'kernel' | 'userspace';
  /** The configuration the decapsulator runs with (to restart it on a second `up`). */
  greKey?: number;
  localAddress?: string;
  returnThroughTunnel?: { balancer: string; source?: string; greKey?: number; table: number; priority: number };
  /** Every change, in the order made. */
  changes: Change[];
  updatedAt: string;
}

export function resolveStateDir(stateDir: string | undefined): string {
  return stateDir ?? process.env.L4LB_REALSERVER_STATE_DIR ?? defaultStateDir;
}

/** '<dir>/net-<inode>-<cookie>-<vip>.json' ('x' for a cookie the kernel does not give). */
export function statePath(stateDir: string | undefined, namespace: NetnsIdentity, vip: string): string {
  return join(resolveStateDir(stateDir), `net-${namespace.inode}-${namespace.cookie ?? 'x'}-${vip}.json`);
}

/** How a namespace is shown: its names when `up` ran, and its inode. */
export function describeNamespace(namespace: RecordedNamespace): string {
  return namespace.names.length > 0 ? `namespace ${namespace.names.join(', ')} (net:[${namespace.inode}])` : `network namespace net:[${namespace.inode}]`;
}

/** A file of the state directory, as `check` and `down --force` see them. */
export type StateFile =
  | { path: string; kind: 'record'; state: RealServerState }
  /** Written by l4lb before records named their namespace (host-<vip>.json, netns-<name>-<vip>.json): its namespace is unknown. */
  | { path: string; kind: 'legacy'; vip: string; netns?: string }
  | { path: string; kind: 'unreadable'; error: string };

/** Every record (and older or unreadable file) in the state directory for `vip`. */
export function listStates(stateDir: string | undefined, vip: string): StateFile[] {
  const dir = resolveStateDir(stateDir);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const files: StateFile[] = [];
  for (const name of names.filter((n) => n.endsWith(`-${vip}.json`)).sort()) {
    const path = join(dir, name);
    const legacy = /^(?:host|netns-(.+))-[\d.]+\.json$/.exec(name);
    try {
      const state = JSON.parse(readFileSync(path, 'utf8')) as { version?: number; vip?: string };
      if (state?.vip !== vip) continue;
      if (state.version === 1 && legacy) files.push({ path, kind: 'legacy', vip, ...(legacy[1] !== undefined ? { netns: legacy[1] } : {}) });
      else files.push({ path, kind: 'record', state: readState(path)! });
    } catch (error) {
      files.push({ path, kind: 'unreadable', error: (error as Error).message });
    }
  }
  return files;
}

export function readState(path: string): RealServerState | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new RealServerError('ESTATE', `cannot read the state file ${path}: ${(error as Error).message}`, { cause: error });
  }
  let state: RealServerState;
  try {
    state = JSON.parse(text) as RealServerState;
  } catch (error) {
    throw new RealServerError('ESTATE', `the state file ${path} is not JSON: ${(error as Error).message}`, { cause: error });
  }
  if (state?.version !== stateVersion || typeof state.vip !== 'string' || !Array.isArray(state.changes) || typeof state.namespace?.inode !== 'number') {
    throw new RealServerError('ESTATE', `the state file ${path} is not an l4lb real-server record (version ${stateVersion})`);
  }
  return state;
}

export function writeState(path: string, state: RealServerState): void {
  const directory = path.slice(0, path.lastIndexOf('/'));
  try {
    mkdirSync(directory, { recursive: true, mode: 0o755 });
    const temporary = `${path}.${process.pid}.tmp`;
    writeFileSync(temporary, JSON.stringify({ ...state, updatedAt: new Date().toISOString() }, null, 2) + '\n', { mode: 0o644 });
    renameSync(temporary, path);
  } catch (error) {
    throw new RealServerError('ESTATE', `cannot write the state file ${path}: ${(error as Error).message}`, { cause: error });
  }
}

export function removeState(path: string): void {
  rmSync(path, { force: true });
}
