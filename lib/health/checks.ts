// The health checks themselves. A backend's answers are untrusted input:
// every check ends by its timeout (the caller aborts `signal`), reads at most
// `maxResponseBytes` of a response and buffers nothing beyond that, and
// releases its socket however it ends.
import { createSocket } from 'node:dgram';
import { request } from 'node:http';
import { connect } from 'node:net';

export interface CheckResult {
  ok: boolean;
  /** Why it failed, or what passed ('connected', 'status 200'). */
  reason: string;
}

export interface CheckTarget {
  address: string;
  port: number;
  signal: AbortSignal;
}

/** Bytes of an HTTP body or UDP reply a check looks at; the rest is never read. */
export const maxResponseBytes = 64 * 1024;

function errorReason(prefix: string, error: unknown): string {
  const code = (error as { code?: unknown })?.code;
  return `${prefix} ${typeof code === 'string' ? code : error instanceof Error ? error.message : String(error)}`;
}

/** Settles once; `cleanup` runs exactly once whichever way the check ends. */
function settleOnce(
  signal: AbortSignal,
  cleanup: () => void,
  run: (finish: (result: CheckResult) => void) => void,
): Promise<CheckResult> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (result: CheckResult) => {
      if (done) return;
      done = true;
      signal.removeEventListener('abort', onAbort);
      cleanup();
      resolve(result);
    };
    const onAbort = () => finish({ ok: false, reason: 'timed out' });
    if (signal.aborted) {
      done = true;
      cleanup();
      resolve({ ok: false, reason: 'timed out' });
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      run(finish);
    } catch (error) {
      finish({ ok: false, reason: errorReason('failed:', error) });
    }
  });
}

/** Passes when a TCP connection is established; closes it at once. */
export function tcpCheck({ address, port, signal }: CheckTarget): Promise<CheckResult> {
  const socket = connect({ host: address, port, noDelay: true });
  socket.unref();
  return settleOnce(
    signal,
    () => socket.destroy(),
    (finish) => {
      socket.once('connect', () => finish({ ok: true, reason: 'connected' }));
      socket.once('error', (error) => finish({ ok: false, reason: errorReason('connect', error) }));
    },
  );
}

export interface HttpCheckOptions extends CheckTarget {
  path: string;
  host: string | undefined;
  /** undefined: any 2xx or 3xx. */
  expectStatus: number[] | undefined;
  expectBody: RegExp | undefined;
}

/**
 * GET `path`; passes on an expected status and, with `expectBody`, a body
 * whose first 64 KiB match. Without `expectBody` the body is not read at all.
 * Headers are bounded by Node's parser (16 KiB), the body by maxResponseBytes.
 */
export function httpCheck(options: HttpCheckOptions): Promise<CheckResult> {
  const { address, port, signal } = options;
  const req = request({
    host: address,
    port,
    path: options.path,
    method: 'GET',
    agent: false,
    headers: { Host: options.host ?? address, 'User-Agent': 'l4lb-health-check', Connection: 'close', Accept: '*/*' },
  });
  return settleOnce(
    signal,
    () => req.destroy(),
    (finish) => {
      req.on('socket', (socket) => socket.unref());
      req.once('error', (error) => finish({ ok: false, reason: errorReason('http', error) }));
      req.once('response', (res) => {
        const status = res.statusCode ?? 0;
        const statusOk = options.expectStatus ? options.expectStatus.includes(status) : status >= 200 && status < 400;
        if (!statusOk) {
          finish({ ok: false, reason: `status ${status}` });
          return;
        }
        const pattern = options.expectBody;
        if (!pattern) {
          finish({ ok: true, reason: `status ${status}` });
          return;
        }
        const chunks: Buffer[] = [];
        let length = 0;
        const judge = (why: string) => {
          const body = Buffer.concat(chunks, length).toString('utf8');
          pattern.lastIndex = 0;
          finish(
            pattern.test(body)
              ? { ok: true, reason: `status ${status}, body matched` }
              : { ok: false, reason: `status ${status}, body did not match ${String(pattern)} ${why}` },
          );
        };
        res.on('data', (chunk: Buffer) => {
          const room = maxResponseBytes - length;
          const kept = chunk.length > room ? chunk.subarray(0, room) : chunk;
          chunks.push(kept);
          length += kept.length;
          if (length >= maxResponseBytes) judge(`in its first ${maxResponseBytes} bytes`);
        });
        res.once('end', () => judge(''));
        res.once('error', (error) => finish({ ok: false, reason: errorReason('http body', error) }));
      });
      req.end();
    },
  );
}

export interface UdpCheckOptions extends CheckTarget {
  payload: Uint8Array;
  expectReply: RegExp | undefined;
}

/**
 * Sends `payload` from a connected UDP socket; passes on the first reply
 * (that matches `expectReply` when set). ICMP port unreachable surfaces as
 * ECONNREFUSED and fails at once.
 */
export function udpCheck(options: UdpCheckOptions): Promise<CheckResult> {
  const { address, port, signal } = options;
  // Replies larger than the cap are truncated by the kernel: never buffered.
  const socket = createSocket({ type: 'udp4', recvBufferSize: maxResponseBytes });
  let closed = false;
  return settleOnce(
    signal,
    () => {
      if (closed) return;
      closed = true;
      socket.close();
    },
    (finish) => {
      socket.once('error', (error) => finish({ ok: false, reason: errorReason('udp', error) }));
      socket.on('message', (message) => {
        const pattern = options.expectReply;
        if (!pattern) {
          finish({ ok: true, reason: 'replied' });
          return;
        }
        pattern.lastIndex = 0;
        const text = message.subarray(0, maxResponseBytes).toString('utf8');
        finish(
          pattern.test(text)
            ? { ok: true, reason: 'reply matched' }
            : { ok: false, reason: `reply did not match ${String(pattern)}` },
        );
      });
      socket.connect(port, address, () => {
        socket.unref();
        socket.send(options.payload, (error) => {
          if (error) finish({ ok: false, reason: errorReason('udp send', error) });
        });
      });
    },
  );
}

/** Runs a user's check function; a rejection or anything but `true` fails. */
export function functionCheck(
  fn: (signal: AbortSignal) => Promise<boolean>,
  signal: AbortSignal,
): Promise<CheckResult> {
  return settleOnce(
    signal,
    () => undefined,
    (finish) => {
      Promise.resolve()
        .then(() => fn(signal))
        .then(
          (healthy) => finish(healthy === true ? { ok: true, reason: 'check passed' } : { ok: false, reason: 'check returned false' }),
          (error) => finish({ ok: false, reason: errorReason('check threw:', error) }),
        );
    },
  );
}
