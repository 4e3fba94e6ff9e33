// The configuration file of `l4lb run`: YAML or JSON (JSON is read as YAML,
// which it is a subset of, so both report errors with line numbers),
// validated as a whole before anything is applied. Every error names the
// file, the line, the path inside the file and the rule broken:
//   balancer.yaml:14: services[0].backends[1].weight: must be an integer from 0 to 65535, got -1
//
// Schema (docs/config.md has it in full, examples/l4lb.yaml is an example):
//   balancer:  LoadBalancerOptions (interfaces, driver, workers, polling, flows,
//              localAddresses, fullnatPorts, maxBackends, hashKey as 32 hex
//              digits, checksums, answerEcho, memory, afPacket, afXdp, dpdk)
//   services:  list of ServiceOptions, each with `backends:` (BackendOptions).
//              Health checks as in the API; `expectBody`/`expectReply` are
//              regular-expression strings; scheduler hooks and function
//              checks cannot be written in a file (use the API for them).
//   control:   { socket: path }   the control endpoint
//   metrics:   "address:port"     serve the Prometheus exposition (optional)
//   dashboard: "[address:]port"   serve the live dashboard (optional; loopback unless an address is given)
import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { type Document, LineCounter, parseDocument } from 'yaml';

import type { BackendOptions, DriverName, LoadBalancerOptions, ServiceOptions } from '../config/types.js';
import {
  type NormalizedBackend,
  type NormalizedOptions,
  type NormalizedService,
  validateBackendOptions,
  validateLoadBalancerOptions,
  validateServiceOptions,
} from '../config/validate.js';
import { type DashboardListen, parseDashboardAddress } from '../dashboard/options.js';
import { L4lbError } from '../errors.js';

/** A configuration file that cannot be used: the message names the file, line, path and rule. */
export class ConfigFileError extends L4lbError {
  /** The rule broken, without the file and path. */
  readonly rule: string;
  /** 1-based line of the offending setting (or of its nearest enclosing one), when the file has it. */
  readonly line: number | undefined;

  constructor(
    readonly file: string,
    code: string,
    path: string | undefined,
    rule: string,
    options: { cause?: unknown; line?: number } = {},
  ) {
    const where = `${file}${options.line !== undefined ? `:${options.line}` : ''}`;
    super(code, `${where}: ${path ? `${path}: ` : ''}${rule}`, { ...(options.cause !== undefined ? { cause: options.cause } : {}), ...(path ? { path } : {}) });
    this.rule = rule;
    this.line = options.line;
  }
}

export interface BackendConfig {
  /** Where it is in the file: 'services[0].backends[2]'. */
  path: string;
  /** 'address:port' (port defaulted to the service's): its identity across reloads. */
  key: string;
  /** As written, for addBackend. */
  options: BackendOptions;
  normalized: NormalizedBackend;
}

export interface ServiceConfig {
  /** Where it is in the file: 'services[1]'. */
  path: string;
  /** 'address:port/protocol', as Service.name: its identity across reloads. */
  key: string;
  /** As written (regular expressions compiled), for addService. */
  options: ServiceOptions;
  normalized: NormalizedService;
  backends: BackendConfig[];
}

export interface ConfigFile {
  file: string;
  /** The text read, to tell a real change from a touched file. */
  text: string;
  balancer: LoadBalancerOptions;
  normalizedBalancer: NormalizedOptions;
  services: ServiceConfig[];
  /** `control.socket` when the file sets it. */
  controlSocket?: string;
  /** `metrics` when the file sets it. */
  metrics?: ListenAddress;
  /** `dashboard` when the file sets it. */
  dashboard?: DashboardListen;
  /** The line of a setting ('services[0].backends[1]'), or of its nearest enclosing one: for errors found after parsing. */
  lineOf(path: string): number | undefined;
}

export interface ListenAddress {
  host: string;
  /** 0: any free port (the ready line says which). */
  port: number;
}

const topLevelKeys = ['balancer', 'services', 'control', 'metrics', 'dashboard'];

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Service identity for reloads and duplicate checks, the same text as `Service.name`. */
export function serviceKey(options: { address: string; port: number; protocol?: string }): string {
  return `${options.address}:${options.port}/${options.protocol ?? 'tcp'}`;
}

/** 'services[0].backends[1].weight' -> ['services', 0, 'backends', 1, 'weight']. */
export function pathSegments(path: string): Array<string | number> {
  const segments: Array<string | number> = [];
  for (const match of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) {
    segments.push(match[2] !== undefined ? Number(match[2]) : match[1]!);
  }
  return segments;
}

/** The line of `path` in the document, or of its nearest ancestor present in it. */
function lineOf(document: Document, lines: LineCounter, path: string | undefined): number | undefined {
  const segments = path ? pathSegments(path) : [];
  for (let length = segments.length; length >= 0; length--) {
    const node = document.getIn(segments.slice(0, length), true) as { range?: [number, number, number] } | undefined;
    if (node && typeof node === 'object' && node.range) return lines.linePos(node.range[0]).line;
    if (length === 0) break;
  }
  return undefined;
}

