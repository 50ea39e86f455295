// The MySQL/MariaDB engine: one bounded mysql2 pool, statements run as plain
// text queries (MariaDB refuses much DDL as prepared statements; values are
// escaped by rendering, and multipleStatements is off).

import { createPool, type Pool, type PoolOptions, type RowDataPacket } from 'mysql2/promise';
import {
  EngineConnectionError,
  EngineInputError,
  type ConnectionConfig,
  type DeleteUserRequest,
  type DeleteUserResult,
  type Engine,
  type NewUserRequest,
  type UpdateUserRequest,
} from '../../src/engine/engine.ts';
import type { TemplateValues } from '../sql-common/statements.ts';
import { parseConnectionUrl, parseOptions, poolOptions, type MysqlOptions } from './config.ts';
import { formatExpiration, mysqlDialect } from './dialect.ts';
import { renderMysql } from './guard.ts';
import { ER_NO_SUCH_THREAD, asMysqlError, engineError } from './errors.ts';

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

function account(user: string, host: string): string {
  return `${mysqlDialect.quoteLiteral(user)}@${mysqlDialect.quoteLiteral(host)}`;
}

export class MysqlEngine implements Engine {
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

  async newUser(request: NewUserRequest): Promise<void> {
    const values: TemplateValues = {
      name: request.username,
      username: request.username,
      password: request.password,
      expiration: formatExpiration(request.expiration),
    };
    requireName(request.username);
    if (NON_BMP.test(request.username)) {
      throw new EngineInputError('username: MySQL user names cannot contain 4-byte characters (e.g. emoji)');
    }
    const creation = renderMysql(request.creationStatements, values);
    if (creation.length === 0) throw new EngineInputError('creation_statements must not be empty');
    const rollback = renderMysql(request.rollbackStatements, values);
    const secrets = this.secrets(request.password);
    // A name that is taken belongs to someone else: refuse it (as input
    // error, so the broker keeps no lease that would later drop that user).
    const existing = await this.hostsOf(request.username, secrets);
    if (existing.length > 0) {
      throw new EngineInputError(`a user named "${request.username}" already exists; the username_template must make unique names`);
    }
    // DDL auto-commits in MySQL: no transaction, roll back by hand instead.
    for (const [i, sql] of creation.entries()) {
      try {
        await this.run(sql);
      } catch (err) {
        const error = engineError(err, `creation statement ${i + 1} failed`, secrets, sql);
        await this.rollback(request.username, rollback, existing);
        throw error;
      }
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
        const [rows] = await this.requirePool().query<RowDataPacket[]>('SELECT CURRENT_USER() AS who');
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
    const { username } = request;
    requireName(username);
    const custom = renderMysql(request.statements, { name: username, username });
    if (username === this.adminUser) throw new EngineInputError('refusing to delete the admin user of this connection');
    const secrets = this.secrets();
    const rights = await this.adminRights(secrets);
    const hosts = await this.hostsOf(username, secrets);
    if (hosts.length > 0) {
      // Stop new logins first (MariaDB >= 10.4, MySQL >= 5.7.6); where
      // unsupported or already gone this fails and the kill + drop still follow.
      for (const host of hosts) {
        await this.run(`ALTER USER ${account(username, host)} ACCOUNT LOCK`).catch(() => undefined);
      }
      // Throws, before the drop, while a session stays open: the lease is kept and retried.
      await this.killSessions(username, secrets, rights);
      if (custom.length > 0) await this.runRevocation(username, custom, secrets);
      else for (const host of hosts) await this.dropAccount(username, host, secrets);
    }
    // Also after a drop: a session that logged in while we worked, or one left
    // by an earlier attempt that dropped the user but failed to kill.
    await this.killSessions(username, secrets, rights);
    if (rights.seeSessions) return {};
    return {
      warnings: [
        `could not check for open sessions of "${username}": the admin ${rights.account} lacks PROCESS, so other users' sessions are ` +
          `invisible to it and a session opened before the revocation may still be open (GRANT PROCESS ON *.* TO ${rights.account})`,
      ],
    };
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
      const [rows] = await this.requirePool().query<RowDataPacket[]>(
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
    await this.requirePool().query(sql);
  }

  private secrets(...extra: string[]): string[] {
    return [this.adminPassword, ...extra];
  }

  private async hostsOf(username: string, secrets: string[]): Promise<string[]> {
    if (NON_BMP.test(username)) return [];
    try {
      const [rows] = await this.requirePool().query<RowDataPacket[]>(
        'SELECT User AS user, Host AS host FROM mysql.user WHERE User = ?',
        [username],
      );
      // `=` ignores trailing spaces (PAD SPACE collation): compare exactly here.
      return rows.filter((r) => String(r['user']) === username).map((r) => String(r['host']));
    } catch (err) {
      throw engineError(err, 'cannot look up the user in mysql.user', secrets);
    }
  }

  /**
   * End the user's sessions and check that none is left (killed threads can
   * linger a moment). Throws, naming the grant that is missing, while one
   * stays open. Without PROCESS the admin sees only its own sessions, so
   * this finds none (deleteUser warns about that).
   */
  private async killSessions(username: string, secrets: string[], rights?: AdminRights): Promise<void> {
    if (NON_BMP.test(username)) return;
    let refusal = '';
    for (let round = 0; round < 20; round++) {
      const ids = await this.sessionIds(username, secrets);
      if (ids.length === 0) return;
      if (round === 0 || refusal === '') {
        for (const id of ids) {
          try {
            await this.run(`KILL CONNECTION ${id}`);
          } catch (err) {
            if (asMysqlError(err).errno === ER_NO_SUCH_THREAD) continue; // ended meanwhile
            refusal ||= engineError(err, 'KILL refused', secrets).message;
          }
        }
      }
      if (refusal) break;
      await new Promise((r) => setTimeout(r, 150));
    }
    const left = (await this.sessionIds(username, secrets)).length;
    if (left === 0) return;
    const grant = rights && !rights.endSessions ? `; to end sessions the admin needs: GRANT ${rights.connectionAdmin} ON *.* TO ${rights.account}` : '';
    throw new Error(
      `${left} open session(s) of "${username}" could not be ended${refusal ? ` (${refusal})` : ''}; the account is locked and ` +
        `is dropped once they end (the revocation is retried)${grant || ' (the admin needs CONNECTION ADMIN / CONNECTION_ADMIN or SUPER)'}`,
    );
  }

  private async sessionIds(username: string, secrets: string[]): Promise<string[]> {
    try {
      const [rows] = await this.requirePool().query<RowDataPacket[]>(
        'SELECT ID AS id, USER AS user FROM information_schema.PROCESSLIST WHERE USER = ?',
        [username],
      );
      return rows.filter((r) => String(r['user']) === username).map((r) => String(r['id'])).filter((id) => /^\d+$/.test(id));
    } catch (err) {
      throw engineError(err, 'cannot list sessions', secrets);
    }
  }

  /** Best effort: the creation error is what the caller reports. */
  private async rollback(username: string, rollback: string[], existing: string[]): Promise<void> {
    try {
      if (rollback.length > 0) {
        for (const sql of rollback) await this.run(sql).catch(() => undefined);
        return;
      }
      const made = (await this.hostsOf(username, [])).filter((h) => !existing.includes(h));
      if (made.length === 0) return;
      if (existing.length === 0) await this.killSessions(username, []);
      for (const host of made) await this.dropAccount(username, host, []);
    } catch {
      // Nothing more to do; the lease's revocation will try again.
    }
  }
}
