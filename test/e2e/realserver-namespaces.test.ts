// Several real servers for one VIP on one host, each set up from inside its
// namespace (`ip netns exec NS l4lb realserver up ...`, no --netns), as a
// user runs them: each keeps its own record, the second `up` is not taken
// for the first, and one `down` leaves the other namespace's VIP, sysctls
// and decapsulator alone. Stale records, of a decapsulator killed with
// SIGKILL and of a namespace deleted under its decapsulator, are reported by
// `check` and recovered by `down --force`.
//
// Topology: lb (198.18.0.1) and the real servers rsA, rsB, rsC (.2, .3, .4)
// on one segment; VIP 198.18.100.1. This kernel has no ipip/ip_gre
// modules, so gre goes through the userspace decapsulator.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Host, Lab } from '../../lib/lab/index.js';
import type { CheckResult } from '../../lib/realserver/index.js';
import { CliProcess } from '../fixtures/cli/process.js';
import { createLab } from './support.js';

const vip = '198.18.100.1';
const device = 'l4lbc6126401';

let lab: Lab;
let rsA: Host;
let rsB: Host;
let rsC: Host;
let stateDir: string;
const started: CliProcess[] = [];

/** `ip netns exec NS l4lb ARGS` to its end. */
async function inside(host: Host, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = new CliProcess([...args, '--state-dir', stateDir], ['ip', 'netns', 'exec', host.netns]);
  started.push(child);
  const code = await child.exited;
  return { code, stdout: child.stdout, stderr: child.stderr };
}

/** The long-running `up` with userspace decapsulation, inside `host`, once it serves. */
async function upInForeground(host: Host): Promise<CliProcess> {
  const child = new CliProcess(
    ['realserver', 'up', '--vip', vip, '--method', 'gre', '--decapsulation', 'userspace', '--state-dir', stateDir],
    ['ip', 'netns', 'exec', host.netns],
  );
  started.push(child);
  await child.waitFor(/Ctrl-C or SIGTERM stops it and undoes the set-up\n/, { stream: 'stdout' });
  return child;
}

async function checkInside(host: Host, method: 'dr' | 'gre'): Promise<{ code: number | null; result: CheckResult }> {
  const { code, stdout, stderr } = await inside(host, 'realserver', 'check', '--vip', vip, '--method', method, '--json');
  expect(stderr).toBe('');
  return { code, result: JSON.parse(stdout) as CheckResult };
}

async function snapshot(host: Host) {
  const json = async (args: string[]) => JSON.parse((await host.ip(['-j', ...args])).stdout || '[]') as unknown;
  return {
    addresses: await json(['address', 'show']),
    rules: await json(['rule', 'show']),
    routes: await json(['route', 'show', 'table', 'all']),
    sysctls: (await host.exec(['sysctl', 'net.ipv4.conf'])).stdout.split('\n').filter(Boolean).sort(),
  };
}

function records(): string[] {
  return readdirSync(stateDir).filter((name) => name.endsWith('.json')).sort();
}

/** The inode of a namespace, as its record file is named (net-<inode>-<cookie>-<vip>.json). */
function recordOf(host: Host): string {
  const inode = execFileSync('ip', ['netns', 'exec', host.netns, 'stat', '-L', '-c', '%i', '/proc/self/ns/net'], { encoding: 'utf8' }).trim();
  const found = records().filter((name) => name.startsWith(`net-${inode}-`) && name.endsWith(`-${vip}.json`));
  expect(found, `the record of ${host.name}`).toHaveLength(1);
  return found[0]!;
}

async function tunnelDevice(host: Host): Promise<{ flags: string[]; addresses: string[] } | undefined> {
  const links = JSON.parse((await host.ip(['-j', 'address', 'show'])).stdout) as Array<{ ifname: string; flags: string[]; addr_info: Array<{ local: string }> }>;
  const link = links.find((l) => l.ifname === device);
  return link && { flags: link.flags, addresses: link.addr_info.map((a) => a.local) };
}

beforeAll(async () => {
  lab = await createLab();
  stateDir = mkdtempSync(join(tmpdir(), 'l4lb-realserver-namespaces-'));
  const lb = await lab.addHost('lb');
  rsA = await lab.addHost('rs-a');
  rsB = await lab.addHost('rs-b');
  rsC = await lab.addHost('rs-c');
  await lab.segment('lan', [
    { host: lb, addresses: ['198.18.0.1/24'] },
    { host: rsA, addresses: ['198.18.0.2/24'] },
    { host: rsB, addresses: ['198.18.0.3/24'] },
    { host: rsC, addresses: ['198.18.0.4/24'] },
  ]);
  for (const rs of [rsA, rsB, rsC]) await rs.addRoute('default', { via: '198.18.0.1' });
}, 60_000);

