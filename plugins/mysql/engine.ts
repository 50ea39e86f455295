// The MySQL/MariaDB engine: one bounded mysql2 pool, statements run as plain
// text queries (MariaDB refuses much DDL as prepared statements; values are
// escaped by rendering, and multipleStatements is off).
//
// multipleStatements stays off for batches too (issue 11): sending a user's
// statements in one round trip saved nothing measurable (the server's DDL
// work dominates: 126 vs 123 users/s raw), it would hide which statement
// failed, and it would turn an escaping flaw or a place where our splitter
// and MySQL's lexer disagree (`#` and `/*! */` comments) from one altered
// statement into statements appended at will. Batches save the per-user
// lookups and run several users at once on the pool instead.

import { createPool, type FieldPacket, type Pool, type PoolConnection, type PoolOptions, type QueryValues, type ResultSetHeader, type RowDataPacket } from 'mysql2/promise';
import { randomBytes } from 'node:crypto';
import {
  EngineConnectionError,
  EngineInputError,
  StatementRefusedError,
  type ConnectionConfig,
  type StatementsToTry,
  type TryOutcome,
  type DeleteUserRequest,
  type DeleteUserResult,
  type Engine,
  type NewUserRequest,
  type UpdateUserRequest,
} from '../../src/engine/engine.ts';
import { renderStatement, type TemplateValues } from '../sql-common/statements.ts';
import { parseConnectionUrl, parseOptions, poolOptions, type MysqlOptions } from './config.ts';
import { formatExpiration, mysqlDialect } from './dialect.ts';
import { checkMysql, renderMysql } from './guard.ts';
import { mergeShape, plainName, renderMerged } from './merge.ts';
import { ER_CANNOT_USER, ER_NO_SUCH_THREAD, asMysqlError, cleanMessage, engineError, isConnectionFailure } from './errors.ts';

/** ER_PARSE_ERROR: the server cannot parse the statement. */
const ER_PARSE_ERROR = 1064;

// Our session must read '...'/"..." as strings with backslash escapes, which
// is what the dialect escapes for, whatever the server's global sql_mode.
const SESSION_SQL_MODE = `SET SESSION sql_mode = TRIM(BOTH ',' FROM REPLACE(REPLACE(CONCAT(',', @@SESSION.sql_mode, ','), ',NO_BACKSLASH_ESCAPES,', ','), ',ANSI_QUOTES,', ','))`;

// mysql.user and the process list store names as utf8mb3: a name with a
// 4-byte character can neither exist nor be compared there.
const NON_BMP = /[\u{10000}-\u{10FFFF}]/u;

function requireName(username: string): void {
  // An empty name would match MySQL's anonymous accounts.
  if (typeof username !== 'string' || username === '') throw new EngineInputError('username must not be empty');
}

/** What the admin may do about other users' sessions. */
interface AdminRights {
  /** The admin account, quoted: 'user'@'host'. */
  account: string;
  /** PROCESS: other users' sessions are visible. */
  seeSessions: boolean;
  /** CONNECTION ADMIN / CONNECTION_ADMIN or SUPER: they can be killed. */
  endSessions: boolean;
  /** The privilege's name on this server. */
  connectionAdmin: string;
}

/** One user of a newUsers batch, rendered. */
interface CreationJob {
  /** Its request's index in the batch. */
  index: number;
  username: string;
  values: TemplateValues;
  /** The split, checked statement templates and their rendering. */
  templates: string[];
  creation: string[];
  rollback: string[];
  /** What its errors must not contain. */
  secrets: string[];
}

/** Run `fn` on every item, at most `limit` at a time. `fn` must not reject. */
async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

/** The error for a name that is taken (nothing was created for it). */
function taken(username: string): EngineInputError {
  return new EngineInputError(`a user named "${username}" already exists; the username_template must make unique names`);
}

function account(user: string, host: string): string {
  return `${mysqlDialect.quoteLiteral(user)}@${mysqlDialect.quoteLiteral(host)}`;
}

