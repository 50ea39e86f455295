// The PostgreSQL engine: one bounded pg.Pool per engine instance.

import { randomBytes } from 'node:crypto';
import pg from 'pg';
import {
  EngineConnectionError,
  EngineInputError,
  StatementRefusedError,
  WriteAheadFailed,
  type ConnectionConfig,
  type StatementsToTry,
  type TryOutcome,
  type DeleteUserRequest,
  type DeleteUserResult,
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
  postgresDialect,
  renderFor,
} from './dialect.ts';
import { aclLimitError } from './acl-limit.ts';
import { createBatch, type BatchCreation } from './create-batch.ts';
import { SessionsOpenError, defaultRevocation, missingSignalGrant, revokeRole, signalRights } from './revoke.ts';
import { revokeBatch, type BatchRevocation, type RevocationOutcome } from './revoke-batch.ts';
import { scramVerifier } from './scram.ts';
import { connect, controlsTransaction, dbError, exec, inTransaction, roleOid, sqlState } from './sql.ts';
import { OUT_OF_TIME_REASON, statementsToTry, throwawayName, TRY_TIMEOUT_MS, tryRolledBack } from './try-role.ts';

export const POSTGRES_TYPE = 'postgresql-database-plugin';

interface State {
  pool: pg.Pool;
  settings: PostgresSettings;
  /** The admin password new connections use; updated when the admin's own password is rotated. */
  auth: { password: string | undefined };
}

/** One creation request, checked and rendered (newUser, newUsers). */
interface PreparedCreation extends BatchCreation {
  customRollback: string[];
  /** The role's creation statements as written (templates), for explaining a database limit. */
  templates: string[];
  /** The request's password, the value sent for it, and the admin password: scrubbed from errors. */
  secrets: Array<string | undefined>;
}

function alreadyExists(username: string): EngineInputError {
  return new EngineInputError(`a role named "${username}" already exists; the username_template must make unique names`);
}

/** The error a failed revocation reports (never with a secret). */
function revocationError(err: unknown, secrets: ReadonlyArray<string | undefined>): Error {
  if (err instanceof SessionsOpenError) return new Error(scrubSecrets(`deleting the user failed: ${err.message}`, secrets));
  return dbError('deleting the user failed', err, secrets);
}

/**
 * Give a client back to the pool, or close it (`broken`, or when the pool
 * already keeps max_idle_connections idle clients: pg-pool has no such cap).
 */
function release(settings: PostgresSettings, pool: pg.Pool, client: pg.PoolClient, broken: boolean): void {
  client.release(broken || pool.idleCount >= settings.maxIdle);
}

/**
 * Server-side bounds of every admin session (startup parameters, so no
 * statement pays for them; `lock_timeout` / `statement_timeout` in the
 * connection URL win): a statement waits at most 25 s for a lock and runs at
 * most 25 s (PG manual, "Client Connection Defaults"). The broker stops
 * waiting for an engine call after 30 s (connections.ts ENGINE_TIMEOUT_MS);
 * without these, a creation that waited on a lock (another session's open
 * transaction on the granted table) went on after the broker had answered and
 * could commit its user long after its lease was settled as failed.
 */
export const SERVER_TIMEOUTS = { lock_timeout: 25_000, statement_timeout: 25_000 } as const;

/**
 * Revoking the connection's own admin would make it NOLOGIN and then fail
 * ("current user cannot be dropped"), locking the broker out: refused first,
 * as the MySQL engine does. Throws EngineInputError.
 */
function refuseAdmin(username: string, adminUser: string | undefined): void {
  if (adminUser !== undefined && username === adminUser) throw new EngineInputError('refusing to delete the admin user of this connection');
}

export class PostgresEngine implements Engine {
  readonly type = POSTGRES_TYPE;
  /** COMMIT waits for the lease rows (inTransaction, createBatch), so their fsync overlaps CREATE ROLE. */
  readonly awaitsWriteAhead = true;
  /**
   * Drops give way to creations (Engine.dropsNearCreates), `alongside`: they
   * share no lock here (DROP OWNED takes the user-change lock, CREATE ROLE
   * and membership grants do not), but seven drop batches of 64 at once take
   * both cores from the password hashing of each CREATE ROLE. Measured with
   * bench/drain-contention.ts (PostgreSQL 15, 2,000 users, one client
   * creating, this 2-core machine, load 1.1-2.5, interleaved runs; drain ÷
   * raw serial DROP, creation p99 during ÷ unloaded): none 2.6-4.5x, 3.2-3.6x;
   * 64 / 1 1.5x, 1.6-2.4x; 32 / 1 1.45-2.6x, 1.0-1.8x; 32 / 1 alongside
   * 1.5-1.9x, 1.4-1.6x; 32 / 2 alongside 2.0-2.7x, 1.9-2.5x; 16 / 1 1.1-1.3x,
   * 1.4-2.9x. Through the broker (`npm run bench -- pg --only drain`, 5,000
   * leases): 32 / 1 alongside 1.06x, 1.68x; 64 / 1 1.17x, 1.81x; 32 / 2 1.01x,
   * 1.60x; without this (last session) 1.45x, 2.1-4.0x.
   */
  readonly dropsNearCreates = { batch: 32, slots: 1, alongside: true } as const;
  #state: State | undefined;

