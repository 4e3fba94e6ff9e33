// Picks the data-plane driver for a balancer's options.
import type { NormalizedOptions } from '../config/validate.js';
import { DriverError } from '../errors.js';
import type { DataPlaneDriver } from './driver.js';
import { AfPacketDriver } from './af-packet.js';
import { AfXdpDriver } from './af-xdp.js';
import { DpdkDriver } from './dpdk.js';
import { MemoryDriver } from './memory.js';

export type { DataPlaneDriver, DriverContext, DriverInterface, DriverRoute, NextHop } from './driver.js';
export { MemoryDriver, MemoryPort, type TakeOptions } from './memory.js';
export { AfPacketDriver } from './af-packet.js';
export { AfXdpDriver } from './af-xdp.js';
export { DpdkDriver } from './dpdk.js';

export async function createDriver(options: NormalizedOptions, onError: (error: DriverError) => void): Promise<DataPlaneDriver> {
  switch (options.driver) {
    case 'memory':
      return new MemoryDriver(options.memory!);
    case 'af_packet':
      return AfPacketDriver.open(options, onError);
    case 'af_xdp':
      return AfXdpDriver.open(options, onError);
    case 'dpdk':
      return DpdkDriver.open(options, onError);
  }
}
