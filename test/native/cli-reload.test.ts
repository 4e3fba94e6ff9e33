// Reloads through the CLI's Runner, in this process so that frames can be
// injected into the memory driver's ports: a reload applies only the
// difference, in one snapshot, and never moves an established flow of an
// unchanged backend; a bad file, a refused change and a change the balancer
// rejects halfway all leave the running configuration exactly as it was.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

import { type ConfigFile, ConfigFileError, parseConfig } from '../../lib/cli/config-file.js';
import { ReloadRefusedError } from '../../lib/cli/reload.js';
import { Runner } from '../../lib/cli/runner.js';
import type { LoadBalancer } from '../../lib/load-balancer.js';
import { backendAddress, backendMac, decode, tcp, toVip, until, vip } from '../support/balancer.js';

interface BackendSpec {
  address: string;
  port?: number;
  weight?: number;
}

interface ServiceSpec {
  address: string;
  port: number;
  protocol?: string;
  scheduler?: string;
  healthCheck?: unknown;
  backends: BackendSpec[];
}

const memory = {
  interfaces: {
    in: { mac: '02:00:00:00:00:01', addresses: ['198.18.0.1/24'] },
    out: { mac: '02:00:00:00:00:02', addresses: ['198.18.1.1/24'] },
  },
  neighbours: [
    { address: '198.18.0.254', mac: '02:00:00:00:00:fe', interface: 'in' },
    ...[2, 3, 4, 5, 6, 7].map((n) => ({ address: backendAddress(n), mac: backendMac(n), interface: 'out' })),
  ],
  routes: [{ prefix: '0.0.0.0/0', via: '198.18.0.254', interface: 'in' }],
};

/** A configuration file (JSON, which the loader reads as YAML) with these services. */
function configFile(services: ServiceSpec[], balancer: Record<string, unknown> = {}): ConfigFile {
  const text = JSON.stringify({
    balancer: { interfaces: ['in', 'out'], driver: 'memory', workers: 2, flows: { capacity: 4096 }, maxBackends: 64, memory, ...balancer },
    services: services.map((s) => ({ healthCheck: { type: 'none' }, ...s })),
  });
  return parseConfig(text, 'reload.json');
}

const web = (backends: BackendSpec[], extra: Partial<ServiceSpec> = {}): ServiceSpec => ({ address: vip, port: 80, scheduler: 'wrr', backends, ...extra });
const at = (n: number, weight = 1): BackendSpec => ({ address: backendAddress(n), port: 8080, weight });

const running: Runner[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.close()));
});

async function start(config: ConfigFile, log: string[] = []): Promise<Runner> {
  const runner = await Runner.start(config, { log: (line) => log.push(line) });
  running.push(runner);
  await settled(runner.balancer);
  return runner;
}

async function settled(lb: LoadBalancer): Promise<void> {
  const generation = lb.generation;
  await until(() => lb.stats().workers.every((w) => w.configGeneration >= generation), 2000, 'workers adopting the configuration');
}

/** Sends one packet per client port and returns the backend each one reached. */
async function send(lb: LoadBalancer, ports: number[], flags: string, dport = 80): Promise<Map<number, string>> {
  for (const port of ports) expect(lb.memoryPort('in').inject(toVip(tcp(port, flags, dport)))).toBe(true);
  const frames = await lb.memoryPort('out').take({ count: ports.length, timeoutMs: 3000 });
  expect(frames).toHaveLength(ports.length);
  return new Map(frames.map((frame) => [decode(frame).srcPort, decode(frame).dstAddress]));
}

const range = (from: number, count: number) => Array.from({ length: count }, (_, i) => from + i);
const summary = (lb: LoadBalancer) =>
  lb.stats().services.map((s) => `${s.address}:${s.port}/${s.protocol} ${s.scheduler} ${s.backends.map((b) => `${b.address}:${b.port}=${b.weight}`).join(' ')}`);

