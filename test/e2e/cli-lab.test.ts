// `l4lb lab up` builds its testbed; `l4lb run` with the lab's configuration
// balances real HTTP and UDP inside it through AF_PACKET; status and a
// SIGHUP reload work against it; Ctrl-C removes the lab; `l4lb lab down`
// removes what a killed `lab up` left behind.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CliProcess, cli, l4lbCommand } from '../fixtures/cli/process.js';
import { createLab } from './support.js';

const vip = '198.18.100.1';
const backends = ['198.18.1.11', '198.18.1.12', '198.18.1.13'];

function inNamespace(netns: string, argv: string[]): string {
  return execFileSync('ip', ['netns', 'exec', netns, ...argv], { encoding: 'utf8', timeout: 10_000 });
}

// GET a URL and print the body (node rather than curl: nothing beyond Node and iproute2 is assumed).
const httpGet = `
require('node:http').get(process.argv[1], { timeout: 3000 }, (res) => {
  let body = '';
  res.on('data', (chunk) => (body += chunk));
  res.on('end', () => process.stdout.write(body));
}).on('error', (error) => { console.error(error.message); process.exit(1); });
`;

function get(netns: string, url: string): string {
  return inNamespace(netns, [process.execPath, '-e', httpGet, url]);
}

// One UDP datagram to the VIP and its echo, from a namespace.
const udpAsk = `
const s = require('node:dgram').createSocket('udp4');
const timer = setTimeout(() => { console.log('timeout'); process.exit(1); }, 3000);
s.on('message', (m, from) => { console.log(from.address + ' ' + m); clearTimeout(timer); s.close(); });
s.send('ping', 80, '${vip}');
`;

describe('l4lb lab up, and l4lb run inside it', () => {
  let lab: CliProcess;
  let balancer: CliProcess | undefined;
  let netns: (host: string) => string;
  let configFile: string;
  let socket: string;

  beforeAll(async () => {
    // Fails with the reason when namespaces cannot be made here (never skips).
    await (await createLab()).destroy();
    lab = new CliProcess(['lab', 'up', '--name', 'clie2e']);
    await lab.waitFor(/Ctrl-C removes the lab\.\n/, { stream: 'stdout', timeoutMs: 60_000 });
    netns = (host) => new RegExp(`^  clie2e-${host} +(\\S+)$`, 'm').exec(lab.stdout)![1]!;
    configFile = /^balancer config: +(\S+)$/m.exec(lab.stdout)![1]!;
    socket = /--socket (\S+)$/m.exec(lab.stdout)![1]!;
  }, 90_000);

  afterAll(async () => {
    await balancer?.kill('SIGTERM');
    // SIGINT: the lab removes its namespaces (SIGKILL would leave them).
    await lab?.kill('SIGINT');
  });

  it('prints every host with its namespace and addresses, and how to enter them', () => {
    for (const host of ['client', 'router', 'balancer', 'backend1', 'backend2', 'backend3']) {
      expect(netns(host)).toMatch(new RegExp(`^l4lb-\\d+-[0-9a-f]+-clie2e-${host}$`));
    }
    expect(lab.stdout).toContain(`enter a host:      ip netns exec ${netns('client')} bash`);
    expect(lab.stdout).toContain(`VIP ${vip}:80 (tcp and udp) -> backends ${backends.join(', ')} port 8080`);
    expect(lab.stdout).toContain('eth0 198.18.2.2/24 (uplink), eth1 198.18.1.1/24 (lan), default via 198.18.2.1');
    const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    for (const host of ['client', 'balancer', 'backend3']) expect(namespaces).toContain(netns(host));
    // The backends serve before anything balances: straight from the balancer host.
    expect(get(netns('balancer'), 'http://198.18.1.12:8080/')).toBe('clie2e-backend2\n');
  });

  it("balances HTTP and UDP with the lab's configuration through AF_PACKET", async () => {
    balancer = new CliProcess(['run', configFile, '--socket', socket], ['ip', 'netns', 'exec', netns('balancer')]);
    await balancer.waitFor(/l4lb: ready: 2 services, 6 backends/);
    // Every TCP backend passes its HTTP check (rise 2 at 1 s intervals).
    for (const address of backends) await balancer.waitFor(new RegExp(`backend ${address.replace(/\./g, '\\.')}:8080 of ${vip.replace(/\./g, '\\.')}:80/tcp is up`));

    // Every backend answers (exact rr shares are not asserted: a scheduler's
    // turn starts over with each published configuration, and health checks
    // and neighbour learning publish some while this runs).
    const answers = Array.from({ length: 9 }, () => get(netns('client'), `http://${vip}/`).trim());
    expect(new Set(answers)).toEqual(new Set(['clie2e-backend1', 'clie2e-backend2', 'clie2e-backend3']));
    // The echo comes back from the VIP (the balancer translated the reply).
    expect(inNamespace(netns('client'), [process.execPath, '-e', udpAsk])).toBe(`${vip} ping\n`);

    const status = await cli('status', '--socket', socket);
    expect(status.code).toBe(0);
    const lines = status.stdout.split('\n');
    const tcp = lines.indexOf(`TCP  ${vip}:80 wrr`);
    expect(tcp).toBeGreaterThan(0);
    for (const [i, address] of backends.entries()) {
      expect(lines[tcp + 1 + i]).toMatch(new RegExp(`^ {2}-> ${address.replace(/\./g, '\\.')}:8080 +Masq +1 +\\d+ +[1-9]\\d* +up$`));
    }
    const stats = JSON.parse((await cli('stats', '--json', '--socket', socket)).stdout);
    expect(stats.services[0].totalFlows).toBe(9);
    expect(stats.services[1].totalFlows).toBe(1);
    expect(stats.interfaces.map((i: { name: string }) => i.name)).toEqual(['eth0', 'eth1']);
  });

  it('SIGHUP: a drained backend gets no new connections', async () => {
    const text = readFileSync(configFile, 'utf8');
    writeFileSync(configFile, text.replaceAll('{ address: 198.18.1.13, port: 8080 }', '{ address: 198.18.1.13, port: 8080, weight: 0 }'));
    const from = balancer!.stderr.length;
    balancer!.child.kill('SIGHUP');
    await balancer!.waitFor(/reload .*: 2 changes applied/, { from });
    const answers = Array.from({ length: 6 }, () => get(netns('client'), `http://${vip}/`).trim());
    expect(new Set(answers)).toEqual(new Set(['clie2e-backend1', 'clie2e-backend2']));
  });

  it('SIGTERM stops the balancer (status 0); Ctrl-C removes the lab (status 0)', async () => {
    balancer!.child.kill('SIGTERM');
    expect(await balancer!.exited).toBe(0);
    const names = ['client', 'router', 'balancer', 'backend1'].map(netns);
    lab.child.kill('SIGINT');
    expect(await lab.exited).toBe(0);
    expect(lab.stdout).toMatch(/removing the lab \(SIGINT\)\nlab removed\n$/);
    const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    for (const name of names) expect(namespaces).not.toContain(name);
  });
});

