// The optional Prometheus endpoint of `l4lb run`: GET /metrics serves the
// balancer's registry (collected on scrape); nothing else is served.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

import { L4lbError } from '../errors.js';
import type { ListenAddress } from './config-file.js';

export interface MetricsServer {
  /** 'http://host:port/metrics' with the port actually bound. */
  url: string;
  close(): Promise<void>;
}

export async function startMetricsServer(listen: ListenAddress, registry: Registry): Promise<MetricsServer> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      response.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: the metrics are at /metrics\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    registry.metrics().then(
      (text) => {
        response.writeHead(200, { 'Content-Type': registry.contentType });
        response.end(request.method === 'HEAD' ? undefined : text);
      },
      (error: Error) => {
        response.writeHead(500, { 'Content-Type': 'text/plain' }).end(`collecting metrics failed: ${error.message}\n`);
      },
    );
  });
  // Scrapers keep connections alive; they must not hold up shutdown.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    const fail = (error: NodeJS.ErrnoException) =>
      reject(new L4lbError('EMETRICS_LISTEN', `cannot serve metrics on ${listen.host}:${listen.port} (${error.code ?? error.message})`, { cause: error }));
    server.once('error', fail);
    server.listen(listen.port, listen.host, () => {
      server.off('error', fail);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${listen.host}:${port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