describe('reload applies the difference without moving established flows', () => {
  it('weights, added and removed backends and services, in one snapshot', async () => {
    const log: string[] = [];
    const runner = await start(configFile([web([at(2), at(3)]), { address: vip, port: 443, backends: [at(6)] }]), log);
    const lb = runner.balancer;
    const established = await send(lb, range(40000, 40), 'S');
    expect(new Set(established.values())).toEqual(new Set([backendAddress(2), backendAddress(3)]));
    const services = lb.services;
    const generation = lb.generation;

    // Drain 198.18.1.2, add 198.18.1.4, remove the 443 service, add a UDP one.
    const outcome = runner.reload(
      configFile([web([at(2, 0), at(3), at(4, 3)]), { address: vip, port: 53, protocol: 'udp', backends: [{ address: backendAddress(7) }] }]),
    );
    expect(outcome.operations).toEqual([
      'remove service 198.18.0.100:443/tcp (its flows end)',
      'add backend 198.18.1.4:8080 to 198.18.0.100:80/tcp (weight 3)',
      'add service 198.18.0.100:53/udp with 1 backend',
      'set weight of 198.18.1.2:8080 in 198.18.0.100:80/tcp from 1 to 0',
    ]);
    // One transaction, one publication.
    expect(lb.generation).toBe(generation + 1);
    expect(outcome.generation).toBe(generation + 1);
    // The unchanged service is the same object: it was never replaced.
    expect(lb.services[0]).toBe(services[0]);
    expect(summary(lb)).toEqual([
      '198.18.0.100:80/tcp wrr 198.18.1.2:8080=0 198.18.1.3:8080=1 198.18.1.4:8080=3',
      '198.18.0.100:53/udp wrr 198.18.1.7:53=1',
    ]);
    await settled(lb);

    // Every established flow keeps its backend, the drained one included.
    expect(await send(lb, [...established.keys()], 'A')).toEqual(established);
    // New flows follow the new file: nothing to the drained backend, 3:1 for .4 over .3.
    const fresh = await send(lb, range(41000, 40), 'S');
    const counts = new Map<string, number>();
    for (const address of fresh.values()) counts.set(address, (counts.get(address) ?? 0) + 1);
    expect(counts.get(backendAddress(2))).toBeUndefined();
    expect(counts.get(backendAddress(4))).toBe(30);
    expect(counts.get(backendAddress(3))).toBe(10);
    expect(lb.stats().drops['no-backend'] ?? 0).toBe(0);
    expect(log).toContain('reload reload.json: 4 changes applied (generation ' + (generation + 1) + ')');
    expect(log).toContain('  set weight of 198.18.1.2:8080 in 198.18.0.100:80/tcp from 1 to 0');
  });

  it('a replaced service (scheduler changed) resets its own flows and leaves the others alone', async () => {
    const runner = await start(configFile([web([at(2)]), web([at(3)], { port: 81 })]));
    const lb = runner.balancer;
    const onWeb = await send(lb, range(42000, 5), 'S', 80);
    const onOther = await send(lb, range(42100, 5), 'S', 81);
    const outcome = runner.reload(configFile([web([at(2)], { scheduler: 'maglev' }), web([at(3)], { port: 81 })]));
    expect(outcome.operations).toEqual(['replace service 198.18.0.100:80/tcp (scheduler changed; its established flows are reset)']);
    await settled(lb);
    // The untouched service's flows continue.
    expect(await send(lb, [...onOther.keys()], 'A', 81)).toEqual(onOther);
    // The replaced one's flows end with a TCP reset toward the client (onBackendRemoved: reset).
    for (const port of onWeb.keys()) lb.memoryPort('in').inject(toVip(tcp(port, 'A', 80)));
    const resets = await lb.memoryPort('in').take({ count: onWeb.size, timeoutMs: 3000 });
    expect(resets.map((frame) => decode(frame).tcpFlags & 0x04)).toEqual(Array(onWeb.size).fill(0x04));
    expect(await lb.memoryPort('out').take({ timeoutMs: 50 })).toEqual([]);
  });

  it('the same file again changes nothing and publishes nothing', async () => {
    const config = configFile([web([at(2), at(3)])]);
    const runner = await start(config);
    const generation = runner.balancer.generation;
    expect(runner.reload(configFile([web([at(3), at(2)])]))).toMatchObject({ changed: false, operations: [], generation });
    expect(runner.balancer.generation).toBe(generation);
  });
});

