// up, down and the long-running mode: read the host, plan, run the plan
// (recording each change as it lands), undo from the record.
import { type CommandRunner, type NamespaceInspector, formatCommand, runOrThrow, systemRunner } from './commands.js';
import { Decapsulator, type DecapsulatorStats, untilStopped } from './decapsulator.js';
import { RealServerError } from './errors.js';
import {
  type DownOptions,
  type NormalizedUpOptions,
  type UpOptions,
  validateDownOptions,
  validateUpOptions,
} from './options.js';
import {
  type DownPlan,
  type HostFacts,
  type PlannedStep,
  type UndoFacts,
  type UpPlan,
  defaultReturnTable,
  planDown,
  planUp,
  sysctlPathsFor,
  undoSysctlPaths,
} from './plan.js';
import { namespacesOf } from './netns.js';
import { parseProcNetSockets } from './procnet.js';
import {
  type Change,
  type RealServerState,
  type StateFile,
  describeNamespace,
  listStates,
  readState,
  removeState,
  stateVersion,
  statePath,
  writeState,
} from './state.js';
import {
  kernelHasTunnel,
  readLinks,
  readProcFile,
  readRoutes,
  readRules,
  readSysctls,
  routeTo,
} from './system.js';
import { processAlive } from '../host/processes.js';

export interface StepReport {
  description: string;
  /** The command as a shell line; for the decapsulator, the equivalent `l4lb realserver decapsulate` line. */
  command: string;
  /** Done inside this process (starting or stopping the decapsulator), not by running `command`. */
  internal: boolean;
}

export interface UpResult {
  vip: string;
  method: 'dr' | 'ipip' | 'gre';
  netns?: string;
  dryRun: boolean;
  /** False when everything was already in place (a second `up`). */
  changed: boolean;
  decapsulation: 'none' | 'kernel' | 'userspace';
  /** The device tunnelled packets arrive on. */
  tunnelDevice?: string;
  /** The interface that got the ARP settings. */
  interface?: string;
  returnThroughTunnel?: { balancer: string; source?: string; greKey?: number; table: number; priority: number; device: string };
  /** What ran (or, in a dry run, would run), in order. */
  steps: StepReport[];
  /** The same as shell lines: what a provisioning system runs. */
  commands: string[];
  /** What was already as it should be. */
  inPlace: string[];
  stateFile: string;
  /** The userspace decapsulator running in this process for this VIP. */
  decapsulator?: Decapsulator;
  /** A human-readable account of the above. */
  report: string;
}

export interface DownResult {
  vip: string;
  netns?: string;
  dryRun: boolean;
  changed: boolean;
  steps: StepReport[];
  commands: string[];
  /** Changes not undone, and why. */
  leftAlone: string[];
  /** The decapsulator's last counters, when it ran in this process. */
  decapsulatorStats?: DecapsulatorStats;
  /** The record of the namespace addressed (absent when that namespace no longer exists). */
  stateFile?: string;
  /** Records removed without undoing anything: their namespace is gone (and, with `force`, records that could not be undone). */
  removedRecords: string[];
  report: string;
}

/** Decapsulators started by `up` in this process, by state file. */
const runningDecapsulators = new Map<string, Decapsulator>();

function commandOf(step: PlannedStep): string {
  return step.shell ?? formatCommand(step.argv);
}

function stepReport(step: PlannedStep): StepReport {
  return { description: step.description, command: commandOf(step), internal: step.internal };
}

function where(netns: string | undefined): string {
  return netns === undefined ? '' : `, namespace ${netns}`;
}


type DecapsulatorChange = Extract<Change, { kind: 'decapsulator' }>;

function recordedDecapsulator(state: RealServerState | undefined): DecapsulatorChange | undefined {
  return state?.changes.find((c): c is DecapsulatorChange => c.kind === 'decapsulator');
}

/**
 * Where the decapsulator a record names is: in this process (a handle
 * exists, running or failed), in another live process, or gone. A recorded
 * pid counts only while it is the same process (its start time) with a
 * thread in the record's namespace, and the namespace (addressed as
 * `netns`) has a raw socket of the tunnel protocol open.
 */