export class MysqlEngine implements Engine {
  /**
   * MySQL and MariaDB make account changes one at a time (every CREATE USER
   * and GRANT takes the server's privilege lock), so parallel calls only
   * queue there. Two calls at once keep the server busy while the next batch
   * forms; it then shares its statements (merge.ts). Measured on MariaDB
   * 10.11, 8 clients, this 2-core machine (in process, one loaded run): 1 /
   * 2 / 3 / 7 slots made batches of 4.0 / 2.5 / 1.9 / 1.0 users; with 2,
   * `npm run bench` issued 695 creds/s against 667/s for raw serial
   * CREATE USER + GRANT (1.04×; 7 slots without shared statements: 0.35×).
   */
  readonly createSlots = 2;
  /**
   * Drops give way to creations (Engine.dropsNearCreates; issue 11): every
   * DROP USER queues for the grant tables' locks (Aria, table-level, first
   * come first served) that CREATE USER and GRANT need too, and holds them
   * until its commit, so a creation waits behind the drop statement running
   * when it comes. A DROP USER of n accounts costs one statement's fixed part
   * plus a little per account (MariaDB 10.11 on this machine: 16 accounts in
   * one statement took 16 ms with 3,000 on the server; one per statement ran
   * at 117-197/s, 5-8.5 ms each, in the bench below), so the batch size
   * trades the drain's rate against that wait. `npm run bench -- mariadb --only drain`
   * (5,000 leases due at once, one client issuing creds meanwhile; one run
   * each, this 2-core machine; raw = the server dropping one user per
   * statement from one session, the same client issuing meanwhile):
   * batch 2 / 4 / 8 / 16 drained at 1.01 / 1.53 / 1.83 / 2.16x the raw rate,
   * with the client's p50 during the drain 16 / 18 / 25 / 37 ms (3.3-4.9
   * unloaded) and p99 2.4 / 2.7 / 3.5 / 4.8x unloaded, where the raw drop's
   * own made it 1.7-2.5x. Four accounts per statement keep a creation's wait
   * near what the server's own serial drop causes, at 1.5x its rate.
   */
  readonly dropsNearCreates = { batch: 4, slots: 1 } as const;
  /** Where accounts are stored: MariaDB 10.4+'s mysql.global_priv, else (found at the first lookup) mysql.user. */
  private accountTable: 'mysql.global_priv' | 'mysql.user' = 'mysql.global_priv';
  private pool: Pool | null = null;
  private baseOptions: PoolOptions | null = null;
  private options: MysqlOptions = { tlsSkipVerify: false };
  private adminUser = '';
  private adminPassword = '';
  /** max_connection_lifetime in ms (0: forever). mysql2 has no such option: connections past it are closed when released. */
  private maxLifetimeMs = 0;

  constructor(readonly type: string) {}

  async initialize(config: ConnectionConfig, options: { verify: boolean }): Promise<void> {
    const parsed = parseConnectionUrl(config);
    this.options = parseOptions(config.options ?? {});
    const base = poolOptions(parsed, this.options, config.maxOpenConnections, config.maxIdleConnections);
    this.maxLifetimeMs = config.maxConnectionLifetime !== undefined && config.maxConnectionLifetime > 0 ? config.maxConnectionLifetime * 1000 : 0;
    await this.close();
    this.baseOptions = base;
    this.adminUser = parsed.user;
    this.adminPassword = parsed.password;
    this.pool = this.openPool(parsed.password);
    if (options.verify) {
      try {
        await this.pool.query('SELECT 1');
      } catch (err) {
        await this.close();
        throw new EngineConnectionError(engineError(err, 'cannot connect to MySQL', this.secrets()).message);
      }
    }
  }

  /**
   * Engine.tryStatements: each statement is prepared (PREPARE … FROM, then
   * DEALLOCATE), never executed: account statements commit at once here, so
   * running them would keep a user. Only a parse error (1064) refuses a
   * statement: other errors of PREPARE may depend on what the statements
   * before it would have done, had they run (MariaDB checks SET DEFAULT ROLE
   * against the grants of the moment: "has not been granted role", 1959, for
   * the GRANT just before it, and the same errno for a role that does not
   * exist), so they are not held against it; a missing role, privilege or
   * table shows when the statements run.
   */
  async tryStatements(what: StatementsToTry): Promise<TryOutcome> {
    const name = `dbroker_try_${randomBytes(6).toString('hex')}`;
    const password = randomBytes(18).toString('base64url');
    const values: TemplateValues = { name, username: name, password, expiration: formatExpiration(new Date(Date.now() + 3_600_000)) };
    const tried = what.lists.flatMap(({ kind, statements }) => checkMysql(statements).map((template) => ({ kind, template, text: renderStatement(template, values, mysqlDialect) })));
    let conn: PoolConnection;
    try {
      conn = await this.requirePool().getConnection();
    } catch (err) {
      throw new EngineConnectionError(cleanMessage(asMysqlError(err).message, this.secrets()));
    }
    try {
      for (const statement of tried) {
        try {
          await conn.query('PREPARE dbroker_try FROM ?', [statement.text]);
          await conn.query('DEALLOCATE PREPARE dbroker_try');
        } catch (err) {
          const e = asMysqlError(err);
          if (isConnectionFailure(e)) throw new EngineConnectionError(cleanMessage(e.message, this.secrets()));
          if (e.errno !== ER_PARSE_ERROR) continue;
          const reason = cleanMessage(e.message, this.secrets()).split(password).join('{{password}}').split(name).join('{{name}}');
          throw new StatementRefusedError(statement.kind, `${statement.kind}_statements: the database refused ${JSON.stringify(statement.template)}: ${reason}`);
        }
      }
    } finally {
      conn.release();
    }
    return { tried: true };
  }

  async newUser(request: NewUserRequest): Promise<void> {
    const [outcome] = await this.newUsers([request]);
    if (outcome) throw outcome;
  }

