// Runs one backend's health checks: one at a time, each bounded by its
// timeout, `intervalMs` (± jitter) apart, feeding the state machine and
// reporting flips. Timers are unref'd: a monitor never keeps a process alive
// on its own. stop() aborts the check in flight and resolves once it settled.
import { type CheckResult } from './checks.js';
import { type HealthState, initialHealthState, nextHealthState } from './state.js';

export interface HealthMonitorOptions {
  /** Runs one check; must settle soon after `signal` aborts. */
  check(signal: AbortSignal): Promise<CheckResult>;
  intervalMs: number;
  timeoutMs: number;
  rise: number;
  fall: number;
  jitter: number;
  initiallyUp: boolean;
  /** Called when the backend flips, with the reason (the last check's). */
  onChange(up: boolean, reason: string): void;
  /** Called after every check (tests, metrics). */
  onResult?(result: CheckResult, state: HealthState): void;
  random?: () => number;
}

export class HealthMonitor {
  private state: HealthState;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: AbortController | undefined;
  private running: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly options: HealthMonitorOptions) {
    this.state = initialHealthState(options.initiallyUp);
  }

  get up(): boolean {
    return this.state.up;
  }

  start(): void {
    if (this.running || this.stopped) return;
    this.running = this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.inFlight?.abort();
    this.wake?.();
    await this.running;
  }

  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.timer = setTimeout(resolve, ms);
      this.timer.unref();
    });
  }

  private nextDelay(): number {
    const random = this.options.random ?? Math.random;
    const spread = this.options.intervalMs * this.options.jitter;
    return Math.max(1, Math.round(this.options.intervalMs + spread * (2 * random() - 1)));
  }

  private async loop(): Promise<void> {
    // Spread the first checks of many backends over the jitter window.
    const random = this.options.random ?? Math.random;
    await this.delay(Math.round(this.options.intervalMs * this.options.jitter * random()));
    while (!this.stopped) {
      const result = await this.runOne();
      if (this.stopped) break;
      const step = nextHealthState(this.state, result.ok, this.options);
      this.state = step.state;
      this.options.onResult?.(result, this.state);
      if (step.changed) {
        const count = step.state.up ? this.options.rise : this.options.fall;
        const verb = step.state.up ? 'passed' : 'failed';
        this.options.onChange(step.state.up, `health check ${verb} ${count} time${count === 1 ? '' : 's'}: ${result.reason}`);
      }
      if (this.stopped) break;
      await this.delay(this.nextDelay());
    }
  }

  private async runOne(): Promise<CheckResult> {
    const controller = new AbortController();
    this.inFlight = controller;
    const timeout = setTimeout(() => controller.abort(), this.options.timeoutMs);
    timeout.unref();
    try {
      const result = await this.options.check(controller.signal);
      if (controller.signal.aborted && !this.stopped) {
        return { ok: false, reason: `timed out after ${this.options.timeoutMs} ms` };
      }
      return result;
    } catch (error) {
      return { ok: false, reason: `check failed: ${error instanceof Error ? error.message : String(error)}` };
    } finally {
      clearTimeout(timeout);
      controller.abort();
      this.inFlight = undefined;
    }
  }
}
