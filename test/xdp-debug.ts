import { Lab } from '../lib/lab/index.js';
import { BalancerProcess, VIP, backendAddresses, routedTopology, startBackends } from '../demo/topology.js';
const lab = await Lab.create();
try {
  const topology = await routedTopology(lab, { driver: 'af_xdp', workers: 1 });
  await startBackends(topology, { port: 8080 });
  const balancer = await BalancerProcess.start(topology, {
    options: { driver: 'af_xdp', workers: 1 },
    services: [{ service: { address: VIP, port: 80, protocol: 'tcp', method: 'nat', scheduler: 'rr', healthCheck: { type: 'tcp', intervalMs: 200, rise: 1 } }, backends: backendAddresses.map((address) => ({ address, port: 8080 })) }],
  });
  try { await balancer.waitUntilUp(5000); console.log('up'); } catch (e) { console.log('notup', (e as Error).message.slice(0, 1500)); }
  console.log((await topology.balancer.exec(['ip', '-d', 'link', 'show'])).stdout);
  const r = await topology.client.exec(['curl', '-s', '-m', '3', `http://${VIP}/`]).catch((e) => ({ stdout: 'ERR ' + String(e).slice(0, 300) }));
  console.log('curl:', r.stdout.slice(0, 200));
  const s = await balancer.stats();
  console.log(JSON.stringify({ drops: s.drops, counters: s.counters, interfaces: s.interfaces }, null, 0).slice(0, 3000));
  await balancer.close();
  console.log(balancer.process.log.slice(-1500));
} finally {
  await lab.destroy();
}
