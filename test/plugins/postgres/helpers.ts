// Shared bits for the PostgreSQL engine tests.

import { randomBytes } from 'node:crypto';
import type { ConnectionConfig, Engine } from '../../../src/engine/engine.ts';
import postgresEngine from '../../../plugins/postgres/index.ts';
import type { TestPostgres } from '../../support/scram-postgres.ts';

export const tag = (): string => randomBytes(4).toString('hex');

/** A password like the broker's: 24 chars of [A-Za-z0-9-]. */
export const brokerPassword = (): string => `A-${randomBytes(16).toString('base64url').replace(/_/g, '-').slice(0, 22)}`;

export function connectionFor(server: TestPostgres, overrides: Partial<ConnectionConfig> = {}): ConnectionConfig {
  return {
    connectionUrl: `postgres://{{username}}:{{password}}@${server.host}:${server.port}/postgres`,
    username: server.adminUser,
    password: server.adminPassword,
    maxOpenConnections: 4,
    options: {},
    ...overrides,
  };
}

export async function engineFor(server: TestPostgres, overrides: Partial<ConnectionConfig> = {}): Promise<Engine> {
  const engine = postgresEngine.create();
  await engine.initialize(connectionFor(server, overrides), { verify: true });
  return engine;
}

export const LOGIN = [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`];

export const inAnHour = (): Date => new Date(Date.now() + 3600_000);

/** The SQLSTATE of a pg error (or undefined). */
export function sqlStateOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}
