// The record of what `up` changed: file naming, round trip, refusal of
// foreign files; and up/down against a simulated host (no privileges): the
// dry run equals what ran, a second up changes nothing, down restores the
// host, a failure half-way rolls back; two namespaces keep two records, and
// stale records (a namespace gone, its inode reused) are told apart and
// recovered by down --force.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { CommandOutput, CommandRunner, NamespaceInspector, NetnsIdentity } from '../../lib/realserver/commands.js';
import { RealServerError } from '../../lib/realserver/errors.js';
import { RecordingRunner, check, down, up } from '../../lib/realserver/index.js';
import { type RealServerState, listStates, readState, resolveStateDir, statePath, writeState } from '../../lib/realserver/state.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'l4lb-realserver-unit-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('real-server state file', () => {
  it('is named after the namespace (inode and cookie) and the VIP', () => {
    expect(statePath('/run/x', { inode: 4026532001, cookie: '17' }, '198.18.0.100')).toBe('/run/x/net-4026532001-17-198.18.0.100.json');
    expect(statePath('/run/x', { inode: 4026532001 }, '198.18.0.100')).toBe('/run/x/net-4026532001-x-198.18.0.100.json');
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
      version: 2,
      vip: '198.18.0.100',
      method: 'gre',
      namespace: { inode: 4026532001, cookie: '17', names: ['rs1'] },
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
        { kind: 'decapsulator', device: 'l4lbc6120064', pid: 1234, startTime: 5678 },
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
    writeFileSync(path, '{ "version": 3, "vip": "x", "changes": [] }');
    expect(() => readState(path)).toThrow(expect.objectContaining({ code: 'ESTATE' }));
    // Version 1 did not say which namespace it belongs to.
    writeFileSync(path, '{ "version": 1, "vip": "x", "changes": [] }');
    expect(() => readState(path)).toThrow(expect.objectContaining({ code: 'ESTATE', message: expect.stringMatching(/\(version 2\)$/) }));
    writeFileSync(path, 'not json');
    expect(() => readState(path)).toThrow(expect.objectContaining({ code: 'ESTATE', message: expect.stringMatching(/is not JSON/) }));
  });
});

/**
 * The namespaces of a simulated machine: which ones exist (by identity),
 * under which names, and which processes run (pid -> start time).
 */
class FakeMachine {
  live: Array<NetnsIdentity & { names: string[] }> = [];
  processes = new Map<number, number>([[process.pid, 1000]]);

  inspector(self: NetnsIdentity): NamespaceInspector {
    return {
      identify: (netns) => {
        if (netns === undefined) return self;
        const found = this.live.find((n) => n.names.includes(netns));
        if (!found) throw new RealServerError('ENO_NETNS', `netns: network namespace "${netns}" does not exist (see ip netns list)`, { path: 'netns' });
        return { inode: found.inode, ...(found.cookie !== undefined ? { cookie: found.cookie } : {}) };
      },
      lookup: (identity) => {
        const found = this.live.find((n) => n.inode === identity.inode && n.cookie === identity.cookie);
        return found ? { names: found.names } : undefined;
      },
      processStartTime: (pid) => this.processes.get(pid),
      processInNamespace: () => false,
    };
  }
}

/** A host (one network namespace) with lo and eth0 that understands the few commands dr needs. */
class FakeHost implements CommandRunner {
  addresses: Record<string, string[]> = { lo: ['127.0.0.1/8'], eth0: ['198.18.0.2/24'] };
  sysctls: Record<string, string> = {};
  failOn: string | undefined;
  readonly namespaces: NamespaceInspector;

