// `dbroker agent` configuration: Vault Agent's structure
// (https://developer.hashicorp.com/vault/docs/agent-and-proxy/agent) in JSON,
// with `broker` in place of `vault`. Unknown or invalid fields are refused
// with the field's name (ConfigError), before anything starts.

import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { ConfigError } from '../config.ts';
import { parseTemplate, type Template } from './template.ts';

/** How the agent logs in (Vault Agent auto_auth method types). */
export type AutoAuthMethod =
  | { type: 'token_file'; tokenFilePath: string }
  | { type: 'approle'; mount: string; roleIdFilePath: string; secretIdFilePath: string; removeSecretIdFileAfterReading: boolean }
  | { type: 'jwt'; mount: string; role: string; path: string; removeJwtAfterReading: boolean }
  | { type: 'kubernetes'; mount: string; role: string; tokenPath: string };

export interface TemplateConfig {
  template: Template;
  /** Where it is rendered (mode 0600, atomic). */
  destination: string;
  /** Run after the file changed: a shell command line, or argv. */
  command?: string | string[];
  /** ms. */
  commandTimeoutMs: number;
}

export interface ExecConfig {
  command: string[];
  restartOnSecretChanges: 'always' | 'never';
  /** Sent to stop the child before a restart and at shutdown. */
  restartStopSignal: NodeJS.Signals;
  /** When set, a change sends this signal instead of restarting (the child re-reads its files). */
  changeSignal?: NodeJS.Signals;
}

export interface AgentConfig {
  broker: { address: string; timeoutMs: number; minBackoffMs: number; maxBackoffMs: number };
  autoAuth?: { method: AutoAuthMethod; sinks: string[] };
  persist?: { dir: string; keyFile?: string; keyEnv?: string };
  listener?: { type: 'tcp'; host: string; port: number } | { type: 'unix'; path: string };
  apiProxy: { useAutoAuthToken: boolean | 'force' };
  templates: TemplateConfig[];
  envTemplates: Record<string, Template>;
  exec?: ExecConfig;
}

type Json = Record<string, unknown>;

function obj(value: unknown, field: string, allowed: string[]): Json {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(field, 'must be an object');
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) throw new ConfigError(`${field}.${key}`, `unknown field (known: ${allowed.join(', ')})`);
  }
  return value as Json;
}

function str(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw new ConfigError(field, 'must be a non-empty string');
  return value;
}

function optStr(value: unknown, field: string): string | undefined {
  return value === undefined ? undefined : str(value, field);
}

function bool(value: unknown, field: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new ConfigError(field, 'must be true or false');
  return value;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A duration as seconds (number) or a Go duration string ("500ms", "1m30s"), in ms. */
function durationMs(value: unknown, field: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return Math.round(value * 1000);
  if (typeof value === 'string') {
    let rest = value.trim();
    let total = 0;
    if (/^\d+(\.\d+)?$/.test(rest)) return Math.round(Number(rest) * 1000);
    while (rest) {
      const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
      if (!m) break;
      total += Number(m[1]) * UNIT_MS[m[2]!]!;
      rest = rest.slice(m[0].length);
    }
    if (!rest && value.trim()) return Math.round(total);
  }
  throw new ConfigError(field, 'must be a number of seconds or a duration like "500ms", "30s", "1m"');
}

const SIGNAL = /^SIG[A-Z0-9]+$/;
function signal(value: unknown, field: string, fallback: NodeJS.Signals | undefined): NodeJS.Signals | undefined {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !SIGNAL.test(value)) throw new ConfigError(field, 'must be a signal name like "SIGHUP"');
  return value as NodeJS.Signals;
}

