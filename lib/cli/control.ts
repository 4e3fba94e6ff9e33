// The control endpoint of a running `l4lb run`: a Unix socket (mode 0600,
// no TCP listener) speaking newline-delimited JSON. One request per line,
// one response per line:
//   -> {"command":"status"} | {"command":"stats"} | {"command":"rates","windowMs":10000} | {"command":"reload"}
//   <- {"ok":true,"result":...} | {"ok":false,"error":{"code":"...","message":"..."}}
import { mkdirSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { L4lbError } from '../errors.js';

export type ControlHandler = (request: { command: string; windowMs?: number }) => Promise<unknown> | unknown;

/** The endpoint could not be reached or answered with an error. */
export class ControlError extends L4lbError {}

const maxRequestBytes = 64 * 1024;

async function socketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

export class ControlServer {
  private constructor(
    private readonly server: Server,
    readonly path: string,
  ) {}

  static async listen(path: string, handler: ControlHandler): Promise<ControlServer> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    if (await socketInUse(path)) {
      throw new ControlError('EADDRINUSE', `control socket ${path} is in use: another l4lb instance runs there`);
    }
    rmSync(path, { force: true });
    const server = createServer((socket) => serve(socket, handler));
    // Create the socket file 0600 from the start: no window in which another
    // user could connect.
    const previousUmask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => resolve());
      });
    } finally {
      process.umask(previousUmask);
    }
    return new ControlServer(server, path);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.path, { force: true });
  }
}

function serve(socket: Socket, handler: ControlHandler): void {
  let buffered = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    if (buffered.length > maxRequestBytes) {
      socket.end(JSON.stringify({ ok: false, error: { code: 'ETOOBIG', message: 'request too large' } }) + '\n');
      return;
    }
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      void answer(line, handler).then((response) => socket.write(JSON.stringify(response) + '\n'));
    }
  });
  socket.on('error', () => {});
}

async function answer(line: string, handler: ControlHandler): Promise<unknown> {
  try {
    const request = JSON.parse(line) as { command?: unknown; windowMs?: unknown };
    if (typeof request.command !== 'string') throw new ControlError('EINVAL_REQUEST', 'request needs a "command" string');
    const windowMs = typeof request.windowMs === 'number' ? request.windowMs : undefined;
    return { ok: true, result: await handler({ command: request.command, ...(windowMs !== undefined ? { windowMs } : {}) }) };
  } catch (error) {
    const e = error as Partial<L4lbError>;
    return { ok: false, error: { code: e.code ?? 'EINTERNAL', message: e.message ?? String(error) } };
  }
}

/** Sends one request to a running instance and returns its result. */
export async function controlRequest(path: string, request: { command: string; windowMs?: number }, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    let buffered = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ControlError('ETIMEOUT', `no answer from ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.once('connect', () => socket.write(JSON.stringify(request) + '\n'));
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      const newline = buffered.indexOf('\n');
      if (newline < 0) return;
      clearTimeout(timer);
      socket.end();
      const response = JSON.parse(buffered.slice(0, newline)) as { ok: boolean; result?: unknown; error?: { code: string; message: string } };
      if (response.ok) resolve(response.result);
      else reject(new ControlError(response.error?.code ?? 'EINTERNAL', response.error?.message ?? 'unknown error'));
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new ControlError(
          'EUNREACHABLE',
          `cannot reach an l4lb instance at ${path} (${error.code ?? error.message}); is "l4lb run" running, and are you allowed to open its socket?`,
          { cause: error },
        ),
      );
    });
  });
}
