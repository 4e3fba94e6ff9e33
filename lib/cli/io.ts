// Where a command writes, and the defaults every command shares. Commands
// write through a CliIo so that tests run them in-process and read the output.
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
