// A LoadBalancer inside the benchmark's balancer namespace, driven over
// stdin/stdout (one JSON object per line). The harness pins the process to
// the generator's CPU (taskset) and the worker to the forwarder's
// (afPacket.cpus), so the control plane never competes with the worker.
// argv[2]: JSON LoadBalancerOptions. Commands:
//   {"cmd":"configure","id":N,"services":[{"service":{...},"backends":[...]}]}  replaces every service in one transaction
//   {"cmd":"stats","id":N}  -> {"event":"stats","id":N,"stats":..., "workerThreads":[{tid,cpuNs}], "processCpuNs", "rssBytes"}
//   {"cmd":"close"}
// Prints {"event":"ready","pid",...} once serving.
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { LoadBalancer } from '../../lib/index.js';
import type { BackendOptions, LoadBalancerOptions, Service, ServiceOptions } from '../../lib/index.js';

const print = (value: unknown) => process.stdout.write(JSON.stringify(value) + '\n');

function threads(): Set<number> {
  return new Set(readdirSync('/proc/self/task').map(Number));
}

function statFields(path: string): string[] {
  const text = readFileSync(path, 'utf8');
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

function cpuNs(path: string): number {
  try {
    const fields = statFields(path);
    return (Number(fields[11]) + Number(fields[12])) * 1e7;
  } catch {
    return 0;
  }
}

function comm(tid: number): string {
  try {
    return readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

function rssBytes(): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return match ? Number(match[1]) * 1024 : 0;
}

const options = JSON.parse(process.argv[2]!) as LoadBalancerOptions;
const before = threads();
const rssBeforeCreate = rssBytes();
const lb = await LoadBalancer.create(options);
// The engine's worker threads are the threads create() started that carry the
// main thread's name (std::thread inherits it; libuv and V8 name theirs).
const mainName = comm(process.pid);
const workerTids = [...threads()].filter((tid) => !before.has(tid) && comm(tid) === mainName);
lb.on('error', (error) => print({ event: 'error', code: (error as { code?: string }).code, message: error.message }));
let services: Service[] = [];

print({ event: 'ready', pid: process.pid, workerTids, rssBeforeCreate, rssAfterCreate: rssBytes() });

createInterface({ input: process.stdin }).on('line', (line) => {
  let command: { cmd: string; id?: number; services?: Array<{ service: ServiceOptions; backends: BackendOptions[] }> };
  try {
    command = JSON.parse(line);
  } catch {
    return;
  }
  try {
    if (command.cmd === 'configure') {
      services = lb.transaction(() => {
        for (const s of services) lb.removeService(s);
        return (command.services ?? []).map(({ service, backends }) => {
          const s = lb.addService(service);
          for (const b of backends) s.addBackend(b);
          return s;
        });
      });
      print({ event: 'configured', id: command.id });
    } else if (command.cmd === 'stats') {
      const stats = lb.stats();
      print({
        event: 'stats',
        id: command.id,
        stats: { workers: stats.workers, flows: stats.flows, drops: stats.drops, counters: stats.counters, services: stats.services, interfaces: stats.interfaces },
        workerThreads: workerTids.map((tid) => ({ tid, cpuNs: cpuNs(`/proc/self/task/${tid}/stat`) })),
        processCpuNs: cpuNs('/proc/self/stat'),
        rssBytes: rssBytes(),
      });
    } else if (command.cmd === 'close') {
      void lb.close().then(() => {
        print({ event: 'closed' });
        process.exit(0);
      });
    }
  } catch (error) {
    print({ event: 'error', id: command.id, code: (error as { code?: string }).code, message: (error as Error).message });
  }
});
process.on('SIGTERM', () => void lb.close().then(() => process.exit(0)));