  /**
   * Batch form of newUser (see Engine.newUsers). MySQL DDL commits
   * implicitly (no transaction, no savepoint), so a batch saves statements
   * and round trips instead. Users whose creation statements are the same
   * (one role) go statement by statement together: a statement of a shape
   * that takes many accounts (merge.ts) runs once for all of them, any other
   * once per user, a few users at once on the pool. When a shared statement
   * fails, each user runs it alone, so one bad user does not fail the others.
   * A user whose statement fails is rolled back alone (its rollback
   * statements, or the drop of what it made) and gets its own error. A taken
   * name is an EngineInputError: one lookup for the batch finds them before
   * anything runs (except for generated names, NewUserRequest.uniqueName: a
   * first statement CREATE USER that finds one taken still says so). Never
   * throws.
   */
  async newUsers(requests: NewUserRequest[]): Promise<Array<Error | undefined>> {
    const outcomes: Array<Error | undefined> = requests.map(() => undefined);
    const jobs: CreationJob[] = [];
    const names = new Set<string>();
    for (const [index, request] of requests.entries()) {
      try {
        const job = this.prepareCreation(request, index);
        if (names.has(job.username)) {
          throw new EngineInputError(`the user "${job.username}" is requested twice in one batch; the username_template must make unique names`);
        }
        names.add(job.username);
        jobs.push(job);
      } catch (err) {
        outcomes[index] = engineError(err, 'cannot render the creation statements', this.secrets(request.password));
      }
    }
    // A name taken at any host belongs to someone else: revocation drops
    // every host of a name, so even a CREATE USER that would only add a host
    // must be refused (as input error: the broker then keeps no lease). A
    // generated name (uniqueName) cannot be taken: no lookup for those.
    const unchecked = jobs.filter((job) => !requests[job.index]!.uniqueName);
    let todo = jobs;
    if (unchecked.length > 0) {
      let existing: Map<string, string[]>;
      try {
        existing = await this.hostsOfMany(
          unchecked.map((j) => j.username),
          this.secrets(),
        );
      } catch (err) {
        // Nothing was created: each of them failed, nothing to roll back.
        for (const job of unchecked) outcomes[job.index] = err as Error;
        existing = new Map(unchecked.map((j) => [j.username, []]));
      }
      todo = jobs.filter((job) => {
        if (!existing.has(job.username)) return true;
        outcomes[job.index] ??= taken(job.username);
        return false;
      });
    }
    const groups = new Map<string, CreationJob[]>();
    for (const job of todo) {
      const key = job.templates.join('\0');
      const group = groups.get(key);
      if (group) group.push(job);
      else groups.set(key, [job]);
    }
    await Promise.all([...groups.values()].map((group) => this.createGroup(group, outcomes)));
    return outcomes;
  }

  /** Render and check one request's statements. Throws EngineInputError. */
  private prepareCreation(request: NewUserRequest, index: number): CreationJob {
    requireName(request.username);
    if (NON_BMP.test(request.username)) {
      throw new EngineInputError('username: MySQL user names cannot contain 4-byte characters (e.g. emoji)');
    }
    const values: TemplateValues = {
      name: request.username,
      username: request.username,
      password: request.password,
      expiration: formatExpiration(request.expiration),
    };
    const templates = checkMysql(request.creationStatements);
    if (templates.length === 0) throw new EngineInputError('creation_statements must not be empty');
    const creation = templates.map((t) => renderStatement(t, values, mysqlDialect));
    const rollback = renderMysql(request.rollbackStatements, values);
    return { index, username: request.username, values, templates, creation, rollback, secrets: this.secrets(request.password) };
  }

  /**
   * Create the users of `group` (same statement templates), writing each
   * one's error into `outcomes` at its index. Never rejects.
   */
  private async createGroup(group: CreationJob[], outcomes: Array<Error | undefined>): Promise<void> {
    let alive = group;
    const mergeable = group.length > 1 && group.every((j) => plainName(j.username));
    for (let i = 0; i < group[0]!.templates.length && alive.length > 0; i++) {
      const shape = mergeShape(group[0]!.templates[i]!);
      // Only a first statement's CREATE USER tells a taken name from a made one.
      const ownCreate = i === 0 && shape?.kind === 'create';
      let alone = alive;
      if (mergeable && shape && alive.length > 1) {
        const secrets = this.secrets(...alive.map((j) => j.values.password ?? ''));
        try {
          await this.run(renderMerged(shape, alive.map((j) => j.values)));
          continue;
        } catch (err) {
          if (ownCreate) {
            // MariaDB creates the accounts it can and names those it could not
            // (MySQL 8 creates none): find out which of them now exist.
            alone = await this.afterFailedCreate(alive, err, secrets, outcomes);
            alive = alive.filter((j) => outcomes[j.index] === undefined);
          }
        }
      }
      await forEachLimited(alone, this.parallelism(), async (job) => {
        const error = await this.runCreation(job, i, ownCreate);
        if (error) outcomes[job.index] = error;
      });
      alive = alive.filter((j) => outcomes[j.index] === undefined);
    }
  }

