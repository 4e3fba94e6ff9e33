// Real-server side of dr, ipip and gre: set-up and tear-down (`up`, `down`),
// diagnosis (`check`), the userspace decapsulator for kernels without the
// ipip/ip_gre modules, and the long-running modes the CLI runs.
export { up, down, runRealServer } from './realserver.js';
export type { UpResult, DownResult, StepReport } from './realserver.js';
export { check } from './check.js';
export type { CheckResult, CheckFinding } from './check.js';
export { Decapsulator, runDecapsulator, decapsulatePacket, encapsulateReturnPacket } from './decapsulator.js';
export type { DecapsulatorOptions, DecapsulatorStats, DecapsulateResult, TunnelType } from './decapsulator.js';
export { RealServerError } from './errors.js';
export { realServerMethods } from './options.js';
export type {
  RealServerMethod,
  RealServerOptions,
  UpOptions,
  DownOptions,
  CheckOptions,
  DecapsulationMode,
  ReturnThroughTunnelOptions,
} from './options.js';
export { RecordingRunner, systemRunner, formatCommand } from './commands.js';
export type { CommandRunner, CommandOutput, CommandPurpose } from './commands.js';
export { tunnelDeviceName, defaultReturnTable, returnRulePriority } from './plan.js';
export { parseProcNetSockets } from './procnet.js';
export type { ProcNetSocket } from './procnet.js';
export { defaultStateDir } from './state.js';
export { setupLabRealServer } from './lab.js';
export type { LabRealServer } from './lab.js';
