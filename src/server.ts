// Running the broker: config → storage → broker → HTTP, auto-unseal, and a
// graceful shutdown on SIGTERM/SIGINT (stop accepting, finish in-flight
// requests and revocations, close engines and the store).

import { readFileSync, statSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { Broker } from './broker.ts';
import { ConfigError, type BrokerConfig } from './config.ts';
import { buildHttpServer } from './http/server.ts';
import { createLogger } from './logger.ts';
import { closeOnce } from './util/shutdown.ts';
import { openStorage } from './storage/open-storage.ts';
import { HaNode } from './ha/ha-node.ts';
import { installForwarding } from './ha/forwarder.ts';
import type { PostgresStorage } from './storage/postgres-storage.ts';

export interface RunningServer {
  broker: Broker;
  app: FastifyInstance;
  logger: Logger;
  address: string;
  close(): Promise<void>;
}

/** Key shares from the unseal keys file (one per line). Refuses a file others can read. */
export function readUnsealKeysFile(file: string): string[] {
  let mode: number;
  try {
    mode = statSync(file).mode & 0o777;
  } catch (err) {
    throw new ConfigError('unseal_keys_file', `cannot read ${file}: ${(err as Error).message}`);
  }
  if ((mode & 0o077) !== 0) throw new ConfigError('unseal_keys_file', `${file} must not be readable by group or others (mode ${mode.toString(8)}, want 600)`);
  return readFileSync(file, 'utf8').split(/\s+/).filter(Boolean);
}

/**
 * Auto-unseal with key shares from `source` (unseal_keys_file or
 * DBROKER_UNSEAL_KEYS). A share that is refused stops the start, with the
 * source named: a broken auto-unseal should be loud.
 */
export async function autoUnseal(broker: Broker, keys: string[], source: string): Promise<void> {
  for (const [i, key] of keys.entries()) {
    let done: boolean;
    try {
      done = await broker.seal.submit(key);
    } catch (err) {
      broker.seal.resetProgress();
      throw new ConfigError(source, `key share ${i + 1}: ${(err as Error).message}`);
    }
    if (done) {
      await broker.afterUnseal();
      broker.logger.info({ source }, 'dbroker auto-unsealed');
      return;
    }
  }
  broker.seal.resetProgress();
  throw new ConfigError(source, `holds ${keys.length} key share(s); ${broker.seal.status().t} are needed`);
}

function readTls(tls: BrokerConfig['tls']): { cert: Buffer; key: Buffer } | undefined {
  if (!tls) return undefined;
  const read = (field: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new ConfigError(field, `cannot read ${file}: ${(err as Error).message}`);
    }
  };
  return { cert: read('tls.cert_file', tls.certFile), key: read('tls.key_file', tls.keyFile) };
}

export interface StartOptions {
  logger?: Logger;
  /**
   * Runs once the broker and its HTTP app are built, before the port opens
   * (dev mode's setup, through `app.inject`): whoever reaches the port — a
   * client polling sys/health included — finds the broker ready. `close`
   * already works here; a throw closes everything and fails the start.
   */
  beforeListen?: (server: Omit<RunningServer, 'address'>) => Promise<void>;
}

/**
 * Open the store, build the broker (auto-unsealing it when configured) and
 * listen. Throws ConfigError naming the field for a bad store, TLS or unseal
 * configuration.
 */
export async function startServer(config: BrokerConfig, opts: StartOptions = {}): Promise<RunningServer> {
  const logger = opts.logger ?? createLogger(config.logLevel);
  const tls = readTls(config.tls);
  const storage = await openStorage(config);
  const broker = new Broker(config, storage, logger);
  // HA needs the PostgreSQL store (config.ts refuses it otherwise).
  const ha = config.ha ? new HaNode(storage as PostgresStorage, config.ha, logger) : undefined;
  if (ha) broker.setCluster(ha);
  let app: FastifyInstance | undefined;
  try {
    await broker.start();
    if (broker.seal.initialized) {
      if (config.unsealKeysFile) await autoUnseal(broker, readUnsealKeysFile(config.unsealKeysFile), 'unseal_keys_file');
      else if (config.unsealKeys) await autoUnseal(broker, config.unsealKeys, 'DBROKER_UNSEAL_KEYS');
    }
    try {
      app = buildHttpServer(broker, { logger, bodyLimit: config.maxRequestSize, trustedProxies: config.trustedProxies, ...(tls ? { tls } : {}) });
      if (ha) installForwarding(app, ha, () => broker.seal.sealed, logger, config.maxRequestSize);
    } catch (err) {
      throw new ConfigError('tls', `cannot use the certificate and key: ${(err as Error).message}`);
    }
    let closing: Promise<void> | undefined;
    const running = app;
    const close = (): Promise<void> =>
      (closing ??= (async () => {
        await running.close();
        await broker.stop();
        logger.info('dbroker stopped');
      })());
    if (opts.beforeListen) await opts.beforeListen({ broker, app, logger, close });
    const address = await app.listen({ host: config.listen.host, port: config.listen.port });
    logger.info({ address, sealed: broker.seal.sealed, initialized: broker.seal.initialized }, 'dbroker listening');
    return { broker, app, logger, address, close };
  } catch (err) {
    // Do not leave the store open (or the port bound) behind a failed start.
    await app?.close().catch(() => undefined);
    await broker.stop().catch(() => undefined);
    throw err;
  }
}

/** Close on SIGTERM/SIGINT, then exit (0, or 1 when closing failed); repeated signals while closing are ignored (closeOnce). */
export function closeOnSignals(close: () => Promise<void>, logger: Logger): void {
  closeOnce(logger, 'shutting down', close);
}
