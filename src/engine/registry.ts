// plugin_name → engine factory: the built-in engines under plugins/, plus
// third-party engines named in the config file `plugins` (a module path,
// relative to the config file or absolute, or a package name) whose default
// export is an EngineFactory. Third-party engines are loaded and checked at
// startup (`loadThirdParty`), so a bad entry stops the server with an error
// naming the field instead of failing later at the first request.

import { createRequire } from 'node:module';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError } from '../config.ts';
import { errors, messageOf } from '../errors.ts';
import type { EngineFactory } from './engine.ts';

const BUILT_IN: Record<string, { module: string; exportName: string }> = {
  'postgresql-database-plugin': { module: '../../plugins/postgres/index.ts', exportName: 'default' },
  'mysql-database-plugin': { module: '../../plugins/mysql/index.ts', exportName: 'default' },
  'mysql-legacy-database-plugin': { module: '../../plugins/mysql/index.ts', exportName: 'mysqlLegacy' },
  'mongodb-database-plugin': { module: '../../plugins/mongodb/index.ts', exportName: 'default' },
};

/** What a plugin_name may look like (the same characters as connection names). */
const PLUGIN_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

/** Why `value` is not an EngineFactory, or undefined when it is one. */
export function factoryProblem(value: unknown): string | undefined {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return `it is ${value === null ? 'null' : typeof value}, not an object`;
  const f = value as Partial<Record<keyof EngineFactory, unknown>>;
  if (typeof f.type !== 'string' || f.type === '') return '"type" must be a non-empty string';
  if (typeof f.create !== 'function') return '"create" must be a function returning an Engine';
  if (typeof f.maxUsernameLength !== 'number' || !Number.isInteger(f.maxUsernameLength) || f.maxUsernameLength < 1) {
    return '"maxUsernameLength" must be a positive integer';
  }
  if (!Array.isArray(f.defaultRootRotationStatements) || f.defaultRootRotationStatements.some((s) => typeof s !== 'string')) {
    return '"defaultRootRotationStatements" must be an array of strings';
  }
  if (f.validateStatements !== undefined && typeof f.validateStatements !== 'function') return '"validateStatements", when present, must be a function';
  if (f.defaultUsernameTemplate !== undefined && (typeof f.defaultUsernameTemplate !== 'string' || f.defaultUsernameTemplate === '')) {
    return '"defaultUsernameTemplate", when present, must be a non-empty string';
  }
  if (f.poolSettings !== undefined && (!Array.isArray(f.poolSettings) || f.poolSettings.some((s) => s !== 'max_idle_connections' && s !== 'max_connection_lifetime'))) {
    return '"poolSettings", when present, must list only "max_idle_connections" and "max_connection_lifetime"';
  }
  return undefined;
}

function isFactory(value: unknown): value is EngineFactory {
  return factoryProblem(value) === undefined;
}

/** Where to import a third-party engine from: a file path (relative to `baseDir`) or a package name. */
function resolveSpecifier(target: string, baseDir: string): string {
  if (target.startsWith('.') || isAbsolute(target)) return pathToFileURL(resolve(baseDir, target)).href;
  if (target.startsWith('file:')) return target;
  // A package name: look it up from the config file's folder first (where an
  // operator installs it), then from dbroker's own node_modules.
  try {
    return pathToFileURL(createRequire(join(baseDir, 'dbroker-config.js')).resolve(target)).href;
  } catch {
    return target;
  }
}

export class EngineRegistry {
  private readonly cache = new Map<string, EngineFactory>();

  constructor(
    private readonly thirdParty: Record<string, string>,
    private readonly baseDir: string,
  ) {}

  names(): string[] {
    return [...Object.keys(BUILT_IN), ...Object.keys(this.thirdParty)];
  }

  /**
   * Import and check every third-party engine now. Throws a ConfigError
   * naming `plugins.<name>` for a bad entry: a name that shadows a built-in
   * engine, a module that cannot be loaded, no default export, or a default
   * export that is not an EngineFactory for that plugin_name.
   */
  async loadThirdParty(): Promise<void> {
    for (const [pluginName, target] of Object.entries(this.thirdParty)) {
      const field = `plugins.${pluginName}`;
      if (Object.hasOwn(BUILT_IN, pluginName)) throw new ConfigError(field, `"${pluginName}" is a built-in engine and cannot be replaced; register the engine under another name`);
      if (!PLUGIN_NAME.test(pluginName)) throw new ConfigError(field, 'a plugin name may contain only letters, digits, "_", "." and "-" (1 to 128 characters)');
      if (typeof target !== 'string' || target === '') throw new ConfigError(field, 'must be a module path or package name');
      let mod: Record<string, unknown>;
      try {
        mod = (await import(resolveSpecifier(target, this.baseDir))) as Record<string, unknown>;
      } catch (err) {
        throw new ConfigError(field, `cannot load module "${target}": ${messageOf(err)}`);
      }
      if (!('default' in mod) || mod.default === undefined) throw new ConfigError(field, `module "${target}" has no default export (it must default-export an EngineFactory)`);
      const problem = factoryProblem(mod.default);
      if (problem) throw new ConfigError(field, `the default export of "${target}" is not an EngineFactory: ${problem}`);
      const factory = mod.default as EngineFactory;
      if (factory.type !== pluginName) throw new ConfigError(field, `the engine in "${target}" is of type "${factory.type}", not "${pluginName}"`);
      this.cache.set(pluginName, factory);
    }
  }

  async get(pluginName: string): Promise<EngineFactory> {
    const cached = this.cache.get(pluginName);
    if (cached) return cached;
    let specifier: string;
    let exportName = 'default';
    const builtIn = BUILT_IN[pluginName];
    if (builtIn) {
      specifier = new URL(builtIn.module, import.meta.url).href;
      exportName = builtIn.exportName;
    } else if (Object.hasOwn(this.thirdParty, pluginName)) {
      specifier = resolveSpecifier(this.thirdParty[pluginName]!, this.baseDir);
    } else {
      throw errors.UNKNOWN_PLUGIN(pluginName);
    }
    const mod = (await import(specifier)) as Record<string, unknown>;
    const factory = mod[exportName];
    if (!isFactory(factory)) throw errors.ENGINE_INPUT(`plugin "${pluginName}" does not export an engine factory`);
    this.cache.set(pluginName, factory);
    return factory;
  }
}
