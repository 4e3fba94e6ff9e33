// A running configuration: the balancer built from a file, reloads of that
// file, the answers to control requests, and event lines. No sockets and no
// signals here (run.ts adds them), so tests drive a Runner in their own
// process and reach the balancer's memory ports.
import type { LoadBalancerStats } from '../config/types.js';
import type { FlowTuple } from '../insight/types.js';
import { L4lbError } from '../errors.js';
import { LoadBalancer } from '../load-balancer.js';
import { type ConfigFile, loadConfig } from './config-file.js';
import type { ControlRequest } from './control.js';
import type { StatusService } from './format.js';
import { applyReload, describeOperation, type FixedSettings, planReload, type ReloadOperation } from './reload.js';

export interface RunnerOptions {
  /** Receives one line per event, reload and error (run.ts writes them to stderr). */
  log?: (line: string) => void;
  /** What the command line fixed, which a reload must not try to change. */
  fixed?: FixedSettings;
}

export interface ReloadOutcome {
  file: string;
  /** False when nothing differed from the configuration in force. */
  changed: boolean;
  /** What was applied, one line each. */
  operations: string[];
  /** Generation of the configuration published (unchanged when nothing was applied). */
  generation: number;
}

export interface InstanceInfo {
  pid: number;
  file: string;
  startedAt: string;
  reloads: number;
  lastReload?: { at: string; ok: boolean; message: string };
}

export interface StatusResult {
  instance: InstanceInfo;
  stats: LoadBalancerStats & { services: StatusService[] };
}

/** The configuration that runs before the first file is applied: nothing. */
function emptyLike(config: ConfigFile): ConfigFile {
  return { ...config, text: '', services: [] };
}

export class Runner {
  #config: ConfigFile;
  readonly #log: (line: string) => void;
  readonly #fixed: FixedSettings;
  readonly #startedAt = new Date().toISOString();
  #reloads = 0;
  #lastReload: InstanceInfo['lastReload'];

  private constructor(
    readonly balancer: LoadBalancer,
    config: ConfigFile,
    options: RunnerOptions,
  ) {
    this.#config = config;
    this.#log = options.log ?? (() => {});
    this.#fixed = options.fixed ?? {};
  }

  /**
   * Creates the balancer from `config.balancer` and applies the services as
   * one transaction. On failure the balancer is closed and the error thrown.
   */
  static async start(config: ConfigFile, options: RunnerOptions = {}): Promise<Runner> {
    const balancer = await LoadBalancer.create(config.balancer);
    const runner = new Runner(balancer, emptyLike(config), options);
    runner.#watchEvents();
    try {
      applyReload(balancer, config, planReload(runner.#config, config, { socketFromCommandLine: true, metricsFromCommandLine: true, dashboardFromCommandLine: true }));
    } catch (error) {
      await balancer.close();
      throw error;
    }
    runner.#config = config;
    return runner;
  }

  /** The configuration in force. */
  get config(): ConfigFile {
    return this.#config;
  }

  /**
   * Switches to `next`: the difference is applied as one transaction. A file
   * that cannot be applied throws (ConfigFileError, ReloadRefusedError, or
   * the balancer's error) and changes nothing.
   */
  reload(next: ConfigFile): ReloadOutcome {
    let operations: ReloadOperation[];
    try {
      operations = planReload(this.#config, next, this.#fixed);
      applyReload(this.balancer, next, operations);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.#lastReload = { at: new Date().toISOString(), ok: false, message };
      this.#log(`reload rejected, the running configuration stays: ${message}`);
      throw error;
    }
    this.#config = next;
    this.#reloads += 1;
    const lines = operations.map(describeOperation);
    const summary = lines.length === 0 ? 'no changes' : `${lines.length} change${lines.length === 1 ? '' : 's'} applied (generation ${this.balancer.generation})`;
    this.#lastReload = { at: new Date().toISOString(), ok: true, message: summary };
    this.#log(`reload ${next.file}: ${summary}`);
    for (const line of lines) this.#log(`  ${line}`);
    return { file: next.file, changed: lines.length > 0, operations: lines, generation: this.balancer.generation };
  }

  /** Re-reads the file in force and reloads it (SIGHUP, --watch, the control command). */
  reloadFromFile(reason = 'control request'): ReloadOutcome {
    this.#log(`reloading ${this.#config.file} (${reason})`);
    let next: ConfigFile;
    try {
      next = loadConfig(this.#config.file, { ...(this.#fixed.driver ? { driver: this.#fixed.driver } : {}) });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.#lastReload = { at: new Date().toISOString(), ok: false, message };
      this.#log(`reload rejected, the running configuration stays: ${message}`);
      throw error;
    }
    return this.reload(next);
  }

  /** Whether the file on disk differs from the text in force (for --watch, which sees touches too). */
  fileChanged(text: string): boolean {
    return text !== this.#config.text;
  }

  info(): InstanceInfo {
    return {
      pid: process.pid,
      file: this.#config.file,
      startedAt: this.#startedAt,
      reloads: this.#reloads,
      ...(this.#lastReload ? { lastReload: this.#lastReload } : {}),
    };
  }

  /** Answers a control request (control.ts carries it). */
  handle(request: ControlRequest): unknown {
    switch (request.command) {
      case 'status':
        return { instance: this.info(), stats: this.statusStats() } satisfies StatusResult;
      case 'stats':
        return this.balancer.stats();
      case 'rates':
        return this.balancer.rates(request.windowMs !== undefined ? { windowMs: request.windowMs } : {});
      case 'reload':
        return this.reloadFromFile();
      case 'explain':
        return this.balancer.explain(request.flow as FlowTuple);
      default:
        throw new L4lbError('EUNKNOWN_COMMAND', `unknown command ${JSON.stringify(request.command)} (known: status, stats, rates, reload, explain)`);
    }
  }

  /** stats() with each service's persistence timeout, which `status` shows as ipvsadm does. */
  statusStats(): StatusResult['stats'] {
    const stats = this.balancer.stats();
    const persistence = new Map(this.balancer.services.map((s) => [s.name, s.persistence?.timeoutMs]));
    return {
      ...stats,
      services: stats.services.map((service) => {
        const timeoutMs = persistence.get(`${service.address}:${service.port}/${service.protocol}`);
        return timeoutMs === undefined ? service : { ...service, persistenceTimeoutMs: timeoutMs };
      }),
    };
  }

  close(): Promise<void> {
    return this.balancer.close();
  }

  #watchEvents(): void {
    const lb = this.balancer;
    lb.on('backend-state', ({ service, backend, state, reason }) => {
      this.#log(`backend ${backend.address}:${backend.port} of ${service.name} is ${state}: ${reason}`);
    });
    lb.on('service-down', ({ service }) => this.#log(`service ${service.name} is down: no backend is up`));
    lb.on('service-up', ({ service }) => this.#log(`service ${service.name} is up`));
    lb.on('dataplane', ({ kind, worker, count, detail }) => {
      this.#log(`data plane: ${kind} (${count} time${count === 1 ? '' : 's'}${worker >= 0 ? `, worker ${worker}` : ''}, detail ${detail})`);
    });
    lb.on('error', (error) => this.#log(`error ${error.code}: ${error.message}`));
  }
}
