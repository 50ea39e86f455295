// Warming the engines, so the first credential after an unseal pays neither
// for loading its engine's module nor for logging in to its database
// (issue 11: unseal → first served credential ≤ 100 ms).
//
// - While sealed, the engines named by a hint in the store's metadata are
//   imported. Connection records are sealed, so the hint (plugin names only,
//   such as "postgresql-database-plugin": no secret, like the connection
//   names in the entry paths) is what the last unseal found.
// - At unseal, in the background, each connection's engine is opened and its
//   login proven, leaving a logged-in session in the pool. A database that is
//   down or refuses is only logged: the connection opens at its first use, as
//   it always did. Nothing here fails or delays the unseal, and the work is
//   proportional to the number of connections, never to the lease count.

import type { Logger } from 'pino';
import type { EngineRegistry } from '../engine/registry.ts';
import { messageOf } from '../errors.ts';
import type { Storage } from '../storage/storage.ts';

/** Meta key of the hint: a JSON array of the plugin names the connections used at the last unseal. */
export const ENGINES_HINT = 'engines-in-use';

/** Connections opened at once while warming. */
const WARM_CONCURRENCY = 4;

/** The part of a mount's connections that warming uses (see database/connections.ts). */
export interface WarmableConnections {
  names(): Promise<string[]>;
  read(name: string): Promise<{ pluginName: string } | undefined>;
  /** Open the engine now and prove its login; rejects when it cannot. */
  warm(name: string): Promise<void>;
  /** Close the connection's engine (when the mount was closed while warming). */
  drop(name: string): Promise<void>;
}

/** A mount to warm: its connections, and whether it is still mounted and unsealed (false once closed: seal, standby, unmount). */
export interface WarmMount {
  mount: string;
  connections: WarmableConnections;
  isOpen(): boolean;
}

export interface WarmDeps {
  storage: Pick<Storage, 'getMeta' | 'putMeta'>;
  engines: Pick<EngineRegistry, 'get'>;
  logger: Logger;
}

async function readHint(storage: Pick<Storage, 'getMeta'>): Promise<string[]> {
  const raw = await storage.getMeta(ENGINES_HINT);
  if (!raw) return [];
  const parsed = JSON.parse(raw.toString('utf8')) as unknown;
  return Array.isArray(parsed) ? parsed.filter((n): n is string => typeof n === 'string') : [];
}

/**
 * While sealed: import the engines of the hint. Never rejects; a hint that
 * names an unknown or broken engine is only logged (debug), since the engine
 * is loaded again, with its error reported, at its first use.
 */
export async function preloadEngines(storage: Pick<Storage, 'getMeta'>, engines: Pick<EngineRegistry, 'get'>, logger: Logger): Promise<void> {
  let names: string[];
  try {
    names = await readHint(storage);
  } catch (err) {
    logger.debug({ error: messageOf(err) }, 'reading the engines hint failed; engines load at first use');
    return;
  }
  for (const name of names) {
    try {
      await engines.get(name);
    } catch (err) {
      logger.debug({ plugin: name, error: messageOf(err) }, 'preloading an engine failed; it loads at first use');
    }
  }
}

/**
 * At unseal, in the background: open every connection of `mounts` (engine
 * module, pool, one proven login), at most WARM_CONCURRENCY at a time, then
 * store the plugin names in use as the next start's hint when they changed.
 * Never rejects.
 */
export async function warmConnections(mounts: WarmMount[], deps: WarmDeps): Promise<void> {
  const { logger } = deps;
  const allOpen = (): boolean => mounts.every((m) => m.isOpen());
  try {
    const jobs: Array<WarmMount & { name: string }> = [];
    for (const m of mounts) for (const name of await m.connections.names()) jobs.push({ ...m, name });
    const plugins = new Set<string>();
    const worker = async (): Promise<void> => {
      for (let job = jobs.shift(); job; job = jobs.shift()) {
        if (!job.isOpen()) continue;
        try {
          const rec = await job.connections.read(job.name);
          if (!rec) continue;
          plugins.add(rec.pluginName);
          await deps.engines.get(rec.pluginName);
          await job.connections.warm(job.name);
          // Closed meanwhile: the mount's connections were closed before this engine opened.
          if (!job.isOpen()) await job.connections.drop(job.name);
        } catch (err) {
          if (job.isOpen()) logger.warn({ mount: job.mount, connection: job.name, error: messageOf(err) }, 'warming the connection failed; it opens at its first use');
        }
      }
    };
    await Promise.all(Array.from({ length: WARM_CONCURRENCY }, worker));
    if (!allOpen()) return;
    const names = [...plugins].sort();
    const stored = await readHint(deps.storage).catch(() => []);
    if (JSON.stringify(stored) !== JSON.stringify(names)) await deps.storage.putMeta(ENGINES_HINT, Buffer.from(JSON.stringify(names)));
  } catch (err) {
    if (allOpen()) logger.warn({ error: messageOf(err) }, 'warming the connections failed; they open at their first use');
  }
}