  constructor(
    readonly identity: NetnsIdentity = { inode: 4026531840, cookie: '1' },
    machine = new FakeMachine(),
  ) {
    if (!machine.live.some((n) => n.inode === identity.inode)) machine.live.push({ ...identity, names: [] });
    this.namespaces = machine.inspector(identity);
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
    if (argv[0] === 'cat' && argv[1] === '/proc/net/raw') return ok('');
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
    expect(existsSync(statePath(dir, host.identity, vip))).toBe(false);
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
    const record = JSON.parse(readFileSync(statePath(dir, host.identity, vip), 'utf8')) as RealServerState;
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
    expect(existsSync(statePath(dir, host.identity, vip))).toBe(false);
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
    expect(existsSync(statePath(dir, host.identity, vip))).toBe(false);
  });

  it('leaves alone a setting someone changed after up', async () => {
    const host = new FakeHost();
    await up({ vip, method: 'dr', stateDir: dir, runner: host });
    host.sysctls['net.ipv4.conf.all.arp_ignore'] = '2';
    const undone = await down({ vip, stateDir: dir, runner: host });
    expect(undone.leftAlone).toEqual(['net.ipv4.conf.all.arp_ignore is 2 now, not the 1 up set: left as it is']);
    expect(host.sysctls['net.ipv4.conf.all.arp_ignore']).toBe('2');
  });
  it('keeps one record per namespace: a second namespace is set up, not taken for the first, and down in one leaves the other', async () => {
    const machine = new FakeMachine();
    const a = new FakeHost({ inode: 4026532001, cookie: '11' }, machine);
    const b = new FakeHost({ inode: 4026532002, cookie: '12' }, machine);
    const beforeA = a.snapshot();
    const beforeB = b.snapshot();
    expect((await up({ vip, method: 'dr', stateDir: dir, runner: a })).changed).toBe(true);
    const second = await up({ vip, method: 'dr', stateDir: dir, runner: b });
    expect(second).toMatchObject({ changed: true, stateFile: statePath(dir, b.identity, vip) });
    expect(second.commands).toHaveLength(6);
    const upB = b.snapshot();
    expect((await down({ vip, stateDir: dir, runner: a })).changed).toBe(true);
    expect(a.snapshot()).toEqual(beforeA);
    expect(existsSync(statePath(dir, a.identity, vip))).toBe(false);
    expect(readState(statePath(dir, b.identity, vip))!.changes).toHaveLength(6);
    expect(b.snapshot()).toEqual(upB);
    expect((await down({ vip, stateDir: dir, runner: b })).commands).toHaveLength(6);
    expect(b.snapshot()).toEqual(beforeB);
  });

  it('tells a namespace that got a dead one\'s inode from it; check warns of the stale records, down --force removes them', async () => {
    const machine = new FakeMachine();
    const old = new FakeHost({ inode: 4026532001, cookie: '11' }, machine);
    await up({ vip, method: 'dr', stateDir: dir, runner: old });
    machine.live = machine.live.filter((n) => n.cookie !== '11'); // that namespace is gone
    const reused = new FakeHost({ inode: 4026532001, cookie: '21' }, machine);
    const fresh = await up({ vip, method: 'dr', stateDir: dir, runner: reused });
    expect(fresh.commands).toHaveLength(6);
    writeFileSync(join(dir, `host-${vip}.json`), JSON.stringify({ version: 1, vip, method: 'dr', decapsulation: 'none', changes: [] }));
    expect(listStates(dir, vip).map((f) => [f.kind, f.path]).sort()).toEqual(
      [['legacy', join(dir, `host-${vip}.json`)], ['record', statePath(dir, old.identity, vip)], ['record', statePath(dir, reused.identity, vip)]].sort(),
    );

    const report = await check({ vip, method: 'dr', stateDir: dir, runner: reused });
    expect(report.ok).toBe(true);
    expect(report.findings.filter((f) => f.id === 'record' || f.id === 'stale-record')).toEqual([
      expect.objectContaining({ id: 'record', status: 'ok' }),
      expect.objectContaining({ id: 'stale-record', status: 'warning', message: expect.stringMatching(/host-198\.18\.0\.100\.json was written by an older l4lb/) }),
      expect.objectContaining({
        id: 'stale-record',
        status: 'warning',
        message: `the record ${statePath(dir, old.identity, vip)} is of network namespace net:[4026532001], which no longer exists`,
        fix: `l4lb realserver down --force --vip ${vip} --state-dir ${dir}`,
      }),
    ]);

    // From a third namespace: only what no longer describes a live set-up goes.
    const other = new FakeHost({ inode: 4026532003, cookie: '23' }, machine);
    expect((await down({ vip, stateDir: dir, runner: other })).removedRecords).toEqual([]);
    const forced = await down({ vip, stateDir: dir, force: true, runner: other });
    expect(forced.removedRecords.sort()).toEqual([join(dir, `host-${vip}.json`), statePath(dir, old.identity, vip)].sort());
    expect(forced.report).toMatch(/\nremoved the records:\n {2}\S+/);
    expect(listStates(dir, vip).map((f) => f.path)).toEqual([statePath(dir, reused.identity, vip)]);
  });

  it('a record of a namespace whose name is gone: removed when the namespace is gone too, kept (unless --force) while something holds it', async () => {
    const machine = new FakeMachine();
    const host = new FakeHost(undefined, machine);
    const record = (inode: number, netns: string): string => {
      const path = statePath(dir, { inode, cookie: String(inode % 100) }, vip);
      writeState(path, {
        version: 2, vip, method: 'dr', netns, decapsulation: 'none', updatedAt: '',
        namespace: { inode, cookie: String(inode % 100), names: [netns] },
        changes: [{ kind: 'address', address: `${vip}/32`, device: 'lo' }],
      });
      return path;
    };
    const gone = record(4026532005, 'rs1');
    const held = record(4026532006, 'rs2');
    machine.live.push({ inode: 4026532006, cookie: '6', names: [] }); // rs2 deleted, but a process is still in it

    const first = await down({ vip, netns: 'rs1', stateDir: dir, runner: host });
    expect(first).toMatchObject({ changed: true, removedRecords: [gone], commands: [] });
    expect(first.leftAlone).toEqual(['namespace rs1 (net:[4026532005]) no longer exists: what up did inside it went with it']);
    const kept = await down({ vip, netns: 'rs2', stateDir: dir, runner: host });
    expect(kept).toMatchObject({ changed: false, removedRecords: [] });
    expect(kept.leftAlone).toEqual([`namespace rs2 (net:[4026532006]) lives on, held by another process; its record ${held} stays (down --force removes it)`]);
    expect(existsSync(held)).toBe(true);
    const forced = await down({ vip, netns: 'rs2', stateDir: dir, runner: host, force: true });
    expect(forced.removedRecords).toEqual([held]);
    expect(existsSync(held)).toBe(false);
    const none = await down({ vip, netns: 'rs3', stateDir: dir, runner: host });
    expect(none).toMatchObject({ changed: false, leftAlone: [`namespace rs3 does not exist, and no record of ${vip} names it`] });
  });

  it('down --force goes on past a step that fails, reports it, and removes the record', async () => {
    const host = new FakeHost();
    await up({ vip, method: 'dr', stateDir: dir, runner: host });
    host.failOn = 'sysctl -w net.ipv4.conf.all.arp_ignore=0';
    await expect(down({ vip, stateDir: dir, runner: host })).rejects.toMatchObject({ code: 'ECOMMAND' });
    // The record keeps what is not undone yet.
    expect(readState(statePath(dir, host.identity, vip))!.changes.map((c) => (c.kind === 'sysctl' ? c.path : c.kind))).toEqual([
      'address',
      'net/ipv4/conf/all/arp_ignore',
    ]);
    const forced = await down({ vip, stateDir: dir, runner: host, force: true });
    expect(forced.leftAlone).toEqual(['sysctl -w net.ipv4.conf.all.arp_ignore=0 failed: RTNETLINK answers: Operation not permitted']);
    expect(forced.commands).toEqual(['sysctl -w net.ipv4.conf.all.arp_ignore=0', `ip address del ${vip}/32 dev lo`]);
    expect(host.addresses.lo).toEqual(['127.0.0.1/8']);
    expect(existsSync(statePath(dir, host.identity, vip))).toBe(false);
  });
});
