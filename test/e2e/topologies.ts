// The demo's topologies serve the e2e tests; plus a helper to run a script in a host.
import type { Host } from '../../lib/lab/index.js';
import { fixture } from './support.js';

export * from '../../demo/topology.js';

export async function runJson<T>(host: Host, script: string, args: (string | number)[]): Promise<T> {
  const { stdout } = await host.exec([process.execPath, fixture(script), ...args.map(String)]);
  return JSON.parse(stdout.trim().split('\n').pop()!) as T;
}
