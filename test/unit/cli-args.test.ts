// The command line itself: usage errors end with status 2 and say what is
// wrong, --help of every command exits 0 and lists its options, and the
// documented statuses of validate and of an unreachable instance.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import { runCli } from '../../lib/cli/program.js';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/cli/${name}`, import.meta.url));
const example = (name: string) => fileURLToPath(new URL(`../../examples/${name}`, import.meta.url));

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(['node', 'l4lb', ...args], { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

describe('usage errors: status 2 and the reason', () => {
  it.each([
    [['statz'], "l4lb: unknown command 'statz'\n(Did you mean stats?)"],
    [['status', '--verbose'], "l4lb: unknown option '--verbose'"],
    [['status', 'extra'], "l4lb: too many arguments for 'status'. Expected 0 arguments but got 1."],
    [['run'], "l4lb: missing required argument 'config'"],
    [['stats', '--window', '0'], "l4lb: option '--window <ms>' argument '0' is invalid. Must be an integer from 1 to 600000."],
    [['stats', '--window', '1e3'], "l4lb: option '--window <ms>' argument '1e3' is invalid. Must be an integer from 1 to 600000."],
    [['realserver', 'up', '--method', 'dr'], "l4lb: required option '--vip <address>' not specified"],
    [['realserver', 'up', '--vip', '198.18.0.100', '--method', 'masq'], "l4lb: option '--method <method>' argument 'masq' is invalid. Allowed choices are dr, ipip, gre."],
    [
      ['realserver', 'up', '--vip', '198.18.0.100', '--method', 'gre', '--gre-key', 'x'],
      "l4lb: option '--gre-key <key>' argument 'x' is invalid. Must be an integer from 0 to 4294967295 (decimal or 0x hex).",
    ],
    [['realserver', 'check', '--vip', '198.18.0.100', '--method', 'dr', '--port', '70000'], "l4lb: option '--port <port>' argument '70000' is invalid. Must be an integer from 1 to 65535."],
    [['realserver', 'decapsulate', '--vip', '198.18.0.100', '--method', 'dr', '--device', 'tun0'], "l4lb: option '--method <method>' argument 'dr' is invalid. Allowed choices are ipip, gre."],
    [['realserver', 'up', '--vip', 'abc', '--method', 'dr', '--dry-run'], 'l4lb: vip: "abc" is not an IPv4 address'],
    [['lab', 'up', '--name', 'Bad_Name'], `l4lb: --name must be 1-20 lower-case letters, digits or '-', starting with a letter, got "Bad_Name"`],
    [['run', 'x.yaml', '--metrics', 'nope'], 'l4lb: --metrics must be "address:port" with an IPv4 address and a port 0..65535, got "nope"'],
    [['run', 'x.yaml', '--dashboard', 'localhost:8080'], 'l4lb: --dashboard must be "PORT" (on 127.0.0.1), "ADDRESS:PORT" or "[IPV6]:PORT" with a port 0..65535, got "localhost:8080"'],
    [['run', 'x.yaml', '--dashboard', '127.0.0.1:99999'], 'l4lb: --dashboard must be "PORT" (on 127.0.0.1), "ADDRESS:PORT" or "[IPV6]:PORT" with a port 0..65535, got "127.0.0.1:99999"'],
  ])('l4lb %j', async (args, message) => {
    const result = await cli(...args);
    expect(result.code).toBe(2);
    expect(result.stderr.startsWith(`${message}\n`)).toBe(true);
    expect(result.stdout).toBe('');
  });

  it('a command group without its subcommand shows its help, status 2', async () => {
    const result = await cli('realserver');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('Usage: l4lb realserver [options] [command]');
  });
});

describe('--help on every command: status 0, its options, the exit statuses', () => {
  const commands: Array<[string[], string[]]> = [
    [[], ['run', 'validate', 'reload', 'status', 'stats', 'realserver', 'lab', '--version']],
    [['run'], ['<config>', '--socket <path>', '--metrics <address:port>', '--dashboard <[address:]port>', '--watch', 'SIGHUP']],
    [['validate'], ['<config>']],
    [['reload'], ['--socket <path>', '--json']],
    [['status'], ['--socket <path>', '--json', '$L4LB_SOCKET']],
    [['stats'], ['--socket <path>', '--rate', '--window <ms>', '--exact', '--json']],
    [['realserver'], ['up', 'down', 'check', 'decapsulate']],
    [
      ['realserver', 'up'],
      ['--vip <address>', '--method <method>', '--interface <name>', '--netns <name>', '--gre-key <key>', '--return-to <balancer>', '--return-gre-key <key>', '--return-table <table>', '--decapsulation <mode>', '--local-address <address>', '--state-dir <dir>', '--dry-run', '--stats-interval <ms>', '--json'],
    ],
    [['realserver', 'down'], ['--vip <address>', '--netns <name>', '--state-dir <dir>', '--dry-run', '--json']],
    [['realserver', 'check'], ['--vip <address>', '--method <method>', '--port <port>', '--interface <name>', '--netns <name>', '--return-to <balancer>', '--json']],
    [
      ['realserver', 'decapsulate'],
      ['--vip <address>', '--method <method>', '--device <name>', '--netns <name>', '--gre-key <key>', '--local-address <address>', '--return-to <balancer>', '--return-source <address>', '--return-gre-key <key>', '--stats-interval <ms>'],
    ],
    [['lab'], ['up', 'down']],
    [['lab', 'up'], ['--name <prefix>', '--no-servers']],
    [['lab', 'down'], []],
  ];
  it.each(commands)('l4lb %j --help', async (path, mentions) => {
    const result = await cli(...path, '--help');
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain(`Usage: l4lb${path.length ? ` ${path.join(' ')}` : ''}`);
    for (const text of mentions) expect(result.stdout).toContain(text);
    expect(result.stdout).toContain('Exit status:\n  0  success\n  1  runtime failure\n  2  usage error');
    expect(result.stdout).toContain('4  instance unreachable (control socket)\n  5  check found problems');
  });

  it('l4lb help stats is the same as l4lb stats --help', async () => {
    expect((await cli('help', 'stats')).stdout).toBe((await cli('stats', '--help')).stdout);
  });

  it('--version prints the package version', async () => {
    const result = await cli('--version');
    expect(result).toEqual({ code: 0, stdout: '0.1.0\n', stderr: '' });
  });
});

describe('documented statuses', () => {
  it('validate: 0 for a good file', async () => {
    const result = await cli('validate', example('l4lb.yaml'));
    expect(result).toEqual({ code: 0, stdout: `${example('l4lb.yaml')}: valid (3 services, 7 backends)\n`, stderr: '' });
  });

  it('validate: 3 for a bad file, with file, line, path and rule', async () => {
    const result = await cli('validate', fixture('bad-method.yaml'));
    expect(result.code).toBe(3);
    expect(result.stderr).toBe(`l4lb: ${fixture('bad-method.yaml')}:6: services[0].method: must be one of 'nat', 'fullnat', 'dr', 'ipip', 'gre', got "masq"\n`);
  });

  it('run: 3 for a bad file, before anything starts', async () => {
    const result = await cli('run', fixture('bad-weight.json'), '--socket', '/tmp/l4lb-cli-args-never.sock');
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('services[0].backends[1].weight: must be an integer from 0 to 65535, got 70000');
  });

  it.each([['status'], ['stats'], ['stats', '--rate'], ['reload']])('%s: 4 when no instance answers', async (...args) => {
    const result = await cli(...args, '--socket', '/tmp/l4lb-cli-args-none.sock');
    expect(result.code).toBe(4);
    expect(result.stderr).toBe(
      'l4lb: cannot reach an l4lb instance at /tmp/l4lb-cli-args-none.sock (ENOENT); is "l4lb run" running with this --socket, and may you open it?\n',
    );
  });
});
