// Changes to the kernel's links, addresses, routes and neighbours, as they
// happen: one long-running `ip monitor` (iproute2 subscribes to the rtnetlink
// multicast groups) instead of re-reading the tables on a timer, so that an
// idle host costs nothing and a change is seen at once. Its lines only say
// that something changed; the reader re-reads what it needs, debounced.
import { spawn, type ChildProcess } from 'node:child_process';

/** Changes closer together than this are read once. */
const debounceMs = 50;

export interface TableMonitorOptions {
  onChange: () => void;
  /** The monitor could not start or ended; the owner falls back to polling. */
  onFailure: (error: Error) => void;
}

export class TableMonitor {
  private child: ChildProcess | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly options: TableMonitorOptions) {}

  start(): void {
    const child = spawn('ip', ['monitor', 'link', 'address', 'route', 'neigh'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout!.on('data', () => this.changed());
    // The monitor must not keep the process alive: the balancer's own timers decide that.
    child.unref();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    (child.stderr as unknown as { unref?: () => void }).unref?.();
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-500)));
    child.on('error', (error) => {
      if (!this.stopped) this.options.onFailure(error);
    });
    child.on('exit', (code, signal) => {
      if (this.stopped) return;
      this.options.onFailure(new Error(`ip monitor ended (${signal ?? `status ${code}`})${stderr ? `: ${stderr.trim()}` : ''}`));
    });
  }

  private changed(): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.stopped) this.options.onChange();
    }, debounceMs);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.child?.kill('SIGTERM');
  }
}
