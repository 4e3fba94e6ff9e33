// HTTP server for the TCP benchmark scenarios.
//   GET /          -> "ok\n" (connection-rate scenario: one short request per connection)
//   GET /stream/N  -> N bytes from a repeated 64 KiB buffer (bulk scenario)
// usage: node tcp-server.mjs ADDRESS PORT
import { createServer } from 'node:http';

const [address, port] = process.argv.slice(2);
const chunk = Buffer.alloc(64 * 1024, 0x5a);
const server = createServer((request, response) => {
  const match = /^\/stream\/(\d+)$/.exec(request.url ?? '');
  if (!match) {
    response.writeHead(200, { 'content-length': 3, connection: 'close' });
    response.end('ok\n');
    return;
  }
  let left = Number(match[1]);
  response.writeHead(200, { 'content-length': left });
  const pump = () => {
    while (left > 0) {
      const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
      left -= piece.length;
      if (!response.write(piece)) return void response.once('drain', pump);
    }
    response.end();
  };
  pump();
});
server.keepAliveTimeout = 1000;
server.listen(Number(port), address, () => console.log(JSON.stringify({ event: 'listening', address, port: Number(port) })));
process.on('SIGTERM', () => process.exit(0));