afterAll(async () => {
  await Promise.all(started.map((p) => p.kill('SIGKILL')));
  await lab?.destroy();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('real servers in several namespaces of one host', () => {
  it('dr: each `ip netns exec NS l4lb realserver up` keeps its own record; down in one leaves the other set up', async () => {
    const beforeA = await snapshot(rsA);
    const beforeB = await snapshot(rsB);
    const upA = await inside(rsA, 'realserver', 'up', '--vip', vip, '--method', 'dr');
    expect(upA.code).toBe(0);
    const upB = await inside(rsB, 'realserver', 'up', '--vip', vip, '--method', 'dr');
    expect(upB.code).toBe(0);
    expect(upB.stdout).not.toMatch(/already up/);
    expect(upB.stdout).toMatch(new RegExp(`^up ${vip} \\(dr\\): \\d+ changes:\\n`));
    expect(records()).toHaveLength(2);
    expect(upA.stdout).toContain(`record: ${join(stateDir, recordOf(rsA))}`);
    expect(upB.stdout).toContain(`record: ${join(stateDir, recordOf(rsB))}`);
    const setUpB = await snapshot(rsB);
    expect((await rsB.interface('lo')).addresses).toContain(`${vip}/32`);

    const downA = await inside(rsA, 'realserver', 'down', '--vip', vip);
    expect(downA.code).toBe(0);
    expect(downA.stdout).toMatch(new RegExp(`^down ${vip}: \\d+ changes undone:\\n`));
    expect(await snapshot(rsA)).toEqual(beforeA);
    expect(await snapshot(rsB)).toEqual(setUpB);
    expect(records()).toEqual([recordOf(rsB)]);
    const ready = await checkInside(rsB, 'dr');
    expect(ready.code).toBe(0);
    expect(ready.result.findings).toContainEqual(expect.objectContaining({ id: 'record', status: 'ok' }));

    expect((await inside(rsB, 'realserver', 'down', '--vip', vip)).code).toBe(0);
    expect(await snapshot(rsB)).toEqual(beforeB);
    expect(records()).toEqual([]);
  });

  it('gre: each namespace runs its own decapsulator; down in one leaves the other its VIP, sysctls and TUN device; a killed decapsulator is reported and recovered by down --force', async () => {
    const beforeA = await snapshot(rsA);
    const beforeB = await snapshot(rsB);
    const upA = await upInForeground(rsA);
    const upB = await upInForeground(rsB);
    expect(upB.stdout).not.toMatch(/already up/);
    expect(upB.stdout).toContain(`l4lb realserver decapsulate --vip ${vip} --method gre --device ${device}`);
    expect(records()).toEqual([recordOf(rsA), recordOf(rsB)].sort());
    const setUpB = await snapshot(rsB);
    expect(await tunnelDevice(rsB)).toMatchObject({ flags: expect.arrayContaining(['UP', 'LOWER_UP']), addresses: expect.arrayContaining([vip]) });
    expect((await checkInside(rsB, 'gre')).code).toBe(0);

    // down inside rsA stops rsA's long-running up, which undoes its own set-up.
    const downA = await inside(rsA, 'realserver', 'down', '--vip', vip);
    expect(downA.code).toBe(0);
    expect(downA.stdout).toMatch(/kill -TERM \d+/);
    expect(await upA.exited).toBe(0);
    expect(await snapshot(rsA)).toEqual(beforeA);
    expect(await snapshot(rsB)).toEqual(setUpB);
    expect(await tunnelDevice(rsB)).toMatchObject({ flags: expect.arrayContaining(['LOWER_UP']) });
    expect(upB.child.exitCode).toBeNull();
    const stillReady = await checkInside(rsB, 'gre');
    expect(stillReady.code).toBe(0);
    expect(stillReady.result.findings).toContainEqual(expect.objectContaining({ id: 'decapsulation', status: 'ok' }));

    // SIGKILL: the decapsulator dies without undoing anything; the record stays.
    upB.child.kill('SIGKILL');
    await upB.exited;
    expect(records()).toEqual([recordOf(rsB)]);
    const stale = await checkInside(rsB, 'gre');
    expect(stale.code).toBe(5);
    expect(stale.result.findings.filter((f) => f.status === 'problem').map((f) => f.id)).toEqual(['decapsulation', 'stale-record']);
    expect(stale.result.findings.find((f) => f.id === 'stale-record')).toMatchObject({
      message: expect.stringMatching(new RegExp(`names a userspace decapsulator \\(process ${upB.child.pid}\\) that no longer runs: ${device} is left without it`)),
      fix: `l4lb realserver down --force --vip ${vip} --state-dir ${stateDir} (then up again)`,
    });
    const forced = await inside(rsB, 'realserver', 'down', '--vip', vip, '--force');
    expect(forced.code).toBe(0);
    expect(forced.stdout).toContain(`decapsulator (process ${upB.child.pid}) is no longer running`);
    expect(await snapshot(rsB)).toEqual(beforeB);
    expect(records()).toEqual([]);
  });

  it('a namespace deleted under its decapsulator: its record is reported from elsewhere and removed by down --force', async () => {
    const upC = await upInForeground(rsC);
    const record = recordOf(rsC);
    // The name goes; the namespace lives while the decapsulator's process is in it, then dies with it.
    execFileSync('ip', ['netns', 'del', rsC.netns]);
    upC.child.kill('SIGKILL');
    await upC.exited;
    expect(records()).toEqual([record]);

    const elsewhere = await checkInside(rsB, 'dr');
    const warning = elsewhere.result.findings.find((f) => f.id === 'stale-record');
    expect(warning).toMatchObject({
      status: 'warning',
      message: `the record ${join(stateDir, record)} is of namespace ${rsC.netns} (net:[${record.split('-')[1]}]), which no longer exists`,
      fix: `l4lb realserver down --force --vip ${vip} --state-dir ${stateDir}`,
    });

    // Plain down from rsB has nothing of its own to undo and leaves other records alone.
    const plain = await inside(rsB, 'realserver', 'down', '--vip', vip, '--json');
    expect(JSON.parse(plain.stdout)).toMatchObject({ changed: false, removedRecords: [] });
    expect(records()).toEqual([record]);
    const forced = await inside(rsB, 'realserver', 'down', '--vip', vip, '--force');
    expect(forced.code).toBe(0);
    expect(forced.stdout).toContain(`removed the records:\n  ${join(stateDir, record)}\n`);
    expect(existsSync(join(stateDir, record))).toBe(false);
    expect((await checkInside(rsB, 'dr')).result.findings.filter((f) => f.id === 'stale-record')).toEqual([]);
  });
});
