// node --import tsx tools/dashboard-screenshot.ts [OUT.png] [--seconds N]
//
// Renders docs/dashboard.png: a balancer on the memory driver set up like
// the demo (a TCP and a UDP service on one VIP, three backends each, plus a
// service whose only backend is down), real frames through the data plane
// for a few seconds (new TCP flows with their replies, UDP queries and
// answers, some frames with bad checksums, some for the service that has no
// backend up), one backend failing its health check midway, and the
// dashboard in headless Chromium (Debian package chromium) while it runs.
// No privileges and nothing on the wire.
import { parseArgs } from 'node:util';

import { LoadBalancer, type LoadBalancerOptions } from '../lib/index.js';
import { frame, type L4Spec } from '../test/support/packets.js';
import { launchChromium } from '../test/support/browser.js';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { seconds: { type: 'string', default: '10' } } });
const out = positionals[0] ?? new URL('../docs/dashboard.png', import.meta.url).pathname;
const seconds = Number(values.seconds);

const vip = '198.18.100.100';
const inMac = '02:00:00:00:00:01';
const outMac = '02:00:00:00:00:02';
const routerMac = '02:00:00:00:00:fe';
const backends = ['198.18.1.2', '198.18.1.3', '198.18.1.4'];
const backendMac = (address: string) => `02:00:00:00:01:${Number(address.split('.')[3]).toString(16).padStart(2, '0')}`;

const options: LoadBalancerOptions = {
  driver: 'memory',
  interfaces: ['in', 'out'],
  workers: 2,
  flows: { capacity: 65_536 },
  checksums: 'drop',
  memory: {
    interfaces: { in: { mac: inMac, addresses: ['198.18.0.1/24'] }, out: { mac: outMac, addresses: ['198.18.1.1/24'] } },
    neighbours: [
      { address: '198.18.0.254', mac: routerMac, interface: 'in' },
      ...[...backends, '198.18.1.9'].map((address) => ({ address, mac: backendMac(address), interface: 'out' })),
    ],
    routes: [{ prefix: '0.0.0.0/0', via: '198.18.0.254', interface: 'in' }],
    ringFrames: 4096,
  },
};

const healthy = new Map<string, boolean>();
const healthCheck = { type: async (b: { address: string; port: number }) => healthy.get(`${b.address}:${b.port}`) ?? true, intervalMs: 200, timeoutMs: 200, rise: 2, fall: 2 };

const lb = await LoadBalancer.create(options);
lb.on('error', (error) => console.error(error.message));
lb.transaction(() => {
  const web = lb.addService({ address: vip, port: 80, scheduler: 'maglev', healthCheck });
  web.addBackend({ address: backends[0]!, port: 8080 });
  web.addBackend({ address: backends[1]!, port: 8080 });
  web.addBackend({ address: backends[2]!, port: 8080, weight: 2 });
  const dns = lb.addService({ address: vip, port: 53, protocol: 'udp', scheduler: 'sh', healthCheck: { type: 'none' } });
  for (const address of backends) dns.addBackend({ address });
  healthy.set('198.18.1.9:8443', false);
  lb.addService({ address: vip, port: 8443, healthCheck }).addBackend({ address: '198.18.1.9' });
});
for (let i = 0; i < 50 && !lb.stats().services[0]!.backends.every((b) => b.state === 'up'); i++) await new Promise((r) => setTimeout(r, 100));

const dashboard = await lb.serveDashboard();
const browser = await launchChromium();
const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
await page.goto(dashboard.url);

const toVip = (client: string, l4: L4Spec) => frame({ src: routerMac, dst: inMac }, { src: client, dst: vip, l4 });
const decodeOut = (f: Buffer) => ({
  dstMac: [...f.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':'),
  src: [...f.subarray(26, 30)].join('.'),
  dst: [...f.subarray(30, 34)].join('.'),
  protocol: f[23]!,
  sport: f.readUInt16BE(34),
  dport: f.readUInt16BE(36),
});

// Forwarded frames to a backend get a reply from it, as a real server would
// send; a SYN's answer gets the client's first data segment, as its stack
// would send once the handshake is done.
async function answer(): Promise<void> {
  const frames = await lb.memoryPort('out').take({ timeoutMs: 0 });
  for (const f of frames) {
    const p = decodeOut(f);
    if (!backends.includes(p.dst)) continue;
    const syn = p.protocol === 6 && (f[47]! & 0x02) !== 0;
    if (p.protocol === 6 && !syn) continue;
    const l4: L4Spec = syn ? { kind: 'tcp', sport: p.dport, dport: p.sport, flags: 'SA', seq: 9000, ack: 1001 } : { kind: 'udp', sport: p.dport, dport: p.sport, payload: Buffer.from('answer') };
    lb.memoryPort('out').inject(frame({ src: backendMac(p.dst), dst: outMac }, { src: p.dst, dst: p.src, l4 }));
    if (syn) lb.memoryPort('in').inject(toVip(p.src, { kind: 'tcp', sport: p.sport, dport: 80, flags: 'PA', seq: 1001, ack: 9001, payload: Buffer.alloc(600, 0x61) }));
  }
  await lb.memoryPort('in').take({ timeoutMs: 0 }); // the replies the balancer sent toward the clients
}

let port = 1024;
const started = Date.now();
while (Date.now() - started < seconds * 1000) {
  const elapsed = (Date.now() - started) / 1000;
  if (elapsed > seconds * 0.5) healthy.set(`${backends[1]}:8080`, false);
  for (let i = 0; i < 40; i++) {
    const client = `198.18.0.${10 + (port % 200)}`;
    port = port >= 65000 ? 1024 : port + 1;
    lb.memoryPort('in').inject(toVip(client, { kind: 'tcp', sport: port, dport: 80, flags: 'S', seq: 1000 }));
    if (i % 2 === 0) lb.memoryPort('in').inject(toVip(client, { kind: 'udp', sport: port, dport: 53, payload: Buffer.from('query') }));
  }
  for (let i = 0; i < 2; i++) lb.memoryPort('in').inject(toVip('198.18.0.77', { kind: 'tcp', sport: 40000 + i, dport: 80, flags: 'S', checksumError: 1 }));
  lb.memoryPort('in').inject(toVip('198.18.0.78', { kind: 'tcp', sport: port, dport: 8443, flags: 'S' }));
  await new Promise((r) => setTimeout(r, 25));
  await answer();
}
await new Promise((r) => setTimeout(r, 1500));
await page.screenshot({ path: out, fullPage: true });
console.log(`wrote ${out}`);
await browser.close();
await lb.close();
