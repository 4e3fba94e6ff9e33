// The commands that talk to a running instance through its control socket:
// status, stats (--rate), reload and trace.
import type { LoadBalancerRates, LoadBalancerStats } from '../config/types.js';
import { validateFlowTuple } from '../insight/explain.js';
import type { FlowExplanation, FlowTuple } from '../insight/types.js';
import { controlRequest } from './control.js';
import { ExitCode } from './exit-codes.js';
import { formatExplanation, formatRates, formatStats, formatStatus } from './format.js';
import type { CliIo } from './io.js';
import type { ReloadOutcome, StatusResult } from './runner.js';

export interface ClientOptions {
  socket: string;
  json?: boolean;
}

function json(io: CliIo, value: unknown): void {
  io.stdout(JSON.stringify(value, null, 2) + '\n');
}

export async function statusCommand(options: ClientOptions, io: CliIo): Promise<number> {
  const result = (await controlRequest(options.socket, { command: 'status' })) as StatusResult;
  if (options.json) json(io, result);
  else io.stdout(formatStatus(result.stats, result.instance));
  return ExitCode.success;
}

export async function statsCommand(
  options: ClientOptions & { rate?: boolean; windowMs?: number; exact?: boolean },
  io: CliIo,
): Promise<number> {
  const style = { exact: options.exact ?? false };
  if (options.rate) {
    const rates = (await controlRequest(options.socket, {
      command: 'rates',
      ...(options.windowMs !== undefined ? { windowMs: options.windowMs } : {}),
    })) as LoadBalancerRates;
    if (options.json) json(io, rates);
    else io.stdout(formatRates(rates, style));
  } else {
    const stats = (await controlRequest(options.socket, { command: 'stats' })) as LoadBalancerStats;
    if (options.json) json(io, stats);
    else io.stdout(formatStats(stats, style));
  }
  return ExitCode.success;
}

export async function reloadCommand(options: ClientOptions, io: CliIo): Promise<number> {
  // A reload of a large file publishes once; give it more than a status query.
  const outcome = (await controlRequest(options.socket, { command: 'reload' }, 30_000)) as ReloadOutcome;
  if (options.json) json(io, outcome);
  else {
    const summary = outcome.operations.length === 0 ? 'no changes' : `${outcome.operations.length} change${outcome.operations.length === 1 ? '' : 's'} applied (generation ${outcome.generation})`;
    io.stdout([`reloaded ${outcome.file}: ${summary}`, ...outcome.operations.map((line) => `  ${line}`)].join('\n') + '\n');
  }
  return ExitCode.success;
}

/** `l4lb trace`: lb.explain() of the running instance for one tuple. */
export async function traceCommand(options: ClientOptions & { flow: FlowTuple }, io: CliIo): Promise<number> {
  // Checked here too, so that a bad address is a usage error (status 2) before any request.
  const flow = validateFlowTuple(options.flow);
  const explanation = (await controlRequest(options.socket, { command: 'explain', flow })) as FlowExplanation;
  if (options.json) json(io, explanation);
  else io.stdout(formatExplanation(explanation));
  return ExitCode.success;
}
