// Running the broker: config → storage → broker → HTTP, auto-unseal, and a
// graceful shutdown on SIGTERM/SIGINT (stop accepting, finish in-flight
// requests and revocations, close engines and the store).

import { readFileSync, statSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { Broker } from './broker.ts';
import type { BrokerConfig } from './config.ts';
import { buildHttpServer } from './http/server.ts';
import { createLogger } from './logger.ts';
import { SqliteStorage } from './storage/sqlite-storage.ts';

export interface RunningServer {
  broker: Broker;
  app: FastifyInstance;
  logger: Logger;
  address: string;
  close(): Promise<void>;
}

/** Auto-unseal from a file of key shares (one per line). Refuses a file others can read. */
export async function autoUnseal(broker: Broker, file: string): Promise<void> {
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) !== 0) throw new Error(`unseal_keys_file ${file} must not be readable by group or others (mode ${mode.toString(8)}, want 600)`);
  const keys = readFileSync(file, 'utf8').split(/\s+/).filter(Boolean);
  for (const key of keys) {
    if (await broker.seal.submit(key)) {
      await broker.afterUnseal();
      broker.logger.info('dbroker auto-unsealed from unseal_keys_file');
      return;
    }
  }
  throw new Error(`unseal_keys_file ${file} does not hold enough key shares`);
}

export async function startServer(config: BrokerConfig, logger: Logger = createLogger(config.logLevel)): Promise<RunningServer> {
  const storage = new SqliteStorage(config.storagePath);
  const broker = new Broker(config, storage, logger);
  await broker.start();
  if (config.unsealKeysFile && broker.seal.initialized) await autoUnseal(broker, config.unsealKeysFile);
  const app = buildHttpServer(broker, { logger, bodyLimit: config.maxRequestSize, ...(config.tls ? { tls: config.tls } : {}) });
  const address = await app.listen({ host: config.listen.host, port: config.listen.port });
  logger.info({ address, sealed: broker.seal.sealed, initialized: broker.seal.initialized }, 'dbroker listening');
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      await app.close();
      await broker.stop();
      logger.info('dbroker stopped');
    })());
  return { broker, app, logger, address, close };
}

/** Close on SIGTERM/SIGINT, then exit. */
export function closeOnSignals(close: () => Promise<void>, logger: Logger): void {
  const onSignal = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err: String(err) }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
}
