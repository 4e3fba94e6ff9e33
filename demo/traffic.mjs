// The demo's client: HTTP requests on new TCP connections (CONCURRENCY at a
// time, about RATE per second) and UDP datagrams to VIP:PORT, until killed.
// Every second it prints one JSON line with the counts so far per backend.
// usage: node traffic.mjs VIP PORT RATE CONCURRENCY
import { createSocket } from 'node:dgram';
import { request } from 'node:http';

const [vip, portText, rateText, concurrencyText] = process.argv.slice(2);
const port = Number(portText);
const interval = 1000 / Number(rateText);
const concurrency = Number(concurrencyText);
const http = { ok: {}, failed: 0 };
const udp = { ok: {}, failed: 0 };
let inFlight = 0;

function httpOnce() {
  inFlight += 1;
  const req = request({ host: vip, port, path: '/', agent: false, timeout: 2000 }, (response) => {
    const chunks = [];
    response.on('data', (c) => chunks.push(c));
    response.on('end', () => {
      const name = response.headers['x-backend'];
      if (response.statusCode === 200 && Buffer.concat(chunks).toString() === `${name}\n`) http.ok[name] = (http.ok[name] ?? 0) + 1;
      else http.failed += 1;
      inFlight -= 1;
    });
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', () => {
    http.failed += 1;
    inFlight -= 1;
  });
  req.end();
}

function udpOnce() {
  const socket = createSocket('udp4');
  const timer = setTimeout(() => {
    udp.failed += 1;
    socket.close();
  }, 1000);
  socket.on('message', (message) => {
    clearTimeout(timer);
    const name = message.toString().split(':')[0];
    udp.ok[name] = (udp.ok[name] ?? 0) + 1;
    socket.close();
  });
  socket.send('ping', port, vip);
}

let tick = 0;
setInterval(() => {
  if (inFlight < concurrency) httpOnce();
  if (++tick % 4 === 0) udpOnce();
}, interval);
setInterval(() => console.log(JSON.stringify({ http, udp })), 1000);
process.on('SIGTERM', () => {
  console.log(JSON.stringify({ http, udp }));
  process.exit(0);
});
