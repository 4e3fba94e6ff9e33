// The control endpoint of a running `l4lb run`: a Unix socket (mode 0600 in
// a directory created 0700; no TCP listener) speaking newline-delimited
// JSON. One request per line, one response per line, in order:
//   -> {"command":"status"} | {"command":"stats"} | {"command":"rates","windowMs":10000} | {"command":"reload"}
//      | {"command":"explain","flow":{"src":"198.18.0.10","sport":40000,"dst":"198.18.0.100","dport":80,"proto":"tcp"}}
//   <- {"ok":true,"result":...} | {"ok":false,"error":{"name":"ConfigFileError","code":"...","message":"..."}}
// Whoever can open the socket controls the balancer: the file mode is the
// access control, so the socket never exists with a wider mode.
import { mkdirSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';

import { L4lbError } from '../errors.js';

export interface ControlRequest {
  command: string;
  windowMs?: number;
  /** explain: the tuple (lb.explain's argument). */
  flow?: unknown;
}

export type ControlHandler = (request: ControlRequest) => Promise<unknown> | unknown;

/**
 * The endpoint could not be reached ('EUNREACHABLE', 'ETIMEOUT'), is taken
 * ('EADDRINUSE'), or answered with an error (its code, and `remoteName`, the
 * class of the error in the running instance).
 */
export class ControlError extends L4lbError {
  readonly remoteName: string | undefined;

  constructor(
    code: string,
    message: string,
    options: { cause?: unknown; remoteName?: string } = {},
  ) {
    super(code, message, options.cause !== undefined ? { cause: options.cause } : {});
    this.remoteName = options.remoteName;
  }
}

// Requests are a few dozen bytes; anything larger is not a client of ours.
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
    private readonly connections: Set<Socket>,
    readonly path: string,
  ) {}

  static async listen(path: string, handler: ControlHandler): Promise<ControlServer> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    if (await socketInUse(path)) {
      throw new ControlError('EADDRINUSE', `control socket ${path} is in use: another l4lb instance runs there`);
    }
    // A socket file left by an instance that was killed: nobody listens on it.
    rmSync(path, { force: true });
    const connections = new Set<Socket>();
    const server = createServer((socket) => {
      connections.add(socket);
      socket.once('close', () => connections.delete(socket));
      serve(socket, handler);
    });
    // Create the socket file 0600 from the start: no window in which another
    // user could connect.
    const previousUmask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(previousUmask);
    }
    return new ControlServer(server, connections, path);
  }

  /** Stops listening, drops open connections and removes the socket file. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.connections) socket.destroy();
    await closed;
    rmSync(this.path, { force: true });
  }
}

function serve(socket: Socket, handler: ControlHandler): void {
  let buffered = '';
  // Answers go out in request order even when a later one is faster.
  let queue = Promise.resolve();
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      queue = queue.then(async () => {
        const response = await answer(line, handler);
        if (!socket.destroyed) socket.write(JSON.stringify(response) + '\n');
      });
    }
    if (buffered.length > maxRequestBytes) {
      socket.end(JSON.stringify({ ok: false, error: { name: 'ControlError', code: 'ETOOBIG', message: 'request too large' } }) + '\n');
      socket.removeAllListeners('data');
    }
  });
  socket.on('error', () => {});
}

async function answer(line: string, handler: ControlHandler): Promise<unknown> {
  try {
    let request: { command?: unknown; windowMs?: unknown; flow?: unknown };
    try {
      request = JSON.parse(line) as typeof request;
    } catch {
      throw new ControlError('EINVAL_REQUEST', 'a request is one JSON object per line');
    }
    if (typeof request?.command !== 'string') throw new ControlError('EINVAL_REQUEST', 'a request needs a "command" string');
    const windowMs = typeof request.windowMs === 'number' ? request.windowMs : undefined;
    return {
      ok: true,
      result: await handler({
        command: request.command,
        ...(windowMs !== undefined ? { windowMs } : {}),
        ...(request.flow !== undefined ? { flow: request.flow } : {}),
      }),
    };
  } catch (error) {
    const e = error as Partial<L4lbError>;
    return { ok: false, error: { name: e.name ?? 'Error', code: e.code ?? 'EINTERNAL', message: e.message ?? String(error) } };
  }
}

/** Sends one request to a running instance and returns its result. */
export async function controlRequest(path: string, request: ControlRequest, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    let buffered = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ControlError('ETIMEOUT', `no answer from the l4lb instance at ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.once('connect', () => socket.write(JSON.stringify(request) + '\n'));
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      const newline = buffered.indexOf('\n');
      if (newline < 0) return;
      clearTimeout(timer);
      socket.end();
      let response: { ok: boolean; result?: unknown; error?: { name?: string; code?: string; message?: string } };
      try {
        response = JSON.parse(buffered.slice(0, newline)) as typeof response;
      } catch (error) {
        reject(new ControlError('EPROTOCOL', `${path} answered something that is not l4lb's protocol`, { cause: error }));
        return;
      }
      if (response.ok) resolve(response.result);
      else {
        const remote = response.error ?? {};
        reject(new ControlError(remote.code ?? 'EINTERNAL', remote.message ?? 'unknown error', remote.name ? { remoteName: remote.name } : {}));
      }
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new ControlError(
          'EUNREACHABLE',
          `cannot reach an l4lb instance at ${path} (${error.code ?? error.message}); is "l4lb run" running with this --socket, and may you open it?`,
          { cause: error },
        ),
      );
    });
    socket.once('end', () => {
      if (buffered.indexOf('\n') < 0) {
        clearTimeout(timer);
        reject(new ControlError('EUNREACHABLE', `the l4lb instance at ${path} closed the connection without an answer`));
      }
    });
  });
}
