// plugin_name → engine factory: the built-in engines under plugins/, plus
// third-party engines named in the config file (a module path, relative to
// the config file, or a package name) whose default export is an EngineFactory.

import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { errors } from '../errors.ts';
import type { EngineFactory } from './engine.ts';

const BUILT_IN: Record<string, { module: string; exportName: string }> = {
  'postgresql-database-plugin': { module: '../../plugins/postgres/index.ts', exportName: 'default' },
  'mysql-database-plugin': { module: '../../plugins/mysql/index.ts', exportName: 'default' },
  'mysql-legacy-database-plugin': { module: '../../plugins/mysql/index.ts', exportName: 'mysqlLegacy' },
  'mongodb-database-plugin': { module: '../../plugins/mongodb/index.ts', exportName: 'default' },
};

function isFactory(value: unknown): value is EngineFactory {
  const f = value as EngineFactory | undefined;
  return !!f && typeof f.type === 'string' && typeof f.create === 'function' && typeof f.maxUsernameLength === 'number';
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
      const target = this.thirdParty[pluginName]!;
      specifier = target.startsWith('.') || isAbsolute(target) ? pathToFileURL(resolve(this.baseDir, target)).href : target;
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
