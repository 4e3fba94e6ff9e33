// `l4lb run` as a child process on the memory driver (no privileges), and
// the client commands against it: status, stats, stats --rate, --json,
// reloads by SIGHUP, by the reload command and by --watch, the control
// socket's mode, the metrics endpoint, the dashboard, and a clean SIGTERM.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CliProcess as Cli, cli } from '../fixtures/cli/process.js';

const fixtureText = readFileSync(fileURLToPath(new URL('../fixtures/cli/memory.yaml', import.meta.url)), 'utf8');

const header = [
  'Prot LocalAddress:Port Scheduler Flags',
  '  -> RemoteAddress:Port           Forward Weight ActiveConn TotalConn  State',
];

describe('l4lb run (memory driver) and the commands that talk to it', () => {
  let directory: string;
  let file: string;
  let socket: string;
  let instance: Cli;

  beforeAll(async () => {
    directory = mkdtempSync(join(tmpdir(), 'l4lb-cli-run-'));
    file = join(directory, 'l4lb.yaml');
    // The socket in a directory that does not exist yet: run creates it 0700.
    socket = join(directory, 'control', 'l4lb.sock');
    writeFileSync(file, fixtureText);
    instance = new Cli(['run', file, '--socket', socket]);
    await instance.waitFor(/l4lb: ready: .*\n/);
  }, 60_000);

  afterAll(async () => {
    await instance.kill();
    rmSync(directory, { recursive: true, force: true });
  });

  it('prints one ready line naming what runs', () => {
    expect(instance.stderr).toBe(`l4lb: ready: 2 services, 3 backends, control socket ${socket}\n`);
  });

  it('serves the control socket with mode 0600 in a 0700 directory', () => {
    expect(statSync(socket).isSocket()).toBe(true);
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    expect(statSync(join(directory, 'control')).mode & 0o777).toBe(0o700);
  });

  it('status: the ipvsadm -L -n table', async () => {
    const result = await cli('status', '--socket', socket);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      [
        `l4lb pid ${instance.child.pid}, config ${file}, reloads 0`,
        'Generation 2, workers 1, flows 0/4096',
        ...header,
        'TCP  198.18.0.100:80 wrr',
        '  -> 198.18.1.2:8080              Masq    1      0          0          up',
        '  -> 198.18.1.3:8080              Masq    1      0          0          up',
        'UDP  198.18.0.100:53 sh persistent 300s',
        '  -> 198.18.1.4:53                Masq    1      0          0          up',
        '',
      ].join('\n'),
    );
  });

  it('status from the l4lb executable itself: the same text, status 0', async () => {
    const child = new Cli(['status', '--socket', socket]);
    expect(await child.exited).toBe(0);
    expect(child.stdout).toBe((await cli('status', '--socket', socket)).stdout);
  });

  it('stats: the --stats table', async () => {
    const result = await cli('stats', '--socket', socket);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      [
        'Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes',
        '  -> RemoteAddress:Port',
        'TCP  198.18.0.100:80                     0        0        0        0        0',
        '  -> 198.18.1.2:8080                     0        0        0        0        0',
        '  -> 198.18.1.3:8080                     0        0        0        0        0',
        'UDP  198.18.0.100:53                     0        0        0        0        0',
        '  -> 198.18.1.4:53                       0        0        0        0        0',
        'Interface          RxPkts  RxBytes   TxPkts  TxBytes   TxDrop KernDrop',
        'in                      0        0        0        0        0        0',
        'out                     0        0        0        0        0        0',
        'Received: 0 packets, 0 bytes',
        'Drops: none',
        "Replies on their flow's ingress path: 0 (routing would have chosen another port for 0)",
        '',
      ].join('\n'),
    );
  });

  it('trace: where a tuple goes and why, as text and --json; a bad address is a usage error', async () => {
    const result = await cli('trace', '--src', '198.18.0.10', '--sport', '40000', '--dst', '198.18.0.100', '--dport', '53', '--proto', 'udp', '--socket', socket);
    expect(result.code).toBe(0);
    const lines = result.stdout.split('\n');
    expect(lines.slice(0, 4)).toEqual([
      'UDP 198.18.0.10:40000 -> 198.18.0.100:53',
      'Service:     198.18.0.100:53/udp',
      'Backend:     198.18.1.4:53 (up, weight 1)',
      expect.stringMatching(/^Verdict: {5}scheduler: a new flow: sh hashes it to slot \d+ of \d+, which holds 198\.18\.1\.4:53$/),
    ]);
    expect(lines[4]).toMatch(/^Scheduler: {3}sh, slot \d+ of \d+, 198\.18\.1\.4:53$/);
    expect(lines[5]).toMatch(/^Hash: {8}[0-9a-f]{16}$/);
    const json = await cli('trace', '--src', '198.18.0.10', '--sport', '40000', '--dst', '198.18.0.100', '--dport', '80', '--json', '--socket', socket);
    expect(JSON.parse(json.stdout)).toMatchObject({ service: '198.18.0.100:80/tcp', verdict: 'scheduler', backend: null, scheduler: { name: 'wrr', byHash: false } });
    const none = await cli('trace', '--src', '198.18.0.10', '--sport', '1', '--dst', '198.18.0.100', '--dport', '81', '--socket', socket);
    expect(none.stdout).toContain('Verdict:     no-service: no service for 198.18.0.100:81/tcp');
    const bad = await cli('trace', '--src', 'client', '--sport', '1', '--dst', '198.18.0.100', '--dport', '81', '--socket', socket);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('l4lb: src must be an IPv4 address, got "client"\n');
  });

  it('stats --rate: the --rate table over the window asked for', async () => {
    const result = await cli('stats', '--rate', '--window', '5000', '--socket', socket);
    expect(result.code).toBe(0);
    const lines = result.stdout.split('\n');
    // The window is what was measured: at most the one asked for.
    expect(lines[0]).toMatch(/^Rates per second over the last [0-5]\.\d s$/);
    expect(lines.slice(1)).toEqual([
      'Prot LocalAddress:Port                 CPS      PPS      BPS',
      '  -> RemoteAddress:Port',
      'TCP  198.18.0.100:80                     0        0        0',
      '  -> 198.18.1.2:8080                     0        0        0',
      '  -> 198.18.1.3:8080                     0        0        0',
      'UDP  198.18.0.100:53                     0        0        0',
      '  -> 198.18.1.4:53                       0        0        0',
      'Received: 0 packets/s, 0 bytes/s',
      'Drops/s: none',
      '',
    ]);
  });

  it('--json: the raw statistics, rates and status for scripts', async () => {
    const stats = JSON.parse((await cli('stats', '--json', '--socket', socket)).stdout);
    expect(stats.services.map((s: { address: string; port: number; protocol: string }) => `${s.address}:${s.port}/${s.protocol}`)).toEqual([
      '198.18.0.100:80/tcp',
      '198.18.0.100:53/udp',
    ]);
    expect(stats.services[0].backends[1]).toMatchObject({ address: '198.18.1.3', port: 8080, weight: 1, state: 'up', packets: 0, totalFlows: 0 });
    expect(stats.flows).toMatchObject({ active: 0, capacity: 4096 });
    const rates = JSON.parse((await cli('stats', '--rate', '--json', '--socket', socket)).stdout);
    expect(rates).toMatchObject({ packetsPerSec: 0, bytesPerSec: 0, services: [{ port: 80, flowsPerSec: 0 }, { port: 53 }] });
    const status = JSON.parse((await cli('status', '--json', '--socket', socket)).stdout);
    expect(status.instance).toMatchObject({ pid: instance.child.pid, file, reloads: 0 });
    expect(status.stats.services[1].persistenceTimeoutMs).toBe(300_000);
  });

  it('SIGHUP reloads: a changed weight and an added backend appear in status', async () => {
    const from = instance.stderr.length;
    writeFileSync(
      file,
      fixtureText
        .replace('- { address: 198.18.1.3, port: 8080, weight: 1 }', '- { address: 198.18.1.3, port: 8080, weight: 3 }')
        .replace('      - { address: 198.18.1.4 }', '      - { address: 198.18.1.4 }\n      - { address: 198.18.1.5 }'),
    );
    instance.child.kill('SIGHUP');
    await instance.waitFor(/changes applied \(generation 3\)\n(.*\n){2}/, { from });
    expect(instance.stderr.slice(from)).toBe(
      [
        `l4lb: reloading ${file} (SIGHUP)`,
        `l4lb: reload ${file}: 2 changes applied (generation 3)`,
        'l4lb:   add backend 198.18.1.5:53 to 198.18.0.100:53/udp (weight 1)',
        'l4lb:   set weight of 198.18.1.3:8080 in 198.18.0.100:80/tcp from 1 to 3',
        '',
      ].join('\n'),
    );
    const status = (await cli('status', '--socket', socket)).stdout.split('\n');
    expect(status.slice(0, 2)).toEqual([`l4lb pid ${instance.child.pid}, config ${file}, reloads 1`, 'Generation 3, workers 1, flows 0/4096']);
    expect(status.slice(4)).toEqual([
      'TCP  198.18.0.100:80 wrr',
      '  -> 198.18.1.2:8080              Masq    1      0          0          up',
      '  -> 198.18.1.3:8080              Masq    3      0          0          up',
      'UDP  198.18.0.100:53 sh persistent 300s',
      '  -> 198.18.1.4:53                Masq    1      0          0          up',
      '  -> 198.18.1.5:53                Masq    1      0          0          up',
      '',
    ]);
  });

  it('SIGHUP with a bad file: rejected whole, logged with file, line, path and rule; status unchanged', async () => {
    const before = (await cli('status', '--socket', socket)).stdout;
    const good = readFileSync(file, 'utf8');
    const from = instance.stderr.length;
    try {
      // A valid change (a new backend) and an invalid one in the same file.
      writeFileSync(
        file,
        good
          .replace('      - { address: 198.18.1.2, port: 8080, weight: 1 }', '      - { address: 198.18.1.2, port: 8080, weight: 1 }\n      - { address: 198.18.1.4, port: 8080 }')
          .replace('persistence: { timeoutMs: 300000 }', 'persistence: { timeoutMs: -5 }'),
      );
      instance.child.kill('SIGHUP');
      // Line 34: the persistence line, below the backend line the first reload added and this one adds.
      const message = `${file}:34: services[1].persistence.timeoutMs: must be an integer from 1 to 4294967295, got -5`;
      await instance.waitFor(/reload rejected.*\n/, { from });
      expect(instance.stderr.slice(from)).toBe(`l4lb: reloading ${file} (SIGHUP)\nl4lb: reload rejected, the running configuration stays: ${message}\n`);
      const after = (await cli('status', '--socket', socket)).stdout.split('\n');
      expect(after[1]).toBe(`Last reload rejected: ${message}`);
      expect([after[0], ...after.slice(2)].join('\n')).toBe(before);

      // The reload command says the same, with exit status 3.
      const reload = await cli('reload', '--socket', socket);
      expect(reload).toEqual({ code: 3, stdout: '', stderr: `l4lb: ${message}\n` });
    } finally {
      writeFileSync(file, good);
    }
  });

  it('the reload command: a balancer change is refused (status 3), the same file is no change (status 0)', async () => {
    const good = readFileSync(file, 'utf8');
    writeFileSync(file, good.replace('workers: 1', 'workers: 2'));
    expect(await cli('reload', '--socket', socket)).toEqual({
      code: 3,
      stdout: '',
      stderr: `l4lb: ${file}:6: balancer.workers: cannot change while l4lb runs (1 -> 2); the balancer section applies at start: restart l4lb to use it\n`,
    });
    writeFileSync(file, good);
    expect(await cli('reload', '--socket', socket)).toEqual({ code: 0, stdout: `reloaded ${file}: no changes\n`, stderr: '' });
    const json = JSON.parse((await cli('reload', '--json', '--socket', socket)).stdout);
    expect(json).toEqual({ file, changed: false, operations: [], generation: 3 });
  });

  it('a second instance on the same socket stops before starting a data plane (status 1)', async () => {
    const result = await cli('run', file, '--socket', socket);
    expect(result).toEqual({ code: 1, stdout: '', stderr: `l4lb: control socket ${socket} is in use: another l4lb instance runs there\n` });
  });

  it('a request that is not JSON gets an error answer, and the instance keeps serving', async () => {
    const { connect } = await import('node:net');
    const answer = await new Promise<string>((resolve, reject) => {
      const s = connect(socket, () => s.write('hello\n'));
      s.setEncoding('utf8');
      s.once('data', (line: string) => (s.destroy(), resolve(line)));
      s.once('error', reject);
    });
    expect(JSON.parse(answer)).toEqual({ ok: false, error: { name: 'ControlError', code: 'EINVAL_REQUEST', message: 'a request is one JSON object per line' } });
    expect((await cli('status', '--socket', socket)).code).toBe(0);
  });

  it('SIGTERM: closes the balancer, removes the socket, exits 0', async () => {
    const from = instance.stderr.length;
    instance.child.kill('SIGTERM');
    expect(await instance.exited).toBe(0);
    expect(instance.stderr.slice(from)).toBe('l4lb: stopping (SIGTERM)\nl4lb: stopped\n');
    expect(existsSync(socket)).toBe(false);
    expect((await cli('status', '--socket', socket)).code).toBe(4);
  });
});

