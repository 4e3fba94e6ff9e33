// The exit statuses of every l4lb command (docs/cli.md, and each --help):
// scripts and service managers branch on them, so they never change meaning.
import { L4lbError, ValidationError } from '../errors.js';
import { ConfigFileError } from './config-file.js';
import { ControlError } from './control.js';

export const ExitCode = {
  /** Done. */
  success: 0,
  /** Something failed while running (privileges, a command, the data plane). */
  failure: 1,
  /** The command line is wrong: unknown option, missing or malformed value. */
  usage: 2,
  /** The configuration file is invalid, or a reload was refused. */
  invalidConfig: 3,
  /** No l4lb instance answers on the control socket. */
  unreachable: 4,
  /** `realserver check` found problems. */
  checkFailed: 5,
} as const;

export const exitCodeHelp = `Exit status:
  0  success
  1  runtime failure
  2  usage error (unknown option, missing or malformed value)
  3  invalid configuration file, or reload refused
  4  instance unreachable (control socket)
  5  check found problems`;

/** A command line that cannot be acted on, found after parsing (a bad combination of options). */
export class UsageError extends L4lbError {}

// Errors the running instance answers with when the file was the problem.
const remoteConfigErrors = new Set(['ConfigFileError', 'ReloadRefusedError']);
const unreachableCodes = new Set(['EUNREACHABLE', 'ETIMEOUT', 'EPROTOCOL']);

export function exitCodeOf(error: unknown): number {
  if (error instanceof UsageError || error instanceof ValidationError) return ExitCode.usage;
  if (error instanceof ConfigFileError) return ExitCode.invalidConfig;
  if (error instanceof ControlError) {
    if (unreachableCodes.has(error.code)) return ExitCode.unreachable;
    if (error.remoteName && remoteConfigErrors.has(error.remoteName)) return ExitCode.invalidConfig;
  }
  return ExitCode.failure;
}
