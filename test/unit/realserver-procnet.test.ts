// /proc/net/udp, udp6 and raw as the kernel prints them (addresses as the
// host-order value of each network-order word).
import { describe, expect, it } from 'vitest';

import { parseProcNetSockets } from '../../lib/realserver/procnet.js';

const header = '   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops';
const header6 =
  '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops';

// Captured on x86-64: 0.0.0.0:7100, 198.18.100.1:7100, 127.0.0.53:53 (connected to 127.0.0.1:9999).
const udpLittleEndian = [
  header,
  '  133: 00000000:1BBC 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 81234 2 0000000000000000 0',
  '  134: 016412C6:1BBC 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 81240 2 0000000000000000 0',
  '   75: 3500007F:0035 0100007F:270F 01 00000000:00000000 00:00000000 00000000   101        0 17017 2 0000000000000000 0',
].join('\n');

// ::, 2001:db8::1 and ::ffff:198.18.100.1 on port 7100.
const udp6LittleEndian = [
  header6,
  '  200: 00000000000000000000000000000000:1BBC 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 90001 2 0000000000000000 0',
  '  201: B80D0120000000000000000001000000:1BBC 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 90002 2 0000000000000000 0',
  '  202: 0000000000000000FFFF0000016412C6:1BBC 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 90003 2 0000000000000000 0',
].join('\n');

describe('/proc/net socket tables', () => {
  it('decodes IPv4 UDP sockets on a little-endian host', () => {
    expect(parseProcNetSockets(udpLittleEndian, 'LE')).toEqual([
      { family: 4, localAddress: '0.0.0.0', localPort: 7100, remoteAddress: '0.0.0.0', remotePort: 0, state: 7, uid: 0, inode: 81234 },
      { family: 4, localAddress: '198.18.100.1', localPort: 7100, remoteAddress: '0.0.0.0', remotePort: 0, state: 7, uid: 1000, inode: 81240 },
      { family: 4, localAddress: '127.0.0.53', localPort: 53, remoteAddress: '127.0.0.1', remotePort: 9999, state: 1, uid: 101, inode: 17017 },
    ]);
  });

  it('decodes IPv6 UDP sockets, IPv4-mapped ones in dotted form', () => {
    expect(parseProcNetSockets(udp6LittleEndian, 'LE').map((s) => [s.family, s.localAddress, s.localPort, s.inode])).toEqual([
      [6, '::', 7100, 90001],
      [6, '2001:db8::1', 7100, 90002],
      [6, '::ffff:198.18.100.1', 7100, 90003],
    ]);
  });

  it('reads words in network order on a big-endian host', () => {
    const line = '  1: C6126401:1BBC 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5 2 0000000000000000 0';
    expect(parseProcNetSockets(`${header}\n${line}`, 'BE')[0]).toMatchObject({ localAddress: '198.18.100.1', localPort: 7100 });
  });

  it('reads raw sockets, where the port column is the IP protocol', () => {
    const raw = [
      header,
      ' 126: 00000000:002F 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 83568 2 0000000000000000 0',
      ' 181: 00000000:0004 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 83569 2 0000000000000000 0',
    ].join('\n');
    expect(parseProcNetSockets(raw, 'LE').map((s) => s.localPort)).toEqual([47, 4]);
  });

  it('skips headers, concatenated files and lines that do not parse', () => {
    const text = `${udpLittleEndian}\n${udp6LittleEndian}\ngarbage\n  9: ZZZZ:0000 0:0 07 0 0 0 0 0 0 0\n`;
    expect(parseProcNetSockets(text, 'LE')).toHaveLength(6);
    expect(parseProcNetSockets('', 'LE')).toEqual([]);
  });
});