describe('l4lb lab down', () => {
  it('removes the namespaces and processes a killed lab up left behind', async () => {
    // `lab down` removes every lab on the machine; other tests' labs must not
    // see it, so this runs in a mount namespace with its own /run/netns, where
    // only the labs made inside it are listed, and with its own TMPDIR, where
    // only their temporary files are.
    const script = `
      set -e
      mount -t tmpfs tmpfs /run/netns
      export TMPDIR="$DIR/tmp"; mkdir -p "$TMPDIR"
      ${l4lbCommand(['lab', 'up', '--name', 'down']).join(' ')} > "$DIR/up.out" 2>&1 &
      up=$!
      for i in $(seq 600); do grep -q 'Ctrl-C removes the lab' "$DIR/up.out" && break; sleep 0.1; done
      kill -KILL $up; wait $up || true
      echo "before: $(ip netns list | grep -c -- '-down-'), lab directories: $(ls "$TMPDIR" | grep -c '^l4lb-lab-')"
      ${l4lbCommand(['lab', 'down']).join(' ')}
      echo "after: $(ip netns list | grep -c -- '-down-' || true), lab directories: $(ls "$TMPDIR" | grep -c '^l4lb-lab-' || true)"
    `;
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const directory = mkdtempSync(join(tmpdir(), 'l4lb-cli-labdown-'));
    try {
      const out = execFileSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], {
        encoding: 'utf8',
        env: { ...process.env, DIR: directory },
        timeout: 90_000,
      });
      expect(out).toMatch(/^before: 7, lab directories: 1\nremoved 7 namespaces:\n( {2}l4lb-\d+-[0-9a-f]+-(down-\w+|sw-down-lan)\n){7}after: 0, lab directories: 0\n$/);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  }, 120_000);
});
