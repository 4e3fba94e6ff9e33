// The dashboard's HTTP server, by real HTTP requests against a balancer on
// the memory driver: the page and its assets, the event stream (a snapshot
// equal to lb.stats() at once, then one a second, following changes), the
// JSON snapshot, 404 and 405, the loopback default and its Host check,
// option errors, listen errors, and closing with the balancer.
import { request } from 'node:http';
import { createServer, connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { serveDashboard, type Dashboard } from '../../lib/dashboard/index.js';
import { L4lbError, StateError, ValidationError } from '../../lib/errors.js';
import type { LoadBalancerStats } from '../../lib/config/types.js';
import type { LoadBalancer } from '../../lib/load-balancer.js';
import type { Service } from '../../lib/service.js';
import { backendAddress, createBalancer, tcp, toVip, until, vip } from '../support/balancer.js';
import { openEventStream, streamEnds, type EventStream } from '../support/dashboard.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function http(port: number, path: string, options: { method?: string; headers?: Record<string, string>; host?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: options.host ?? '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers ?? {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

// Counters a worker moves by itself while flows are tracked (its expiry
// timer wakes it): everything else of stats() stands still without traffic.
const housekeeping = ['expiryTicks', 'idlePolls', 'wakeups'];
function steady(stats: LoadBalancerStats): LoadBalancerStats {
  const strip = (counters: Record<string, number>) => Object.fromEntries(Object.entries(counters).filter(([name]) => !housekeeping.includes(name)));
  return { ...stats, counters: strip(stats.counters), workers: stats.workers.map((w) => ({ ...w, counters: strip(w.counters) })) };
}

function refused(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 2000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(true);
    });
  });
}

