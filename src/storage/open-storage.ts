// Open the store the configuration names: the SQLite file (default) or the
// PostgreSQL store (storage.type "postgresql"). A failure names the field.

import { readFileSync } from 'node:fs';
import { ConfigError, type BrokerConfig } from '../config.ts';
import { PostgresStorage } from './postgres-storage.ts';
import { SqliteStorage } from './sqlite-storage.ts';
import type { Storage } from './storage.ts';

function readPem(field: string, file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(field, `cannot read ${file}: ${(err as Error).message}`);
  }
}

/**
 * @throws ConfigError naming storage.path or storage.connection_url when the store cannot be opened.
 */
export async function openStorage(config: BrokerConfig): Promise<Storage> {
  const pg = config.postgres;
  if (!pg) {
    try {
      return new SqliteStorage(config.storagePath);
    } catch (err) {
      throw new ConfigError('storage.path', `cannot open ${config.storagePath}: ${(err as Error).message}`);
    }
  }
  const ca = readPem('storage.tls_ca_file', pg.tlsCaFile);
  const cert = readPem('storage.tls_cert_file', pg.tlsCertFile);
  const key = readPem('storage.tls_key_file', pg.tlsKeyFile);
  const tls = {
    ...(ca !== undefined ? { ca } : {}),
    ...(cert !== undefined ? { cert } : {}),
    ...(key !== undefined ? { key } : {}),
    ...(pg.tlsSkipVerify !== undefined ? { skipVerify: pg.tlsSkipVerify } : {}),
  };
  try {
    return await PostgresStorage.open({
      connectionUrl: pg.connectionUrl,
      tablePrefix: pg.tablePrefix,
      maxConnections: pg.maxConnections,
      tls,
      mode: config.ha ? 'ha' : 'single',
      ...(config.ha
        ? { applicationName: `dbroker ${config.ha.apiAddr}`, idleInTransactionTimeoutMs: Math.max(1_000, (config.ha.leaseDuration * 1000) / 3) }
        : {}),
    });
  } catch (err) {
    // The URL may hold a password: name the field, not the value.
    throw new ConfigError('storage.connection_url', `cannot open the PostgreSQL store: ${(err as Error).message}`);
  }
}