  /**
   * After a shared CREATE USER failed: users the server named as taken get
   * an input error (nothing of theirs was made); of the others, those that
   * exist now were made by that statement and go on, and the returned ones
   * (which do not exist) must run it alone. When the lookup fails, every
   * user not named gets that error (unknown: its lease revokes what exists).
   */
  private async afterFailedCreate(jobs: CreationJob[], err: unknown, secrets: string[], outcomes: Array<Error | undefined>): Promise<CreationJob[]> {
    const e = asMysqlError(err);
    const rest = jobs.filter((job) => {
      if (e.errno !== ER_CANNOT_USER || !e.message.includes(`'${job.username}'@`)) return true;
      outcomes[job.index] = taken(job.username);
      return false;
    });
    let existing: Map<string, string[]>;
    try {
      existing = await this.hostsOfMany(
        rest.map((j) => j.username),
        secrets,
      );
    } catch (lookupError) {
      for (const job of rest) outcomes[job.index] = engineError(lookupError, 'creation statement 1 failed for a batch of users, then', secrets);
      return [];
    }
    return rest.filter((job) => !existing.has(job.username));
  }

  /**
   * Run creation statement `i` of one user; on failure roll the user back,
   * except when `ownCreate` (statement 1 is a single-account CREATE USER: a
   * failed one made nothing, and the name may be someone else's). Resolves
   * to the error.
   */
  private async runCreation(job: CreationJob, i: number, ownCreate: boolean): Promise<Error | undefined> {
    const sql = job.creation[i]!;
    try {
      await this.run(sql);
      return undefined;
    } catch (err) {
      if (ownCreate && asMysqlError(err).errno === ER_CANNOT_USER) return taken(job.username);
      const error = engineError(err, `creation statement ${i + 1} failed`, job.secrets, sql);
      if (!ownCreate) await this.rollback(job.username, job.rollback);
      return error;
    }
  }

  async updateUser(request: UpdateUserRequest): Promise<void> {
    requireName(request.username);
    if (request.password) {
      const { value, statements } = request.password;
      const secrets = this.secrets(value);
      const values: TemplateValues = { name: request.username, username: request.username, password: value };
      const rendered = statements.length > 0 ? renderMysql(statements, values) : [];
      if (rendered.length === 0) {
        const host = await this.passwordHost(request.username, secrets);
        rendered.push(`ALTER USER ${account(request.username, host)} IDENTIFIED BY ${mysqlDialect.quoteLiteral(value)}`);
      }
      for (const [i, sql] of rendered.entries()) {
        try {
          await this.run(sql);
        } catch (err) {
          throw engineError(err, `password statement ${i + 1} failed`, secrets, sql);
        }
      }
      if (request.username === this.adminUser) await this.reopenWithPassword(value);
    }
    if (request.expiration && request.expiration.statements.length > 0) {
      // MySQL has no per-account expiry time (no VALID UNTIL): renew
      // statements run only when a role sets them.
      const values: TemplateValues = {
        name: request.username,
        username: request.username,
        expiration: formatExpiration(request.expiration.value),
      };
      for (const [i, sql] of renderMysql(request.expiration.statements, values).entries()) {
        try {
          await this.run(sql);
        } catch (err) {
          throw engineError(err, `renew statement ${i + 1} failed`, this.secrets(), sql);
        }
      }
    }
  }

  /**
   * The one account (`user`@`host`) whose password a default password change
   * sets; a name may exist at several hosts, each its own account with its
   * own password, and the others are never touched.
   *  - The admin (root rotation): the account this connection is logged in
   *    as (CURRENT_USER()), so the new password is the one the broker's next
   *    login uses; `root_host`, when set, must name that account's host.
   *    Vault always uses '%' here, the same account in its usual setup.
   *  - Any other user (static roles): '%', as in Vault; when the name has no
   *    '%' account but exactly one other, that one. Several without '%' is
   *    ambiguous: an error asks for rotation_statements naming the account.
   */
  private async passwordHost(username: string, secrets: string[]): Promise<string> {
    if (username === this.adminUser) {
      let current: string;
      try {
        const [rows] = await this.query<RowDataPacket[]>('SELECT CURRENT_USER() AS who');
        current = String(rows[0]?.['who'] ?? '');
      } catch (err) {
        throw engineError(err, 'cannot find the account the admin is logged in as', secrets);
      }
      const at = current.lastIndexOf('@');
      const host = current.slice(at + 1);
      if (at > 0 && current.slice(0, at) === username) {
        // Another account of the admin would get a password the broker never logs in with.
        if (this.options.rootHost !== undefined && this.options.rootHost !== host) {
          throw new EngineInputError(
            `root_host is '${this.options.rootHost}' but this connection logs in as '${username}'@'${host}': ` +
              'rotating another account would leave it with a password nobody knows (set root_host to that host or leave it unset)',
          );
        }
        return host;
      }
      throw new Error(`the admin is logged in as "${current}", not as an account of "${username}": set root_host on the connection to name the account to rotate`);
    }
    const hosts = await this.hostsOf(username, secrets);
    if (hosts.length === 0) throw new Error(`cannot set password: MySQL user "${username}" does not exist`);
    if (hosts.includes('%')) return '%';
    if (hosts.length === 1) return hosts[0]!;
    throw new EngineInputError(
      `MySQL user "${username}" exists at several hosts (${hosts.join(', ')}) and none is '%': ` +
        `set rotation_statements naming the account, e.g. ALTER USER '{{name}}'@'${hosts[0]}' IDENTIFIED BY '{{password}}'`,
    );
  }

