// The system's network namespaces, as records need to name them: a
// namespace's identity (nsfs inode and kernel cookie), whether one recorded
// earlier still exists and under which `ip netns` names, and whether a
// recorded process is still the one that was recorded. Read from /run/netns
// and /proc; the cookie comes from the addon (SO_NETNS_COOKIE).
import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';

import { loadBinding } from '../native/binding.js';
import type { CommandRunner, NamespaceInspector, NetnsIdentity } from './commands.js';
import { RealServerError } from './errors.js';
import { assertNetnsExists, netnsDirectory, netnsPath } from './system.js';

function cookieOf(path: string | undefined): string | undefined {
  try {
    return loadBinding().netnsCookie(path).toString();
  } catch (error) {
    if ((error as { code?: string }).code === 'EUNSUPPORTED') return undefined;
    throw new RealServerError('ENETNS', `cannot identify the network namespace ${path ?? 'of this process'}: ${(error as Error).message}`, { cause: error });
  }
}

function inodeOf(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

function readdir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

/** `net:[INODE]` of a /proc/.../ns/net link, or undefined when it cannot be read (gone, or not ours to read). */
function linkedInode(path: string): number | undefined {
  try {
    const match = /^net:\[(\d+)\]$/.exec(readlinkSync(path));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

function sameNamespace(path: string, identity: NetnsIdentity): boolean {
  if (identity.cookie === undefined) return true;
  try {
    return cookieOf(path) === identity.cookie;
  } catch {
    return false;
  }
}

export const systemNamespaces: NamespaceInspector = {
  identify(netns) {
    assertNetnsExists(netns);
    const path = netns === undefined ? '/proc/self/ns/net' : netnsPath(netns);
    const inode = inodeOf(path);
    if (inode === undefined) throw new RealServerError('ENO_NETNS', `cannot read ${path}`, { path: 'netns' });
    const cookie = cookieOf(netns === undefined ? undefined : path);
    return { inode, ...(cookie !== undefined ? { cookie } : {}) };
  },

  lookup(identity) {
    const names = readdir(netnsDirectory).filter((name) => inodeOf(netnsPath(name)) === identity.inode && sameNamespace(netnsPath(name), identity));
    if (names.length > 0) return { names };
    // Without a name it lives while a thread is in it (or a mount or descriptor
    // outside /run/netns holds it: those are not seen here).
    for (const pid of readdir('/proc').filter((entry) => /^\d+$/.test(entry))) {
      for (const task of readdir(`/proc/${pid}/task`)) {
        const path = `/proc/${pid}/task/${task}/ns/net`;
        if (linkedInode(path) === identity.inode && sameNamespace(path, identity)) return { names: [] };
      }
    }
    return undefined;
  },

  processStartTime(pid) {
    try {
      // Field 22 of /proc/PID/stat; the command name (field 2) may hold spaces and parentheses.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return Number(fields[19]);
    } catch {
      return undefined;
    }
  },

  processInNamespace(pid, startTime, identity) {
    const now = this.processStartTime(pid);
    if (now === undefined || (startTime !== undefined && now !== startTime)) return false;
    return readdir(`/proc/${pid}/task`).some((task) => linkedInode(`/proc/${pid}/task/${task}/ns/net`) === identity.inode);
  },
};

export function namespacesOf(runner: CommandRunner): NamespaceInspector {
  return runner.namespaces ?? systemNamespaces;
}
