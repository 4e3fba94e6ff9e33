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