describe('the dashboard server', () => {
  let lb: LoadBalancer;
  let web: Service;
  let dashboard: Dashboard;
  const streams: EventStream[] = [];

  beforeAll(async () => {
    lb = await createBalancer({ workers: 1 });
    lb.transaction(() => {
      web = lb.addService({ address: vip, port: 80, healthCheck: { type: 'none' } });
      web.addBackend({ address: backendAddress(2), port: 8080 });
      web.addBackend({ address: backendAddress(3), port: 8080, weight: 2 });
      lb.addService({ address: vip, port: 53, protocol: 'udp', healthCheck: { type: 'none' } }).addBackend({ address: backendAddress(4) });
    });
    await until(() => lb.stats().workers.every((w) => w.configGeneration >= lb.generation), 5000, 'workers adopting the configuration');
    // Traffic, so that the counters the snapshot must match are not all zero.
    for (let i = 0; i < 20; i++) lb.memoryPort('in').inject(toVip(tcp(41000 + i, 'S')));
    await lb.memoryPort('out').take({ count: 20, timeoutMs: 5000 });
    await until(() => lb.stats().packets === 20, 5000, 'the workers counting 20 packets');
    dashboard = await lb.serveDashboard({ intervalMs: 200 });
  });

  afterEach(async () => {
    for (const stream of streams.splice(0)) await stream.close();
  });

  afterAll(async () => {
    await lb.close();
  });

  const stream = async (path = 'events') => {
    const opened = await openEventStream(dashboard.url + path);
    streams.push(opened);
    return opened;
  };

  it('listens on loopback by default, on the port it reports', async () => {
    expect(dashboard.host).toBe('127.0.0.1');
    expect(dashboard.url).toBe(`http://127.0.0.1:${dashboard.port}/`);
    expect(dashboard.port).toBeGreaterThan(0);
    // Not reachable on any other address of this host.
    const others = Object.values(networkInterfaces())
      .flat()
      .filter((a) => a !== undefined && !a.internal && a.family === 'IPv4')
      .map((a) => a!.address);
    for (const address of others) expect(await refused(address, dashboard.port), address).toBe(true);
  });

  it('serves the page and its assets with their types, a strict CSP and no caching; HEAD too', async () => {
    const page = await http(dashboard.port, '/');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.body).toContain('<script src="/dashboard.js" defer></script>');
    expect(page.body).toContain('<link rel="stylesheet" href="/dashboard.css">');
    expect(page.headers['content-security-policy']).toMatch(/default-src 'none'; script-src 'self';/);
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    expect(page.headers['cache-control']).toBe('no-store');
    const script = await http(dashboard.port, '/dashboard.js');
    expect(script.status).toBe(200);
    expect(script.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(script.body).toContain("new EventSource('/events')");
    const style = await http(dashboard.port, '/dashboard.css');
    expect(style.status).toBe(200);
    expect(style.headers['content-type']).toBe('text/css; charset=utf-8');
    const head = await http(dashboard.port, '/', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    expect(Number(head.headers['content-length'])).toBe(Buffer.byteLength(page.body));
  });

  it('the event stream sends a snapshot equal to lb.stats() at once, as text/event-stream', async () => {
    // A minute between snapshots: the first one within seconds was sent at once, not by the timer.
    const slow = await serveDashboard(lb, { intervalMs: 60_000 });
    const events = await openEventStream(`${slow.url}events`);
    streams.push(events);
    expect(events.response.status).toBe(200);
    expect(events.response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const first = await events.next();
    expect(first.retry).toBe(2000);
    const snapshot = await events.snapshot(10_000).finally(() => slow.close());
    expect(steady(snapshot.stats)).toEqual(steady(lb.stats()));
    expect(snapshot.stats.packets).toBe(20);
    expect(snapshot.stats.services.map((s) => `${s.address}:${s.port}/${s.protocol}`)).toEqual([`${vip}:80/tcp`, `${vip}:53/udp`]);
    expect(snapshot.stats.services[0]!.backends.map((b) => [b.address, b.weight, b.state])).toEqual([
      [backendAddress(2), 1, 'up'],
      [backendAddress(3), 2, 'up'],
    ]);
    expect(snapshot.stats.services[0]!.totalFlows).toBe(20);
    expect(snapshot.rates.services).toHaveLength(2);
    expect(snapshot.rateWindowMs).toBe(5000);
    expect(snapshot.intervalMs).toBe(60_000);
    expect(Number.isNaN(Date.parse(snapshot.at))).toBe(false);
  });

  it('keeps sending snapshots every interval, and they follow changes (a weight, new traffic)', async () => {
    const events = await stream();
    await events.snapshot();
    const t0 = Date.now();
    await events.snapshot();
    await events.snapshot();
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeGreaterThan(300);
    expect(elapsed).toBeLessThan(1500);

    web.backends[0]!.setWeight(7);
    for (let i = 0; i < 5; i++) lb.memoryPort('in').inject(toVip(tcp(42000 + i, 'S')));
    await lb.memoryPort('out').take({ count: 5, timeoutMs: 5000 });
    let latest = await events.snapshot();
    const deadline = Date.now() + 5000;
    while (latest.stats.packets < 25 && Date.now() < deadline) latest = await events.snapshot();
    expect(latest.stats.services[0]!.backends[0]!.weight).toBe(7);
    expect(latest.stats.packets).toBe(25);
    expect(latest.rates.packetsPerSec).toBeGreaterThan(0);
    web.backends[0]!.setWeight(1);
  });

  it('serves several streams at once and stops its timer when the last one goes', async () => {
    const a = await stream();
    const b = await stream();
    await a.snapshot();
    await b.snapshot();
    await until(() => dashboard.clients === 2, 2000, 'two clients');
    await a.close();
    await b.close();
    await until(() => dashboard.clients === 0, 2000, 'no clients');
  });

  it('/snapshot.json is one snapshot', async () => {
    const answer = await http(dashboard.port, '/snapshot.json');
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toBe('application/json; charset=utf-8');
    const snapshot = JSON.parse(answer.body) as { stats: LoadBalancerStats };
    expect(steady(snapshot.stats)).toEqual(steady(lb.stats()));
  });

  it('answers 404 for any other path, query strings aside', async () => {
    for (const path of ['/nope', '/index.html', '/dashboard.js/x', '/../package.json', '/events/', '/metrics']) {
      const answer = await http(dashboard.port, path);
      expect(answer.status, path).toBe(404);
      expect(answer.body).toBe('not found: the dashboard is at /\n');
    }
    expect((await http(dashboard.port, '/?refresh=1')).status).toBe(200);
  });

  it('is read-only: every method but GET and HEAD is 405 with Allow, and changes nothing', async () => {
    const generation = lb.generation;
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      for (const path of ['/', '/events', '/snapshot.json']) {
        const answer = await http(dashboard.port, path, { method, headers: { 'Content-Type': 'application/json' } });
        expect(answer.status, `${method} ${path}`).toBe(405);
        expect(answer.headers.allow).toBe('GET, HEAD');
      }
    }
    expect(lb.generation).toBe(generation);
  });

  it('on loopback, answers only requests addressed to loopback (no DNS rebinding)', async () => {
    for (const host of [`127.0.0.1:${dashboard.port}`, `localhost:${dashboard.port}`, 'LOCALHOST', `[::1]:${dashboard.port}`, '127.1.2.3']) {
      expect((await http(dashboard.port, '/', { headers: { Host: host } })).status, host).toBe(200);
    }
    for (const host of [`attacker.example:${dashboard.port}`, 'localhost.attacker.example', '198.18.0.1', '[::2]']) {
      const answer = await http(dashboard.port, '/events', { headers: { Host: host } });
      expect(answer.status, host).toBe(403);
    }
  });

  it('answers 503 to an event stream beyond maxClients', async () => {
    const small = await serveDashboard(lb, { maxClients: 1 });
    try {
      const one = await openEventStream(`${small.url}events`);
      streams.push(one);
      await one.snapshot();
      const two = await http(small.port, '/events');
      expect(two.status).toBe(503);
      expect(two.headers['retry-after']).toBe('5');
    } finally {
      await small.close();
    }
  });

  it('rejects bad options with ValidationError naming the field, and listens on nothing', async () => {
    const cases: Array<[unknown, string, string, RegExp]> = [
      [{ host: 'localhost' }, 'EINVAL_ADDRESS', 'host', /^host must be an IPv4 or IPv6 address/],
      [{ host: '999.1.1.1' }, 'EINVAL_ADDRESS', 'host', /got "999\.1\.1\.1"$/],
      [{ host: 7 }, 'EINVAL_ADDRESS', 'host', /got 7$/],
      [{ port: 70000 }, 'EINVAL_RANGE', 'port', /^port must be an integer from 0 to 65535, got 70000$/],
      [{ port: -1 }, 'EINVAL_RANGE', 'port', /got -1$/],
      [{ port: '8080' }, 'EINVAL_TYPE', 'port', /got "8080"$/],
      [{ port: 80.5 }, 'EINVAL_RANGE', 'port', /got 80\.5$/],
      [{ intervalMs: 10 }, 'EINVAL_RANGE', 'intervalMs', /from 100 to 60000/],
      [{ listen: '127.0.0.1:80' }, 'EINVAL_UNKNOWN_FIELD', 'listen', /^listen is not an option of the dashboard \(known: host, port,/],
      ['127.0.0.1:8080', 'EINVAL_TYPE', '', /must be an object/],
    ];
    for (const [options, code, path, message] of cases) {
      const error = await lb.serveDashboard(options as never).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, JSON.stringify(options)).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).code).toBe(code);
      expect((error as ValidationError).path).toBe(path);
      expect((error as Error).message).toMatch(message);
    }
  });

  it('rejects a port in use with EDASHBOARD_LISTEN naming the remedy', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as { port: number };
    try {
      const error = await lb.serveDashboard({ port }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(L4lbError);
      expect((error as L4lbError).code).toBe('EDASHBOARD_LISTEN');
      expect((error as Error).message).toBe(`cannot serve the dashboard on http://127.0.0.1:${port}/ (EADDRINUSE): the port is in use: choose another, or port 0 for any free one`);
    } finally {
      blocker.close();
    }
  });

  it('listens on another address only when asked (0.0.0.0: every address, any Host)', async () => {
    const open = await lb.serveDashboard({ host: '0.0.0.0' });
    try {
      expect(open.url).toBe(`http://0.0.0.0:${open.port}/`);
      expect((await http(open.port, '/', { headers: { Host: `lb.example:${open.port}` } })).status).toBe(200);
    } finally {
      await open.close();
    }
  });

  it('on IPv6 loopback too', async () => {
    const six = await lb.serveDashboard({ host: '::1' });
    try {
      expect(six.url).toBe(`http://[::1]:${six.port}/`);
      const answer = await http(six.port, '/snapshot.json', { host: '::1' });
      expect(answer.status).toBe(200);
      expect(await refused('127.0.0.1', six.port)).toBe(true);
    } finally {
      await six.close();
    }
  });

  it("closes with the balancer: its streams end, its port is released, and serveDashboard() is then ECLOSED", async () => {
    const own = await createBalancer({ workers: 1 });
    const board = await own.serveDashboard();
    const events = await openEventStream(`${board.url}events`);
    await events.snapshot();
    await own.close();
    expect(await streamEnds(events)).toBe(true);
    expect(await refused('127.0.0.1', board.port)).toBe(true);
    await board.close(); // idempotent
    const error = await own.serveDashboard().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StateError);
    expect((error as StateError).code).toBe('ECLOSED');
  });

  it('over a closed source, the stream says unavailable and /snapshot.json is 503', async () => {
    const own = await createBalancer({ workers: 1 });
    // serveDashboard() (not lb.serveDashboard) does not close with the balancer.
    const board = await serveDashboard(own, { intervalMs: 100 });
    try {
      const events = await openEventStream(`${board.url}events`);
      streams.push(events);
      await events.snapshot();
      await own.close();
      let event = await events.next();
      while (event.event === 'snapshot') event = await events.next();
      expect(event.event).toBe('unavailable');
      expect(JSON.parse(event.data)).toEqual({ code: 'ECLOSED', message: 'the load balancer is closed' });
      const answer = await http(board.port, '/snapshot.json');
      expect(answer.status).toBe(503);
      expect(JSON.parse(answer.body).code).toBe('ECLOSED');
    } finally {
      await board.close();
    }
  });
});
