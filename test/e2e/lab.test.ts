import { execFileSync, spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { Lab } from '../../lib/lab/index.js';
import { LabError } from '../../lib/errors.js';
import { createLab, fixture } from './support.js';

function labNamespaces(prefix: string): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith(prefix));
}

let lab: Lab | undefined;
afterEach(async () => {
  await lab?.destroy();
  lab = undefined;
});

describe('namespace lab', () => {
  it('carries a real TCP connection byte for byte across a veth pair, then removes everything', async () => {
    lab = await createLab();
    const client = await lab.addHost('client');
    const server = await lab.addHost('server');
    const ends = await lab.connect(
      { host: client, addresses: ['198.18.0.1/24', '2001:db8::1/64'] },
      { host: server, addresses: ['198.18.0.2/24', '2001:db8::2/64'] },
      { mtu: 1400 },
    );
    expect(ends.a.mtu).toBe(1400);
    expect(ends.b.addresses).toContain('198.18.0.2/24');
    expect(ends.a.mac).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);

    const echo = server.spawnNode(fixture('servers/tcp-echo.mjs'), ['198.18.0.2', '7000']);
    await echo.waitForLine(/"listening"/);
    const size = 4 * 1024 * 1024 + 17;
    const { stdout } = await client.exec([process.execPath, fixture('servers/tcp-send.mjs'), '198.18.0.2', '7000', String(size)]);
    const result = JSON.parse(stdout) as { sent: number; received: number; identical: boolean; sha256: string };
    expect(result).toMatchObject({ sent: size, received: size, identical: true });
    const end = JSON.parse(await echo.waitForLine(/"connection-end"/)) as { bytes: number; sha256: string };
    expect(end).toEqual({ event: 'connection-end', bytes: size, sha256: result.sha256 });

    // IPv6 across the same link.
    const v6 = server.spawnNode(fixture('servers/tcp-echo.mjs'), ['2001:db8::2', '7001']);
    await v6.waitForLine(/"listening"/);
    const six = JSON.parse((await client.exec([process.execPath, fixture('servers/tcp-send.mjs'), '2001:db8::2', '7001', '65536'])).stdout);
    expect(six).toMatchObject({ received: 65536, identical: true });

    const prefix = lab.prefix;
    expect(labNamespaces(prefix).sort()).toEqual([`${prefix}client`, `${prefix}server`]);
    await lab.destroy();
    expect(labNamespaces(prefix)).toEqual([]);
    expect(echo.running).toBe(false);
  });

  it('puts several hosts on one bridged segment and routes through a router host', async () => {
    lab = await createLab();
    const client = await lab.addHost('client');
    const router = await lab.addRouter('router');
    const a = await lab.addHost('a');
    const b = await lab.addHost('b');
    await lab.connect({ host: client, addresses: ['198.18.0.1/24'] }, { host: router, addresses: ['198.18.0.254/24'] });
    await lab.segment('lan', [
      { host: router, addresses: ['198.18.1.254/24'] },
      { host: a, addresses: ['198.18.1.1/24'] },
      { host: b, addresses: ['198.18.1.2/24'] },
    ]);
    await client.addRoute('default', { via: '198.18.0.254' });
    await a.addRoute('default', { via: '198.18.1.254' });
    await b.addRoute('default', { via: '198.18.1.254' });
    expect(await router.getSysctl('net.ipv4.ip_forward')).toBe('1');

    for (const [host, address] of [[a, '198.18.1.1'], [b, '198.18.1.2']] as const) {
      const echo = host.spawnNode(fixture('servers/tcp-echo.mjs'), [address, '7000']);
      await echo.waitForLine(/"listening"/);
      const out = JSON.parse((await client.exec([process.execPath, fixture('servers/tcp-send.mjs'), address, '7000', '100000'])).stdout);
      expect(out).toMatchObject({ received: 100000, identical: true });
    }
  });

  it('refuses addresses outside the lab ranges and changes nothing', async () => {
    lab = await createLab();
    const x = await lab.addHost('x');
    const y = await lab.addHost('y');
    await expect(lab.connect({ host: x, addresses: ['10.0.0.1/24'] }, { host: y })).rejects.toMatchObject({
      code: 'EADDRESS_OUTSIDE_LAB',
    });
    await expect(x.interface('y')).rejects.toBeInstanceOf(LabError);
    await expect(x.addRoute('192.0.2.0/24', { via: '198.18.0.1' })).rejects.toMatchObject({ code: 'EADDRESS_OUTSIDE_LAB' });
  });

  it('tears everything down when the process building it is killed by SIGTERM, and cleanup() removes leftovers of a SIGKILLed run', async () => {
    const script = fixture('lab-holder.ts');
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      const prefix = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          const match = /ready (\S+)/.exec(out);
          if (match) resolve(match[1]!);
        });
        child.once('exit', (code) => reject(new Error(`lab holder exited early (${code})`)));
      });
      expect(labNamespaces(prefix)).toHaveLength(2);
      child.kill(signal);
      await new Promise((resolve) => child.once('exit', resolve));
      if (signal === 'SIGTERM') {
        expect(labNamespaces(prefix)).toEqual([]);
      } else {
        expect(labNamespaces(prefix)).toHaveLength(2);
        const removed = await Lab.cleanup();
        expect(removed.filter((n) => n.startsWith(prefix)).sort()).toEqual([`${prefix}a`, `${prefix}b`]);
        expect(labNamespaces(prefix)).toEqual([]);
      }
    }
  });

  it('explains what is missing when run without privileges', () => {
    const out = execFileSync(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', process.execPath, '--import', 'tsx', fixture('lab-unprivileged.ts')],
      { encoding: 'utf8' },
    );
    expect(JSON.parse(out)).toEqual({
      name: 'LabError',
      code: 'EPRIVILEGE',
      message: 'the lab needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces',
    });
  });
});
