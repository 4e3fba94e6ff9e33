// Typed errors. Every error l4lb throws on bad input is an L4lbError with a
// stable `code` string and, where the input was structured, the `path` of the
// offending field ('services[0].port'), so callers can branch on the code and
// show the field.

export class L4lbError extends Error {
  /** Stable machine-readable code, e.g. 'EINVAL_ADDRESS'. */
  readonly code: string;
  /** Path of the offending field in the input, when there is one. */
  readonly path: string | undefined;

  constructor(code: string, message: string, options: { path?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.path = options.path;
  }
}

/** Input that breaks a documented rule (a field's type, range or format). */
export class ValidationError extends L4lbError {}

/** The network-namespace lab could not do what was asked (privileges, tools, a command failed). */
export class LabError extends L4lbError {}

/**
 * An operation that the balancer's state does not allow: it is closed
 * ('ECLOSED'), the service or backend was removed ('EREMOVED'), or a
 * transaction was misused ('ETRANSACTION').
 */
export class StateError extends L4lbError {}

/**
 * The data-plane driver cannot be used or failed: an interface it was given
 * does not exist ('ENO_INTERFACE'), a tool it needs is missing ('ENO_TOOL'),
 * the kernel's tables cannot be read ('EKERNEL_TABLES'), the host guard
 * cannot be installed ('EHOST_GUARD'), or a memory-driver method was called
 * on another driver ('ENOT_MEMORY_DRIVER').
 */
export class DriverError extends L4lbError {}

/**
 * A scheduler hook threw ('EHOOK_THREW') or returned an invalid table
 * ('EHOOK_TABLE'). Emitted as 'error'; the previous table stays in force.
 */
export class SchedulerHookError extends L4lbError {}

/**
 * The native data plane refused or failed: a snapshot it rejected
 * ('ESNAPSHOT'), shared memory that does not match this code's layout
 * ('ELAYOUT'), or another native code carried over as it is.
 */
export class DataPlaneError extends L4lbError {}

/**
 * Route announcement through BIRD failed: BIRD is missing ('EBGP_UNAVAILABLE',
 * naming Debian package bird2), refused its configuration ('EBGP_CONFIG') or
 * stopped ('EBGP_STOPPED').
 */
export class RouteAnnouncementError extends L4lbError {}

/** Wraps an error thrown by the addon (an Error with a `code`) into a DataPlaneError with this stack. */
export function fromNativeError(error: unknown, path?: string): L4lbError {
  if (error instanceof L4lbError) return error;
  const code = typeof (error as { code?: unknown })?.code === 'string' ? (error as { code: string }).code : 'ENATIVE';
  const message = error instanceof Error ? error.message : String(error);
  return new DataPlaneError(code, `data plane: ${message}`, { path, cause: error });
}
