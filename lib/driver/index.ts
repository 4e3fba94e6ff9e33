// Picks the data-plane driver for a balancer's options.
import type { NormalizedOptions } from '../config/validate.js';
import { DriverError } from '../errors.js';
import type { DataPlaneDriver } from './driver.js';
import { MemoryDriver } from './memory.js';

export type { DataPlaneDriver, DriverContext, DriverInterface, DriverRoute, NextHop } from './driver.js';
export { MemoryDriver, MemoryPort, type TakeOptions } from './memory.js';

export function createDriver(options: NormalizedOptions): DataPlaneDriver {
  switch (options.driver) {
    case 'memory':
      return new MemoryDriver(options.memory!);
    case 'af_packet':
      throw new DriverError(
        'EDRIVER_UNAVAILABLE',
        "driver 'af_packet' is not wired into the engine yet; use driver 'memory' (in-process interfaces) until it is",
        { path: 'driver' },
      );
  }
}
