// Where a command writes, and the defaults every command shares. Commands
// write through a CliIo so that tests run them in-process and read the output.
import { delimiter, dirname, isAbsolute, resolve } from 'node:path';
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

export const processIo: CliIo = {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
};

/** The control socket when neither --socket nor the file names one. */
export const defaultControlSocket = '/run/l4lb/l4lb.sock';

/** $L4LB_SOCKET, else the default: what `status`, `stats` and `reload` talk to without --socket. */
export function controlSocketFromEnvironment(): string {
  return process.env.L4LB_SOCKET || defaultControlSocket;
}

/** A log line of a long-running command, on stderr. */
export function logLine(io: CliIo, line: string): void {
  io.stderr(`l4lb: ${line}\n`);
}

/**
 * How to invoke this same l4lb again in a printed command line: `l4lb` when
 * that is what runs from PATH, else the exact node invocation (a checkout,
 * npx, tsx in development).
 */
export function selfCommand(): string {
  const script = process.argv[1] ?? 'l4lb';
  const onPath = (process.env.PATH ?? '').split(delimiter).some((dir) => dir && resolve(dir) === dirname(resolve(script)));
  if (process.execArgv.length === 0 && script.endsWith('/l4lb') && onPath) return 'l4lb';
  const quote = (word: string) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`);
  return [process.execPath, ...process.execArgv, isAbsolute(script) ? script : resolve(script)].map(quote).join(' ');
}