export async function decapsulatorState(
  runner: CommandRunner,
  path: string,
  state: RealServerState | undefined,
  netns: string | undefined,
): Promise<'this-process' | 'other-process' | 'gone'> {
  if (runningDecapsulators.has(path)) return 'this-process';
  const recorded = recordedDecapsulator(state);
  if (!state || !recorded || recorded.pid === process.pid || state.method === 'dr') return 'gone';
  if (!namespacesOf(runner).processInNamespace(recorded.pid, recorded.startTime, state.namespace)) return 'gone';
  const raw = parseProcNetSockets(await readProcFile(runner, netns, '/proc/net/raw'));
  return raw.some((s) => s.localPort === tunnelProtocol[state.method as 'ipip' | 'gre']) ? 'other-process' : 'gone';
}

const tunnelProtocol = { ipip: 4, gre: 47 } as const;

async function gatherUpFacts(
  runner: CommandRunner,
  options: NormalizedUpOptions,
  state: RealServerState | undefined,
  path: string,
): Promise<HostFacts> {
  const kernelTunnels: HostFacts['kernelTunnels'] = {};
  if (options.method !== 'dr' && options.decapsulation !== 'userspace') {
    // Before reading the links: where the module exists, the probe loads it
    // and its fallback device (tunl0, gre0) appears.
    kernelTunnels[options.method] = await kernelHasTunnel(runner, options.netns, options.method);
  }
  const links = await readLinks(runner, options.netns);
  const mainRoutes = await readRoutes(runner, options.netns, 'main');
  const defaultInterface = mainRoutes.find((r) => r.dst === 'default')?.dev;
  const facts: HostFacts = {
    links,
    sysctls: {},
    rules: [],
    returnRoutes: [],
    ...(defaultInterface !== undefined ? { defaultInterface } : {}),
    kernelTunnels,
    decapsulatorRunning: false,
  };
  if (options.returnThroughTunnel) {
    facts.rules = await readRules(runner, options.netns);
    facts.returnRoutes = await readRoutes(runner, options.netns, options.returnThroughTunnel.table ?? defaultReturnTable(options.vip));
    const route = await routeTo(runner, options.netns, options.returnThroughTunnel.balancer);
    if (route) facts.balancerRoute = route;
  }
  facts.sysctls = await readSysctls(runner, options.netns, sysctlPathsFor(options, facts));
  if (options.method !== 'dr') {
    const location = await decapsulatorState(runner, path, state, options.netns);
    facts.decapsulatorRunning =
      location === 'other-process' || (location === 'this-process' && runningDecapsulators.get(path)!.running);
  }
  return facts;
}

// A second `up` for a VIP must ask for what the first one set up.
function assertCompatible(state: RealServerState, options: NormalizedUpOptions, path: string): void {
  const wanted = {
    method: options.method,
    greKey: options.greKey,
    localAddress: options.localAddress,
    balancer: options.returnThroughTunnel?.balancer,
  };
  const recorded = {
    method: state.method,
    greKey: state.greKey,
    localAddress: state.localAddress,
    balancer: state.returnThroughTunnel?.balancer,
  };
  const differs = (Object.keys(wanted) as Array<keyof typeof wanted>).filter((k) => wanted[k] !== recorded[k]);
  if (differs.length > 0) {
    throw new RealServerError(
      'EALREADY_UP',
      `${options.vip}${where(options.netns)} is already set up differently (${differs.map((k) => `${k}: ${recorded[k] ?? 'none'}`).join(', ')}; recorded in ${path}); run down first`,
      { path: differs[0] === 'balancer' ? 'returnThroughTunnel.balancer' : differs[0] },
    );
  }
}

function formatSteps(steps: StepReport[], starting = false): string[] {
  return steps.map(
    (s) => `  ${s.command}${starting && s.internal ? '   # runs in the foreground: keep it running (a service)' : ''}\n      # ${s.description}`,
  );
}

