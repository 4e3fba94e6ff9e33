// The record of what `up` changed: file naming, round trip, refusal of
// foreign files; and up/down against a simulated host (no privileges): the
// dry run equals what ran, a second up changes nothing, down restores the
// host, a failure half-way rolls back.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { CommandOutput, CommandRunner } from '../../lib/realserver/commands.js';
import { RecordingRunner, down, up } from '../../lib/realserver/index.js';
import { type RealServerState, readState, resolveStateDir, statePath, writeState } from '../../lib/realserver/state.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'l4lb-realserver-unit-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('real-server state file', () => {
  it('is named after the namespace (or host) and the VIP', () => {
    expect(statePath('/run/x', 'rs1', '198.18.0.100')).toBe('/run/x/netns-rs1-198.18.0.100.json');
    expect(statePath('/run/x', undefined, '198.18.0.100')).toBe('/run/x/host-198.18.0.100.json');
    const saved = process.env.L4LB_REALSERVER_STATE_DIR;
    try {
      process.env.L4LB_REALSERVER_STATE_DIR = '/tmp/elsewhere';
      expect(resolveStateDir(undefined)).toBe('/tmp/elsewhere');
      delete process.env.L4LB_REALSERVER_STATE_DIR;
      expect(resolveStateDir(undefined)).toBe('/run/l4lb/realserver');
    } finally {
      if (saved === undefined) delete process.env.L4LB_REALSERVER_STATE_DIR;
      else process.env.L4LB_REALSERVER_STATE_DIR = saved;
    }
  });

  it('round-trips every kind of change', () => {
    const state: RealServerState = {
      version: 1,
      vip: '198.18.0.100',
      method: 'gre',
      netns: 'rs1',
      interface: 'eth0',
      decapsulation: 'userspace',
      greKey: 7,
      returnThroughTunnel: { balancer: '198.18.0.1', source: '198.18.0.2', greKey: 7, table: 1278500000, priority: 1000 },
      changes: [
        { kind: 'address', address: '198.18.0.100/32', device: 'lo' },
        { kind: 'sysctl', path: 'net/ipv4/conf/all/arp_ignore', previous: '0', value: '1' },
        { kind: 'link-add', device: 'l4lbc6120064' },
        { kind: 'link-set', device: 'l4lbc6120064', setting: 'mtu' },
        { kind: 'link-up', device: 'tunl0' },
        { kind: 'rule', priority: 1000, from: '198.18.0.100', table: 1278500000 },
        { kind: 'route', table: 1278500000, destination: 'default', device: 'l4lbc6120064' },
        { kind: 'decapsulator', device: 'l4lbc6120064', pid: 1234 },
      ],
      updatedAt: '',
    };
    const path = join(dir, 'nested', 'state.json');
    writeState(path, state);
    const read = readState(path)!;
    expect({ ...read, updatedAt: '' }).toEqual(state);
    expect(Date.parse(read.updatedAt)).not.toBeNaN();
    expect(readState(join(dir, 'absent.json'))).toBeUndefined();
  });

  it('refuses files that are not its records', () => {
    const path = join(dir, 'bad.json');
    writeFileSync(path, '{ "version": 2, "vip": "x", "changes": [] }');
    expect(() => readState(path)).toThrow(expect.objectContaining({ code: 'ESTATE' }));
    writeFileSync(path, 'not json');
    expect(() => readState(path)).toThrow(expect.objectContaining({ code: 'ESTATE', message: expect.stringMatching(/is not JSON/) }));
  });
});

/** A host with lo and eth0 that understands the few commands dr needs. */
class FakeHost implements CommandRunner {
  addresses: Record<string, string[]> = { lo: ['127.0.0.1/8'], eth0: ['198.18.0.2/24'] };
  sysctls: Record<string, string> = {};
  failOn: string | undefined;

  constructor() {
    for (const d of ['all', 'default', 'lo', 'eth0']) {
      for (const s of ['arp_ignore', 'arp_announce', 'rp_filter']) this.sysctls[`net.ipv4.conf.${d}.${s}`] = '0';
    }
    this.sysctls['net.ipv4.conf.lo.arp_ignore'] = '1';
  }

  snapshot() {
    return JSON.parse(JSON.stringify({ addresses: this.addresses, sysctls: this.sysctls })) as unknown;
  }

  async run(argv: string[]): Promise<CommandOutput> {
    const ok = (stdout = ''): CommandOutput => ({ stdout, stderr: '', exitCode: 0 });
    const fail = (stderr: string): CommandOutput => ({ stdout: '', stderr, exitCode: 2 });
    const line = argv.join(' ');
    if (line === this.failOn) return fail('RTNETLINK answers: Operation not permitted');
    if (line === 'ip -j address show') {
      return ok(
        JSON.stringify(
          Object.entries(this.addresses).map(([ifname, list]) => ({
            ifname,
            flags: ifname === 'lo' ? ['LOOPBACK', 'UP', 'LOWER_UP'] : ['BROADCAST', 'UP', 'LOWER_UP'],
            mtu: ifname === 'lo' ? 65536 : 1500,
            link_type: ifname === 'lo' ? 'loopback' : 'ether',
            addr_info: list.map((a) => ({ family: 'inet', local: a.split('/')[0], prefixlen: Number(a.split('/')[1]) })),
          })),
        ),
      );
    }
    if (line === 'ip -j -4 route show table main') return ok(JSON.stringify([{ dst: 'default', gateway: '198.18.0.1', dev: 'eth0' }]));
    if (argv[0] === 'sysctl' && argv[1] === '-w') {
      const [name, value] = argv[2]!.split('=');
      if (!(name! in this.sysctls)) return fail(`sysctl: cannot stat ${name}`);
      this.sysctls[name!] = value!;
      return ok(`${name} = ${value}\n`);
    }
    if (argv[0] === 'sysctl') {
      const known = argv.slice(1).filter((n) => n in this.sysctls);
      return { stdout: known.map((n) => `${n} = ${this.sysctls[n]}\n`).join(''), stderr: '', exitCode: known.length === argv.length - 1 ? 0 : 255 };
    }
    const address = /^ip address (add|del) (\S+) dev (\S+)$/.exec(line);
    if (address) {
      const list = this.addresses[address[3]!]!;
      if (address[1] === 'add') {
        if (list.includes(address[2]!)) return fail('RTNETLINK answers: File exists');
        list.push(address[2]!);
      } else {
        if (!list.includes(address[2]!)) return fail('RTNETLINK answers: Cannot assign requested address');
        list.splice(list.indexOf(address[2]!), 1);
      }
      return ok();
    }
    return fail(`the fake host does not know: ${line}`);
  }
}

