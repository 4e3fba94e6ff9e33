// `l4lb realserver up|down|check|decapsulate` in a lab namespace: the dry
// run prints what up then does, check's status follows the host, the
// long-running up (userspace decapsulation) holds until SIGTERM and undoes
// itself, and decapsulate runs as a service would run it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Host, Lab } from '../../lib/lab/index.js';
import { CliProcess, cli } from '../fixtures/cli/process.js';
import { createLab } from './support.js';

const vip = '198.18.100.1';

describe('l4lb realserver', () => {
  let lab: Lab;
  let rs: Host;
  let stateDir: string;
  const running: CliProcess[] = [];

  beforeAll(async () => {
    lab = await createLab();
    rs = await lab.addHost('rs');
    const lb = await lab.addHost('lb');
    await lab.connect({ host: lb, name: 'eth0', addresses: ['198.18.0.1/24'] }, { host: rs, name: 'eth0', addresses: ['198.18.0.2/24'] });
    await rs.addRoute('default', { via: '198.18.0.1' });
    stateDir = mkdtempSync(join(tmpdir(), 'l4lb-cli-realserver-'));
  }, 60_000);

  afterAll(async () => {
    await Promise.all(running.map((p) => p.kill('SIGTERM')));
    await cli('realserver', 'down', '--vip', vip, '--netns', rs.netns, '--state-dir', stateDir);
    await lab?.destroy();
    rmSync(stateDir, { recursive: true, force: true });
  });

  const where = () => ['--netns', rs.netns, '--state-dir', stateDir];

  it('dr: --dry-run prints the commands up then runs; check passes after up and fails after down (status 5)', async () => {
    const before = await cli('realserver', 'check', '--vip', vip, '--method', 'dr', '--netns', rs.netns);
    expect(before.code).toBe(5);
    expect(before.stdout).toMatch(new RegExp(`^check ${vip} \\(dr, namespace ${rs.netns}\\): \\d problems\\n`));

    const dry = await cli('realserver', 'up', '--vip', vip, '--method', 'dr', ...where(), '--dry-run');
    expect(dry.code).toBe(0);
    const planned = dry.stdout.split('\n').filter((line) => /^ {2}\S/.test(line));
    expect(planned[0]).toBe(`  ip -n ${rs.netns} address add ${vip}/32 dev lo`);
    expect(planned).toContain(`  ip netns exec ${rs.netns} sysctl -w net.ipv4.conf.eth0.arp_ignore=1`);

    const upped = await cli('realserver', 'up', '--vip', vip, '--method', 'dr', ...where());
    expect(upped.code).toBe(0);
    expect(upped.stdout.split('\n').filter((line) => /^ {2}\S/.test(line))).toEqual(planned);
    expect((await cli('realserver', 'up', '--vip', vip, '--method', 'dr', ...where())).stdout).toMatch(/already up, nothing changed/);

    const ok = await cli('realserver', 'check', '--vip', vip, '--method', 'dr', '--netns', rs.netns, '--json');
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, problems: 0, vip, method: 'dr' });

    const downed = await cli('realserver', 'down', '--vip', vip, ...where());
    expect(downed.code).toBe(0);
    expect(downed.stdout).toMatch(new RegExp(`^down ${vip}, namespace ${rs.netns}: 7 changes undone:\\n`));
    expect((await cli('realserver', 'check', '--vip', vip, '--method', 'dr', '--netns', rs.netns)).code).toBe(5);
  });

  it('check --port flags a UDP service bound to the wildcard address (status 5)', async () => {
    expect((await cli('realserver', 'up', '--vip', vip, '--method', 'dr', ...where())).code).toBe(0);
    const server = rs.spawn([process.execPath, '-e', "require('node:dgram').createSocket('udp4').bind(5353, '0.0.0.0', () => console.log('listening'))"]);
    try {
      await server.waitForLine(/listening/);
      const result = await cli('realserver', 'check', '--vip', vip, '--method', 'dr', '--port', '5353', '--netns', rs.netns);
      expect(result.code).toBe(5);
      expect(result.stdout).toContain('0.0.0.0');
      expect(result.stdout).toContain('fix:');
    } finally {
      await server.stop();
      await cli('realserver', 'down', '--vip', vip, ...where());
    }
  });

  it('gre with userspace decapsulation: up stays in the foreground until SIGTERM, then undoes the set-up', async () => {
    const up = new CliProcess(['realserver', 'up', '--vip', vip, '--method', 'gre', '--decapsulation', 'userspace', ...where()]);
    running.push(up);
    await up.waitFor(/Ctrl-C or SIGTERM stops it and undoes the set-up\n/, { stream: 'stdout' });
    expect(up.stdout).toContain(`l4lb realserver decapsulate --vip ${vip} --method gre --device l4lbc6126401 --netns ${rs.netns}`);
    const ok = await cli('realserver', 'check', '--vip', vip, '--method', 'gre', '--netns', rs.netns);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^check 198\.18\.100\.1 \(gre, namespace \S+\): ready/);

    up.child.kill('SIGTERM');
    expect(await up.exited).toBe(0);
    expect(up.stdout).toMatch(new RegExp(`down ${vip}, namespace ${rs.netns}: \\d+ changes undone:`));
    expect((await cli('realserver', 'check', '--vip', vip, '--method', 'gre', '--netns', rs.netns)).code).toBe(5);
    expect((await rs.ip(['-j', 'link', 'show'])).stdout).not.toContain('l4lbc6126401');
  });

  it('decapsulate runs the decapsulator alone with periodic counters; SIGTERM ends it with status 0', async () => {
    const decapsulate = new CliProcess(['realserver', 'decapsulate', '--vip', vip, '--method', 'ipip', '--device', 'clitun0', '--netns', rs.netns, '--stats-interval', '200']);
    running.push(decapsulate);
    await decapsulate.waitFor(/received 0, decapsulated 0 \(0 bytes\), malformed 0, not for us 0, returned 0 \(0 bytes\), return drops 0\n/, { stream: 'stdout' });
    expect(decapsulate.stdout.startsWith(`decapsulating ipip for ${vip} into clitun0 in namespace ${rs.netns} until SIGINT or SIGTERM\n`)).toBe(true);
    decapsulate.child.kill('SIGTERM');
    expect(await decapsulate.exited).toBe(0);
    expect(decapsulate.stdout).toMatch(/stopped: received 0, decapsulated 0 \(0 bytes\)/);
    // The TUN device it created went with it.
    expect((await rs.ip(['-j', 'link', 'show'])).stdout).not.toContain('clitun0');
  });

  it('a namespace that does not exist is a runtime failure (status 1) naming it', async () => {
    const result = await cli('realserver', 'check', '--vip', vip, '--method', 'dr', '--netns', 'l4lb-no-such-namespace');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^l4lb: .*l4lb-no-such-namespace/);
  });
});