describe('l4lb run --watch --metrics', () => {
  it('reloads when the file changes and serves GET /metrics only; SIGINT exits 0', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'l4lb-cli-watch-'));
    const file = join(directory, 'l4lb.yaml');
    const socket = join(directory, 'l4lb.sock');
    writeFileSync(file, fixtureText);
    const instance = new Cli(['run', file, '--socket', socket, '--watch', '--metrics', '127.0.0.1:0']);
    try {
      const ready = await instance.waitFor(/l4lb: ready: .*, metrics (http:\/\/127\.0\.0\.1:\d+\/metrics), watching the file\n/);
      const url = ready[1]!;
      const metrics = await fetch(url);
      expect(metrics.status).toBe(200);
      expect(metrics.headers.get('content-type')).toContain('text/plain');
      const text = await metrics.text();
      expect(text).toContain('l4lb_backend_weight{service="198.18.0.100:80/tcp",backend="198.18.1.3:8080"} 1');
      expect((await fetch(url.replace('/metrics', '/'))).status).toBe(404);
      expect((await fetch(url, { method: 'POST' })).status).toBe(405);

      // An editor's save: a new file renamed over the old one.
      const from = instance.stderr.length;
      writeFileSync(`${file}.tmp`, fixtureText.replace('- { address: 198.18.1.3, port: 8080, weight: 1 }', '- { address: 198.18.1.3, port: 8080, weight: 7 }'));
      const { renameSync } = await import('node:fs');
      renameSync(`${file}.tmp`, file);
      await instance.waitFor(/1 change applied.*\n.*\n/, { from });
      expect(instance.stderr.slice(from)).toBe(
        [
          `l4lb: reloading ${file} (file changed)`,
          `l4lb: reload ${file}: 1 change applied (generation 3)`,
          'l4lb:   set weight of 198.18.1.3:8080 in 198.18.0.100:80/tcp from 1 to 7',
          '',
        ].join('\n'),
      );
      expect(await (await fetch(url)).text()).toContain('l4lb_backend_weight{service="198.18.0.100:80/tcp",backend="198.18.1.3:8080"} 7');

      // Touching the file without changing it reloads nothing.
      const touched = instance.stderr.length;
      writeFileSync(file, readFileSync(file));
      await new Promise((resolve) => setTimeout(resolve, 600));
      expect(instance.stderr.slice(touched)).toBe('');

      instance.child.kill('SIGINT');
      expect(await instance.exited).toBe(0);
      expect(instance.stderr.slice(touched)).toBe('l4lb: stopping (SIGINT)\nl4lb: stopped\n');
      expect(existsSync(socket)).toBe(false);
    } finally {
      await instance.kill();
      rmSync(directory, { recursive: true, force: true });
    }
  });
});

