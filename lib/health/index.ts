// Health checking: the pure state machine, the checks, and the monitor that
// runs them for one backend.
import type { NormalizedHealthCheck } from '../config/validate.js';
import { type CheckResult, functionCheck, httpCheck, tcpCheck, udpCheck } from './checks.js';

export { type CheckResult, maxResponseBytes, tcpCheck, httpCheck, udpCheck, functionCheck } from './checks.js';
export { HealthMonitor, type HealthMonitorOptions } from './monitor.js';
export { type HealthState, type HealthThresholds, type HealthStep, initialHealthState, nextHealthState } from './state.js';

/** The check of one backend as configured: a function of the abort signal. */
export function checkFor(
  config: NormalizedHealthCheck,
  target: { address: string; port: number },
  custom: (signal: AbortSignal) => Promise<boolean>,
): (signal: AbortSignal) => Promise<CheckResult> {
  const port = config.port ?? target.port;
  const address = target.address;
  switch (config.type) {
    case 'tcp':
      return (signal) => tcpCheck({ address, port, signal });
    case 'http':
      return (signal) =>
        httpCheck({
          address,
          port,
          signal,
          path: config.path,
          host: config.host,
          expectStatus: config.expectStatus,
          expectBody: config.expectBody,
        });
    case 'udp':
      return (signal) => udpCheck({ address, port, signal, payload: config.payload, expectReply: config.expectReply });
    case 'function':
      return (signal) => functionCheck(custom, signal);
    case 'none':
      return async () => ({ ok: true, reason: 'not checked' });
  }
}
