// Route announcement through BIRD (docs/scale-out.md). The balancer runs a
// BIRD of its own (`bird -f`, its configuration and control socket in a
// private run directory), so that it needs no change to a system BIRD and
// nothing of it outlives the balancer: each VIP is a static route
// (blackhole: BIRD exports it, it never enters a kernel table) that the BGP
// sessions announce while a service of the VIP has a backend up, with a
// higher MED while every up backend drains, and withdraw otherwise. A change
// rewrites the configuration and runs `birdc configure`, which BIRD applies
// without resetting a session. close() withdraws every VIP, waits for the
// withdrawals to leave, then stops BIRD.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

import type { NormalizedBgp } from '../config/validate.js';
import type { BgpStats } from '../config/types.js';
import { RouteAnnouncementError } from '../errors.js';

const run = promisify(execFile);

/** What a VIP should be: announced with the MED of its state, or withdrawn. */
export type VipState = 'up' | 'draining' | 'down';

/** The services of a balancer as the announcer reads them (a subset of stats().services). */
export interface AnnouncedService {
  address: string;
  state: 'up' | 'down';
  backends: Array<{ state: 'up' | 'down'; weight: number }>;
}

/** A VIP's state from its services: up while one has an up backend of weight > 0, draining while up backends all have weight 0. */
export function vipStates(services: readonly AnnouncedService[]): Map<string, VipState> {
  const states = new Map<string, VipState>();
  const rank: Record<VipState, number> = { down: 0, draining: 1, up: 2 };
  for (const service of services) {
    const up = service.backends.filter((b) => b.state === 'up');
    const state: VipState = up.some((b) => b.weight > 0) ? 'up' : up.length > 0 ? 'draining' : 'down';
    const before = states.get(service.address);
    if (before === undefined || rank[state] > rank[before]) states.set(service.address, state);
  }
  return states;
}

/** The whole BIRD configuration for these VIP states. */
export function birdConfig(options: NormalizedBgp, vips: ReadonlyMap<string, VipState>): string {
  const lines = ['# Written by l4lb: the balancer rewrites it on every change of its VIPs.', 'log stderr { warning, error, fatal };'];
  if (options.routerId) lines.push(`router id ${options.routerId};`);
  lines.push('protocol device {}', '', 'protocol static l4lb_vips {', '  ipv4;');
  const announced = [...vips].filter(([, state]) => state !== 'down').sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [vip] of announced) lines.push(`  route ${vip}/32 blackhole;`);
  lines.push('}');
  // MED and communities are set on export: BGP sends a MED only when the
  // export filter sets it (attributes of a static route stay local).
  const draining = announced.filter(([, state]) => state === 'draining').map(([vip]) => `${vip}/32`);
  lines.push(
    '',
    'filter l4lb_export {',
    '  if proto != "l4lb_vips" then reject;',
    draining.length > 0
      ? `  if net ~ [ ${draining.join(', ')} ] then bgp_med = ${options.med.draining}; else bgp_med = ${options.med.up};`
      : `  bgp_med = ${options.med.up};`,
    ...options.communities.map(([asn, value]) => `  bgp_community.add((${asn}, ${value}));`),
    '  accept;',
    '}',
  );
  const keepalive = Math.max(1, Math.floor(options.holdTimeS / 3));
  options.neighbours.forEach((n, i) => {
    lines.push(
      '',
      `protocol bgp ${neighbourProtocol(i)} {`,
      `  local as ${options.localAs};`,
      `  neighbor ${n.address} as ${n.as};`,
      `  hold time ${options.holdTimeS};`,
      `  keepalive time ${keepalive};`,
      // Sessions come up within seconds of a start or a peer's restart (BIRD's defaults wait 5 s, retry after 120 s).
      '  connect delay time 1;',
      '  connect retry time 5;',
      '  error wait time 1, 30;',
      ...(n.password !== undefined ? [`  password "${n.password}";`] : []),
      '  ipv4 {',
      '    import none;',
      '    export filter l4lb_export;',
      `    ${options.nextHop ? `next hop address ${options.nextHop}` : 'next hop self'};`,
      '  };',
      '}',
    );
  });
  return `${lines.join('\n')}\n`;
}