function upReport(result: Omit<UpResult, 'report'>): string {
  const what = `${result.vip} (${result.method}${result.decapsulation !== 'none' ? `, ${result.decapsulation} decapsulation` : ''}${where(result.netns)})`;
  const lines: string[] = [];
  if (result.steps.length === 0) {
    lines.push(`up ${what}: already up, nothing changed`);
  } else if (result.dryRun) {
    lines.push(`dry run: up ${what} would run ${result.steps.length} step${result.steps.length === 1 ? '' : 's'}:`, ...formatSteps(result.steps, true));
  } else {
    lines.push(`up ${what}: ${result.steps.length} change${result.steps.length === 1 ? '' : 's'}:`, ...formatSteps(result.steps, true));
  }
  if (result.inPlace.length > 0) lines.push('already in place:', ...result.inPlace.map((s) => `  ${s}`));
  if (result.returnThroughTunnel) {
    const r = result.returnThroughTunnel;
    lines.push(`replies from ${result.vip} return in GRE to ${r.balancer}${r.greKey !== undefined ? ` (key ${r.greKey})` : ''} via table ${r.table}`);
  }
  if (!result.dryRun) lines.push(`record: ${result.stateFile}`);
  return lines.join('\n');
}

function downReport(result: Omit<DownResult, 'report'>): string {
  const what = `${result.vip}${where(result.netns)}`;
  const lines: string[] = [];
  if (result.steps.length === 0) lines.push(`down ${what}: nothing to undo`);
  else if (result.dryRun) lines.push(`dry run: down ${what} would run:`, ...formatSteps(result.steps));
  else lines.push(`down ${what}: ${result.steps.length} change${result.steps.length === 1 ? '' : 's'} undone:`, ...formatSteps(result.steps));
  if (result.leftAlone.length > 0) lines.push('left alone:', ...result.leftAlone.map((s) => `  ${s}`));
  if (result.removedRecords.length > 0) {
    lines.push(result.dryRun ? 'would remove the records:' : 'removed the records:', ...result.removedRecords.map((s) => `  ${s}`));
  }
  return lines.join('\n');
}

function withoutRunner<T extends { runner?: CommandRunner }>(options: T): Omit<T, 'runner'> {
  const { runner: _runner, ...rest } = options;
  return rest;
}

/**
 * Sets this host (or `netns`) up as a real server for `vip` behind a
 * balancer using `method`: the VIP on lo, ARP suppression, and for tunnels
 * decapsulation (a kernel device, or the userspace decapsulator, which keeps
 * running in this process: see `result.decapsulator`) and optionally the
 * return path through the tunnel. Idempotent: a second call changes nothing
 * and says so. With `dryRun`, returns the commands without running them.
 */
export async function up(options: UpOptions): Promise<UpResult> {
  const runner = options?.runner ?? systemRunner;
  const o = validateUpOptions(withoutRunner(options ?? ({} as UpOptions)));
  const namespaces = namespacesOf(runner);
  const identity = namespaces.identify(o.netns);
  const path = statePath(o.stateDir, identity, o.vip);
  const state = readState(path);
  if (state) assertCompatible(state, o, path);
  const facts = await gatherUpFacts(runner, o, state, path);
  const plan = planUp(o, facts, state);

  const result = (steps: PlannedStep[]): UpResult => {
    const partial: Omit<UpResult, 'report'> = {
      vip: o.vip,
      method: o.method,
      ...(o.netns !== undefined ? { netns: o.netns } : {}),
      dryRun: o.dryRun,
      changed: !o.dryRun && steps.length > 0,
      decapsulation: plan.decapsulation,
      ...(plan.tunnelDevice ? { tunnelDevice: plan.tunnelDevice } : {}),
      ...(plan.interface ? { interface: plan.interface } : {}),
      ...(plan.returnThroughTunnel ? { returnThroughTunnel: plan.returnThroughTunnel } : {}),
      steps: steps.map(stepReport),
      commands: steps.map(commandOf),
      inPlace: plan.inPlace,
      stateFile: path,
      ...(runningDecapsulators.get(path) ? { decapsulator: runningDecapsulators.get(path)! } : {}),
    };
    return { ...partial, report: upReport(partial) };
  };
  if (o.dryRun || plan.steps.length === 0) return result(plan.steps);
  await runUpPlan(runner, namespaces, o, plan, state, path);
  return result(plan.steps);
}

