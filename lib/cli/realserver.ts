// `l4lb realserver up|down|check|decapsulate`: the command-line face of
// lib/realserver, mapped as docs/realserver.md describes.
import type { DecapsulatorStats, ReturnThroughTunnelOptions, UpOptions, UpResult } from '../realserver/index.js';
import { check, down, runDecapsulator, runRealServer, up } from '../realserver/index.js';
import { ExitCode } from './exit-codes.js';
import type { CliIo } from './io.js';

export interface RealServerCommonOptions {
  vip: string;
  netns?: string;
  json?: boolean;
}

export interface RealServerUpOptions extends RealServerCommonOptions {
  method: 'dr' | 'ipip' | 'gre';
  interface?: string;
  greKey?: number;
  returnTo?: string;
  returnGreKey?: number;
  returnTable?: number;
  decapsulation?: 'auto' | 'kernel' | 'userspace';
  localAddress?: string;
  stateDir?: string;
  dryRun?: boolean;
  statsInterval?: number;
}

export interface RealServerDownOptions extends RealServerCommonOptions {
  stateDir?: string;
  dryRun?: boolean;
  force?: boolean;
}

export interface RealServerCheckOptions extends RealServerCommonOptions {
  method: 'dr' | 'ipip' | 'gre';
  port?: number;
  interface?: string;
  returnTo?: string;
  stateDir?: string;
}

export interface DecapsulateOptions extends RealServerCommonOptions {
  method: 'ipip' | 'gre';
  device: string;
  greKey?: number;
  localAddress?: string;
  returnTo?: string;
  returnSource?: string;
  returnGreKey?: number;
  statsInterval?: number;
}

/**
 * The report, or with --json the value: indented for a command that prints
 * one result, one line per document for the long-running ones (up with the
 * decapsulator, decapsulate), which print several.
 */
function print(io: CliIo, options: { json?: boolean }, report: string, value: unknown, stream = false): void {
  if (options.json) io.stdout(`${JSON.stringify(value, null, stream ? undefined : 2)}\n`);
  else io.stdout(report.endsWith('\n') ? report : `${report}\n`);
}

function returnThroughTunnel(o: { returnTo?: string; returnGreKey?: number; returnTable?: number }): ReturnThroughTunnelOptions | undefined {
  if (o.returnTo === undefined) return undefined;
  return {
    balancer: o.returnTo,
    ...(o.returnGreKey !== undefined ? { greKey: o.returnGreKey } : {}),
    ...(o.returnTable !== undefined ? { table: o.returnTable } : {}),
  };
}

function upOptionsOf(o: RealServerUpOptions): UpOptions {
  const ret = returnThroughTunnel(o);
  return {
    vip: o.vip,
    method: o.method,
    ...(o.interface !== undefined ? { interface: o.interface } : {}),
    ...(o.netns !== undefined ? { netns: o.netns } : {}),
    ...(o.greKey !== undefined ? { greKey: o.greKey } : {}),
    ...(ret ? { returnThroughTunnel: ret } : {}),
    ...(o.decapsulation !== undefined ? { decapsulation: o.decapsulation } : {}),
    ...(o.localAddress !== undefined ? { localAddress: o.localAddress } : {}),
    ...(o.stateDir !== undefined ? { stateDir: o.stateDir } : {}),
  };
}

/** One line of decapsulator counters. */
export function formatDecapsulatorStats(stats: DecapsulatorStats): string {
  const sum = (counts: Record<string, number>) => Object.values(counts).reduce((n, v) => n + v, 0);
  const detail = (counts: Record<string, number>) => {
    const nonZero = Object.entries(counts).filter(([, n]) => n > 0);
    return nonZero.length ? ` (${nonZero.map(([k, n]) => `${k} ${n}`).join(', ')})` : '';
  };
  return (
    `received ${stats.received}, decapsulated ${stats.decapsulated} (${stats.decapsulatedBytes} bytes), ` +
    `malformed ${sum(stats.malformed)}${detail(stats.malformed)}, not for us ${sum(stats.notForUs)}${detail(stats.notForUs)}, ` +
    `returned ${stats.returned} (${stats.returnedBytes} bytes), return drops ${sum(stats.returnDrops)}${detail(stats.returnDrops)}` +
    `${stats.failure ? `, failed: ${stats.failure}` : ''}`
  );
}

