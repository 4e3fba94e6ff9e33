// Every change real-server setup makes is a command a person could type: an
// `ip` or `sysctl` invocation (argv, never a shell string). `up` and `down`
// run exactly the commands their dry runs print, through a CommandRunner, so
// a test can record what ran and compare it with the dry run.
import { execFile } from 'node:child_process';

import { RealServerError } from './errors.js';

export interface CommandOutput {
  stdout: string;
  stderr: string;
  /** The exit status; a runner resolves (not rejects) on a non-zero status. */
  exitCode: number;
}

/**
 * 'query' reads state (ip -j ..., sysctl name, cat /proc/net/...); 'change'
 * is a step of a plan, shown by dry runs.
 */
export type CommandPurpose = 'query' | 'change';

export interface CommandRunner {
  run(argv: string[], purpose: CommandPurpose): Promise<CommandOutput>;
  /**
   * The network namespaces and processes of the host the commands act on. A
   * runner that simulates a host provides them; otherwise the system's are
   * read (lib/realserver/netns.ts).
   */
  readonly namespaces?: NamespaceInspector;
}

/**
 * Which network namespace a record belongs to: the nsfs inode names a live
 * namespace but is handed out again after that namespace is gone; the
 * kernel's namespace cookie is never reused while the system runs (absent on
 * kernels before 5.14, where the inode alone identifies it).
 */
export interface NetnsIdentity {
  inode: number;
  cookie?: string;
}

export interface NamespaceInspector {
  /** `netns` (an `ip netns` name), or this process's namespace; RealServerError 'ENO_NETNS' when the name does not exist. */
  identify(netns: string | undefined): NetnsIdentity;
  /** The `ip netns` names of the namespace if it still exists, else undefined. */
  lookup(identity: NetnsIdentity): { names: string[] } | undefined;
  /** Process `pid`'s start time (clock ticks after boot), which tells it from a later process given the same pid. */
  processStartTime(pid: number): number | undefined;
  /** Whether process `pid` (started at `startTime`) runs and has a thread in the namespace. */
  processInNamespace(pid: number, startTime: number | undefined, identity: NetnsIdentity): boolean;
}

/** Runs commands on this machine. A missing program is a RealServerError 'ENO_TOOL'. */
export const systemRunner: CommandRunner = {
  run(argv) {
    const [command, ...args] = argv;
    return new Promise((resolve, reject) => {
      execFile(command!, args, { maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }, (error, stdout, stderr) => {
        const e = error as (NodeJS.ErrnoException & { code?: string | number }) | null;
        if (e && e.code === 'ENOENT') {
          reject(new RealServerError('ENO_TOOL', `real-server setup needs "${command}" (iproute2 / procps), and it is not installed`, { cause: error }));
          return;
        }
        resolve({ stdout, stderr, exitCode: e ? (typeof e.code === 'number' ? e.code : 1) : 0 });
      });
    });
  },
};

/** A runner that forwards to another and keeps every command it ran, in order. */
export class RecordingRunner implements CommandRunner {
  readonly calls: Array<{ argv: string[]; purpose: CommandPurpose }> = [];

  constructor(private readonly inner: CommandRunner = systemRunner) {}

  get namespaces(): NamespaceInspector | undefined {
    return this.inner.namespaces;
  }

  run(argv: string[], purpose: CommandPurpose): Promise<CommandOutput> {
    this.calls.push({ argv: [...argv], purpose });
    return this.inner.run(argv, purpose);
  }

  /** The changes that ran, formatted as a dry run prints them. */
  get changes(): string[] {
    return this.calls.filter((c) => c.purpose === 'change').map((c) => formatCommand(c.argv));
  }
}

/** Runs a command and throws a RealServerError 'ECOMMAND' (with its stderr) when it fails. */
export async function runOrThrow(runner: CommandRunner, argv: string[], purpose: CommandPurpose): Promise<CommandOutput> {
  const output = await runner.run(argv, purpose);
  if (output.exitCode !== 0) {
    const detail = (output.stderr || output.stdout).trim();
    throw new RealServerError('ECOMMAND', `${formatCommand(argv)} failed${detail ? `: ${detail}` : ` (exit ${output.exitCode})`}`);
  }
  return output;
}

const safeWord = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** The command as a POSIX shell line, quoting only words that need it. */
export function formatCommand(argv: readonly string[]): string {
  return argv.map((word) => (safeWord.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** `ip ARGS`, inside `netns` when given (`ip -n NAME ARGS`). */
export function ipCommand(netns: string | undefined, args: string[]): string[] {
  return netns === undefined ? ['ip', ...args] : ['ip', '-n', netns, ...args];
}

/** Any other program, inside `netns` when given (`ip netns exec NAME ...`). */
export function inNetns(netns: string | undefined, argv: string[]): string[] {
  return netns === undefined ? argv : ['ip', 'netns', 'exec', netns, ...argv];
}

/**
 * A sysctl is kept as its /proc/sys path below /proc/sys
 * ('net/ipv4/conf/eth0.100/rp_filter'), because interface names may contain
 * dots. This is the name sysctl(8) takes: the dotted form, or the slash form
 * when a component contains a dot.
 */
export function sysctlName(path: string): string {
  return path.split('/').some((part) => part.includes('.')) ? path : path.replace(/\//g, '.');
}

/**
 * The /proc/sys path of a name as sysctl(8) prints it. sysctl prints a
 * component's own dots as slashes ('net.ipv4.conf.eth0/100.rp_filter'), so
 * swapping the two characters gives the path back.
 */
export function sysctlPathOfPrinted(name: string): string {
  return name.replace(/[./]/g, (c) => (c === '.' ? '/' : '.'));
}

export function sysctlWriteCommand(netns: string | undefined, path: string, value: string | number): string[] {
  return inNetns(netns, ['sysctl', '-w', `${sysctlName(path)}=${value}`]);
}

/** net/ipv4/conf/DEVICE/SETTING */
export function confPath(device: string, setting: string): string {
  return `net/ipv4/conf/${device}/${setting}`;
}