async function runUpPlan(
  runner: CommandRunner,
  namespaces: NamespaceInspector,
  o: NormalizedUpOptions,
  plan: UpPlan,
  state: RealServerState | undefined,
  path: string,
): Promise<void> {
  const restartsDecapsulator = plan.steps.some((step) => step.change.kind === 'decapsulator');
  const identity = namespaces.identify(o.netns);
  const record: RealServerState = {
    version: stateVersion,
    vip: o.vip,
    method: o.method,
    namespace: { ...identity, names: namespaces.lookup(identity)?.names ?? [] },
    ...(o.netns !== undefined ? { netns: o.netns } : {}),
    ...(plan.interface ? { interface: plan.interface } : {}),
    decapsulation: plan.decapsulation,
    ...(o.greKey !== undefined ? { greKey: o.greKey } : {}),
    ...(o.localAddress !== undefined ? { localAddress: o.localAddress } : {}),
    ...(plan.returnThroughTunnel
      ? {
          returnThroughTunnel: {
            balancer: plan.returnThroughTunnel.balancer,
            ...(plan.returnThroughTunnel.source ? { source: plan.returnThroughTunnel.source } : {}),
            ...(plan.returnThroughTunnel.greKey !== undefined ? { greKey: plan.returnThroughTunnel.greKey } : {}),
            table: plan.returnThroughTunnel.table,
            priority: plan.returnThroughTunnel.priority,
          },
        }
      : {}),
    // A restarted decapsulator replaces the record of the one that stopped.
    changes: (state?.changes ?? []).filter((c) => !(c.kind === 'decapsulator' && restartsDecapsulator)),
    updatedAt: '',
  };
  const before = record.changes.length;
  let current: PlannedStep | undefined;
  try {
    for (const step of plan.steps) {
      current = step;
      let change = step.change;
      if (step.internal) {
        runningDecapsulators.get(path)?.stop();
        runningDecapsulators.delete(path);
        runningDecapsulators.set(path, Decapsulator.start(plan.decapsulator!));
        const startTime = namespaces.processStartTime(process.pid);
        if (startTime !== undefined) change = { ...(change as DecapsulatorChange), startTime };
      } else {
        await runOrThrow(runner, step.argv, 'change');
      }
      record.changes.push(change);
      writeState(path, record);
    }
  } catch (error) {
    // Undo what this call did, newest first, so that a failed `up` leaves the
    // host as it found it; the record keeps what earlier calls did.
    const done: RealServerState = { ...record, changes: record.changes.slice(before) };
    const undone = await undoQuietly(runner, done, path, o.netns);
    record.changes = record.changes.slice(0, before);
    if (record.changes.length > 0) writeState(path, record);
    else removeState(path);
    const message = error instanceof Error ? error.message : String(error);
    throw new RealServerError(
      error instanceof RealServerError ? error.code : 'ECOMMAND',
      `up ${o.vip}${where(o.netns)} failed at "${current?.description}": ${message}; ${undone} change${undone === 1 ? '' : 's'} rolled back`,
      { cause: error, ...(error instanceof RealServerError && error.path ? { path: error.path } : {}) },
    );
  }
}

async function gatherUndoFacts(runner: CommandRunner, state: RealServerState, path: string, netns: string | undefined): Promise<UndoFacts> {
  const needsRules = state.changes.some((c) => c.kind === 'rule');
  return {
    links: await readLinks(runner, netns),
    sysctls: await readSysctls(runner, netns, undoSysctlPaths(state)),
    rules: needsRules ? await readRules(runner, netns) : [],
    decapsulator: await decapsulatorState(runner, path, state, netns),
  };
}

/**
 * Stops the decapsulator a record names: the handle, in this process; else
 * SIGTERM to its process, if that is still the recorded process (pid and
 * start time), waiting up to 5 s; with `force`, SIGKILL after that.
 */