class FileContext {
  constructor(
    readonly file: string,
    private readonly document: Document,
    private readonly lines: LineCounter,
  ) {}

  lineOf(path: string | undefined): number | undefined {
    return lineOf(this.document, this.lines, path);
  }

  error(code: string, path: string | undefined, rule: string, cause?: unknown): ConfigFileError {
    const line = this.lineOf(path);
    return new ConfigFileError(this.file, code, path, rule, { ...(cause !== undefined ? { cause } : {}), ...(line !== undefined ? { line } : {}) });
  }

  /** Runs an API validator; its ValidationError becomes a ConfigFileError at the same path. */
  validate<T>(fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      if (error instanceof L4lbError && !(error instanceof ConfigFileError)) {
        // The API's messages start with the field path; the file's message puts it after the file name.
        const prefix = error.path ? [`${error.path}: `, `${error.path} `].find((p) => error.message.startsWith(p)) : undefined;
        throw this.error(error.code, error.path, prefix ? error.message.slice(prefix.length) : error.message, error);
      }
      throw error;
    }
  }
}

function compileRegex(context: FileContext, holder: Record<string, unknown>, key: string, path: string): void {
  const value = holder[key];
  if (value === undefined) return;
  if (typeof value !== 'string') throw context.error('EINVAL_TYPE', path, `must be a regular expression written as a string, got ${typeof value}`);
  try {
    holder[key] = new RegExp(value);
  } catch (error) {
    throw context.error('EINVAL_REGEX', path, `is not a valid regular expression: ${(error as Error).message}`, error);
  }
}

/** What the command line sets instead of the file (`l4lb run --driver`). */
export interface ConfigOverrides {
  driver?: DriverName;
}

function parseBalancer(context: FileContext, raw: unknown, overrides: ConfigOverrides): { options: LoadBalancerOptions; normalized: NormalizedOptions } {
  if (raw === undefined) throw context.error('EINVAL_TYPE', 'balancer', 'is required: a mapping with at least "interfaces"');
  if (!isRecord(raw)) throw context.error('EINVAL_TYPE', 'balancer', 'must be a mapping (interfaces, driver, workers, ...)');
  const options = { ...raw };
  if (overrides.driver !== undefined) options.driver = overrides.driver;
  if (options.hashKey !== undefined) {
    // Files cannot hold bytes: the 16-byte key is written as 32 hex digits.
    if (typeof options.hashKey !== 'string' || !/^[0-9a-fA-F]{32}$/.test(options.hashKey)) {
      throw context.error('EINVAL_TYPE', 'balancer.hashKey', 'must be 32 hexadecimal digits (16 bytes)');
    }
    options.hashKey = Uint8Array.from(Buffer.from(options.hashKey, 'hex'));
  }
  const normalized = context.validate(() => validateLoadBalancerOptions(options, 'balancer'));
  return { options: options as unknown as LoadBalancerOptions, normalized };
}

function parseService(context: FileContext, raw: unknown, path: string, balancer: NormalizedOptions): ServiceConfig {
  if (!isRecord(raw)) throw context.error('EINVAL_TYPE', path, 'must be a mapping (address, port, backends, ...)');
  const { backends: rawBackends, ...fields } = raw;
  if (isRecord(fields.healthCheck)) {
    const check = { ...fields.healthCheck };
    if (check.type !== undefined && typeof check.type !== 'string') {
      throw context.error('EINVAL_ENUM', `${path}.healthCheck.type`, "must be one of 'tcp', 'http', 'udp', 'none' (function checks need the API)");
    }
    compileRegex(context, check, 'expectBody', `${path}.healthCheck.expectBody`);
    compileRegex(context, check, 'expectReply', `${path}.healthCheck.expectReply`);
    fields.healthCheck = check;
  }
  if (fields.scheduler !== undefined && typeof fields.scheduler !== 'string') {
    throw context.error('EINVAL_TYPE', `${path}.scheduler`, 'must be a scheduler name; scheduler hooks are functions and need the API');
  }
  const options = fields as unknown as ServiceOptions;
  const normalized = context.validate(() => validateServiceOptions(options, path));
  // What LoadBalancer.addService would refuse later, reported here with the file's paths.
  if (normalized.method === 'fullnat' && balancer.localAddresses.length === 0) {
    throw context.error('EINVAL_CONFLICT', `${path}.method`, "'fullnat' needs balancer.localAddresses (the source addresses toward backends)");
  }
  if (balancer.localAddresses.includes(normalized.address)) {
    throw context.error('EINVAL_CONFLICT', `${path}.address`, `${normalized.address} is one of balancer.localAddresses`);
  }
  if (rawBackends !== undefined && !Array.isArray(rawBackends)) throw context.error('EINVAL_TYPE', `${path}.backends`, 'must be a list');
  const backends: BackendConfig[] = [];
  const seen = new Map<string, string>();
  for (const [index, backend] of ((rawBackends as unknown[] | undefined) ?? []).entries()) {
    const backendPath = `${path}.backends[${index}]`;
    const validated = context.validate(() => validateBackendOptions(backend, normalized.port, backendPath));
    const key = `${validated.address}:${validated.port}`;
    if (seen.has(key)) throw context.error('EDUPLICATE', backendPath, `${key} is already ${seen.get(key)}`);
    seen.set(key, backendPath);
    backends.push({ path: backendPath, key, options: backend as BackendOptions, normalized: validated });
  }
  return { path, key: serviceKey(normalized), options, normalized, backends };
}