function mountOf(value: unknown, field: string, type: string): string {
  const m = value === undefined ? `auth/${type}` : str(value, field);
  return m.replace(/^\/+|\/+$/g, '').replace(/^auth\//, '');
}

function parseMethod(raw: unknown, base: string): AutoAuthMethod {
  const m = obj(raw, 'auto_auth.method', ['type', 'mount_path', 'config', 'namespace', 'min_backoff', 'max_backoff']);
  const type = str(m['type'], 'auto_auth.method.type');
  const path = (v: unknown, f: string): string => resolve(base, str(v, f));
  const f = (name: string): string => `auto_auth.method.config.${name}`;
  switch (type) {
    case 'token_file': {
      const c = obj(m['config'], 'auto_auth.method.config', ['token_file_path']);
      return { type, tokenFilePath: path(c['token_file_path'], f('token_file_path')) };
    }
    case 'approle': {
      const c = obj(m['config'], 'auto_auth.method.config', ['role_id_file_path', 'secret_id_file_path', 'remove_secret_id_file_after_reading']);
      return {
        type,
        mount: mountOf(m['mount_path'], 'auto_auth.method.mount_path', type),
        roleIdFilePath: path(c['role_id_file_path'], f('role_id_file_path')),
        secretIdFilePath: path(c['secret_id_file_path'], f('secret_id_file_path')),
        // Vault Agent's default: the secret ID file is removed once read.
        removeSecretIdFileAfterReading: bool(c['remove_secret_id_file_after_reading'], f('remove_secret_id_file_after_reading'), true),
      };
    }
    case 'jwt': {
      const c = obj(m['config'], 'auto_auth.method.config', ['path', 'role', 'remove_jwt_after_reading']);
      return {
        type,
        mount: mountOf(m['mount_path'], 'auto_auth.method.mount_path', type),
        role: str(c['role'], f('role')),
        path: path(c['path'], f('path')),
        removeJwtAfterReading: bool(c['remove_jwt_after_reading'], f('remove_jwt_after_reading'), true),
      };
    }
    case 'kubernetes': {
      const c = obj(m['config'], 'auto_auth.method.config', ['role', 'token_path']);
      return {
        type,
        mount: mountOf(m['mount_path'], 'auto_auth.method.mount_path', type),
        role: str(c['role'], f('role')),
        tokenPath: c['token_path'] === undefined ? '/var/run/secrets/kubernetes.io/serviceaccount/token' : path(c['token_path'], f('token_path')),
      };
    }
    default:
      throw new ConfigError('auto_auth.method.type', `"${type}" is not supported (token_file, approle, jwt, kubernetes)`);
  }
}

function parseListener(raw: unknown): AgentConfig['listener'] {
  const l = obj(raw, 'listener', ['type', 'address', 'tls_disable']);
  const type = l['type'] === undefined ? 'tcp' : str(l['type'], 'listener.type');
  const address = str(l['address'], 'listener.address');
  if (type === 'unix') return { type, path: resolve(address) };
  if (type !== 'tcp') throw new ConfigError('listener.type', 'must be "tcp" or "unix"');
  const m = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):(\d{1,5})$/.exec(address);
  if (!m || Number(m[2]) > 65535) throw new ConfigError('listener.address', 'must be a loopback address with a port, e.g. "127.0.0.1:8100" (the proxy serves cached secrets without TLS)');
  return { type, host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

/** Parse and check `raw` (the config JSON); relative paths count from `baseDir`. Throws ConfigError. */
export function parseAgentConfig(raw: unknown, baseDir: string): AgentConfig {
  const top = obj(raw, 'config', ['broker', 'vault', 'auto_auth', 'cache', 'listener', 'api_proxy', 'templates', 'template', 'env_template', 'exec']);
  const brokerRaw = top['broker'] ?? top['vault'];
  if (brokerRaw === undefined) throw new ConfigError('broker', 'is required ({"address": "https://..."})');
  const b = obj(brokerRaw, 'broker', ['address', 'timeout', 'retry']);
  const address = str(b['address'], 'broker.address');
  if (!/^https?:\/\/[^/]+\/?$/.test(address)) throw new ConfigError('broker.address', 'must be an http(s) URL with no path, e.g. "https://dbroker.internal:8200"');
  const retry = b['retry'] === undefined ? {} : obj(b['retry'], 'broker.retry', ['min_backoff', 'max_backoff']);
  const minBackoffMs = Math.max(1, durationMs(retry['min_backoff'], 'broker.retry.min_backoff', 1000));
  const maxBackoffMs = durationMs(retry['max_backoff'], 'broker.retry.max_backoff', 30_000);
  if (maxBackoffMs < minBackoffMs) throw new ConfigError('broker.retry.max_backoff', 'must not be less than min_backoff');
  const config: AgentConfig = {
    broker: { address: address.replace(/\/+$/, ''), timeoutMs: durationMs(b['timeout'], 'broker.timeout', 10_000), minBackoffMs, maxBackoffMs },
    apiProxy: { useAutoAuthToken: false },
    templates: [],
    envTemplates: {},
  };

  if (top['auto_auth'] !== undefined) {
    const a = obj(top['auto_auth'], 'auto_auth', ['method', 'sinks']);
    const sinks: string[] = [];
    const rawSinks = a['sinks'] ?? [];
    if (!Array.isArray(rawSinks)) throw new ConfigError('auto_auth.sinks', 'must be a list');
    rawSinks.forEach((s, i) => {
      const sink = obj(s, `auto_auth.sinks[${i}]`, ['type', 'config']);
      if (sink['type'] !== 'file') throw new ConfigError(`auto_auth.sinks[${i}].type`, 'only "file" sinks are supported');
      const c = obj(sink['config'], `auto_auth.sinks[${i}].config`, ['path']);
      sinks.push(resolve(baseDir, str(c['path'], `auto_auth.sinks[${i}].config.path`)));
    });
    config.autoAuth = { method: parseMethod(a['method'], baseDir), sinks };
  }

  if (top['cache'] !== undefined) {
    const c = obj(top['cache'], 'cache', ['persist', 'use_auto_auth_token']);
    if (c['persist'] !== undefined) {
      const p = obj(c['persist'], 'cache.persist', ['type', 'path', 'key_file', 'key_env', 'keep_after_import', 'exit_on_err']);
      const keyFile = optStr(p['key_file'], 'cache.persist.key_file');
      const keyEnv = optStr(p['key_env'], 'cache.persist.key_env');
      if (!keyFile && !keyEnv) throw new ConfigError('cache.persist', 'give key_file or key_env: the cache is encrypted with a key you provide');
      config.persist = { dir: resolve(baseDir, str(p['path'], 'cache.persist.path')), ...(keyFile ? { keyFile: resolve(baseDir, keyFile) } : {}), ...(keyEnv ? { keyEnv } : {}) };
    }
  }

  if (top['listener'] !== undefined) config.listener = parseListener(top['listener']);

  if (top['api_proxy'] !== undefined) {
    const p = obj(top['api_proxy'], 'api_proxy', ['use_auto_auth_token']);
    const u = p['use_auto_auth_token'];
    if (u !== undefined && typeof u !== 'boolean' && u !== 'force') throw new ConfigError('api_proxy.use_auto_auth_token', 'must be true, false or "force"');
    config.apiProxy.useAutoAuthToken = (u as boolean | 'force' | undefined) ?? false;
  }

  const templates = top['templates'] ?? top['template'] ?? [];
  if (!Array.isArray(templates)) throw new ConfigError('templates', 'must be a list');
  templates.forEach((t, i) => {
    const field = `templates[${i}]`;
    const o = obj(t, field, ['source', 'contents', 'destination', 'command', 'exec', 'command_timeout']);
    let text: string;
    if (o['contents'] !== undefined) {
      if (typeof o['contents'] !== 'string') throw new ConfigError(`${field}.contents`, 'must be a string');
      text = o['contents'];
    } else {
      const source = resolve(baseDir, str(o['source'], `${field}.source`));
      try {
        text = readFileSync(source, 'utf8');
      } catch (err) {
        throw new ConfigError(`${field}.source`, `cannot read ${source}: ${(err as Error).message}`);
      }
    }
    const command = o['command'] ?? o['exec'];
    if (command !== undefined && typeof command !== 'string' && !(Array.isArray(command) && command.length > 0 && command.every((c) => typeof c === 'string'))) {
      throw new ConfigError(`${field}.command`, 'must be a shell command line or a non-empty list of strings');
    }
    config.templates.push({
      template: parseTemplate(text, `${field}.contents`),
      destination: resolve(baseDir, str(o['destination'], `${field}.destination`)),
      ...(command !== undefined ? { command: command as string | string[] } : {}),
      commandTimeoutMs: durationMs(o['command_timeout'], `${field}.command_timeout`, 30_000),
    });
  });

  if (top['env_template'] !== undefined) {
    const e = top['env_template'];
    if (e === null || typeof e !== 'object' || Array.isArray(e)) throw new ConfigError('env_template', 'must be an object of NAME: {"contents": "..."}');
    for (const [name, value] of Object.entries(e)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new ConfigError(`env_template.${name}`, 'is not a valid environment variable name');
      const v = obj(value, `env_template.${name}`, ['contents']);
      if (typeof v['contents'] !== 'string') throw new ConfigError(`env_template.${name}.contents`, 'must be a string');
      config.envTemplates[name] = parseTemplate(v['contents'], `env_template.${name}.contents`);
    }
  }

  if (top['exec'] !== undefined) {
    const x = obj(top['exec'], 'exec', ['command', 'restart_on_secret_changes', 'restart_stop_signal', 'change_signal']);
    const cmd = x['command'];
    if (!Array.isArray(cmd) || cmd.length === 0 || !cmd.every((c) => typeof c === 'string' && c !== '')) throw new ConfigError('exec.command', 'must be a non-empty list of strings');
    const restart = x['restart_on_secret_changes'] ?? 'always';
    if (restart !== 'always' && restart !== 'never') throw new ConfigError('exec.restart_on_secret_changes', 'must be "always" or "never"');
    const changeSignal = signal(x['change_signal'], 'exec.change_signal', undefined);
    config.exec = {
      command: cmd as string[],
      restartOnSecretChanges: restart,
      restartStopSignal: signal(x['restart_stop_signal'], 'exec.restart_stop_signal', 'SIGTERM')!,
      ...(changeSignal ? { changeSignal } : {}),
    };
  } else if (Object.keys(config.envTemplates).length > 0) {
    throw new ConfigError('env_template', 'only has a use with exec');
  }

  const needsToken = config.templates.length > 0 || Object.keys(config.envTemplates).length > 0 || config.apiProxy.useAutoAuthToken !== false;
  if (needsToken && !config.autoAuth) throw new ConfigError('auto_auth', 'is required for templates, env_template and use_auto_auth_token');
  return config;
}

/** Read and parse the config file at `path`. Throws ConfigError. */
export function loadAgentConfig(path: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('--config', `cannot read ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('--config', `${path} is not valid JSON: ${(err as Error).message}`);
  }
  return parseAgentConfig(raw, isAbsolute(path) ? dirname(path) : dirname(resolve(path)));
}
