// The configuration file of `l4lb run`: YAML or JSON (YAML is a superset),
// validated as a whole before anything is applied. Every error names the
// file, the path inside it and the rule broken, e.g.
//   balancer.yaml: services[0].backends[1].weight: must be an integer 0..65535, got -1
//
// Schema (docs/config.md has it in full, examples/l4lb.yaml is an example):
//   balancer:  LoadBalancerOptions (interfaces, driver, workers, polling, flows,
//              localAddresses, fullnatPorts, maxBackends, checksums, answerEcho)
//   services:  list of ServiceOptions, each with `backends:` (BackendOptions).
//              Health checks as in the API; `expectBody`/`expectReply` are
//              regular-expression strings; scheduler hooks cannot be written in
//              a file (use the API for them).
//   control:   { socket: path }   the control endpoint (default /run/l4lb/l4lb.sock)
//   metrics:   "address:port"     serve the Prometheus exposition (optional)
import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { parseDocument } from 'yaml';
import type { BackendOptions, LoadBalancerOptions, ServiceOptions } from '../config/types.js';
import { validateBackendOptions, validateLoadBalancerOptions, validateServiceOptions } from '../config/validate.js';
import { L4lbError } from '../errors.js';

export const defaultControlSocket = '/run/l4lb/l4lb.sock';

/** A configuration file that cannot be used: `file`, `path` and the rule are in the message. */
export class ConfigFileError extends L4lbError {
  constructor(
    readonly file: string,
    code: string,
    path: string | undefined,
    rule: string,
    options: { cause?: unknown } = {},
  ) {
    super(code, `${file}: ${path ? `${path}: ` : ''}${rule}`, { ...options, ...(path ? { path } : {}) });
  }
}

export interface ServiceConfig {
  options: ServiceOptions;
  backends: BackendOptions[];
}

export interface ConfigFile {
  file: string;
  balancer: LoadBalancerOptions;
  services: ServiceConfig[];
  controlSocket: string;
  metrics?: { host: string; port: number };
}

const topLevelKeys = new Set(['balancer', 'services', 'control', 'metrics']);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Service identity for reloads and duplicate checks: protocol, VIP and port. */
export function serviceKey(options: { address: string; port: number; protocol?: string }): string {
  return `${options.protocol ?? 'tcp'} ${options.address}:${options.port}`;
}

function regexField(holder: Record<string, unknown>, key: string, path: string, file: string): void {
  const value = holder[key];
  if (value === undefined) return;
  if (typeof value !== 'string') throw new ConfigFileError(file, 'EINVAL_CONFIG', path, 'must be a regular expression string');
  try {
    holder[key] = new RegExp(value);
  } catch (error) {
    throw new ConfigFileError(file, 'EINVAL_CONFIG', path, `is not a valid regular expression: ${(error as Error).message}`, { cause: error });
  }
}