/** Parses and validates configuration text; throws ConfigFileError naming `file`. */
export function parseConfig(text: string, file: string, overrides: ConfigOverrides = {}): ConfigFile {
  const lines = new LineCounter();
  const document = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter: lines });
  if (document.errors.length > 0) {
    const first = document.errors[0]!;
    const { line, col } = lines.linePos(first.pos[0]);
    throw new ConfigFileError(file, 'EPARSE_CONFIG', undefined, `column ${col}: ${first.message.split('\n')[0]}`, { line });
  }
  const context = new FileContext(file, document, lines);
  const root = document.toJS({ maxAliasCount: 100 }) as unknown;
  if (!isRecord(root)) throw context.error('EINVAL_TYPE', undefined, 'must be a mapping with "balancer" and "services"');
  for (const key of Object.keys(root)) {
    if (!topLevelKeys.includes(key)) {
      throw context.error('EINVAL_UNKNOWN_FIELD', key, `is not a setting of the file (known: ${topLevelKeys.join(', ')})`);
    }
  }
  const balancer = parseBalancer(context, root.balancer, overrides);

  // `services:` with every entry commented out is null: no services.
  if (root.services !== undefined && root.services !== null && !Array.isArray(root.services)) {
    throw context.error('EINVAL_TYPE', 'services', 'must be a list');
  }
  const services: ServiceConfig[] = [];
  const seen = new Map<string, string>();
  let backendCount = 0;
  for (const [index, raw] of ((root.services as unknown[] | null | undefined) ?? []).entries()) {
    const service = parseService(context, raw, `services[${index}]`, balancer.normalized);
    if (seen.has(service.key)) throw context.error('EDUPLICATE', service.path, `${service.key} is already ${seen.get(service.key)}`);
    seen.set(service.key, service.path);
    for (const backend of service.backends) {
      if (++backendCount > balancer.normalized.maxBackends) {
        throw context.error('ELIMIT', backend.path, `is one backend more than balancer.maxBackends (${balancer.normalized.maxBackends}) allows`);
      }
    }
    services.push(service);
  }

  const config: ConfigFile = {
    file,
    text,
    balancer: balancer.options,
    normalizedBalancer: balancer.normalized,
    services,
    lineOf: (path) => context.lineOf(path),
  };
  if (root.control !== undefined) {
    if (!isRecord(root.control)) throw context.error('EINVAL_TYPE', 'control', 'must be a mapping with "socket"');
    for (const key of Object.keys(root.control)) {
      if (key !== 'socket') throw context.error('EINVAL_UNKNOWN_FIELD', `control.${key}`, 'is not a setting of control (known: socket)');
    }
    if (root.control.socket !== undefined) {
      if (typeof root.control.socket !== 'string' || !root.control.socket.startsWith('/')) {
        throw context.error('EINVAL_TYPE', 'control.socket', 'must be an absolute path');
      }
      config.controlSocket = root.control.socket;
    }
  }
  if (root.metrics !== undefined) {
    const rule = parseListenAddress(root.metrics);
    if (typeof rule === 'string') throw context.error('EINVAL_ADDRESS', 'metrics', rule);
    config.metrics = rule;
  }
  if (root.dashboard !== undefined) {
    const listen = parseDashboardAddress(root.dashboard);
    if (typeof listen === 'string') throw context.error('EINVAL_ADDRESS', 'dashboard', listen);
    config.dashboard = listen;
  }
  return config;
}

/** 'ADDRESS:PORT' (IPv4, port 0..65535) for the metrics listener, or the rule it breaks. */
export function parseListenAddress(value: unknown): ListenAddress | string {
  const text = typeof value === 'string' ? value : undefined;
  const match = text === undefined ? null : /^(.+):(\d{1,5})$/.exec(text);
  if (!match || !isIPv4(match[1]!) || Number(match[2]) > 65535) {
    return `must be "address:port" with an IPv4 address and a port 0..65535, got ${JSON.stringify(value)}`;
  }
  return { host: match[1]!, port: Number(match[2]) };
}

/** Reads and validates a configuration file. */
export function loadConfig(file: string, overrides: ConfigOverrides = {}): ConfigFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigFileError(file, 'ENO_CONFIG', undefined, `cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, {
      cause: error,
    });
  }
  return parseConfig(text, file, overrides);
}