  async deleteUser(request: DeleteUserRequest): Promise<DeleteUserResult> {
    const [outcome] = await this.deleteUsers([request]);
    if (outcome instanceof Error) throw outcome;
    return outcome!;
  }

  /**
   * Batch form of deleteUser (see Engine.deleteUsers), same steps with one
   * query or statement for the whole batch where MySQL allows it: look up
   * the accounts and their open sessions; lock the accounts with sessions
   * (no new logins) and end those sessions; drop them all; check for
   * sessions again (and end any). A user whose sessions stay open gets
   * its error before its drop (kept locked) and holds back nobody else. The
   * default revocation drops every account in one `DROP USER a, b` (it
   * removes their privileges too: MySQL 8.0 manual 15.7.1.5, MariaDB DROP
   * USER page); when it fails (MySQL 8 drops none then, MariaDB the others)
   * each user is revoked and dropped alone. Custom revocation statements run
   * per user. Never throws.
   */
  async deleteUsers(requests: DeleteUserRequest[]): Promise<Array<DeleteUserResult | Error>> {
    const outcomes: Array<DeleteUserResult | Error | undefined> = requests.map(() => undefined);
    const jobs: Array<{ index: number; username: string; custom: string[] }> = [];
    for (const [index, { username, statements }] of requests.entries()) {
      try {
        requireName(username);
        const custom = renderMysql(statements, { name: username, username });
        if (username === this.adminUser) throw new EngineInputError('refusing to delete the admin user of this connection');
        jobs.push({ index, username, custom });
      } catch (err) {
        outcomes[index] = engineError(err, 'cannot render the revocation statements', this.secrets());
      }
    }
    const secrets = this.secrets();
    const fail = (names: Iterable<string>, err: Error): void => {
      const failed = new Set(names);
      for (const job of jobs) if (outcomes[job.index] === undefined && failed.has(job.username)) outcomes[job.index] = err;
    };
    const live = (): string[] => [...new Set(jobs.filter((j) => outcomes[j.index] === undefined).map((j) => j.username))];
    let rights: AdminRights | undefined;
    let hosts = new Map<string, string[]>();
    // Open sessions, looked up with the rest (undefined: unknown, when the lookup failed).
    let open: Map<string, string[]> | undefined;
    try {
      if (jobs.length > 0) {
        [rights, hosts, open] = await Promise.all([
          this.adminRights(secrets),
          this.hostsOfMany(live(), secrets),
          this.sessionsOfMany(live(), secrets).catch(() => undefined),
        ]);
      }
    } catch (err) {
      fail(live(), err as Error); // nothing was done
    }
    if (rights && hosts.size > 0) {
      // Accounts with a session open (or whose sessions this admin cannot
      // see) are locked before their sessions are ended, so none logs in
      // again meanwhile. The others are dropped at once: every ALTER USER,
      // like every DROP USER, queues for the grant tables' locks, which
      // creations need too (issue 11), and a session that logs in before
      // the drop is ended by the check after it, as one left by an earlier
      // attempt is.
      const unseen = (user: string): boolean => !rights!.seeSessions || open === undefined || open.has(user) || NON_BMP.test(user);
      const locking = [...hosts.keys()].filter(unseen);
      const accounts = locking.flatMap((user) => hosts.get(user)!.map((host) => account(user, host)));
      if (accounts.length > 0) {
        // Stop new logins first (MariaDB >= 10.4, MySQL >= 5.7.6); where
        // unsupported or already gone this fails and the kill + drop still follow.
        await this.run(`ALTER USER IF EXISTS ${accounts.join(', ')} ACCOUNT LOCK`).catch(async () => {
          if (accounts.length > 1) for (const who of accounts) await this.run(`ALTER USER ${who} ACCOUNT LOCK`).catch(() => undefined);
        });
        // Errors, before the drop, for users whose sessions stay open: their leases are kept and retried.
        for (const [user, err] of await this.killSessionsMany(locking, secrets, rights)) fail([user], err);
      }
      const drop = new Map<string, string[]>();
      const custom: Array<{ index: number; username: string; statements: string[] }> = [];
      for (const job of jobs) {
        if (outcomes[job.index] !== undefined || !hosts.has(job.username)) continue;
        if (job.custom.length > 0) custom.push({ index: job.index, username: job.username, statements: job.custom });
        else drop.set(job.username, hosts.get(job.username)!);
      }
      await Promise.all([
        this.dropAll(drop, secrets).then((errors) => {
          for (const [user, err] of errors) fail([user], err);
        }),
        forEachLimited(custom, this.parallelism(), async ({ index, username, statements }) => {
          try {
            await this.runRevocation(username, statements, secrets);
          } catch (err) {
            if (outcomes[index] === undefined) outcomes[index] = err as Error;
          }
        }),
      ]);
    }
    if (rights) {
      // Also after a drop: a session that logged in while we worked, or one left
      // by an earlier attempt that dropped the user but failed to kill.
      for (const [user, err] of await this.killSessionsMany(live(), secrets, rights)) fail([user], err);
    }
    // Every request without an outcome yet got past adminRights: rights is set.
    return outcomes.map((outcome, index) => {
      if (outcome !== undefined) return outcome;
      if (rights!.seeSessions) return {};
      const who = requests[index]!.username;
      return {
        warnings: [
          `could not check for open sessions of "${who}": the admin ${rights!.account} lacks PROCESS, so other users' sessions are ` +
            `invisible to it and a session opened before the revocation may still be open (GRANT PROCESS ON *.* TO ${rights!.account})`,
        ],
      };
    });
  }

