// The record of what `up` changed, so that `down` restores exactly that and
// nothing more. One JSON file per (namespace, VIP), rewritten (atomically)
// after every change, so that a failure half-way leaves a record of the half
// that was done.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

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
  /** The userspace decapsulator started in process `pid`, attached to `device`. */
  | { kind: 'decapsulator'; device: string; pid: number };

export interface RealServerState {
  version: 1;
  vip: string;
  method: RealServerMethod;
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

/** '<dir>/netns-<name>-<vip>.json', or '<dir>/host-<vip>.json' outside namespaces. */
export function statePath(stateDir: string | undefined, netns: string | undefined, vip: string): string {
  return join(resolveStateDir(stateDir), `${netns === undefined ? 'host' : `netns-${netns}`}-${vip}.json`);
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
  if (state?.version !== 1 || typeof state.vip !== 'string' || !Array.isArray(state.changes)) {
    throw new RealServerError('ESTATE', `the state file ${path} is not an l4lb real-server record (version 1)`);
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