describe('l4lb run --dashboard', () => {
  it('serves the dashboard from the file (a port alone: loopback), --dashboard overrides it, SIGTERM closes it', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'l4lb-cli-dashboard-'));
    const file = join(directory, 'l4lb.yaml');
    const socket = join(directory, 'l4lb.sock');
    writeFileSync(file, `${fixtureText}dashboard: 0\n`);
    const instance = new Cli(['run', file, '--socket', socket]);
    try {
      const ready = await instance.waitFor(/l4lb: ready: 2 services, 3 backends, control socket \S+, dashboard (http:\/\/127\.0\.0\.1:(\d+)\/)\n/);
      const url = ready[1]!;
      const page = await fetch(url);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<title>l4lb dashboard</title>');
      const snapshot = (await (await fetch(`${url}snapshot.json`)).json()) as { stats: { services: Array<{ address: string; port: number; backends: Array<{ weight: number }> }> } };
      const status = JSON.parse((await cli('status', '--socket', socket, '--json')).stdout) as { stats: { services: unknown[] } };
      expect(snapshot.stats.services.map((s) => `${s.address}:${s.port}`)).toEqual(['198.18.0.100:80', '198.18.0.100:53']);
      expect(snapshot.stats.services).toHaveLength(status.stats.services.length);
      expect((await fetch(url, { method: 'POST' })).status).toBe(405);
      instance.child.kill('SIGTERM');
      expect(await instance.exited).toBe(0);
      await expect(fetch(url)).rejects.toThrow();
    } finally {
      await instance.kill();
    }

    // --dashboard replaces the file's, and an address other than loopback is said to be one.
    const open = new Cli(['run', file, '--socket', socket, '--dashboard', '0.0.0.0:0']);
    try {
      const ready = await open.waitFor(/, dashboard http:\/\/0\.0\.0\.0:(\d+)\/\n/);
      expect(open.stderr).toContain('l4lb: the dashboard listens on 0.0.0.0, not loopback: anyone who reaches it sees every service and backend\n');
      expect((await fetch(`http://127.0.0.1:${ready[1]}/`)).status).toBe(200);
    } finally {
      await open.kill('SIGTERM');
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('a dashboard port in use: status 1 naming it, nothing left running', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'l4lb-cli-dashboard-'));
    const file = join(directory, 'l4lb.yaml');
    const socket = join(directory, 'l4lb.sock');
    writeFileSync(file, fixtureText);
    const { createServer } = await import('node:net');
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as { port: number };
    const instance = new Cli(['run', file, '--socket', socket, '--dashboard', String(port)]);
    try {
      expect(await instance.exited).toBe(1);
      expect(instance.stderr).toBe(`l4lb: cannot serve the dashboard on http://127.0.0.1:${port}/ (EADDRINUSE): the port is in use: choose another, or port 0 for any free one\n`);
      expect(existsSync(socket)).toBe(false);
    } finally {
      blocker.close();
      await instance.kill();
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