describe('up and down on a simulated host', () => {
  const vip = '198.18.0.100';

  it('runs what the dry run printed, changes nothing the second time, and down restores the host', async () => {
    const host = new FakeHost();
    const before = host.snapshot();
    const dry = await up({ vip, method: 'dr', stateDir: dir, dryRun: true, runner: host });
    expect(host.snapshot()).toEqual(before);
    expect(existsSync(join(dir, `host-${vip}.json`))).toBe(false);
    expect(dry.commands).toEqual([
      `ip address add ${vip}/32 dev lo`,
      'sysctl -w net.ipv4.conf.all.arp_ignore=1',
      'sysctl -w net.ipv4.conf.eth0.arp_ignore=1',
      'sysctl -w net.ipv4.conf.all.arp_announce=2',
      'sysctl -w net.ipv4.conf.lo.arp_announce=2',
      'sysctl -w net.ipv4.conf.eth0.arp_announce=2',
    ]);
    expect(dry.report.split('\n')[0]).toBe(`dry run: up ${vip} (dr) would run 6 steps:`);

    const recorder = new RecordingRunner(host);
    const done = await up({ vip, method: 'dr', stateDir: dir, runner: recorder });
    expect(recorder.changes).toEqual(dry.commands);
    expect(done).toMatchObject({ changed: true, commands: dry.commands, interface: 'eth0' });
    const record = JSON.parse(readFileSync(join(dir, `host-${vip}.json`), 'utf8')) as RealServerState;
    expect(record.changes).toHaveLength(6);
    expect(record.changes[1]).toEqual({ kind: 'sysctl', path: 'net/ipv4/conf/all/arp_ignore', previous: '0', value: '1' });

    const again = await up({ vip, method: 'dr', stateDir: dir, runner: host });
    expect(again).toMatchObject({ changed: false, commands: [] });
    expect(again.report.split('\n')[0]).toBe(`up ${vip} (dr): already up, nothing changed`);

    const downDry = await down({ vip, stateDir: dir, dryRun: true, runner: host });
    const downRecorder = new RecordingRunner(host);
    const undone = await down({ vip, stateDir: dir, runner: downRecorder });
    expect(downRecorder.changes).toEqual(downDry.commands);
    expect(undone.commands).toEqual([
      'sysctl -w net.ipv4.conf.eth0.arp_announce=0',
      'sysctl -w net.ipv4.conf.lo.arp_announce=0',
      'sysctl -w net.ipv4.conf.all.arp_announce=0',
      'sysctl -w net.ipv4.conf.eth0.arp_ignore=0',
      'sysctl -w net.ipv4.conf.all.arp_ignore=0',
      `ip address del ${vip}/32 dev lo`,
    ]);
    // lo's arp_ignore was already 1 before up: still 1.
    expect(host.snapshot()).toEqual(before);
    expect(existsSync(join(dir, `host-${vip}.json`))).toBe(false);
    expect((await down({ vip, stateDir: dir, runner: host })).changed).toBe(false);
  });

  it('rolls back what it did when a step fails, and keeps no record', async () => {
    const host = new FakeHost();
    const before = host.snapshot();
    host.failOn = 'sysctl -w net.ipv4.conf.all.arp_announce=2';
    await expect(up({ vip, method: 'dr', stateDir: dir, runner: host })).rejects.toMatchObject({
      code: 'ECOMMAND',
      message:
        `up ${vip} failed at "arp_announce on all: never use the VIP as the source address of ARP requests": ` +
        'sysctl -w net.ipv4.conf.all.arp_announce=2 failed: RTNETLINK answers: Operation not permitted; 3 changes rolled back',
    });
    expect(host.snapshot()).toEqual(before);
    expect(existsSync(join(dir, `host-${vip}.json`))).toBe(false);
  });

  it('leaves alone a setting someone changed after up', async () => {
    const host = new FakeHost();
    await up({ vip, method: 'dr', stateDir: dir, runner: host });
    host.sysctls['net.ipv4.conf.all.arp_ignore'] = '2';
    const undone = await down({ vip, stateDir: dir, runner: host });
    expect(undone.leftAlone).toEqual(['net.ipv4.conf.all.arp_ignore is 2 now, not the 1 up set: left as it is']);
    expect(host.sysctls['net.ipv4.conf.all.arp_ignore']).toBe('2');
  });
});