  async initialize(config: ConnectionConfig, options: { verify: boolean }): Promise<void> {
    const settings = parseConnectionConfig(config);
    const secrets = [config.password, settings.adminPassword];
    const auth = { password: settings.adminPassword };
    // Pipeline mode: statements sent together go in one round trip (sql.ts pipeline()); code that
    // awaits each query behaves as without it.
    const pool = new pg.Pool({ ...SERVER_TIMEOUTS, ...settings.pool, password: () => auth.password ?? '', pipeline: true });
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

  #passwordValue(password: string, settings: PostgresSettings): Promise<string> | string {
    return settings.passwordAuthentication === 'scram-sha-256' ? scramVerifier(password) : password;
  }

  /** Check a creation request and render its statements; throws EngineInputError before anything runs. */
  async #prepareCreation(request: NewUserRequest, settings: PostgresSettings, adminPassword: string | undefined): Promise<PreparedCreation> {
    checkUsername(request.username);
    checkPassword(request.password);
    const password = await this.#passwordValue(request.password, settings);
    const secrets = [request.password, password, adminPassword];
    const values: TemplateValues = {
      name: request.username,
      username: request.username,
      password,
      expiration: formatExpiration(request.expiration),
    };
    const creation = renderFor('creation', request.creationStatements, values);
    if (creation.length === 0) throw new EngineInputError('creation_statements must not be empty');
    return { username: request.username, statements: creation, writeAhead: request.writeAhead, customRollback: renderFor('rollback', request.rollbackStatements, values), templates: request.creationStatements, secrets };
  }

  /**
   * Engine.tryStatements: the lists in order on a throwaway user (a
   * dynamic role's creation first makes it; otherwise a CREATE ROLE of the
   * engine's own does), in one transaction that is rolled back (try-role.ts).
   */
  async tryStatements(what: StatementsToTry): Promise<TryOutcome> {
    const { pool, settings, auth } = this.#ready();
    const name = throwawayName();
    const plain = randomBytes(24).toString('base64url');
    const password = await this.#passwordValue(plain, settings);
    const values: TemplateValues = { name, username: name, password, expiration: formatExpiration(new Date(Date.now() + 3_600_000)) };
    const tried = what.lists.flatMap(({ kind, statements }) => statementsToTry(kind, statements, values));
    // Rotation statements alone (a static role) act on a user that must exist: a throwaway one, never the real user.
    if (!what.lists.some((l) => l.kind === 'creation' && l.statements.length > 0)) {
      tried.unshift({ kind: 'creation', template: '', text: `CREATE ROLE ${postgresDialect.quoteIdentifier(name)} LOGIN`, own: true });
    }
    if (controlsTransaction(tried.map((t) => t.text))) {
      return { tried: false, reason: 'a statement ends or starts the transaction itself, so trying them would keep what they made' };
    }
    const secrets = [plain, password, auth.password];
    const client = await connect(pool, secrets);
    let released = false;
    const letGo = (broken: boolean): void => {
      if (released) return;
      released = true;
      release(settings, pool, client, broken);
    };
    // A statement the timeouts do not stop (it waits for the client, say): the session is closed,
    // which ends the transaction on the server and everything it holds.
    const guard = setTimeout(() => letGo(true), TRY_TIMEOUT_MS + 1_000);
    try {
      return await tryRolledBack(client, tried, name, secrets);
    } catch (err) {
      if (released) return { tried: false, reason: OUT_OF_TIME_REASON };
      letGo(!(err instanceof StatementRefusedError));
      throw err;
    } finally {
      clearTimeout(guard);
      letGo(false);
    }
  }

  async newUser(request: NewUserRequest): Promise<void> {
    const { pool, settings, auth } = this.#ready();
    // Render everything first, so bad templates fail before anything runs.
    const { statements: creation, customRollback, secrets } = await this.#prepareCreation(request, settings, auth.password);

    const client = await connect(pool, secrets);
    let existedBefore = true;
    let failure: unknown;
    try {
      // A dynamic user is always new: a lease must never take over (and on
      // revocation drop) a role someone else owns, e.g. with a fixed
      // username_template. A generated name (uniqueName) cannot be taken: no
      // lookup (CREATE ROLE of a taken name still fails, 42710, below).
      existedBefore = request.uniqueName ? false : (await roleOid(client, request.username)) !== null;
      if (existedBefore) throw alreadyExists(request.username);
      await inTransaction(client, creation, request.writeAhead);
    } catch (err) {
      failure = err;
    } finally {
      release(settings, pool, client, failure !== undefined && !(failure instanceof EngineInputError || failure instanceof WriteAheadFailed));
    }
    if (failure === undefined) return;
    // Rolled back before COMMIT: nothing of the user exists.
    if (failure instanceof EngineInputError || failure instanceof WriteAheadFailed) throw failure;
    // Another creation of the same name won the race: the role is theirs.
    if (sqlState(failure) === '42710' && (await this.#roleExists(pool, request.username, secrets))) throw alreadyExists(request.username);

    // The transaction is rolled back; the rollback statements are for what a
    // transaction can't undo. The default only touches a role we may have made.
    await this.#bestEffortRollback(pool, request.username, customRollback, existedBefore ? null : { owner: settings.revocationOwner }, secrets);
    // At a database limit (an object's ACL row is full): explained, and "nothing created" once that is checked.
    const limit = aclLimitError(failure, request.creationStatements, secrets);
    if (limit && !(await this.#roleExists(pool, request.username, secrets).catch(() => true))) throw limit;
    throw dbError('creating the user failed', failure, secrets);
  }

  /**
   * The batch form of newUser (Engine.newUsers): see create-batch.ts. A name
   * that exists already, or twice in the batch, or that another creation
   * takes meanwhile (42710) is that request's EngineInputError; a user whose
   * statements fail gets the scrubbed database error after its rollback
   * statements (or the default cleanup) ran, best effort, as in newUser.
   * Throws EngineConnectionError (or the scrubbed error) when the batch
   * transaction as a whole failed.
   */
  async newUsers(requests: NewUserRequest[]): Promise<Array<Error | undefined>> {
    const { pool, settings, auth } = this.#ready();
    const outcomes: Array<Error | undefined> = requests.map(() => undefined);
    const prepared = await Promise.all(
      requests.map((request) => this.#prepareCreation(request, settings, auth.password).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))))),
    );
    const batch = new Map<PreparedCreation, number>();
    const names = new Set<string>();
    for (const [i, p] of prepared.entries()) {
      if (p instanceof Error) outcomes[i] = p;
      else if (names.has(p.username)) outcomes[i] = alreadyExists(p.username);
      else {
        names.add(p.username);
        batch.set(p, i);
      }
    }
    if (batch.size === 0) return outcomes;
    const secrets = [auth.password, ...[...batch.keys()].flatMap((p) => p.secrets)];

    const client = await connect(pool, secrets);
    let failed: Map<BatchCreation, unknown>;
    let broken = true;
    try {
      // A dynamic user is always new (see newUser); generated names (uniqueName) are not looked up.
      const unchecked = [...batch.entries()].filter(([, i]) => !requests[i]!.uniqueName).map(([p]) => p.username);
      const { rows } =
        unchecked.length === 0
          ? { rows: [] }
          : await exec<{ rolname: string }>(client, 'SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY($1::text[])', [unchecked]);
      for (const { rolname } of rows) {
        const p = [...batch.keys()].find((q) => q.username === rolname)!;
        outcomes[batch.get(p)!] = alreadyExists(rolname);
        batch.delete(p);
      }
      failed = await createBatch(client, [...batch.keys()]);
      broken = false;
    } catch (err) {
      if (err instanceof WriteAheadFailed) {
        broken = false;
        throw err;
      }
      throw dbError('creating the users failed', err, secrets);
    } finally {
      release(settings, pool, client, broken);
    }

    const raced = [...failed].filter(([, err]) => sqlState(err) === '42710').map(([p]) => p.username);
    const taken = raced.length > 0 ? await this.#existingRoles(pool, raced, secrets).catch(() => new Set<string>()) : new Set<string>();
    for (const [user, err] of failed) {
      const p = user as PreparedCreation;
      const i = batch.get(p)!;
      // Another creation of the same name won the race: the role is theirs.
      if (sqlState(err) === '42710' && taken.has(p.username)) {
        outcomes[i] = alreadyExists(p.username);
        continue;
      }
      await this.#bestEffortRollback(pool, p.username, p.customRollback, { owner: settings.revocationOwner }, p.secrets);
      // At a database limit (an object's ACL row is full): explained, and "nothing created" once that is checked (see newUser).
      const limit = aclLimitError(err, p.templates, p.secrets);
      if (limit && !(await this.#roleExists(pool, p.username, p.secrets).catch(() => true))) outcomes[i] = limit;
      else outcomes[i] = dbError('creating the user failed', err, p.secrets);
    }
    return outcomes;
  }

  async #existingRoles(pool: pg.Pool, names: string[], secrets: ReadonlyArray<string | undefined>): Promise<Set<string>> {
    const client = await connect(pool, secrets);
    try {
      const { rows } = await exec<{ rolname: string }>(client, 'SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY($1::text[])', [names]);
      return new Set(rows.map((r) => r.rolname));
    } finally {
      release(this.#ready().settings, pool, client, false);
    }
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
      const password = await this.#passwordValue(request.password.value, settings);
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
    refuseAdmin(request.username, settings.adminUser);
    const custom = request.statements.length > 0 ? renderFor('revocation', request.statements, { name: request.username, username: request.username }) : null;
    const secrets = [auth.password];
    const client = await connect(pool, secrets);
    let failure: unknown;
    try {
      // One user: revoke.ts, which leaves more time between NOLOGIN and its last look for sessions than a batch's pipeline.
      await revokeRole(client, request.username, custom ?? defaultRevocation(request.username, settings.revocationOwner), custom === null);
    } catch (err) {
      failure = err;
    } finally {
      release(settings, pool, client, failure !== undefined);
    }
    if (failure !== undefined) throw revocationError(failure, secrets);
  }

  /**
   * The batch form of deleteUser (Engine.deleteUsers): see revoke-batch.ts.
   * One outcome per request, in order: {} when the user is gone (committed)
   * or its custom statements committed, else the error (bad statements: an
   * EngineInputError; a session that stays open: the SessionsOpenError text).
   * When the batch loses its connection, the users not yet settled are
   * revoked one at a time with deleteUser; once the server cannot be reached
   * (EngineConnectionError), the rest get that error. Does not throw.
   */
  async deleteUsers(requests: DeleteUserRequest[]): Promise<Array<DeleteUserResult | Error>> {
    const { pool, settings, auth } = this.#ready();
    const secrets = [auth.password];
    const outcomes: Array<DeleteUserResult | Error | undefined> = requests.map(() => undefined);
    const batch = new Map<BatchRevocation, number>();
    for (const [i, request] of requests.entries()) {
      try {
        checkUsername(request.username);
        refuseAdmin(request.username, settings.adminUser);
        const statements =
          request.statements.length > 0 ? renderFor('revocation', request.statements, { name: request.username, username: request.username }) : null;
        batch.set({ username: request.username, statements }, i);
      } catch (err) {
        outcomes[i] = err instanceof Error ? err : new Error(String(err));
      }
    }

    const settled = new Map<BatchRevocation, RevocationOutcome>();
    // Set when the server cannot be reached: every user not settled gets it, rather than one more timeout each.
    let unreachable: Error | undefined;
    if (batch.size > 0) {
      let client: pg.PoolClient | undefined;
      try {
        client = await connect(pool, secrets);
      } catch (err) {
        unreachable = err instanceof Error ? err : new Error(String(err));
      }
      if (client) {
        let broken = false;
        try {
          await revokeBatch(client, [...batch.keys()], settings.revocationOwner, settled);
        } catch {
          // The batch lost its connection (or failed as a whole): the users not settled go one at a time below.
          broken = true;
        } finally {
          release(settings, pool, client, broken);
        }
      }
    }
    for (const [user, i] of batch) {
      const outcome = settled.get(user);
      if (outcome === 'done') outcomes[i] = {};
      else if (outcome !== undefined) outcomes[i] = revocationError(outcome.error, secrets);
      else if (unreachable) outcomes[i] = unreachable;
      else {
        outcomes[i] = await this.deleteUser(requests[i]!).then(
          () => ({}),
          (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
        );
        if (outcomes[i] instanceof EngineConnectionError) unreachable = outcomes[i];
      }
    }
    return outcomes as Array<DeleteUserResult | Error>;
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