  /**
   * Drop the accounts of `users` (name -> hosts): one DROP USER for all of
   * them, and when that fails, each user alone (dropAccount). Returns the
   * users that could not be dropped, with their error.
   */
  private async dropAll(users: Map<string, string[]>, secrets: string[]): Promise<Map<string, Error>> {
    const errors = new Map<string, Error>();
    if (users.size === 0) return errors;
    // Without IF EXISTS: an account this statement does not drop (gone
    // meanwhile, or a role of that name, which DROP USER IF EXISTS skips with
    // a note) fails it, so its success means every account is gone.
    const accounts = [...users].flatMap(([user, at]) => at.map((host) => account(user, host)));
    try {
      await this.run(`DROP USER ${accounts.join(', ')}`);
      return errors;
    } catch {
      // One at a time below (idempotent, tells a race from a refusal), so each user gets its own outcome.
    }
    await forEachLimited([...users], this.parallelism(), async ([user, at]) => {
      try {
        for (const host of at) await this.dropAccount(user, host, secrets);
      } catch (err) {
        errors.set(user, err as Error);
      }
    });
    return errors;
  }

  /** Warns when the admin cannot see or end other users' sessions (see adminRights). */
  async checkAdmin(): Promise<string[]> {
    let rights: AdminRights;
    try {
      rights = await this.adminRights(this.secrets());
    } catch (err) {
      return [`could not check the admin's privileges: ${(err as Error).message}`];
    }
    const warnings: string[] = [];
    if (!rights.seeSessions) {
      warnings.push(
        `the admin ${rights.account} lacks PROCESS, so it cannot see other users' sessions: revocations cannot check that a revoked ` +
          `user's sessions ended (each revocation says so in a warning). GRANT PROCESS ON *.* TO ${rights.account}`,
      );
    }
    if (!rights.endSessions) {
      warnings.push(
        `the admin ${rights.account} lacks ${rights.connectionAdmin} (or SUPER), so it cannot end other users' sessions: a revocation ` +
          `that finds one open fails and is retried, the account locked, until the session ends. GRANT ${rights.connectionAdmin} ON *.* TO ${rights.account}`,
      );
    }
    return warnings;
  }

  /**
   * Which of the privileges the admin has that sessions need (MariaDB KILL
   * and SHOW PROCESSLIST pages; MySQL 8 manual 6.2.2): PROCESS to see other
   * users' sessions, CONNECTION ADMIN (MySQL 8: CONNECTION_ADMIN) or SUPER
   * to end them. Read from information_schema.USER_PRIVILEGES for the
   * account logged in (privileges held only through roles are not seen).
   */
  private async adminRights(secrets: string[]): Promise<AdminRights> {
    try {
      const [rows] = await this.query<RowDataPacket[]>(
        `SELECT p.PRIVILEGE_TYPE AS privilege, c.who, c.version FROM (SELECT CURRENT_USER() AS who, VERSION() AS version) c
           LEFT JOIN information_schema.USER_PRIVILEGES p ON p.GRANTEE = CONCAT(
             QUOTE(LEFT(c.who, CHAR_LENGTH(c.who) - CHAR_LENGTH(SUBSTRING_INDEX(c.who, '@', -1)) - 1)), '@',
             QUOTE(SUBSTRING_INDEX(c.who, '@', -1)))`,
      );
      const who = String(rows[0]?.['who'] ?? '');
      const at = who.lastIndexOf('@');
      const privileges = new Set(rows.map((r) => String(r['privilege'] ?? '')));
      const mariadb = /mariadb/i.test(String(rows[0]?.['version'] ?? ''));
      return {
        account: account(who.slice(0, at), who.slice(at + 1)),
        seeSessions: privileges.has('PROCESS'),
        endSessions: privileges.has('SUPER') || privileges.has('CONNECTION ADMIN') || privileges.has('CONNECTION_ADMIN'),
        connectionAdmin: mariadb ? 'CONNECTION ADMIN' : 'CONNECTION_ADMIN',
      };
    } catch (err) {
      throw engineError(err, "cannot read the admin's privileges", secrets);
    }
  }