/** Parses and validates configuration text; throws ConfigFileError naming `file`. */
export function parseConfig(text: string, file: string): ConfigFile {
  const document = parseDocument(text, { prettyErrors: false, uniqueKeys: true });
  if (document.errors.length > 0) {
    const first = document.errors[0]!;
    const line = first.linePos?.[0];
    throw new ConfigFileError(file, 'EPARSE_CONFIG', undefined, `${line ? `line ${line.line}, column ${line.col}: ` : ''}${first.message.split('\n')[0]}`);
  }
  const root = document.toJS() as unknown;
  if (!isRecord(root)) throw new ConfigFileError(file, 'EINVAL_CONFIG', undefined, 'must be a mapping with "balancer" and "services"');
  for (const key of Object.keys(root)) {
    if (!topLevelKeys.has(key)) throw new ConfigFileError(file, 'EINVAL_CONFIG', key, `is not a known setting (expected one of ${[...topLevelKeys].join(', ')})`);
  }
  const wrap = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (error) {
      if (error instanceof L4lbError && !(error instanceof ConfigFileError)) {
        // The API's messages start with the field path; the file's message puts it after the file name.
        const prefix = error.path ? [`${error.path}: `, `${error.path} `].find((p) => error.message.startsWith(p)) : undefined;
        const message = prefix ? error.message.slice(prefix.length) : error.message;
        throw new ConfigFileError(file, error.code, error.path, message, { cause: error });
      }
      throw error;
    }
  };

  if (!isRecord(root.balancer)) throw new ConfigFileError(file, 'EINVAL_CONFIG', 'balancer', 'must be a mapping (interfaces, workers, ...)');
  const balancer = root.balancer as unknown as LoadBalancerOptions;
  wrap(() => validateLoadBalancerOptions(balancer, 'balancer'));

  const services: ServiceConfig[] = [];
  if (root.services !== undefined && !Array.isArray(root.services)) {
    throw new ConfigFileError(file, 'EINVAL_CONFIG', 'services', 'must be a list');
  }
  const seen = new Map<string, string>();
  for (const [index, raw] of ((root.services as unknown[]) ?? []).entries()) {
    const path = `services[${index}]`;
    if (!isRecord(raw)) throw new ConfigFileError(file, 'EINVAL_CONFIG', path, 'must be a mapping');
    const { backends: rawBackends, ...serviceFields } = raw;
    if (isRecord(serviceFields.healthCheck)) {
      const check = { ...serviceFields.healthCheck };
      regexField(check, 'expectBody', `${path}.healthCheck.expectBody`, file);
      regexField(check, 'expectReply', `${path}.healthCheck.expectReply`, file);
      serviceFields.healthCheck = check;
    }
    if (isRecord(serviceFields.scheduler)) {
      throw new ConfigFileError(file, 'EINVAL_CONFIG', `${path}.scheduler`, 'scheduler hooks are functions: configure them through the API, not a file');
    }
    const options = serviceFields as unknown as ServiceOptions;
    const normalized = wrap(() => validateServiceOptions(options, path));
    const key = serviceKey(options);
    if (seen.has(key)) throw new ConfigFileError(file, 'EDUPLICATE', path, `duplicates ${seen.get(key)} (${key})`);
    seen.set(key, path);
    if (rawBackends !== undefined && !Array.isArray(rawBackends)) {
      throw new ConfigFileError(file, 'EINVAL_CONFIG', `${path}.backends`, 'must be a list');
    }
    const backends = (rawBackends as unknown[] | undefined) ?? [];
    const seenBackends = new Map<string, string>();
    for (const [b, backend] of backends.entries()) {
      const backendPath = `${path}.backends[${b}]`;
      const validated = wrap(() => validateBackendOptions(backend as BackendOptions, normalized.port, backendPath));
      const backendKey = `${validated.address}:${validated.port}`;
      if (seenBackends.has(backendKey)) throw new ConfigFileError(file, 'EDUPLICATE', backendPath, `duplicates ${seenBackends.get(backendKey)} (${backendKey})`);
      seenBackends.set(backendKey, backendPath);
    }
    services.push({ options, backends: backends as BackendOptions[] });
  }

  let controlSocket = defaultControlSocket;
  if (root.control !== undefined) {
    if (!isRecord(root.control) || Object.keys(root.control).some((k) => k !== 'socket')) {
      throw new ConfigFileError(file, 'EINVAL_CONFIG', 'control', 'must be a mapping with "socket"');
    }
    if (typeof root.control.socket !== 'string' || !root.control.socket.startsWith('/')) {
      throw new ConfigFileError(file, 'EINVAL_CONFIG', 'control.socket', 'must be an absolute path');
    }
    controlSocket = root.control.socket;
  }
  const config: ConfigFile = { file, balancer, services, controlSocket };
  if (root.metrics !== undefined) {
    if (typeof root.metrics !== 'string') throw new ConfigFileError(file, 'EINVAL_CONFIG', 'metrics', 'must be "address:port"');
    config.metrics = parseListenAddress(root.metrics, (rule) => new ConfigFileError(file, 'EINVAL_CONFIG', 'metrics', rule));
  }
  return config;
}

/** 'ADDRESS:PORT' for the metrics listener (IPv4). */
export function parseListenAddress(text: string, fail: (rule: string) => Error): { host: string; port: number } {
  const match = /^(.+):(\d+)$/.exec(text);
  if (!match || !isIPv4(match[1]!) || Number(match[2]) < 1 || Number(match[2]) > 65535) {
    throw fail(`must be "address:port" with an IPv4 address and a port 1..65535, got "${text}"`);
  }
  return { host: match[1]!, port: Number(match[2]) };
}

/** Reads and validates a configuration file. */
export function loadConfig(file: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigFileError(file, 'ENO_CONFIG', undefined, `cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { cause: error });
  }
  return parseConfig(text, file);
}