async function stopDecapsulator(
  namespaces: NamespaceInspector,
  path: string,
  change: DecapsulatorChange,
  force = false,
): Promise<DecapsulatorStats | undefined> {
  const own = runningDecapsulators.get(path);
  if (own) {
    runningDecapsulators.delete(path);
    return own.stop();
  }
  const { pid, startTime } = change;
  const same = () => processAlive(pid) && (startTime === undefined || namespaces.processStartTime(pid) === startTime);
  if (pid === process.pid || !same()) return undefined;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 5000;
  while (same() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (same() && force) {
    process.kill(pid, 'SIGKILL');
    while (same()) await new Promise((r) => setTimeout(r, 20));
  }
  if (same()) throw new RealServerError('EDECAPSULATOR_BUSY', `the decapsulator (process ${pid}) did not stop within 5 s of SIGTERM (down --force kills it)`);
  return undefined;
}

async function runDownPlan(
  runner: CommandRunner,
  state: RealServerState,
  plan: DownPlan,
  path: string,
  force: boolean,
): Promise<{ stats?: DecapsulatorStats; failed: string[] }> {
  let stats: DecapsulatorStats | undefined;
  const failed: string[] = [];
  const remaining = [...state.changes];
  for (const step of plan.steps) {
    try {
      if (step.internal && step.change.kind === 'decapsulator') stats = await stopDecapsulator(namespacesOf(runner), path, step.change, force);
      else await runOrThrow(runner, step.argv, 'change');
    } catch (error) {
      // Without force the record keeps what is not undone yet, for the next try.
      if (!force) throw error;
      failed.push((error as Error).message);
    }
    remaining.splice(remaining.indexOf(step.change), 1);
    writeState(path, { ...state, changes: remaining });
  }
  removeState(path);
  return { ...(stats ? { stats } : {}), failed };
}

async function undoQuietly(runner: CommandRunner, state: RealServerState, path: string, netns: string | undefined): Promise<number> {
  let undone = 0;
  try {
    const plan = planDown(state, await gatherUndoFacts(runner, state, path, netns), netns);
    for (const step of plan.steps) {
      try {
        if (step.internal && step.change.kind === 'decapsulator') await stopDecapsulator(namespacesOf(runner), path, step.change);
        else await runOrThrow(runner, step.argv, 'change');
        undone += 1;
      } catch {
        // keep undoing the rest
      }
    }
  } catch {
    // the host could not be read: nothing more to do
  }
  return undone;
}

/** A record whose namespace cannot be addressed any more, and what became of it. */
interface VanishedOutcome {
  steps: PlannedStep[];
  leftAlone: string[];
  removed: boolean;
  stats?: DecapsulatorStats;
}

/**
 * A record of a namespace that no longer has the name `down` was given (or
 * any name): when the namespace is gone, so is everything `up` did inside it,
 * and the record goes. When something still holds it (the decapsulator's
 * own process, whose thread is in it), that process is stopped; if the
 * namespace then lives on, the record stays, unless `force`.
 */
async function settleVanished(runner: CommandRunner, file: Extract<StateFile, { kind: 'record' }>, force: boolean, dryRun: boolean): Promise<VanishedOutcome> {
  const namespaces = namespacesOf(runner);
  const { state, path } = file;
  const what = describeNamespace(state.namespace);
  const outcome: VanishedOutcome = { steps: [], leftAlone: [], removed: false };
  const recorded = recordedDecapsulator(state);
  const own = runningDecapsulators.get(path);
  const holder =
    own !== undefined ||
    (recorded !== undefined && recorded.pid !== process.pid && namespaces.processInNamespace(recorded.pid, recorded.startTime, state.namespace));
  if (recorded && holder) {
    outcome.steps.push({
      description: `stop the userspace decapsulator on ${recorded.device}: its thread holds ${what}`,
      argv: ['kill', '-TERM', String(recorded.pid)],
      internal: true,
      ...(own ? { shell: `# stop the decapsulator running in this process (${recorded.pid})` } : {}),
      change: recorded,
    });
    if (!dryRun) {
      outcome.stats = await stopDecapsulator(namespaces, path, recorded, force);
      // The process may have undone its own set-up (and removed the record) on SIGTERM.
      if (readState(path) === undefined) {
        outcome.leftAlone.push(`process ${recorded.pid} undid its own set-up when it stopped`);
        outcome.removed = true;
        return outcome;
      }
    }
  }
  const live = dryRun && holder ? undefined : namespaces.lookup(state.namespace);
  if (!live) {
    outcome.leftAlone.push(`${what} no longer exists: what up did inside it went with it`);
    if (!dryRun) removeState(path);
    outcome.removed = true;
  } else if (force) {
    outcome.leftAlone.push(`${what} lives on${live.names.length ? ` as ${live.names.join(', ')}` : ', held by another process'}, with what up did inside it; its record is removed (--force)`);
    if (!dryRun) removeState(path);
    outcome.removed = true;
  } else {
    outcome.leftAlone.push(
      `${what} lives on${live.names.length ? ` as ${live.names.join(', ')} (run down with --netns ${live.names[0]})` : ', held by another process'}; its record ${path} stays (down --force removes it)`,
    );
  }
  return outcome;
}

/**
 * With `force`: every other file of this VIP that no longer describes a
 * live set-up: records of namespaces that are gone, records an older l4lb
 * wrote without naming their namespace, unreadable ones.
 */
function sweepStale(runner: CommandRunner, stateDir: string | undefined, vip: string, keep: string | undefined, dryRun: boolean): string[] {
  const removed: string[] = [];
  for (const file of listStates(stateDir, vip)) {
    if (file.path === keep) continue;
    if (file.kind === 'record' && (runningDecapsulators.has(file.path) || namespacesOf(runner).lookup(file.state.namespace))) continue;
    if (!dryRun) removeState(file.path);
    removed.push(file.path);
  }
  return removed;
}

/**
 * Restores what `up` changed for `vip` (in `netns`), from its record, and
 * nothing more: a sysctl that was already set before `up` stays set, one
 * that someone changed since is left alone (and reported). Idempotent.
 * A record of a namespace that is gone is removed; with `force`, steps that
 * fail do not stop it (they are reported and the record is removed), and
 * every stale record of the VIP is removed too (see docs/realserver.md).
 */
export async function down(options: DownOptions): Promise<DownResult> {
  const runner = options?.runner ?? systemRunner;
  const o = validateDownOptions(withoutRunner(options ?? ({} as DownOptions)));
  const namespaces = namespacesOf(runner);
  const finish = (partial: Omit<DownResult, 'report'>): DownResult => ({ ...partial, report: downReport(partial) });
  const base = { vip: o.vip, ...(o.netns !== undefined ? { netns: o.netns } : {}), dryRun: o.dryRun };

  let identity;
  try {
    identity = namespaces.identify(o.netns);
  } catch (error) {
    if (!(error instanceof RealServerError && error.code === 'ENO_NETNS')) throw error;
  }
  if (!identity) {
    // The name is gone: the records that knew the namespace by it.
    const named = listStates(o.stateDir, o.vip).filter(
      (f): f is Extract<StateFile, { kind: 'record' }> =>
        f.kind === 'record' && (f.state.netns === o.netns || f.state.namespace.names.includes(o.netns!)),
    );
    const steps: PlannedStep[] = [];
    const leftAlone: string[] = [];
    const removedRecords: string[] = [];
    let stats: DecapsulatorStats | undefined;
    for (const file of named) {
      const outcome = await settleVanished(runner, file, o.force, o.dryRun);
      steps.push(...outcome.steps);
      leftAlone.push(...outcome.leftAlone);
      if (outcome.removed) removedRecords.push(file.path);
      stats ??= outcome.stats;
    }
    if (named.length === 0) leftAlone.push(`namespace ${o.netns} does not exist, and no record of ${o.vip} names it`);
    if (o.force) removedRecords.push(...sweepStale(runner, o.stateDir, o.vip, undefined, o.dryRun).filter((p) => !removedRecords.includes(p)));
    return finish({
      ...base,
      changed: !o.dryRun && (steps.length > 0 || removedRecords.length > 0),
      steps: steps.map(stepReport),
      commands: steps.map(commandOf),
      leftAlone,
      removedRecords,
      ...(stats ? { decapsulatorStats: stats } : {}),
    });
  }

  const path = statePath(o.stateDir, identity, o.vip);
  const state = readState(path);
  const swept = () => (o.force ? sweepStale(runner, o.stateDir, o.vip, path, o.dryRun) : []);
  if (!state) {
    const removedRecords = swept();
    return finish({
      ...base,
      stateFile: path,
      changed: !o.dryRun && removedRecords.length > 0,
      steps: [],
      commands: [],
      leftAlone: [`no record of ${o.vip}${where(o.netns)} in ${path}`],
      removedRecords,
    });
  }
  const facts = await gatherUndoFacts(runner, state, path, o.netns);
  let plan = planDown(state, facts, o.netns);
  if (o.dryRun) {
    return finish({ ...base, stateFile: path, changed: false, steps: plan.steps.map(stepReport), commands: plan.steps.map(commandOf), leftAlone: plan.leftAlone, removedRecords: swept() });
  }
  const done: PlannedStep[] = [];
  let current = state;
  if (facts.decapsulator === 'other-process') {
    // The process running the decapsulator may own this set-up (the CLI's
    // long-running `up` undoes it when it stops): stop it first, then plan
    // again from whatever record it left.
    const stop = plan.steps.find((step) => step.change.kind === 'decapsulator')!;
    await stopDecapsulator(namespaces, path, stop.change as DecapsulatorChange, o.force);
    done.push(stop);
    const left = readState(path);
    if (!left) {
      return finish({
        ...base,
        stateFile: path,
        changed: true,
        steps: done.map(stepReport),
        commands: done.map(commandOf),
        leftAlone: [`process ${(stop.change as DecapsulatorChange).pid} undid its own set-up when it stopped`],
        removedRecords: swept(),
      });
    }
    current = { ...left, changes: left.changes.filter((c) => c.kind !== 'decapsulator') };
    writeState(path, current);
    plan = planDown(current, await gatherUndoFacts(runner, current, path, o.netns), o.netns);
  }
  const { stats, failed } = await runDownPlan(runner, current, plan, path, o.force);
  const steps = [...done, ...plan.steps];
  return finish({
    ...base,
    stateFile: path,
    changed: steps.length > 0,
    steps: steps.map(stepReport),
    commands: steps.map(commandOf),
    leftAlone: [...plan.leftAlone, ...failed],
    removedRecords: swept(),
    ...(stats ? { decapsulatorStats: stats } : {}),
  });
}

/**
 * The CLI's long-running `up`: sets the real server up, keeps the userspace
 * decapsulator (if any) running until SIGINT or SIGTERM (or `signal`
 * aborts), then runs `down`. `onUp` receives the up result (print its
 * report); `onStats` the decapsulator's counters every `statsIntervalMs`.
 */
export async function runRealServer(
  options: UpOptions & {
    signal?: AbortSignal;
    onUp?: (result: UpResult) => void;
    statsIntervalMs?: number;
    onStats?: (stats: DecapsulatorStats) => void;
  },
): Promise<{ up: UpResult; down: DownResult }> {
  const { signal, onUp, statsIntervalMs, onStats, ...upOptions } = options;
  const upResult = await up({ ...upOptions, dryRun: false });
  onUp?.(upResult);
  const decapsulator = upResult.decapsulator;
  await untilStopped(
    signal,
    decapsulator && statsIntervalMs && onStats ? { intervalMs: statsIntervalMs, tick: () => onStats(decapsulator.stats()) } : undefined,
  );
  const downOptions: DownOptions = { vip: upResult.vip };
  if (upOptions.netns !== undefined) downOptions.netns = upOptions.netns;
  if (upOptions.stateDir !== undefined) downOptions.stateDir = upOptions.stateDir;
  if (upOptions.runner !== undefined) downOptions.runner = upOptions.runner;
  return { up: upResult, down: await down(downOptions) };
}