  private async runRevocation(username: string, statements: string[], secrets: string[]): Promise<void> {
    for (const [i, sql] of statements.entries()) {
      try {
        await this.run(sql);
      } catch (err) {
        // Dropped concurrently (another revocation won the race): done.
        if ((await this.hostsOf(username, secrets)).length === 0) return;
        throw engineError(err, `revocation statement ${i + 1} failed`, secrets, sql);
      }
    }
  }

  private async dropAccount(username: string, host: string, secrets: string[]): Promise<void> {
    const who = account(username, host);
    try {
      await this.run(`REVOKE ALL PRIVILEGES, GRANT OPTION FROM ${who}`);
    } catch (err) {
      // Already dropped by a concurrent revocation: nothing left to do here.
      if (!(await this.hostsOf(username, secrets)).includes(host)) return;
      throw engineError(err, `cannot revoke the privileges of ${who}`, secrets);
    }
    try {
      await this.run(`DROP USER IF EXISTS ${who}`);
    } catch (err) {
      throw engineError(err, `cannot drop ${who}`, secrets);
    }
  }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    if (pool) await pool.end().catch(() => undefined);
  }

  private openPool(password: string): Pool {
    if (!this.baseOptions) throw new Error('MySQL engine is not initialized');
    const pool = createPool({ ...this.baseOptions, password });
    const born = new WeakMap<object, number>();
    const lifetime = this.maxLifetimeMs;
    pool.pool.on('connection', (conn) => {
      born.set(conn, Date.now());
      // mysql2 listens for 'error' on a pooled connection only once (to drop
      // it from the pool); a later one, e.g. a write after the server closed
      // it, would have no listener and crash the process.
      conn.on('error', () => undefined);
      conn.query(SESSION_SQL_MODE, () => undefined);
    });
    if (lifetime > 0) {
      // Back in the free list and older than max_connection_lifetime: close it
      // (destroy also takes it out of the pool); the next use opens a new one.
      pool.pool.on('release', (conn) => {
        if (Date.now() - (born.get(conn) ?? 0) >= lifetime) conn.destroy();
      });
    }
    return pool;
  }

  /** After the admin's own password changed, new connections need the new one. */
  private async reopenWithPassword(password: string): Promise<void> {
    const old = this.pool;
    this.adminPassword = password;
    this.pool = this.openPool(password);
    // end() lets queries already queued on its connections finish.
    if (old) await old.end().catch(() => undefined);
  }

  private requirePool(): Pool {
    if (!this.pool) throw new Error('MySQL engine is not initialized (or closed)');
    return this.pool;
  }

  private async run(sql: string): Promise<void> {
    await this.query(sql);
  }

  /**
   * pool.query, with the two ways it fails told apart: no session (the
   * server is down, or refused the admin's login: 1044 and 1049 then mean a
   * default database it may not use) is an EngineConnectionError; an error
   * of the statement itself (the same 1044 for a GRANT the admin may not
   * give) is the server's error, so the caller reports the statement.
   */
  private async query<T extends RowDataPacket[] | ResultSetHeader = ResultSetHeader>(sql: string, values?: QueryValues): Promise<[T, FieldPacket[]]> {
    const pool = this.requirePool();
    let conn: PoolConnection;
    try {
      conn = await pool.getConnection();
    } catch (err) {
      throw new EngineConnectionError(asMysqlError(err).message);
    }
    try {
      return await conn.query<T>(sql, values);
    } finally {
      conn.release();
    }
  }

  private secrets(...extra: string[]): string[] {
    return [this.adminPassword, ...extra];
  }

  private async hostsOf(username: string, secrets: string[]): Promise<string[]> {
    return (await this.hostsOfMany([username], secrets)).get(username) ?? [];
  }

  /**
   * The hosts each of `users` exists at (exact names), in one query; users
   * that do not exist are absent. Roles count (MariaDB keeps them with the
   * accounts, host ''). Found by primary key, (Host, User), for each host in
   * use (few; found by a loose index scan), so the cost does not grow with
   * the number of accounts on the server: `User IN (...)` alone scans them
   * all (about 6 ms at 12,000 accounts on MariaDB 10.11, whose mysql.user is
   * a view decoding every row of mysql.global_priv).
   */
  private async hostsOfMany(users: string[], secrets: string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    const names = users.filter((u) => !NON_BMP.test(u));
    if (names.length === 0) return out;
    const lookup = (table: string): string =>
      `SELECT g.User AS user, g.Host AS host FROM (SELECT DISTINCT Host FROM ${table}) h ` +
      `JOIN (${names.map(() => 'SELECT ? AS u').join(' UNION ALL ')}) n JOIN ${table} g ON g.Host = h.Host AND g.User = n.u`;
    let rows: RowDataPacket[];
    try {
      try {
        [rows] = await this.query<RowDataPacket[]>(lookup(this.accountTable), names);
      } catch (err) {
        // MySQL and MariaDB before 10.4 have no mysql.global_priv (1146), or the admin may not read it (1142).
        const errno = asMysqlError(err).errno;
        if (this.accountTable !== 'mysql.global_priv' || (errno !== 1146 && errno !== 1142)) throw err;
        this.accountTable = 'mysql.user';
        [rows] = await this.query<RowDataPacket[]>(lookup(this.accountTable), names);
      }
    } catch (err) {
      throw engineError(err, 'cannot look up the user in mysql.user', secrets);
    }
    const wanted = new Set(names);
    for (const row of rows) {
      // `IN` ignores trailing spaces (PAD SPACE collation): compare exactly here.
      const user = String(row['user']);
      if (!wanted.has(user)) continue;
      const hosts = out.get(user) ?? [];
      hosts.push(String(row['host']));
      out.set(user, hosts);
    }
    return out;
  }

  /** How many users a batch works on at once: the pool's size. */
  private parallelism(): number {
    return this.baseOptions?.connectionLimit ?? 1;
  }

  /**
   * End the sessions of `users` and check that none is left (killed threads
   * can linger a moment). Returns, per user whose session stays open, an
   * error naming the grant that is missing; a failed session listing is the
   * error of every user still checked. Without PROCESS the admin sees only
   * its own sessions, so this finds none (deleteUsers warns about that).
   */
  private async killSessionsMany(users: string[], secrets: string[], rights?: AdminRights): Promise<Map<string, Error>> {
    const errors = new Map<string, Error>();
    const refusals = new Map<string, string>();
    let pending = users.filter((u) => !NON_BMP.test(u));
    try {
      for (let round = 0; round < 20 && pending.length > 0; round++) {
        const sessions = await this.sessionsOfMany(pending, secrets);
        pending = [...sessions.keys()];
        for (const [user, ids] of sessions) {
          for (const id of ids) {
            try {
              await this.run(`KILL CONNECTION ${id}`);
            } catch (err) {
              if (asMysqlError(err).errno === ER_NO_SUCH_THREAD) continue; // ended meanwhile
              refusals.set(user, engineError(err, 'KILL refused', secrets).message);
              break;
            }
          }
        }
        // A refused KILL is not retried: report it.
        pending = pending.filter((u) => !refusals.has(u));
        if (pending.length > 0) await new Promise((r) => setTimeout(r, 150));
      }
      const check = [...refusals.keys(), ...pending];
      if (check.length === 0) return errors;
      const left = await this.sessionsOfMany(check, secrets);
      for (const [user, ids] of left) {
        const refusal = refusals.get(user) ?? '';
        const grant = rights && !rights.endSessions ? `; to end sessions the admin needs: GRANT ${rights.connectionAdmin} ON *.* TO ${rights.account}` : '';
        errors.set(user, new Error(
          `${ids.length} open session(s) of "${user}" could not be ended${refusal ? ` (${refusal})` : ''}; the account is locked and ` +
            `is dropped once they end (the revocation is retried)${grant || ' (the admin needs CONNECTION ADMIN / CONNECTION_ADMIN or SUPER)'}`,
        ));
      }
    } catch (err) {
      for (const user of [...refusals.keys(), ...pending]) errors.set(user, err as Error);
    }
    return errors;
  }

  /** Open sessions of `users` (exact names), by user; users without any are absent. */
  private async sessionsOfMany(users: string[], secrets: string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    const names = users.filter((u) => !NON_BMP.test(u));
    if (names.length === 0) return out;
    let rows: RowDataPacket[];
    try {
      [rows] = await this.query<RowDataPacket[]>(
        'SELECT ID AS id, USER AS user FROM information_schema.PROCESSLIST WHERE USER IN (?)',
        [names],
      );
    } catch (err) {
      throw engineError(err, 'cannot list sessions', secrets);
    }
    const wanted = new Set(names);
    for (const row of rows) {
      // `IN` ignores trailing spaces (PAD SPACE collation): compare exactly here.
      const user = String(row['user']);
      const id = String(row['id']);
      if (!wanted.has(user) || !/^\d+$/.test(id)) continue;
      const ids = out.get(user) ?? [];
      ids.push(id);
      out.set(user, ids);
    }
    return out;
  }

  /** Best effort: the creation error is what the caller reports. The name did not exist before. */
  private async rollback(username: string, rollback: string[]): Promise<void> {
    try {
      if (rollback.length > 0) {
        for (const sql of rollback) await this.run(sql).catch(() => undefined);
        return;
      }
      const made = await this.hostsOf(username, []);
      if (made.length === 0) return;
      // A session that stays open keeps the user; the lease's revocation deals with it.
      if ((await this.killSessionsMany([username], [])).size > 0) return;
      for (const host of made) await this.dropAccount(username, host, []);
    } catch {
      // Nothing more to do; the lease's revocation will try again.
    }
  }
}