describe('a file that cannot be applied is rejected whole', () => {
  it('an invalid file: the error names file, line, path and rule; nothing changes', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'l4lb-cli-reload-'));
    const file = join(directory, 'l4lb.json');
    try {
      const log: string[] = [];
      const runner = await start({ ...configFile([web([at(2), at(3)])]), file }, log);
      const before = summary(runner.balancer);
      const generation = runner.balancer.generation;
      writeFileSync(file, '{"balancer": {"interfaces": ["in", "out"]},\n "services": [{"address": "198.18.0.100", "port": 80,\n  "backends": [{"address": "198.18.1.9", "weight": -1}]}]}');
      const message = `${file}:3: services[0].backends[0].weight: must be an integer from 0 to 65535, got -1`;
      expect(() => runner.reloadFromFile('test')).toThrow(message);
      expect(log.slice(-2)).toEqual([`reloading ${file} (test)`, `reload rejected, the running configuration stays: ${message}`]);
      expect(summary(runner.balancer)).toEqual(before);
      expect(runner.balancer.generation).toBe(generation);
      expect(runner.info().lastReload).toMatchObject({ ok: false, message });
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('a balancer change is refused with the reason; nothing changes', async () => {
    const log: string[] = [];
    const runner = await start(configFile([web([at(2)])]), log);
    const generation = runner.balancer.generation;
    expect(() => runner.reload(configFile([web([at(2), at(3)])], { workers: 1 }))).toThrow(ReloadRefusedError);
    expect(log.at(-1)).toBe(
      'reload rejected, the running configuration stays: reload.json:1: balancer.workers: cannot change while l4lb runs (2 -> 1); the balancer section applies at start: restart l4lb to use it',
    );
    expect(runner.balancer.generation).toBe(generation);
    expect(summary(runner.balancer)).toEqual(['198.18.0.100:80/tcp wrr 198.18.1.2:8080=1']);
    expect(runner.info().lastReload).toMatchObject({ ok: false });
  });

  it('an operation the balancer refuses halfway undoes the whole transaction', async () => {
    // At the maxBackends limit a removed backend's slot is free only once the
    // transaction commits, so swapping one backend for another is refused.
    const log: string[] = [];
    const runner = await start(configFile([web([at(2), at(3)])], { maxBackends: 2 }), log);
    const lb = runner.balancer;
    const established = await send(lb, range(43000, 10), 'S');
    const generation = lb.generation;
    let error: unknown;
    try {
      runner.reload(configFile([web([at(2, 5), at(4)])], { maxBackends: 2 }));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigFileError);
    expect((error as ConfigFileError).message).toBe(
      'reload.json:1: services[0].backends[1]: add backend 198.18.1.4:8080 to 198.18.0.100:80/tcp (weight 1): the load balancer holds 2 backends already (maxBackends)',
    );
    // Neither the removal nor the weight before it happened.
    expect(lb.generation).toBe(generation);
    expect(summary(lb)).toEqual(['198.18.0.100:80/tcp wrr 198.18.1.2:8080=1 198.18.1.3:8080=1']);
    expect(await send(lb, [...established.keys()], 'A')).toEqual(established);
    expect(log.at(-1)).toMatch(/^reload rejected, the running configuration stays: reload\.json:1: services\[0\]\.backends\[1\]: /);
  });

  it('reloadFromFile: a file that cannot be read is rejected', async () => {
    const config = configFile([web([at(2)])]);
    const runner = await start({ ...config, file: '/nonexistent/l4lb.json' });
    expect(() => runner.reloadFromFile('test')).toThrow('/nonexistent/l4lb.json: cannot be read (ENOENT)');
    expect(summary(runner.balancer)).toEqual(['198.18.0.100:80/tcp wrr 198.18.1.2:8080=1']);
  });
});

describe('Runner.start', () => {
  it('starts from the test fixture and answers control requests', async () => {
    const file = fileURLToPath(new URL('../fixtures/cli/memory.yaml', import.meta.url));
    const runner = await start(parseConfig(readFileSync(file, 'utf8'), file));
    expect(summary(runner.balancer)).toEqual([
      '198.18.0.100:80/tcp wrr 198.18.1.2:8080=1 198.18.1.3:8080=1',
      '198.18.0.100:53/udp sh 198.18.1.4:53=1',
    ]);
    const status = runner.handle({ command: 'status' }) as { instance: { file: string; reloads: number }; stats: { services: Array<{ persistenceTimeoutMs?: number }> } };
    expect(status.instance).toMatchObject({ file, reloads: 0, pid: process.pid });
    expect(status.stats.services.map((s) => s.persistenceTimeoutMs)).toEqual([undefined, 300_000]);
    expect(() => runner.handle({ command: 'shutdown' })).toThrow('unknown command "shutdown" (known: status, stats, rates, reload, explain)');
  });
});