function upJson(result: UpResult): Omit<UpResult, 'decapsulator'> & { decapsulator?: unknown } {
  const { decapsulator, ...rest } = result;
  return { ...rest, ...(decapsulator ? { decapsulator: decapsulator.toJSON() } : {}) };
}

/**
 * `up`: with --dry-run, the commands; with userspace decapsulation to start,
 * runRealServer in the foreground until SIGINT/SIGTERM (then down); else up.
 */
export async function realserverUpCommand(o: RealServerUpOptions, io: CliIo): Promise<number> {
  const options = upOptionsOf(o);
  const plan = await up({ ...options, dryRun: true });
  if (o.dryRun) {
    print(io, o, plan.report, upJson(plan));
    return ExitCode.success;
  }
  // Only a set-up that starts the decapsulator itself needs this process to
  // stay; one already served by another process is left to that process.
  if (!plan.steps.some((step) => step.internal)) {
    const result = await up(options);
    print(io, o, result.report, upJson(result));
    return ExitCode.success;
  }
  const { down: undone } = await runRealServer({
    ...options,
    onUp: (result) => {
      print(io, o, result.report, upJson(result), true);
      if (!o.json) io.stdout('the userspace decapsulator runs in this process: Ctrl-C or SIGTERM stops it and undoes the set-up\n');
    },
    ...(o.statsInterval !== undefined
      ? { statsIntervalMs: o.statsInterval, onStats: (stats: DecapsulatorStats) => print(io, o, formatDecapsulatorStats(stats), stats, true) }
      : {}),
  });
  print(io, o, undone.report, undone, true);
  return ExitCode.success;
}

export async function realserverDownCommand(o: RealServerDownOptions, io: CliIo): Promise<number> {
  const result = await down({
    vip: o.vip,
    ...(o.netns !== undefined ? { netns: o.netns } : {}),
    ...(o.stateDir !== undefined ? { stateDir: o.stateDir } : {}),
    ...(o.dryRun ? { dryRun: true } : {}),
    ...(o.force ? { force: true } : {}),
  });
  print(io, o, result.report, result);
  return ExitCode.success;
}

export async function realserverCheckCommand(o: RealServerCheckOptions, io: CliIo): Promise<number> {
  const ret = returnThroughTunnel(o);
  const result = await check({
    vip: o.vip,
    method: o.method,
    ...(o.port !== undefined ? { port: o.port } : {}),
    ...(o.interface !== undefined ? { interface: o.interface } : {}),
    ...(o.netns !== undefined ? { netns: o.netns } : {}),
    ...(ret ? { returnThroughTunnel: ret } : {}),
    ...(o.stateDir !== undefined ? { stateDir: o.stateDir } : {}),
  });
  print(io, o, result.report, result);
  return result.ok ? ExitCode.success : ExitCode.checkFailed;
}

/** `decapsulate`: the userspace decapsulator alone, in the foreground (the line `up --dry-run` prints for services). */
export async function decapsulateCommand(o: DecapsulateOptions, io: CliIo): Promise<number> {
  if (!o.json) io.stdout(`decapsulating ${o.method} for ${o.vip} into ${o.device}${o.netns ? ` in namespace ${o.netns}` : ''} until SIGINT or SIGTERM\n`);
  const final = await runDecapsulator({
    vips: [o.vip],
    accept: [o.method],
    device: o.device,
    ...(o.netns !== undefined ? { netns: o.netns } : {}),
    ...(o.greKey !== undefined ? { greKey: o.greKey } : {}),
    ...(o.localAddress !== undefined ? { localAddresses: [o.localAddress] } : {}),
    ...(o.returnTo !== undefined
      ? {
          returnTo: {
            destination: o.returnTo,
            ...(o.returnSource !== undefined ? { source: o.returnSource } : {}),
            ...(o.returnGreKey !== undefined ? { greKey: o.returnGreKey } : {}),
          },
        }
      : {}),
    ...(o.statsInterval !== undefined
      ? { statsIntervalMs: o.statsInterval, onStats: (stats: DecapsulatorStats) => print(io, o, formatDecapsulatorStats(stats), stats, true) }
      : {}),
  });
  print(io, o, `stopped: ${formatDecapsulatorStats(final)}`, final, true);
  return ExitCode.success;
}