function neighbourProtocol(index: number): string {
  return `l4lb_peer${index + 1}`;
}

const sessionStates = new Set(['Idle', 'Connect', 'Active', 'OpenSent', 'OpenConfirm', 'Established', 'Close']);

/** Each neighbour's session state from `birdc show protocols`. */
export function parseProtocols(output: string, options: NormalizedBgp): BgpStats['neighbours'] {
  return options.neighbours.map((n, i) => {
    const line = output.split('\n').find((l) => l.split(/\s+/)[0] === neighbourProtocol(i));
    const words = line?.split(/\s+/) ?? [];
    // Name Proto Table State Since... Info: the session state is the first known word after the protocol's state.
    const state = words.slice(4).find((w) => sessionStates.has(w)) ?? (words[3] === 'down' ? 'Down' : 'unknown');
    return { address: n.address, as: n.as, state };
  });
}

export class BirdAnnouncer {
  #vips = new Map<string, VipState>();
  #reconfigurations = 0;
  #errors = 0;
  #neighbours: BgpStats['neighbours'];
  #updating: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(
    private readonly options: NormalizedBgp,
    private readonly directory: string,
    private readonly ownsDirectory: boolean,
    private readonly bird: ChildProcess,
    private readonly onError: (error: RouteAnnouncementError) => void,
  ) {
    this.#neighbours = options.neighbours.map((n) => ({ address: n.address, as: n.as, state: 'unknown' }));
    bird.once('exit', (code, signal) => {
      if (!this.#closed) onError(new RouteAnnouncementError('EBGP_STOPPED', `BIRD stopped (${signal ?? `exit status ${code}`}): the VIPs are no longer announced`));
    });
  }

  /** Starts BIRD with every VIP withdrawn (the balancer announces once it knows its services' health). */
  static async start(options: NormalizedBgp, onError: (error: RouteAnnouncementError) => void): Promise<BirdAnnouncer> {
    const ownsDirectory = options.runDirectory === undefined;
    const directory = options.runDirectory ?? `/run/l4lb/bird-${process.pid}`;
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    const config = join(directory, 'bird.conf');
    writeFileSync(config, birdConfig(options, new Map()), { mode: 0o600 });
    // A configuration BIRD would refuse is refused here, with BIRD's words.
    try {
      await run(options.birdPath, ['-p', '-c', config]);
    } catch (error) {
      if (ownsDirectory) rmSync(directory, { recursive: true, force: true });
      throw birdFailure(error, options.birdPath);
    }
    // setpriv --pdeathsig: BIRD gets SIGTERM when the balancer's process
    // dies, however it dies, so that a killed balancer's BIRD closes its
    // sessions (the routers withdraw its routes) instead of announcing VIPs
    // nobody forwards.
    const bird = spawn('setpriv', ['--pdeathsig', 'TERM', '--', options.birdPath, '-f', '-c', config, '-s', join(directory, 'bird.ctl'), '-P', join(directory, 'bird.pid')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    bird.stderr!.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4096);
    });
    const announcer = new BirdAnnouncer(options, directory, ownsDirectory, bird, onError);
    const exited = new Promise<never>((_, reject) =>
      bird.once('exit', (code, signal) => reject(new RouteAnnouncementError('EBGP_STOPPED', `BIRD exited at start (${signal ?? `status ${code}`}): ${stderr.trim() || 'no message'}`))),
    );
    const failed = new Promise<never>((_, reject) =>
      bird.once('error', (error) =>
        reject(new RouteAnnouncementError('EBGP_UNAVAILABLE', `bgp: starting BIRD under setpriv failed (${error.message}): install Debian package util-linux`, { cause: error })),
      ),
    );
    try {
      await Promise.race([announcer.#waitForSocket(), exited, failed]);
    } catch (error) {
      await announcer.#stop();
      throw error;
    }
    exited.catch(() => undefined);
    failed.catch(() => undefined);
    return announcer;
  }

  /** Follows the VIPs' states: rewrites and reloads BIRD's configuration when they change. Serialised. */
  update(vips: ReadonlyMap<string, VipState>): Promise<void> {
    this.#updating = this.#updating.then(async () => {
      if (this.#closed) return;
      const next = new Map(vips);
      if (announced(this.#vips) === announced(next)) {
        this.#vips = next;  // only withdrawn VIPs came or went: nothing to tell BIRD
        return;
      }
      try {
        await this.#configure(next);
        this.#vips = next;
      } catch (error) {
        this.#errors++;
        this.onError(error instanceof RouteAnnouncementError ? error : new RouteAnnouncementError('EBGP_CONFIG', (error as Error).message, { cause: error }));
      }
    });
    return this.#updating;
  }

  /** Refreshes the neighbours' session states from BIRD. */
  async refresh(): Promise<void> {
    if (this.#closed) return;
    try {
      const { stdout } = await this.#birdc(['show', 'protocols']);
      this.#neighbours = parseProtocols(stdout, this.options);
    } catch {
      // BIRD is restarting or gone: 'exit' reports the latter.
    }
  }

  stats(): BgpStats {
    const routes: BgpStats['routes'] = [...this.#vips].map(([vip, state]) =>
      state === 'down' ? { prefix: `${vip}/32`, state: 'withdrawn' } : { prefix: `${vip}/32`, state: 'announced', med: state === 'up' ? this.options.med.up : this.options.med.draining },
    );
    return { routes, neighbours: this.#neighbours.map((n) => ({ ...n })), reconfigurations: this.#reconfigurations, errors: this.#errors };
  }

  /** Withdraws every VIP, gives the withdrawals a moment to reach the peers, stops BIRD. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#updating;
    try {
      await this.#configure(new Map());
      // BIRD sends the withdrawals as soon as it has reloaded; stopping the
      // sessions right after would withdraw them too (Cease), this way the
      // peers learn it as an ordinary update first.
      await new Promise((resolve) => setTimeout(resolve, 200));
    } catch {
      // Stopping BIRD below closes the sessions, which withdraws the routes as well.
    }
    this.#closed = true;
    await this.#stop();
  }

  async #configure(vips: ReadonlyMap<string, VipState>): Promise<void> {
    const config = join(this.directory, 'bird.conf');
    const staging = join(this.directory, 'bird.conf.next');
    writeFileSync(staging, birdConfig(this.options, vips), { mode: 0o600 });
    renameSync(staging, config);
    const { stdout } = await this.#birdc(['configure']);
    if (!/Reconfigured|Reconfiguration in progress|Reconfiguration already in progress/.test(stdout)) {
      throw new RouteAnnouncementError('EBGP_CONFIG', `BIRD refused the configuration: ${stdout.trim().split('\n').slice(1).join(' ')}`);
    }
    this.#reconfigurations++;
  }

  #birdc(args: string[]): Promise<{ stdout: string }> {
    return run(this.options.birdcPath, ['-s', join(this.directory, 'bird.ctl'), ...args], { timeout: 5000 });
  }

  async #waitForSocket(): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await this.#birdc(['show', 'status']);
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw birdFailure(error, this.options.birdcPath);
        if (Date.now() > deadline) throw new RouteAnnouncementError('EBGP_STOPPED', 'BIRD did not open its control socket within 10 s');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  async #stop(): Promise<void> {
    if (this.bird.pid !== undefined && this.bird.exitCode === null && this.bird.signalCode === null) {
      const exited = new Promise((resolve) => this.bird.once('exit', resolve));
      this.bird.kill('SIGTERM');
      const timer = setTimeout(() => this.bird.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    if (this.ownsDirectory) rmSync(this.directory, { recursive: true, force: true });
  }
}

/** The announced VIPs with their states, as one comparable string. */
function announced(vips: ReadonlyMap<string, VipState>): string {
  return [...vips].filter(([, state]) => state !== 'down').map(([vip, state]) => `${vip}=${state}`).sort().join(',');
}

function birdFailure(error: unknown, binary: string): RouteAnnouncementError {
  const e = error as NodeJS.ErrnoException & { stderr?: string };
  if (e.code === 'ENOENT') {
    return new RouteAnnouncementError('EBGP_UNAVAILABLE', `bgp: ${binary} was not found: install Debian package bird2 (or give bgp.birdPath / bgp.birdcPath)`, { cause: error });
  }
  return new RouteAnnouncementError('EBGP_CONFIG', `bgp: BIRD refused the configuration: ${(e.stderr ?? e.message).trim()}`, { cause: error });
}
