// Failover driven by real health checks: the backends' servers listen on
// loopback (127.0.0.2, 127.0.0.3), the health checks reach them through the
// host's stack, and the memory driver's data plane forwards the clients'
// frames. Stopping a server marks its backend down within
// fall × intervalMs + one timeout, and new connections go elsewhere;
// restarting it brings the backend back after `rise` checks.
// (The same scenario with real TCP through AF_PACKET belongs to the e2e tier.)
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';

import type { LoadBalancer } from '../../lib/load-balancer.js';
import { createBalancer, decode, memoryOptions, tcp, toVip, until, vip } from '../support/balancer.js';

const servers: Array<{ server: Server; sockets: Set<Socket> }> = [];
let lb: LoadBalancer | undefined;
afterEach(async () => {
  await lb?.close();
  for (const { server, sockets } of servers.splice(0)) {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
});

async function serve(address: string, port: number): Promise<() => Promise<void>> {
  const server = createServer((socket) => socket.end());
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, resolve);
  });
  const entry = { server, sockets };
  servers.push(entry);
  return async () => {
    servers.splice(servers.indexOf(entry), 1);
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  };
}

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

describe('health-check failover over the memory data plane', () => {
  it('marks a stopped server down within fall × interval + timeout, moves new flows, and brings it back', async () => {
    const port = await freePort();
    const [first, second] = ['127.0.0.2', '127.0.0.3'];
    const stopFirst = await serve(first, port);
    await serve(second, port);
    const options = memoryOptions();
    options.memory!.neighbours!.push(
      { address: first, mac: '02:00:00:00:7f:02', interface: 'out' },
      { address: second, mac: '02:00:00:00:7f:03', interface: 'out' },
    );
    options.memory!.routes!.push({ prefix: '127.0.0.0/8', interface: 'out' });
    lb = await createBalancer(options);
    const intervalMs = 50;
    const timeoutMs = 100;
    const fall = 2;
    const rise = 2;
    const web = lb.addService({
      address: vip,
      port: 80,
      healthCheck: { type: 'tcp', intervalMs, timeoutMs, rise, fall, jitter: 0 },
    });
    const a = web.addBackend({ address: first, port });
    const b = web.addBackend({ address: second, port });
    const transitions: Array<{ address: string; state: string; at: number; reason: string }> = [];
    lb.on('backend-state', (e) => transitions.push({ address: e.backend.address, state: e.state, at: Date.now(), reason: e.reason }));
    await until(() => a.state === 'up' && b.state === 'up', 3000, 'both up');

    const flows = async (from: number): Promise<Set<string>> => {
      for (let i = 0; i < 16; i++) lb!.memoryPort('in').inject(toVip(tcp(from + i, 'S')));
      const frames = await lb!.memoryPort('out').take({ count: 16, timeoutMs: 2000 });
      expect(frames).toHaveLength(16);
      return new Set(frames.map((f) => decode(f).dstAddress));
    };
    expect(await flows(51000)).toEqual(new Set([first, second]));

    const stoppedAt = Date.now();
    await stopFirst();
    await until(() => a.state === 'down', 3000, 'first down');
    const detected = Date.now() - stoppedAt;
    // A refused connect fails at once: fall checks, intervalMs apart, plus at most one check in flight.
    expect(detected).toBeLessThanOrEqual(fall * intervalMs + timeoutMs + 100);
    expect(transitions.at(-1)).toMatchObject({ address: first, state: 'down' });
    expect(transitions.at(-1)!.reason).toBe('health check failed 2 times: connect ECONNREFUSED');
    expect(await flows(52000)).toEqual(new Set([second]));

    await serve(first, port);
    await until(() => a.state === 'up', 3000, 'first back');
    expect(transitions.at(-1)).toMatchObject({ address: first, state: 'up', reason: 'health check passed 2 times: connected' });
    expect(await flows(53000)).toEqual(new Set([first, second]));
  });
});
