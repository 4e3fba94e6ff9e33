// Health checks against real servers on loopback: up and down, bounded
// reads against servers that stream without end, timeouts against servers
// that never answer. The monitor: rise/fall timing and stop().
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';

import { functionCheck, HealthMonitor, httpCheck, maxResponseBytes, tcpCheck, udpCheck } from '../../lib/health/index.js';

const host = '127.0.0.1';
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function listen<T extends Server | HttpServer>(server: T): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return (server.address() as AddressInfo).port;
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function udpServer(onMessage: (socket: UdpSocket, message: Buffer, rinfo: { address: string; port: number }) => void): Promise<number> {
  const socket = createSocket('udp4');
  socket.on('message', (message, rinfo) => onMessage(socket, message, rinfo));
  await new Promise<void>((resolve) => socket.bind(0, host, resolve));
  cleanups.push(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  return socket.address().port;
}

const timeout = (ms: number) => AbortSignal.timeout(ms);

describe('tcp check', () => {
  it('passes when a connection is established', async () => {
    const port = await listen(createServer());
    expect(await tcpCheck({ address: host, port, signal: timeout(1000) })).toEqual({ ok: true, reason: 'connected' });
  });

  it('fails when the port is closed', async () => {
    expect(await tcpCheck({ address: host, port: await closedPort(), signal: timeout(1000) })).toEqual({
      ok: false,
      reason: 'connect ECONNREFUSED',
    });
  });

  it('fails at once when already aborted', async () => {
    const port = await listen(createServer());
    expect(await tcpCheck({ address: host, port, signal: AbortSignal.abort() })).toEqual({ ok: false, reason: 'timed out' });
  });
});

describe('http check', () => {
  const serve = (handler: Parameters<typeof createHttpServer>[1]) => listen(createHttpServer(handler));
  const options = { path: '/health', host: undefined, expectStatus: undefined, expectBody: undefined };

  it('passes on 2xx/3xx and fails on other statuses', async () => {
    const port = await serve((req, res) => {
      res.statusCode = req.url === '/health' ? 204 : 503;
      res.end();
    });
    expect(await httpCheck({ ...options, address: host, port, signal: timeout(1000) })).toEqual({ ok: true, reason: 'status 204' });
    expect(await httpCheck({ ...options, path: '/other', address: host, port, signal: timeout(1000) })).toEqual({
      ok: false,
      reason: 'status 503',
    });
    expect(await httpCheck({ ...options, expectStatus: [200], address: host, port, signal: timeout(1000) })).toEqual({
      ok: false,
      reason: 'status 204',
    });
  });

  it('sends the path and Host header, and matches the body', async () => {
    let seen = '';
    const port = await serve((req, res) => {
      seen = `${req.method} ${req.url} ${req.headers.host}`;
      res.end('status: ok\n');
    });
    const check = { ...options, host: 'backend.test', address: host, port, signal: timeout(1000) };
    expect(await httpCheck({ ...check, expectBody: /status: ok/ })).toEqual({ ok: true, reason: 'status 200, body matched' });
    expect(seen).toBe('GET /health backend.test');
    expect((await httpCheck({ ...check, expectBody: /degraded/ })).ok).toBe(false);
  });

  it('reads at most 64 KiB of a body that never ends', async () => {
    let written = 0;
    const port = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      const chunk = Buffer.alloc(16 * 1024, 'x');
      const pump = () => {
        while (!res.destroyed) {
          written += chunk.length;
          if (!res.write(chunk)) break;
        }
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
    });
    const started = Date.now();
    const result = await httpCheck({ ...options, expectBody: /healthy/, address: host, port, signal: timeout(5000) });
    expect(result).toEqual({
      ok: false,
      reason: `status 200, body did not match /healthy/ in its first ${maxResponseBytes} bytes`,
    });
    expect(Date.now() - started).toBeLessThan(2000);
    // Without a body pattern the body is not read at all.
    expect(await httpCheck({ ...options, address: host, port, signal: timeout(5000) })).toEqual({ ok: true, reason: 'status 200' });
    expect(written).toBeGreaterThan(maxResponseBytes);
  });

  it('fails on endless headers (bounded by the parser)', async () => {
    const port = await listen(
      createServer((socket) => {
        socket.on('error', () => undefined);
        socket.write('HTTP/1.1 200 OK\r\n');
        const flood = () => {
          while (!socket.destroyed && socket.write(`X-Filler: ${'y'.repeat(1000)}\r\n`));
          if (!socket.destroyed) socket.once('drain', flood);
        };
        flood();
      }),
    );
    const result = await httpCheck({ ...options, address: host, port, signal: timeout(5000) });
    expect(result.ok).toBe(false);
    expect(result.reason).toMatch(/^http HPE_HEADER_OVERFLOW/);
  });

  it('times out against a server that never answers', async () => {
    const port = await listen(createServer(() => undefined));
    const started = Date.now();
    expect(await httpCheck({ ...options, address: host, port, signal: timeout(150) })).toEqual({ ok: false, reason: 'timed out' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('fails when the port is closed', async () => {
    expect(await httpCheck({ ...options, address: host, port: await closedPort(), signal: timeout(1000) })).toEqual({
      ok: false,
      reason: 'http ECONNREFUSED',
    });
  });
});

describe('udp check', () => {
  const payload = new TextEncoder().encode('ping');

  it('passes on a reply, matching it when asked', async () => {
    const port = await udpServer((socket, message, rinfo) => socket.send(`pong:${message}`, rinfo.port, rinfo.address));
    expect(await udpCheck({ address: host, port, payload, expectReply: undefined, signal: timeout(1000) })).toEqual({
      ok: true,
      reason: 'replied',
    });
    expect(await udpCheck({ address: host, port, payload, expectReply: /^pong:ping$/, signal: timeout(1000) })).toEqual({
      ok: true,
      reason: 'reply matched',
    });
    expect(await udpCheck({ address: host, port, payload, expectReply: /^ok$/, signal: timeout(1000) })).toEqual({
      ok: false,
      reason: 'reply did not match /^ok$/',
    });
  });

  it('fails at once on port unreachable', async () => {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, host, resolve));
    const port = socket.address().port;
    await new Promise<void>((resolve) => socket.close(() => resolve()));
    const started = Date.now();
    expect(await udpCheck({ address: host, port, payload, expectReply: undefined, signal: timeout(2000) })).toEqual({
      ok: false,
      reason: 'udp ECONNREFUSED',
    });
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('times out against a server that never replies', async () => {
    const port = await udpServer(() => undefined);
    expect(await udpCheck({ address: host, port, payload, expectReply: undefined, signal: timeout(100) })).toEqual({
      ok: false,
      reason: 'timed out',
    });
  });
});

describe('function check', () => {
  it('passes only on true', async () => {
    expect(await functionCheck(async () => true, timeout(1000))).toEqual({ ok: true, reason: 'check passed' });
    expect(await functionCheck(async () => false, timeout(1000))).toEqual({ ok: false, reason: 'check returned false' });
    expect(await functionCheck(async () => { throw new Error('no route'); }, timeout(1000))).toEqual({
      ok: false,
      reason: 'check threw: no route',
    });
  });

  it('ends at the timeout even when the function ignores its signal', async () => {
    let sawAbort = false;
    const result = await functionCheck((signal) => {
      signal.addEventListener('abort', () => (sawAbort = true));
      return new Promise<boolean>(() => undefined);
    }, timeout(50));
    expect(result).toEqual({ ok: false, reason: 'timed out' });
    expect(sawAbort).toBe(true);
  });
});

describe('HealthMonitor', () => {
  it('flips after rise passes and fall failures, and stops checking on stop()', async () => {
    let healthy = true;
    let checks = 0;
    const changes: Array<[boolean, string]> = [];
    const monitor = new HealthMonitor({
      check: async () => {
        checks += 1;
        return healthy ? { ok: true, reason: 'fine' } : { ok: false, reason: 'refused' };
      },
      intervalMs: 10,
      timeoutMs: 100,
      rise: 2,
      fall: 3,
      jitter: 0,
      initiallyUp: false,
      onChange: (up, reason) => changes.push([up, reason]),
    });
    monitor.start();
    await until(() => changes.length === 1);
    expect(changes[0]).toEqual([true, 'health check passed 2 times: fine']);
    expect(checks).toBe(2);
    healthy = false;
    await until(() => changes.length === 2);
    expect(changes[1]).toEqual([false, 'health check failed 3 times: refused']);
    await monitor.stop();
    const after = checks;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(checks).toBe(after);
  });

  it('counts a check that outlives its timeout as failed', async () => {
    const changes: string[] = [];
    const monitor = new HealthMonitor({
      check: (signal) => functionCheck(() => new Promise<boolean>(() => undefined), signal),
      intervalMs: 10,
      timeoutMs: 20,
      rise: 1,
      fall: 1,
      jitter: 0,
      initiallyUp: true,
      onChange: (_up, reason) => changes.push(reason),
    });
    monitor.start();
    await until(() => changes.length === 1);
    expect(changes[0]).toBe('health check failed 1 time: timed out after 20 ms');
    await monitor.stop();
  });
});

async function until(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
