// The PostgreSQL engine: one bounded pg.Pool per engine instance.

import pg from 'pg';
import {
  EngineConnectionError,
  EngineInputError,
  type ConnectionConfig,
  type DeleteUserRequest,
  type Engine,
  type NewUserRequest,
  type UpdateUserRequest,
  scrubSecrets,
} from '../../src/engine/engine.ts';
import type { TemplateValues } from '../sql-common/statements.ts';
import { parseConnectionConfig, type PostgresSettings } from './config.ts';
import {
  DEFAULT_RENEW,
  DEFAULT_ROTATION,
  checkPassword,
  checkUsername,
  formatExpiration,
  renderFor,
} from './dialect.ts';
import { aclLimitError } from './acl-limit.ts';
import { SessionsOpenError, defaultRevocation, missingSignalGrant, revokeRole, signalRights } from './revoke.ts';
import { scramVerifier } from './scram.ts';
import { connect, dbError, exec, inTransaction, leadingRoleCreations, roleOid, sqlState } from './sql.ts';

export const POSTGRES_TYPE = 'postgresql-database-plugin';

interface State {
  pool: pg.Pool;
  settings: PostgresSettings;
  /** The admin password new connections use; updated when the admin's own password is rotated. */
  auth: { password: string | undefined };
}

/**
 * Give a client back to the pool, or close it (`broken`, or when the pool
 * already keeps max_idle_connections idle clients: pg-pool has no such cap).
 */
function release(settings: PostgresSettings, pool: pg.Pool, client: pg.PoolClient, broken: boolean): void {
  client.release(broken || pool.idleCount >= settings.maxIdle);
}

export class PostgresEngine implements Engine {
  readonly type = POSTGRES_TYPE;
  #state: State | undefined;

  async initialize(config: ConnectionConfig, options: { verify: boolean }): Promise<void> {
    const settings = parseConnectionConfig(config);
    const secrets = [config.password, settings.adminPassword];
    const auth = { password: settings.adminPassword };
    const pool = new pg.Pool({ ...settings.pool, password: () => auth.password ?? '' });
    // An idle client whose connection drops emits 'error' on the pool; without
    // a listener that would crash the process. The next checkout reconnects.
    pool.on('error', () => undefined);
    // A checked-out client whose connection drops between two queries emits
    // 'error' on itself (the pool's listener is only on idle clients); the
    // next query on it fails and is reported, so the event itself is dropped.
    pool.on('connect', (client) => client.on('error', () => undefined));

    if (options.verify) {
      try {
        const client = await connect(pool, secrets);
        try {
          await exec(client, 'SELECT 1');
          if (settings.revocationOwner !== null && (await roleOid(client, settings.revocationOwner)) === null) {
            throw new EngineInputError(`revocation_owner: role "${settings.revocationOwner}" does not exist`);
          }
        } finally {
          release(settings, pool, client, false);
        }
      } catch (err) {
        await pool.end().catch(() => undefined);
        if (err instanceof EngineInputError || err instanceof EngineConnectionError) throw err;
        throw new EngineConnectionError(dbError('verifying the connection failed', err, secrets).message);
      }
    }

    const old = this.#state;
    this.#state = { pool, settings, auth };
    if (old) await old.pool.end().catch(() => undefined);
  }

  #ready(): State {
    if (!this.#state) throw new EngineConnectionError('the PostgreSQL engine is not initialized');
    return this.#state;
  }

