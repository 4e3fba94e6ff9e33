// Next hops from the kernel's routing and neighbour tables (netlink, through
// iproute2's JSON output), resolved outside the packet path and published in
// the configuration snapshot.
import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { promisify } from 'node:util';
import { L4lbError } from '../errors.js';

const execFileAsync = promisify(execFile);

export interface NextHop {
  /** The address asked about. */
  address: string;
  /** Egress interface the kernel routes it through. */
  interface: string;
  /** The gateway, when the address is not on-link. */
  gateway?: string;
  /** The MAC of the next hop (the address itself on-link, else the gateway), when resolved. */
  mac?: string;
  /** Neighbour state as the kernel reports it (REACHABLE, STALE, INCOMPLETE, FAILED, ...), or 'NONE'. */
  state: string;
}

export class NextHopError extends L4lbError {}

// Neighbour states whose lladdr the kernel would itself use to transmit.
const usableStates = new Set(['REACHABLE', 'STALE', 'DELAY', 'PROBE', 'PERMANENT', 'NOARP']);

async function ipJson<T>(args: string[]): Promise<T> {
  try {
    const { stdout } = await execFileAsync('ip', ['-j', ...args]);
    return (stdout.trim() ? JSON.parse(stdout) : []) as T;
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new NextHopError('ENO_TOOL', 'next hops: "ip" (iproute2) is not installed', { cause: error });
    throw new NextHopError('ENO_ROUTE', `next hops: ip ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`, { cause: error });
  }
}

/** Where the kernel would send a packet for `address`, and the next hop's MAC if known. */
export async function resolveNextHop(address: string): Promise<NextHop> {
  const [route] = await ipJson<Array<{ dev: string; gateway?: string }>>(['route', 'get', address]);
  if (!route) throw new NextHopError('ENO_ROUTE', `next hops: no route to ${address}`);
  const neighbourAddress = route.gateway ?? address;
  const neighbours = await ipJson<Array<{ dst: string; lladdr?: string; state?: string[] }>>([
    'neigh',
    'show',
    'to',
    neighbourAddress,
    'dev',
    route.dev,
  ]);
  const entry = neighbours.find((n) => n.dst === neighbourAddress);
  const state = entry?.state?.[0] ?? 'NONE';
  const hop: NextHop = { address, interface: route.dev, state };
  if (route.gateway) hop.gateway = route.gateway;
  if (entry?.lladdr && usableStates.has(state)) hop.mac = entry.lladdr;
  return hop;
}

/**
 * Makes the kernel resolve a neighbour: a UDP datagram to the discard port
 * (9) of the next hop starts ARP; the datagram itself is harmless.
 */
export async function probeNeighbour(address: string): Promise<void> {
  const socket = createSocket('udp4');
  try {
    await new Promise<void>((resolve) => socket.send(Buffer.alloc(0), 9, address, () => resolve()));
  } finally {
    socket.close();
  }
}

/** Resolves, probing and retrying until the MAC is known or `timeoutMs` passes. */
export async function resolveNextHopWithProbe(address: string, timeoutMs = 2000): Promise<NextHop> {
  const deadline = Date.now() + timeoutMs;
  let hop = await resolveNextHop(address);
  while (!hop.mac && Date.now() < deadline) {
    await probeNeighbour(hop.gateway ?? address);
    await new Promise((r) => setTimeout(r, 50));
    hop = await resolveNextHop(address);
  }
  return hop;
}
