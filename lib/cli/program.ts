// The `l4lb` command line: commands, options and help (commander), wired to
// the modules that do the work. Nothing runs at import; runCli(argv) parses,
// runs one command and resolves with its exit status. The command modules
// are imported when their command runs, so `l4lb status` does not load the
// data plane.
import { readFileSync } from 'node:fs';

import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';

import { ExitCode, exitCodeHelp, exitCodeOf } from './exit-codes.js';
import { type CliIo, controlSocketFromEnvironment, processIo } from './io.js';

function packageVersion(): string {
  try {
    // lib/cli and dist/cli are both two levels below the package root.
    const text = readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
    return (JSON.parse(text) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function integer(min: number, max: number, { hex = false } = {}) {
  return (value: string): number => {
    const pattern = hex ? /^(0x[0-9a-f]+|\d+)$/i : /^\d+$/;
    const n = pattern.test(value) ? Number(value) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`Must be an integer from ${min} to ${max}${hex ? ' (decimal or 0x hex)' : ''}.`);
    }
    return n;
  };
}

const socketOption = () =>
  new Option('--socket <path>', 'control socket of the running instance').default(controlSocketFromEnvironment(), '$L4LB_SOCKET or /run/l4lb/l4lb.sock');
const jsonOption = (what: string) => new Option('--json', `print ${what} as JSON, for scripts`);

/** Builds the program; `setExitCode` receives each command's exit status. */
export function buildProgram(io: CliIo, setExitCode: (code: number) => void): Command {
  const program = new Command('l4lb');
  program
    .description('Layer-4 load balancer: run it from a configuration file, inspect it, set up real servers, build a test lab.')
    .version(packageVersion(), '-V, --version')
    .exitOverride()
    // Parse errors read like every other error of the command: "l4lb: ...".
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr, outputError: (text, write) => write(text.replace(/^error: /, 'l4lb: ')) })
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', `\nDocumentation: docs/cli.md and docs/config.md in the l4lb repository; example configurations in examples/ of the package.\n\n${exitCodeHelp}`);

  // ---- the balancer -------------------------------------------------------------
  program
    .command('run')
    .description('run a balancer from a configuration file until SIGINT or SIGTERM; SIGHUP reloads the file')
    .argument('<config>', 'configuration file, YAML or JSON (docs/config.md)')
    .option('--socket <path>', 'control socket (default: control.socket of the file, else $L4LB_SOCKET, else /run/l4lb/l4lb.sock)')
    .option('--metrics <address:port>', 'serve the Prometheus exposition at http://ADDRESS:PORT/metrics (overrides metrics: of the file)')
    .option('--dashboard <[address:]port>', 'serve the live dashboard at http://ADDRESS:PORT/ (PORT alone: on 127.0.0.1; overrides dashboard: of the file)')
    .option('--watch', 'also reload when the file changes')
    .option('--driver <name>', 'data-plane driver instead of balancer.driver of the file: af_packet, af_xdp, dpdk or memory')
    .addHelpText(
      'after',
      `
Reload (SIGHUP, --watch, or "l4lb reload"): the file is read and validated
whole; a bad file is rejected and the running configuration stays. A good
one is applied as one transaction with only the differences: services and
backends added or removed, weights changed. A service whose own options
changed is replaced (its established flows are reset). The balancer section
cannot change while running.

Log lines (events, reloads, errors) go to stderr; "l4lb: ready: ..." marks
the end of start-up.

${exitCodeHelp}`,
    )
    .action(async (config: string, options: { socket?: string; metrics?: string; dashboard?: string; watch?: boolean; driver?: string }) => {
      const { runCommand } = await import('./run.js');
      setExitCode(await runCommand(config, options, io));
    });

  program
    .command('validate')
    .description('check a configuration file as run and reload would, without starting anything')
    .argument('<config>', 'configuration file, YAML or JSON')
    .addHelpText('after', `\n${exitCodeHelp}`)
    .action(async (config: string) => {
      const { validateCommand } = await import('./run.js');
      setExitCode(validateCommand(config, io));
    });

  program
    .command('reload')
    .description('make a running instance re-read its configuration file (as SIGHUP does) and print what changed')
    .addOption(socketOption())
    .addOption(jsonOption('the outcome'))
    .addHelpText('after', `\n${exitCodeHelp}`)
    .action(async (options: { socket: string; json?: boolean }) => {
      const { reloadCommand } = await import('./client.js');
      setExitCode(await reloadCommand(options, io));
    });

  program
    .command('status')
    .description('services, backends, weights, connections and health of a running instance (like ipvsadm -L -n)')
    .addOption(socketOption())
    .addOption(jsonOption('the instance and its statistics'))
    .addHelpText('after', `\n${exitCodeHelp}`)
    .action(async (options: { socket: string; json?: boolean }) => {
      const { statusCommand } = await import('./client.js');
      setExitCode(await statusCommand(options, io));
    });

  program
    .command('stats')
    .description('counters of a running instance (like ipvsadm -L -n --stats), or per-second rates with --rate')
    .addOption(socketOption())
    .option('--rate', 'per-second rates over a window instead of totals')
    .addOption(new Option('--window <ms>', 'the window of --rate, in milliseconds').argParser(integer(1, 600_000)).default(10_000))
    .option('--exact', 'print every digit instead of K, M, G')
    .addOption(jsonOption('the raw statistics (or rates)'))
    .addHelpText('after', `\n${exitCodeHelp}`)
    .action(async (options: { socket: string; json?: boolean; rate?: boolean; window: number; exact?: boolean }) => {
      const { statsCommand } = await import('./client.js');
      setExitCode(await statsCommand({ ...options, windowMs: options.window }, io));
    });

  program
    .command('trace')
    .description('which backend a flow of the running instance gets and why: service, flow entry, persistence, scheduler slot')
    .requiredOption('--src <address>', "the client's address")
    .addOption(new Option('--sport <port>', "the client's port").argParser(integer(0, 65535)).makeOptionMandatory())
    .requiredOption('--dst <address>', 'the VIP')
    .addOption(new Option('--dport <port>', 'the service port').argParser(integer(0, 65535)).makeOptionMandatory())
    .addOption(new Option('--proto <protocol>', 'the protocol').choices(['tcp', 'udp']).default('tcp'))
    .addOption(socketOption())
    .addOption(jsonOption('the explanation (lb.explain())'))
    .addHelpText('after', `\nNothing changes in the balancer: the flow table and the scheduler are only read.\n\n${exitCodeHelp}`)
    .action(async (options: { src: string; sport: number; dst: string; dport: number; proto: 'tcp' | 'udp'; socket: string; json?: boolean }) => {
      const { traceCommand } = await import('./client.js');
      const flow = { src: options.src, sport: options.sport, dst: options.dst, dport: options.dport, proto: options.proto };
      setExitCode(await traceCommand({ socket: options.socket, ...(options.json ? { json: true } : {}), flow }, io));
    });

  // ---- real servers ---------------------------------------------------------------
  const realserver = program
    .command('realserver')
    .description('set up, undo and check a real server behind dr, ipip or gre (docs/realserver.md)')
    .addHelpText('after', `\n${exitCodeHelp}`);
  const methodOption = () => new Option('--method <method>', 'forwarding method of the service').choices(['dr', 'ipip', 'gre']).makeOptionMandatory();
  const vipOption = () => new Option('--vip <address>', 'the service address (IPv4)').makeOptionMandatory();
  const netnsOption = () => new Option('--netns <name>', 'work inside this network namespace');

  realserver
    .command('up')
    .description('VIP on lo, ARP suppression, tunnel decapsulation; idempotent. With userspace decapsulation it stays in the foreground until SIGINT/SIGTERM, then undoes the set-up')
    .addOption(vipOption())
    .addOption(methodOption())
    .option('--interface <name>', 'interface facing the balancer (default: the default route\'s)')
    .addOption(netnsOption())
    .addOption(new Option('--gre-key <key>', 'gre: accept only this key').argParser(integer(0, 0xffffffff, { hex: true })))
    .option('--return-to <balancer>', 'ipip/gre: send replies from the VIP back to this balancer address inside GRE')
    .addOption(new Option('--return-gre-key <key>', 'GRE key of returned replies').argParser(integer(0, 0xffffffff, { hex: true })))
    .addOption(new Option('--return-table <table>', 'routing table for replies from the VIP').argParser(integer(1, 0xffffffff)))
    .addOption(new Option('--decapsulation <mode>', 'ipip/gre: kernel device or userspace decapsulator').choices(['auto', 'kernel', 'userspace']))
    .option('--local-address <address>', 'ipip/gre: the address the balancer tunnels to')
    .option('--state-dir <dir>', 'where the record of the changes lives (default $L4LB_REALSERVER_STATE_DIR or /run/l4lb/realserver)')
    .option('--dry-run', 'print the exact commands without running them')
    .addOption(new Option('--stats-interval <ms>', 'print the decapsulator\'s counters this often').argParser(integer(100, 86_400_000)))
    .addOption(jsonOption('the result'))
    .addHelpText('after', `\n${exitCodeHelp}`)
    .action(async (options) => {
      const { realserverUpCommand } = await import('./realserver.js');
      setExitCode(await realserverUpCommand(options, io));
    });

  realserver
    .command('down')
    .description('undo exactly what up changed, from its record')
    .addOption(vipOption())
    .addOption(netnsOption())
    .option('--state-dir <dir>', 'where the record lives')
    .option('--dry-run', 'print the commands without running them')
    .option('--force', 'recover from a stale record: go on past steps that fail, kill a decapsulator that ignores SIGTERM, remove the records of this VIP whose namespace is gone')
    .addOption(jsonOption('the result'))
    .addHelpText('after', `\n${exitCodeHelp}`)
    .action(async (options) => {
      const { realserverDownCommand } = await import('./realserver.js');
      setExitCode(await realserverDownCommand(options, io));
    });

  realserver
    .command('check')
    .description('report what the real server lacks for its method (exit status 5 when something is missing)')
    .addOption(vipOption())
    .addOption(methodOption())
    .addOption(new Option('--port <port>', 'a UDP port of the service: flags sockets bound to the wildcard address').argParser(integer(1, 65535)))
    .option('--interface <name>', 'interface facing the balancer')
    .addOption(netnsOption())
    .option('--return-to <balancer>', 'expect replies to return through the tunnel to this balancer')
    .option('--state-dir <dir>', 'where up keeps its records (stale ones are reported)')
    .addOption(jsonOption('the findings'))
    .addHelpText('after', `\n${exitCodeHelp}`)
    .action(async (options) => {
      const { realserverCheckCommand } = await import('./realserver.js');
      setExitCode(await realserverCheckCommand(options, io));
    });

  realserver
    .command('decapsulate')
    .description('run the userspace decapsulator alone in the foreground until SIGINT/SIGTERM (the line up --dry-run prints for service managers)')
    .addOption(vipOption())
    .addOption(new Option('--method <method>', 'tunnel to receive').choices(['ipip', 'gre']).makeOptionMandatory())
    .addOption(new Option('--device <name>', 'TUN device (attached if it exists, else created)').makeOptionMandatory())
    .addOption(netnsOption())
    .addOption(new Option('--gre-key <key>', 'accept only this GRE key').argParser(integer(0, 0xffffffff, { hex: true })))
    .option('--local-address <address>', 'accept only tunnel packets to this address')
    .option('--return-to <balancer>', 'send replies from the VIP back to this address inside GRE')
    .option('--return-source <address>', 'outer source address of returned replies')
    .addOption(new Option('--return-gre-key <key>', 'GRE key of returned replies').argParser(integer(0, 0xffffffff, { hex: true })))
    .addOption(new Option('--stats-interval <ms>', 'print the counters this often').argParser(integer(100, 86_400_000)))
    .addOption(jsonOption('the counters'))
    .addHelpText('after', `\n${exitCodeHelp}`)
    .action(async (options) => {
      const { decapsulateCommand } = await import('./realserver.js');
      setExitCode(await decapsulateCommand(options, io));
    });

  // ---- the lab ---------------------------------------------------------------------
  const lab = program
    .command('lab')
    .description('a testbed of network namespaces (client, router, balancer, three backends); needs root')
    .addHelpText('after', `\n${exitCodeHelp}`);
  lab
    .command('up')
    .description('build the testbed, print its hosts and addresses, hold it until Ctrl-C, then remove it')
    .option('--name <prefix>', 'prefix of the host names (e.g. demo gives demo-client, demo-router, ...)')
    .option('--no-servers', 'do not start the HTTP and UDP echo servers on the backends')
    .addHelpText('after', `\n${exitCodeHelp}`)
    .action(async (options: { name?: string; servers: boolean }) => {
      const { labUpCommand } = await import('./lab.js');
      setExitCode(await labUpCommand(options, io));
    });
  lab
    .command('down')
    .description('remove what lab runs left behind: every lab namespace on this machine and its processes')
    .addHelpText('after', `\n${exitCodeHelp}`)
    .action(async () => {
      const { labDownCommand } = await import('./lab.js');
      setExitCode(await labDownCommand(io));
    });
  return program;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Parses `argv` (as process.argv: node, script, arguments), runs the command, resolves with the exit status. */
export async function runCli(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  let exitCode: number = ExitCode.success;
  const program = buildProgram(io, (code) => (exitCode = code));
  try {
    await program.parseAsync([...argv]);
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end with status 0; everything else commander
      // reports (unknown option, missing argument, bad value) is a usage error.
      return error.exitCode === 0 ? ExitCode.success : ExitCode.usage;
    }
    io.stderr(`l4lb: ${message(error)}\n`);
    return exitCodeOf(error);
  }
}