  #passwordValue(password: string, settings: PostgresSettings): string {
    return settings.passwordAuthentication === 'scram-sha-256' ? scramVerifier(password) : password;
  }

  async newUser(request: NewUserRequest): Promise<void> {
    const { pool, settings, auth } = this.#ready();
    checkUsername(request.username);
    checkPassword(request.password);
    const password = this.#passwordValue(request.password, settings);
    const secrets = [request.password, password, auth.password];
    const values: TemplateValues = {
      name: request.username,
      username: request.username,
      password,
      expiration: formatExpiration(request.expiration),
    };
    // Render everything first, so bad templates fail before anything runs.
    const creation = renderFor('creation', request.creationStatements, values);
    if (creation.length === 0) throw new EngineInputError('creation_statements must not be empty');
    const customRollback = renderFor('rollback', request.rollbackStatements, values);

    const client = await connect(pool, secrets);
    let existedBefore = true;
    let failure: unknown;
    try {
      existedBefore = (await roleOid(client, request.username)) !== null;
      // A dynamic user is always new: a lease must never take over (and on
      // revocation drop) a role someone else owns, e.g. with a fixed
      // username_template.
      if (existedBefore) throw new EngineInputError(`a role named "${request.username}" already exists; the username_template must make unique names`);
      await inTransaction(client, creation, leadingRoleCreations(creation));
    } catch (err) {
      failure = err;
    } finally {
      release(settings, pool, client, failure !== undefined && !(failure instanceof EngineInputError));
    }
    if (failure === undefined) return;
    if (failure instanceof EngineInputError) throw failure;
    // Another creation of the same name won the race: the role is theirs.
    if (sqlState(failure) === '42710' && (await this.#roleExists(pool, request.username, secrets))) {
      throw new EngineInputError(`a role named "${request.username}" already exists; the username_template must make unique names`);
    }

    // The transaction is rolled back; the rollback statements are for what a
    // transaction can't undo. The default only touches a role we may have made.
    await this.#bestEffortRollback(pool, request.username, customRollback, existedBefore ? null : { owner: settings.revocationOwner }, secrets);
    // At a database limit (an object's ACL row is full): explained, and "nothing created" once that is checked.
    const limit = aclLimitError(failure, request.creationStatements, secrets);
    if (limit && !(await this.#roleExists(pool, request.username, secrets).catch(() => true))) throw limit;
    throw dbError('creating the user failed', failure, secrets);
  }

  async #roleExists(pool: pg.Pool, username: string, secrets: ReadonlyArray<string | undefined>): Promise<boolean> {
    const client = await connect(pool, secrets);
    try {
      return (await roleOid(client, username)) !== null;
    } finally {
      release(this.#ready().settings, pool, client, false);
    }
  }

  async #bestEffortRollback(
    pool: pg.Pool,
    username: string,
    custom: string[],
    /** Where the default rollback reassigns owned objects; null = don't touch a role that existed before. */
    defaultTo: { owner: string | null } | null,
    secrets: ReadonlyArray<string | undefined>,
  ): Promise<void> {
    if (custom.length === 0 && defaultTo === null) return;
    let client: pg.PoolClient;
    try {
      client = await connect(pool, secrets);
    } catch {
      return;
    }
    let broken = false;
    try {
      if (custom.length > 0) {
        for (const statement of custom) await exec(client, statement).catch(() => undefined);
      } else if (defaultTo) {
        await revokeRole(client, username, defaultRevocation(username, defaultTo.owner), true);
      }
    } catch {
      broken = true;
    } finally {
      release(this.#ready().settings, pool, client, broken);
    }
  }

  async updateUser(request: UpdateUserRequest): Promise<void> {
    const { pool, settings, auth } = this.#ready();
    checkUsername(request.username);
    if (!request.password && !request.expiration) return;
    const base: TemplateValues = { name: request.username, username: request.username };
    const statements: string[] = [];
    const secrets: Array<string | undefined> = [auth.password];
    if (request.expiration) {
      const templates = request.expiration.statements.length > 0 ? request.expiration.statements : DEFAULT_RENEW;
      statements.push(...renderFor('renew', templates, { ...base, expiration: formatExpiration(request.expiration.value) }));
    }
    if (request.password) {
      checkPassword(request.password.value);
      const password = this.#passwordValue(request.password.value, settings);
      secrets.push(request.password.value, password);
      const templates = request.password.statements.length > 0 ? request.password.statements : DEFAULT_ROTATION;
      statements.push(...renderFor('rotation', templates, { ...base, password }));
    }

    const client = await connect(pool, secrets);
    let failure: unknown;
    try {
      await inTransaction(client, statements);
    } catch (err) {
      failure = err;
    } finally {
      release(settings, pool, client, failure !== undefined);
    }
    if (failure !== undefined) throw dbError('updating the user failed', failure, secrets);
    // Root rotation: this pool's next connections must use the new password.
    if (request.password && request.username === settings.adminUser) auth.password = request.password.value;
  }

  async deleteUser(request: DeleteUserRequest): Promise<void> {
    const { pool, settings, auth } = this.#ready();
    checkUsername(request.username);
    const custom = request.statements.length > 0;
    const statements = custom
      ? renderFor('revocation', request.statements, { name: request.username, username: request.username })
      : defaultRevocation(request.username, settings.revocationOwner);
    const secrets = [auth.password];
    const client = await connect(pool, secrets);
    let failure: unknown;
    try {
      await revokeRole(client, request.username, statements, !custom);
    } catch (err) {
      failure = err;
    } finally {
      release(settings, pool, client, failure !== undefined);
    }
    if (failure instanceof SessionsOpenError) throw new Error(scrubSecrets(`deleting the user failed: ${failure.message}`, secrets));
    if (failure !== undefined) throw dbError('deleting the user failed', failure, secrets);
  }

  /** Warns when the admin cannot end the sessions of revoked users (see missingSignalGrant in revoke.ts). */
  async checkAdmin(): Promise<string[]> {
    const { pool, auth } = this.#ready();
    try {
      const client = await connect(pool, [auth.password]);
      try {
        const rights = await signalRights(client);
        const grant = missingSignalGrant(rights);
        if (grant === null) return [];
        return [
          `the admin "${rights.admin}" cannot end the open sessions of revoked users (it is not superuser, has no privileges of ` +
            `pg_signal_backend and cannot take membership of the users it creates): ${grant}. Until then, a revocation that finds ` +
            'a session open fails and is retried, the user kept NOLOGIN, until the session ends',
        ];
      } finally {
        client.release();
      }
    } catch (err) {
      return [`could not check whether the admin may end the sessions of revoked users: ${dbError('checking the admin', err, [auth.password]).message}`];
    }
  }

  async close(): Promise<void> {
    const state = this.#state;
    this.#state = undefined;
    if (state) await state.pool.end().catch(() => undefined);
  }
}
