import { spawn, type ChildProcess } from 'node:child_process';
import { LabError } from '../errors.js';

/** A process started inside a lab host. Output is kept (bounded) for diagnostics. */
export class LabProcess {
  readonly child: ChildProcess;
  /** Resolves with the exit code (or signal name) once the process has ended. */
  readonly exited: Promise<number | string>;
  private output = '';
  private static readonly maxOutput = 256 * 1024;
  private lineWaiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];

  constructor(
    readonly description: string,
    command: string,
    args: string[],
    options: { env?: NodeJS.ProcessEnv; stdin?: 'pipe' | 'ignore' } = {},
  ) {
    this.child = spawn(command, args, {
      stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'],
      env: options.env ?? process.env,
    });
    const onData = (chunk: Buffer) => {
      this.output += chunk.toString('utf8');
      if (this.output.length > LabProcess.maxOutput) this.output = this.output.slice(-LabProcess.maxOutput / 2);
      this.checkWaiters();
    };
    this.child.stdout!.on('data', onData);
    this.child.stderr!.on('data', onData);
    this.exited = new Promise((resolve) => {
      this.child.once('error', (error) => {
        this.output += `\n[spawn error] ${error.message}`;
        resolve('error');
      });
      this.child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    });
  }

  /** Everything the process printed so far (stdout and stderr interleaved, tail-bounded). */
  get log(): string {
    return this.output;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  private checkWaiters(): void {
    const lines = this.output.split('\n');
    this.lineWaiters = this.lineWaiters.filter((waiter) => {
      const line = lines.find((l) => waiter.pattern.test(l));
      if (line === undefined) return true;
      waiter.resolve(line);
      return false;
    });
  }

  /** Waits until a line of output matches `pattern`; fails if the process exits first or time runs out. */
  async waitForLine(pattern: RegExp, timeoutMs = 10_000): Promise<string> {
    const found = this.output.split('\n').find((line) => pattern.test(line));
    if (found !== undefined) return found;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        new Promise<string>((resolve) => this.lineWaiters.push({ pattern, resolve })),
        this.exited.then((code) => {
          throw new LabError('EPROCESS_EXITED', `${this.description} exited (${code}) before printing ${pattern}:\n${this.output}`);
        }),
        new Promise<string>((_, reject) => {
          timer = setTimeout(
            () => reject(new LabError('ETIMEOUT', `${this.description}: no line matching ${pattern} within ${timeoutMs} ms:\n${this.output}`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  async stop(graceMs = 2000): Promise<number | string> {
    if (this.running) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      try {
        return await this.exited;
      } finally {
        clearTimeout(timer);
      }
    }
    return this.exited;
  }
}
