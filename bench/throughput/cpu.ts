// CPU accounting for the throughput scenarios: per-core busy time from
// /proc/stat, and the CPU time of processes that are not the benchmark's
// (other tenants of a shared machine), so that per-packet costs can leave
// out what the benchmark did not cause.
import { readdirSync, readFileSync } from 'node:fs';

const ticksPerSecond = 100; // USER_HZ: /proc/stat and /proc/PID/stat count in 1/100 s on Linux
const nsPerTick = 1e9 / ticksPerSecond;

export interface CoreTimes {
  user: number;
  system: number;
  softirq: number;
  irq: number;
  idle: number;
  /** Everything but idle and iowait. */
  busy: number;
  total: number;
}

export interface CpuSample {
  atNs: bigint;
  cores: CoreTimes[];
  /** CPU time of each user-space process outside the benchmark's process tree (ns). */
  foreign: Map<number, number>;
  /** The threads asked for (by "pid/tid"), CPU time in ns. */
  threads: Record<string, number>;
}

export interface CoreUse {
  cpu: number;
  /** Fractions of the window. */
  busy: number;
  user: number;
  system: number;
  softirq: number;
}

function readCores(): CoreTimes[] {
  const cores: CoreTimes[] = [];
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const match = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!match) continue;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = match[2]!.trim().split(/\s+/).map(Number) as number[];
    const busy = user! + nice! + system! + irq! + softirq! + steal!;
    cores[Number(match[1])] = {
      user: (user! + nice!) * nsPerTick,
      system: system! * nsPerTick,
      softirq: softirq! * nsPerTick,
      irq: irq! * nsPerTick,
      idle: (idle! + iowait!) * nsPerTick,
      busy: busy * nsPerTick,
      total: (busy + idle! + iowait!) * nsPerTick,
    };
  }
  return cores;
}

interface ProcessTimes {
  pid: number;
  ppid: number;
  kernelThread: boolean;
  cpuNs: number;
}

function statFields(path: string): string[] | undefined {
  try {
    const text = readFileSync(path, 'utf8');
    // comm may hold spaces and parentheses: fields start after the last ')'.
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

function readProcesses(): ProcessTimes[] {
  const out: ProcessTimes[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const fields = statFields(`/proc/${name}/stat`);
    if (!fields) continue;
    // Fields from 3 (state): ppid is 4, flags 9, utime 14, stime 15 (1-based in proc(5)).
    const flags = Number(fields[6]);
    out.push({
      pid: Number(name),
      ppid: Number(fields[1]),
      kernelThread: (flags & 0x00200000) !== 0, // PF_KTHREAD
      cpuNs: (Number(fields[11]) + Number(fields[12])) * nsPerTick,
    });
  }
  return out;
}

/** CPU time of one thread in ns (0 if it is gone). */
export function threadCpuNs(pid: number, tid: number): number {
  const fields = statFields(`/proc/${pid}/task/${tid}/stat`);
  return fields ? (Number(fields[11]) + Number(fields[12])) * nsPerTick : 0;
}

/** CPU time of a whole process in ns (0 if it is gone). */
export function processCpuNs(pid: number): number {
  const fields = statFields(`/proc/${pid}/stat`);
  return fields ? (Number(fields[11]) + Number(fields[12])) * nsPerTick : 0;
}

/**
 * Time on CPU in ns, to the nanosecond, of a process's live threads and of
 * its descendants' (the balancer's `ip monitor`), from schedstat. The idle
 * scenarios need it: a few milliseconds a second is a handful of the 10 ms
 * ticks /proc/PID/stat counts in.
 */
export function processTreeRunNs(pid: number): number {
  const processes = readProcesses();
  const tree = new Set([pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of processes) {
      if (tree.has(p.ppid) && !tree.has(p.pid)) {
        tree.add(p.pid);
        grew = true;
      }
    }
  }
  let ns = 0;
  for (const member of tree) {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${member}/task`);
    } catch {
      continue; // exited
    }
    for (const tid of tasks) {
      try {
        ns += Number(readFileSync(`/proc/${member}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // exited between the listing and the read
      }
    }
  }
  return ns;
}

/** A thread's time on CPU in ns from schedstat (0 if it is gone). */
export function threadRunNs(pid: number, tid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return 0;
  }
}

export function sampleCpu(threads: Array<{ pid: number; tid: number }> = []): CpuSample {
  const processes = readProcesses();
  const children = new Map<number, number[]>();
  for (const p of processes) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
  const ours = new Set<number>();
  const stack = [process.pid];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    if (ours.has(pid)) continue;
    ours.add(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  const foreign = new Map<number, number>();
  for (const p of processes) if (!p.kernelThread && !ours.has(p.pid)) foreign.set(p.pid, p.cpuNs);
  const threadTimes: Record<string, number> = {};
  for (const t of threads) threadTimes[`${t.pid}/${t.tid}`] = threadCpuNs(t.pid, t.tid);
  return { atNs: process.hrtime.bigint(), cores: readCores(), foreign, threads: threadTimes };
}

export interface CpuDelta {
  wallNs: number;
  cores: CoreUse[];
  /** Busy ns of all cores together. */
  busyNs: number;
  foreignNs: number;
  threads: Record<string, number>;
}

export function cpuDelta(before: CpuSample, after: CpuSample): CpuDelta {
  const wallNs = Number(after.atNs - before.atNs);
  const cores: CoreUse[] = after.cores.map((a, cpu) => {
    const b = before.cores[cpu]!;
    const total = Math.max(a.total - b.total, 1);
    return {
      cpu,
      busy: (a.busy - b.busy) / total,
      user: (a.user - b.user) / total,
      system: (a.system - b.system) / total,
      softirq: (a.softirq - b.softirq + a.irq - b.irq) / total,
    };
  });
  const busyNs = after.cores.reduce((sum, a, cpu) => sum + a.busy - before.cores[cpu]!.busy, 0);
  const threads: Record<string, number> = {};
  for (const [key, value] of Object.entries(after.threads)) threads[key] = value - (before.threads[key] ?? value);
  // Processes that started in the window count whole; those that ended in it
  // are not seen (a lower bound of the other tenants' use).
  let foreignNs = 0;
  for (const [pid, ns] of after.foreign) foreignNs += Math.max(0, ns - (before.foreign.get(pid) ?? 0));
  return { wallNs, cores, busyNs, foreignNs, threads };
}

/** 1-minute load average. */
export function loadAverage(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

let softirqThreads: number[] | undefined;

/**
 * CPU time of the ksoftirqd threads (ns). Softirq work runs in the task that
 * raised it (on veth: the sender, inside its send call) unless there is too
 * much of it, when the kernel hands it to ksoftirqd: counting these threads
 * with the benchmark's own keeps that work in the accounting.
 */
export function softirqThreadsCpuNs(): number {
  softirqThreads ??= readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        return /^ksoftirqd\//.test(readFileSync(`/proc/${pid}/comm`, 'utf8'));
      } catch {
        return false;
      }
    })
    .map(Number);
  return softirqThreads.reduce((sum, pid) => sum + processCpuNs(pid), 0);
}
