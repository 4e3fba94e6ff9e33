// The live dashboard: a read-only web page over node:http. GET / is the page,
// /dashboard.js and /dashboard.css its assets, /events a Server-Sent Events
// stream with one JSON snapshot (stats() and rates()) at once and then every
// intervalMs, /snapshot.json one snapshot. Nothing else is served, nothing
// can be changed through it, and the page builds its DOM from text nodes
// only (no HTML from data), under a Content-Security-Policy that allows no
// inline script. One timer per dashboard, running only while an event
// stream is open, so an unwatched dashboard costs nothing.
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';

import type { LoadBalancerRates, LoadBalancerStats, RateOptions } from '../config/types.js';
import { L4lbError, StateError } from '../errors.js';
import { dashboardUrl, type DashboardOptions, isLoopback, validateDashboardOptions } from './options.js';

/** What the dashboard reads: a LoadBalancer, or anything with the same stats() and rates() (possibly async, e.g. over IPC). */
export interface DashboardSource {
  stats(): LoadBalancerStats | Promise<LoadBalancerStats>;
  rates(options: RateOptions): LoadBalancerRates | Promise<LoadBalancerRates>;
  readonly closed?: boolean;
}

/** One event of the stream (`event: snapshot`), and the body of /snapshot.json. */
export interface DashboardSnapshot {
  /** When it was taken (ISO 8601). */
  at: string;
  /** The stream's interval and the rates' window, for the page's labels. */
  intervalMs: number;
  rateWindowMs: number;
  stats: LoadBalancerStats;
  rates: LoadBalancerRates;
}

export interface Dashboard {
  /** 'http://127.0.0.1:8080/' with the port actually bound. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Event-stream clients connected now. */
  readonly clients: number;
  /** Ends every event stream and stops listening. Idempotent. */
  close(): Promise<void>;
}

// The assets ship in the package at lib/dashboard/assets (package.json
// "files"); this module runs from lib/dashboard (sources) or dist/dashboard
// (the build), two levels below the package root either way.
const assetDirectory = fileURLToPath(new URL('../../lib/dashboard/assets/', import.meta.url));
const assets = [
  { path: '/', file: 'index.html', type: 'text/html; charset=utf-8' },
  { path: '/dashboard.js', file: 'dashboard.js', type: 'text/javascript; charset=utf-8' },
  { path: '/dashboard.css', file: 'dashboard.css', type: 'text/css; charset=utf-8' },
] as const;

const securityHeaders = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

interface StreamClient {
  response: ServerResponse;
  /** The socket's buffer is full: skip snapshots until it drains. */
  waiting: boolean;
}

async function loadAssets(): Promise<Map<string, { body: Buffer; type: string }>> {
  const loaded = new Map<string, { body: Buffer; type: string }>();
  for (const asset of assets) {
    const file = assetDirectory + asset.file;
    try {
      loaded.set(asset.path, { body: await readFile(file), type: asset.type });
    } catch (error) {
      throw new L4lbError('EDASHBOARD_ASSETS', `the dashboard's page is missing from the package: ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); reinstall l4lb`, { cause: error });
    }
  }
  return loaded;
}

function listenError(host: string, port: number, error: NodeJS.ErrnoException): L4lbError {
  const remedy =
    error.code === 'EADDRINUSE'
      ? 'the port is in use: choose another, or port 0 for any free one'
      : error.code === 'EADDRNOTAVAIL'
        ? 'the address is not one of this host’s'
        : error.code === 'EACCES'
          ? 'ports below 1024 need CAP_NET_BIND_SERVICE: choose a higher port'
          : (error.message ?? 'listen failed');
  return new L4lbError('EDASHBOARD_LISTEN', `cannot serve the dashboard on ${dashboardUrl(host, port)} (${error.code ?? 'error'}): ${remedy}`, { cause: error });
}

/** Host header values a loopback listener answers: loopback literals and localhost, any port. */
function loopbackHostHeader(value: string | undefined): boolean {
  if (value === undefined) return true; // HTTP/1.0 without Host
  const match = /^(?:\[([^\]]+)\]|([^:]+))(?::\d+)?$/.exec(value);
  const name = match?.[1] ?? match?.[2];
  return name !== undefined && (name.toLowerCase() === 'localhost' || isLoopback(name));
}

/**
 * Serves the live dashboard of `source` (usually a LoadBalancer; see also
 * `lb.serveDashboard()`). Listens on 127.0.0.1 unless `host` names another
 * address. Rejects with ValidationError for bad options and L4lbError
 * 'EDASHBOARD_LISTEN' when the address cannot be bound.
 */
export function serveDashboard(source: DashboardSource, options: DashboardOptions = {}): Promise<Dashboard> {
  return startDashboard(source, options);
}

