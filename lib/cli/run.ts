// `l4lb run CONFIG`: the balancer from a file, its control socket, the
// optional metrics endpoint and dashboard, reloads on SIGHUP (and --watch), and a clean
// stop on SIGINT/SIGTERM.
import { readFileSync } from 'node:fs';
import type { DriverName } from '../config/types.js';
import { drivers } from '../config/validate.js';
import type { Dashboard } from '../dashboard/index.js';
import { type DashboardListen, isLoopback, parseDashboardAddress } from '../dashboard/options.js';

import { type ConfigFile, type ListenAddress, loadConfig, parseListenAddress } from './config-file.js';
import { ControlError, ControlServer } from './control.js';
import { ExitCode, UsageError } from './exit-codes.js';
import { type CliIo, controlSocketFromEnvironment, logLine } from './io.js';
import { type MetricsServer, startMetricsServer } from './metrics-server.js';
import { Runner } from './runner.js';
import { watchConfigFile } from './watch.js';

export interface RunOptions {
  socket?: string;
  metrics?: string;
  /** '[address:]port' of the dashboard; replaces the file's dashboard. */
  dashboard?: string;
  watch?: boolean;
  /** Replaces the file's balancer.driver. */
  driver?: string;
  /** Resolves the run instead of a signal (tests). */
  signal?: AbortSignal;
}

// A balancer that does not finish closing in this time is left to the exit.
const closeTimeoutMs = 10_000;

function describeConfig(config: ConfigFile): string {
  const backends = config.services.reduce((n, s) => n + s.backends.length, 0);
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  return `${plural(config.services.length, 'service')}, ${plural(backends, 'backend')}`;
}

export async function runCommand(file: string, options: RunOptions, io: CliIo): Promise<number> {
  let metrics: ListenAddress | undefined;
  if (options.metrics !== undefined) {
    const parsed = parseListenAddress(options.metrics);
    if (typeof parsed === 'string') throw new UsageError('EUSAGE', `--metrics ${parsed}`);
    metrics = parsed;
  }
  let dashboardListen: DashboardListen | undefined;
  if (options.dashboard !== undefined) {
    const parsed = parseDashboardAddress(options.dashboard);
    if (typeof parsed === 'string') throw new UsageError('EUSAGE', `--dashboard ${parsed}`);
    dashboardListen = parsed;
  }
  let driver: DriverName | undefined;
  if (options.driver !== undefined) {
    if (!(drivers as readonly string[]).includes(options.driver)) throw new UsageError('EUSAGE', `--driver must be one of ${drivers.join(', ')}, not "${options.driver}"`);
    driver = options.driver as DriverName;
  }
  const config = loadConfig(file, driver ? { driver } : {});
  metrics ??= config.metrics;
  dashboardListen ??= config.dashboard;
  const socketPath = options.socket ?? config.controlSocket ?? controlSocketFromEnvironment();
  const log = (line: string) => logLine(io, line);

  // The socket first: a second instance on the same socket stops here,
  // before it starts a data plane on interfaces the first one serves.
  let runner: Runner | undefined;
  const control = await ControlServer.listen(socketPath, (request) => {
    if (!runner) throw new ControlError('ESTARTING', 'l4lb is starting');
    return runner.handle(request);
  });
  let metricsServer: MetricsServer | undefined;
  let dashboard: Dashboard | undefined;
  let watcher: { close(): void } | undefined;
  const handlers: Array<[NodeJS.Signals, () => void]> = [];
  const faultHandlers: Array<(error: unknown) => void> = [];
  const on = (signal: NodeJS.Signals, handler: () => void) => {
    process.on(signal, handler);
    handlers.push([signal, handler]);
  };
  // Handlers go in before the balancer starts: a signal during start-up
  // stops it cleanly instead of killing the process with the socket left.
  // A bug that would otherwise kill the process still closes the balancer:
  // with af_packet, close() also removes the host guard's nftables table.
  let failed = false;
  const stopped = new Promise<string>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) on(signal, () => resolve(signal));
    options.signal?.addEventListener('abort', () => resolve('abort'), { once: true });
    const onFault = (error: unknown) => {
      failed = true;
      log(`internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      resolve('internal error');
    };
    process.on('uncaughtException', onFault);
    process.on('unhandledRejection', onFault);
    faultHandlers.push(onFault);
  });
  const reload = (why: string) => {
    if (!runner) return log(`${why}: ignored, still starting`);
    try {
      runner.reloadFromFile(why);
    } catch {
      // The runner logged why; the running configuration stays.
    }
  };
  on('SIGHUP', () => reload('SIGHUP'));
  try {
    runner = await Runner.start(config, {
      log,
      fixed: {
        socketFromCommandLine: options.socket !== undefined,
        metricsFromCommandLine: options.metrics !== undefined,
        dashboardFromCommandLine: options.dashboard !== undefined,
        ...(driver ? { driver } : {}),
      },
    });
    if (metrics) metricsServer = await startMetricsServer(metrics, runner.balancer.metrics());
    if (dashboardListen) {
      dashboard = await runner.balancer.serveDashboard(dashboardListen);
      if (!isLoopback(dashboard.host)) log(`the dashboard listens on ${dashboard.host}, not loopback: anyone who reaches it sees every service and backend`);
    }
    if (options.watch) {
      watcher = watchConfigFile(config.file, () => {
        let text: string | undefined;
        try {
          text = readFileSync(config.file, 'utf8');
        } catch {
          // Gone or unreadable: the reload says so.
        }
        if (text === undefined || runner!.fileChanged(text)) reload('file changed');
      });
    }
    log(
      `ready: ${describeConfig(config)}, control socket ${socketPath}${metricsServer ? `, metrics ${metricsServer.url}` : ''}${dashboard ? `, dashboard ${dashboard.url}` : ''}${options.watch ? ', watching the file' : ''}`,
    );
    const reason = await stopped;
    log(`stopping (${reason})`);
    // A second signal while closing: the operator insists.
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      on(signal, () => {
        log(`${signal} again: exiting without finishing the shutdown`);
        process.exit(ExitCode.failure);
      });
    }
  } finally {
    watcher?.close();
    await control.close();
    await metricsServer?.close();
    await dashboard?.close();
    if (runner) {
      const timeout = new Promise<'timeout'>((resolve) => setTimeout(resolve, closeTimeoutMs, 'timeout').unref());
      if ((await Promise.race([runner.close().then(() => 'closed' as const), timeout])) === 'timeout') {
        log(`the balancer did not close within ${closeTimeoutMs / 1000} s`);
      }
    }
    for (const [signal, handler] of handlers) process.off(signal, handler);
    for (const handler of faultHandlers) {
      process.off('uncaughtException', handler);
      process.off('unhandledRejection', handler);
    }
  }
  log('stopped');
  return failed ? ExitCode.failure : ExitCode.success;
}

/** `l4lb validate CONFIG`: the same checks as run and reload, without starting anything. */
export function validateCommand(file: string, io: CliIo): number {
  const config = loadConfig(file);
  io.stdout(`${config.file}: valid (${describeConfig(config)})\n`);
  return ExitCode.success;
}
