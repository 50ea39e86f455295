// An example third-party engine: `example-users-plugin`. Its database is a
// SQLite file of accounts (see store.ts); it creates, updates and deletes
// accounts there for real, so tests can watch users come and go.
//
// A third-party engine cannot import dbroker's classes, so it declares its own
// errors: dbroker recognises them by `name` ('EngineInputError' → 400,
// 'EngineConnectionError' → 502). Only types are imported from dbroker; they
// vanish at run time.
//
// connection_url: absolute path of the store file. username/password: an
// admin account in it. creation_statements: `GRANT READ|WRITE ON <object>`,
// `;`-separated. Other statement kinds are not supported (must be empty).

import { isAbsolute } from 'node:path';
import type { ConnectionConfig, DeleteUserRequest, Engine, EngineFactory, NewUserRequest, StatementKind, UpdateUserRequest } from '../../../src/engine/engine.ts';
import { hashPassword, login, openStore, type Privilege, type UserStore } from './store.ts';

export const EXAMPLE_TYPE = 'example-users-plugin';

class EngineInputError extends Error {
  override name = 'EngineInputError';
}

class EngineConnectionError extends Error {
  override name = 'EngineConnectionError';
}

interface Grant {
  privilege: Privilege;
  object: string;
}

const GRANT = /^GRANT\s+(READ|WRITE)\s+ON\s+([A-Za-z_][A-Za-z0-9_]{0,62})$/i;

function parseGrants(statements: string[]): Grant[] {
  const grants: Grant[] = [];
  for (const text of statements.flatMap((s) => s.split(';'))) {
    const statement = text.trim();
    if (statement === '') continue;
    const m = GRANT.exec(statement);
    if (!m) throw new EngineInputError(`creation_statements: "${statement.slice(0, 80)}" is not "GRANT READ|WRITE ON <object>"`);
    grants.push({ privilege: m[1]!.toLowerCase() as Privilege, object: m[2]! });
  }
  return grants;
}

function validateStatements(kind: StatementKind, statements: string[]): void {
  if (kind === 'creation') parseGrants(statements);
  else if (statements.some((s) => s.trim() !== '')) throw new EngineInputError(`${kind}_statements: the example engine takes none; leave them empty`);
}

class ExampleEngine implements Engine {
  readonly type = EXAMPLE_TYPE;
  private db: UserStore | undefined;
  private admin = { name: '', password: '' };
  private verified = false;

  async initialize(config: ConnectionConfig, options: { verify: boolean }): Promise<void> {
    const unknown = Object.keys(config.options);
    if (unknown.length > 0) throw new EngineInputError(`unknown field "${unknown[0]}" for ${EXAMPLE_TYPE}`);
    const file = config.connectionUrl.replace(/^file:\/\//, '');
    if (!isAbsolute(file)) throw new EngineInputError('connection_url must be the absolute path of the users database file');
    if (!config.username) throw new EngineInputError('username (an admin account of the users database) is required');
    await this.close();
    try {
      this.db = openStore(file);
    } catch (err) {
      throw new EngineConnectionError(`cannot open the users database: ${(err as Error).message}`);
    }
    this.admin = { name: config.username, password: config.password };
    if (options.verify) this.connected();
  }

  /** The store, once the admin login has been checked (as a server checks a pool's first connection). */
  private connected(): UserStore {
    if (!this.db) throw new EngineConnectionError('not initialized');
    if (!this.verified) {
      if (!login(this.db, this.admin.name, this.admin.password, true)) throw new EngineConnectionError(`admin login refused for "${this.admin.name}"`);
      this.verified = true;
    }
    return this.db;
  }

  async newUser(request: NewUserRequest): Promise<void> {
    const grants = parseGrants(request.creationStatements);
    if (request.rollbackStatements.length > 0) validateStatements('rollback', request.rollbackStatements);
    const db = this.connected();
    const { salt, hash } = hashPassword(request.password);
    // One transaction: a failure half-way leaves no account behind.
    db.transaction(() => {
      if (db.prepare('SELECT 1 FROM accounts WHERE name = ?').get(request.username)) throw new Error(`account "${request.username}" already exists`);
      db.prepare('INSERT INTO accounts (name, salt, hash, valid_until) VALUES (?, ?, ?, ?)').run(request.username, salt, hash, request.expiration.getTime());
      const grant = db.prepare('INSERT OR IGNORE INTO grants (account, privilege, object) VALUES (?, ?, ?)');
      for (const g of grants) grant.run(request.username, g.privilege, g.object);
    })();
  }

  async updateUser(request: UpdateUserRequest): Promise<void> {
    if (request.password) validateStatements('rotation', request.password.statements);
    if (request.expiration) validateStatements('renew', request.expiration.statements);
    const db = this.connected();
    db.transaction(() => {
      if (!db.prepare('SELECT 1 FROM accounts WHERE name = ?').get(request.username)) throw new Error(`account "${request.username}" does not exist`);
      if (request.password) {
        const { salt, hash } = hashPassword(request.password.value);
        db.prepare('UPDATE accounts SET salt = ?, hash = ? WHERE name = ?').run(salt, hash, request.username);
      }
      if (request.expiration) db.prepare('UPDATE accounts SET valid_until = ? WHERE name = ?').run(request.expiration.value.getTime(), request.username);
    })();
  }

  async deleteUser(request: DeleteUserRequest): Promise<void> {
    validateStatements('revocation', request.statements);
    if (request.username === this.admin.name) throw new EngineInputError('refusing to delete the admin account of this connection');
    const db = this.connected();
    db.transaction(() => {
      db.prepare('DELETE FROM sessions WHERE account = ?').run(request.username);
      db.prepare('DELETE FROM grants WHERE account = ?').run(request.username);
      db.prepare('DELETE FROM accounts WHERE name = ?').run(request.username);
    })();
  }

  async close(): Promise<void> {
    this.db?.close();
    this.db = undefined;
    this.verified = false;
  }
}

const exampleEngine: EngineFactory = {
  type: EXAMPLE_TYPE,
  maxUsernameLength: 40,
  defaultRootRotationStatements: [],
  validateStatements,
  create: () => new ExampleEngine(),
};

export default exampleEngine;