/** serveDashboard with a callback run when the dashboard closes (LoadBalancer keeps its open dashboards). */
export async function startDashboard(source: DashboardSource, options: DashboardOptions, onClose?: () => void): Promise<Dashboard> {
  const settings = validateDashboardOptions(options);
  const files = await loadAssets();
  const clients = new Set<StreamClient>();
  let timer: NodeJS.Timeout | undefined;
  let sequence = 0;
  let closing: Promise<void> | undefined;
  // A loopback listener answers only requests addressed to loopback, so a
  // web page elsewhere cannot read it through a name that resolves to
  // 127.0.0.1 (DNS rebinding).
  const checkHost = isLoopback(settings.host);

  const snapshot = async (): Promise<DashboardSnapshot> => {
    if (source.closed) throw new StateError('ECLOSED', 'the load balancer is closed');
    const [stats, rates] = await Promise.all([source.stats(), source.rates({ windowMs: settings.rateWindowMs })]);
    return { at: new Date().toISOString(), intervalMs: settings.intervalMs, rateWindowMs: settings.rateWindowMs, stats, rates };
  };

  const describeFailure = (error: unknown) => ({
    code: error instanceof L4lbError ? error.code : 'ESNAPSHOT',
    message: error instanceof Error ? error.message : String(error),
  });

  const send = (client: StreamClient, text: string) => {
    if (client.waiting) return;
    if (!client.response.write(text)) {
      client.waiting = true;
      client.response.once('drain', () => (client.waiting = false));
    }
  };

  const render = async (): Promise<string> => {
    try {
      return `id: ${++sequence}\nevent: snapshot\ndata: ${JSON.stringify(await snapshot())}\n\n`;
    } catch (error) {
      return `event: unavailable\ndata: ${JSON.stringify(describeFailure(error))}\n\n`;
    }
  };

  let taking = false;
  const tick = async () => {
    if (taking) return; // a slow source: skip a tick rather than queue them
    taking = true;
    try {
      const text = await render();
      for (const client of clients) send(client, text);
    } finally {
      taking = false;
    }
  };

  const first = async (client: StreamClient) => {
    const text = await render();
    if (clients.has(client)) send(client, text);
  };

  const stopTimerIfIdle = () => {
    if (clients.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };

  const openStream = (request: IncomingMessage, response: ServerResponse) => {
    if (clients.size >= settings.maxClients) {
      response
        .writeHead(503, { ...securityHeaders, 'Content-Type': 'text/plain; charset=utf-8', 'Retry-After': '5' })
        .end(`the dashboard serves ${settings.maxClients} event streams at once; try again later\n`);
      return;
    }
    response.writeHead(200, {
      ...securityHeaders,
      'Content-Type': 'text/event-stream; charset=utf-8',
      Connection: 'keep-alive',
    });
    if (request.method === 'HEAD') {
      response.end();
      return;
    }
    request.socket.setNoDelay(true);
    const client: StreamClient = { response, waiting: false };
    clients.add(client);
    response.write(`retry: 2000\n\n`);
    response.on('close', () => {
      clients.delete(client);
      stopTimerIfIdle();
    });
    void first(client);
    timer ??= setInterval(() => void tick(), settings.intervalMs);
  };

  const handle = (request: IncomingMessage, response: ServerResponse) => {
    const path = (request.url ?? '/').split('?')[0]!;
    const text = (status: number, body: string, headers: Record<string, string> = {}) =>
      response.writeHead(status, { ...securityHeaders, 'Content-Type': 'text/plain; charset=utf-8', ...headers }).end(body);
    if (checkHost && !loopbackHostHeader(request.headers.host)) {
      return text(403, 'this dashboard answers requests for 127.0.0.1, [::1] or localhost only\n');
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      return text(405, 'method not allowed: the dashboard is read-only (GET and HEAD)\n', { Allow: 'GET, HEAD' });
    }
    if (path === '/events') return openStream(request, response);
    if (path === '/snapshot.json') {
      snapshot().then(
        (value) => {
          response.writeHead(200, { ...securityHeaders, 'Content-Type': 'application/json; charset=utf-8' });
          response.end(request.method === 'HEAD' ? undefined : JSON.stringify(value));
        },
        (error: unknown) => text(503, `${JSON.stringify(describeFailure(error))}\n`, { 'Content-Type': 'application/json; charset=utf-8' }),
      );
      return;
    }
    const asset = files.get(path);
    if (!asset) return text(404, 'not found: the dashboard is at /\n');
    response.writeHead(200, { ...securityHeaders, 'Content-Type': asset.type, 'Content-Length': asset.body.length });
    response.end(request.method === 'HEAD' ? undefined : asset.body);
  };

  const server: Server = createServer(handle);
  // Browsers keep connections alive; they must not hold up close().
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    const fail = (error: NodeJS.ErrnoException) => reject(listenError(settings.host, settings.port, error));
    server.once('error', fail);
    server.listen({ host: settings.host, port: settings.port, ipv6Only: settings.host.includes(':') }, () => {
      server.off('error', fail);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: dashboardUrl(settings.host, port),
    host: settings.host,
    port,
    get clients() {
      return clients.size;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        onClose?.();
        if (timer) clearInterval(timer);
        timer = undefined;
        for (const client of clients) client.response.end();
        clients.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
