// The MongoDB engine: one MongoClient (one bounded pool) per engine instance;
// users are made with createUser, changed with updateUser, removed with
// dropUser. Commands are documents: every value is a BSON string, never text
// that a server parses, so names cannot inject anything.

import { MongoClient, MongoNetworkError, type Document } from 'mongodb';
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
import { parseMongoConfig, type MongoSettings } from './config.ts';
import { CODE, engineError, isUnsupported, serverCode } from './errors.ts';
import { DEFAULT_DB, creationFrom, dropTargetsFrom, passwordDbFrom, type RoleRef } from './statements.ts';

export const MONGODB_TYPE = 'mongodb-database-plugin';

const UNSUPPORTED_KILL = 'this server cannot end the sessions of revoked users (it has no killAllSessionsByPattern command, e.g. FerretDB)';

/** The privilege killAllSessionsByPattern with a users pattern needs (MongoDB manual, killAllSessionsByPattern, Access Control). */
function missingKillPrivilege(admin: string): string {
  return (
    `the admin needs the killAnySession action on the cluster resource, e.g. db.getSiblingDB("admin").createRole({role: "dbrokerKillSessions", ` +
    `privileges: [{resource: {cluster: true}, actions: ["killAnySession"]}], roles: []}) and grantRolesToUser(${JSON.stringify(admin)}, ["dbrokerKillSessions"])`
  );
}

interface State {
  client: MongoClient;
  settings: MongoSettings;
  config: ConnectionConfig;
  /** Who the pool logs in as (for root rotation and to refuse dropping it). */
  admin: { username: string; db: string } | undefined;
  /** The admin password in use, to scrub from messages. */
  secrets: string[];
}

function checkUsername(username: unknown): asserts username is string {
  if (typeof username !== 'string' || username === '') throw new EngineInputError('username must not be empty');
  if (username.includes('\0')) throw new EngineInputError('username contains a NUL character');
}

function checkPassword(password: unknown): asserts password is string {
  if (typeof password !== 'string' || password === '') throw new EngineInputError('password must not be empty');
  if (password.includes('\0')) throw new EngineInputError('password contains a NUL character');
}

/** FerretDB 1.x answers roles in createUser with NotImplemented. */
function rolesUnsupported(err: unknown): boolean {
  return serverCode(err) === CODE.NOT_IMPLEMENTED && err instanceof Error && /roles/i.test(err.message);
}

function openClient(config: ConnectionConfig): { client: MongoClient; settings: MongoSettings } {
  const settings = parseMongoConfig(config);
  try {
    return { client: new MongoClient(settings.url, settings.clientOptions), settings };
  } catch (err) {
    throw engineError(err, 'connection_url is not a valid MongoDB connection string', settings.secrets);
  }
}

export class MongoEngine implements Engine {
  readonly type = MONGODB_TYPE;
  #state: State | undefined;

  async initialize(config: ConnectionConfig, options: { verify: boolean }): Promise<void> {
    const { client, settings } = openClient(config);
    const credentials = client.options.credentials;
    const secrets = [...settings.secrets, ...(credentials?.password ? [credentials.password] : [])];
    if (options.verify) {
      try {
        // The driver authenticates every new connection, so this proves the login.
        await client.db(DEFAULT_DB).command({ ping: 1 });
      } catch (err) {
        await client.close().catch(() => undefined);
        const mapped = engineError(err, 'verifying the connection failed', secrets);
        throw mapped instanceof EngineInputError ? mapped : new EngineConnectionError(mapped.message);
      }
    }
    const old = this.#state;
    this.#state = {
      client,
      settings,
      config,
      admin: credentials?.username ? { username: credentials.username, db: credentials.source || DEFAULT_DB } : undefined,
      secrets,
    };
    if (old) await old.client.close().catch(() => undefined);
  }

  #ready(): State {
    if (!this.#state) throw new EngineConnectionError('the MongoDB engine is not initialized');
    return this.#state;
  }

  async #command(db: string, command: Document): Promise<Document> {
    return this.#ready().client.db(db).command(command);
  }

  /** The write concern, for commands that take one. */
  #withWriteConcern(command: Document): Document {
    const wc = this.#ready().settings.writeConcern;
    return wc ? { ...command, writeConcern: wc } : command;
  }

  async newUser(request: NewUserRequest): Promise<void> {
    const state = this.#ready();
    checkUsername(request.username);
    checkPassword(request.password);
    // Parse everything first, so bad statements fail before anything runs.
    const creation = creationFrom(request.creationStatements);
    const rollbackDbs = dropTargetsFrom('rollback', request.rollbackStatements);
    const secrets = [...state.secrets, request.password];
    const create = (roles: RoleRef[]): Promise<Document> =>
      this.#command(creation.db, this.#withWriteConcern({ createUser: request.username, pwd: request.password, roles }));
    try {
      try {
        await create(creation.roles);
      } catch (err) {
        if (!(state.settings.skipUnsupportedRoles && rolesUnsupported(err))) throw err;
        // FerretDB 1.x: no roles, no authorization (see skip_unsupported_roles in config.ts).
        await create([]);
      }
    } catch (err) {
      const code = serverCode(err);
      if (code === CODE.USER_ALREADY_EXISTS || code === CODE.DUPLICATE_KEY) {
        // Never take over (and later drop) a user this lease did not make.
        throw new EngineInputError(`a user named "${request.username}" already exists in database "${creation.db}"; the username_template must make unique names`);
      }
      if (rolesUnsupported(err)) {
        throw new EngineInputError(
          'this server does not support roles in createUser (FerretDB 1.x, which does not enforce roles either); ' +
            'set skip_unsupported_roles=true on the connection to create users without roles anyway',
        );
      }
      // createUser is one atomic command: a server error means nothing was
      // made (a write concern error aside, which the lease's revocation
      // cleans up). Only a lost answer (network) leaves it unknown; then run
      // the rollback statements, and the lease's revocation drops it too.
      if (err instanceof MongoNetworkError && rollbackDbs.length > 0) {
        for (const db of rollbackDbs) await this.#dropIn(db, request.username, secrets).catch(() => undefined);
      }
      const mapped = engineError(err, `createUser in "${creation.db}" failed`, secrets);
      // A connection lost mid-command may have left the user made: report a
      // plain failure, not a connection error, so the broker does not retry
      // the creation (which would then find the user "already exists").
      if (err instanceof MongoNetworkError) throw new Error(mapped.message);
      throw mapped;
    }
  }

  async updateUser(request: UpdateUserRequest): Promise<void> {
    const state = this.#ready();
    checkUsername(request.username);
    // request.expiration: MongoDB has no in-database expiry, so renewal has
    // nothing to do here (renew statements are refused when a role is written).
    if (!request.password) return;
    checkPassword(request.password.value);
    const explicitDb = passwordDbFrom('rotation', request.password.statements);
    const isAdminName = state.admin?.username === request.username;
    // Default: the admin login's own database (its authSource) for the
    // admin, otherwise admin.
    const db = explicitDb ?? (isAdminName ? state.admin!.db : DEFAULT_DB);
    const secrets = [...state.secrets, request.password.value];
    try {
      await this.#command(db, this.#withWriteConcern({ updateUser: request.username, pwd: request.password.value }));
    } catch (err) {
      if (serverCode(err) === CODE.USER_NOT_FOUND) throw new Error(`cannot set the password: MongoDB user "${request.username}" does not exist in database "${db}"`);
      throw engineError(err, `updateUser in "${db}" failed`, secrets);
    }
    if (isAdminName && state.admin!.db === db) await this.#reopenWithPassword(request.password.value);
  }

  /** After the admin's own password changed, new connections need the new one. */
  async #reopenWithPassword(password: string): Promise<void> {
    const old = this.#ready();
    await this.initialize({ ...old.config, password }, { verify: false });
  }

  async deleteUser(request: DeleteUserRequest): Promise<DeleteUserResult> {
    const state = this.#ready();
    checkUsername(request.username);
    const custom = dropTargetsFrom('revocation', request.statements);
    const secrets = state.secrets;
    const dbs = custom.length > 0 ? custom : [DEFAULT_DB];
    if (state.admin && state.admin.username === request.username && dbs.includes(state.admin.db)) {
      throw new EngineInputError('refusing to delete the admin user of this connection');
    }
    const warnings = new Set<string>();
    let dropped = false;
    for (const db of dbs) dropped = (await this.#dropIn(db, request.username, secrets, warnings)) || dropped;
    if (custom.length > 0 || dropped) return warnings.size > 0 ? { warnings: [...warnings] } : {};

    // Default revocation. The broker passes only the username and the role's
    // revocation statements, not the creation statement, so without
    // revocation statements we cannot know which database the user was made
    // in. It is usually admin; if the user is not there, look for it in every
    // database rather than leave it behind with a working password.
    const found = (await this.#databasesWithUser(request.username, secrets)).filter((db) => !(state.admin && state.admin.username === request.username && state.admin.db === db));
    if (found.length > 1) {
      throw new Error(
        `MongoDB user "${request.username}" exists in several databases (${found.join(', ')}); ` +
          'set revocation_statements such as {"db": "<database>"} on the role to say which one to drop',
      );
    }
    for (const db of found) await this.#dropIn(db, request.username, secrets, warnings);
    return warnings.size > 0 ? { warnings: [...warnings] } : {};
  }

  /**
   * Warns when the admin cannot end the sessions of revoked users: a
   * killAllSessionsByPattern for a user that does not exist ends nothing and
   * answers whether the server has the command and the admin may run it.
   */
  async checkAdmin(): Promise<string[]> {
    const state = this.#ready();
    try {
      await this.#command(DEFAULT_DB, { killAllSessionsByPattern: [{ users: [{ user: `dbroker-probe-${Date.now()}`, db: DEFAULT_DB }] }] });
      return [];
    } catch (err) {
      if (isUnsupported(err)) return [UNSUPPORTED_KILL];
      if (serverCode(err) === CODE.UNAUTHORIZED) return [`the admin cannot end the sessions of revoked users: ${missingKillPrivilege(state.admin?.username ?? '<admin>')}`];
      return [`could not check whether the admin may end the sessions of revoked users: ${engineError(err, 'killAllSessionsByPattern', state.secrets).message}`];
    }
  }

  /**
   * End the user's sessions, then drop it; false when it did not exist
   * there. A server without killAllSessionsByPattern (FerretDB) adds a
   * warning: whether a session of the user stays open cannot be known.
   */
  async #dropIn(db: string, username: string, secrets: ReadonlyArray<string | undefined>, warnings?: Set<string>): Promise<boolean> {
    try {
      // Sessions (and their operations and cursors) first; any failure
      // other than a missing command (e.g. no killAnySession privilege)
      // stops the revocation, before the drop, and it is retried.
      await this.#command(DEFAULT_DB, { killAllSessionsByPattern: [{ users: [{ user: username, db }] }] });
    } catch (err) {
      if (isUnsupported(err)) {
        warnings?.add(`${UNSUPPORTED_KILL}; an open session of "${username}" may outlive its revocation`);
      } else {
        const mapped = engineError(err, `ending the sessions of "${username}" failed`, secrets);
        if (serverCode(err) !== CODE.UNAUTHORIZED) throw mapped;
        throw new Error(`${mapped.message}; ${missingKillPrivilege(this.#ready().admin?.username ?? '<admin>')} (the user is kept and the revocation retried)`);
      }
    }
    try {
      await this.#command(db, this.#withWriteConcern({ dropUser: username }));
      return true;
    } catch (err) {
      if (serverCode(err) === CODE.USER_NOT_FOUND) return false;
      throw engineError(err, `dropUser in "${db}" failed`, secrets);
    }
  }

  /** The databases that hold a user named `username`. */
  async #databasesWithUser(username: string, secrets: ReadonlyArray<string | undefined>): Promise<string[]> {
    type UserDoc = { user?: unknown; db?: unknown };
    let users: UserDoc[];
    try {
      const reply = await this.#command(DEFAULT_DB, { usersInfo: { forAllDBs: true }, filter: { user: username } });
      users = (reply.users ?? []) as UserDoc[];
    } catch (err) {
      if (!isUnsupported(err)) throw engineError(err, 'looking the user up failed', secrets);
      // FerretDB has no `filter` for usersInfo: list them all and filter here.
      try {
        const reply = await this.#command(DEFAULT_DB, { usersInfo: { forAllDBs: true } });
        users = (reply.users ?? []) as UserDoc[];
      } catch (again) {
        throw engineError(again, 'looking the user up failed', secrets);
      }
    }
    const dbs = users.filter((u) => u.user === username && typeof u.db === 'string').map((u) => u.db as string);
    return [...new Set(dbs)];
  }

  async close(): Promise<void> {
    const state = this.#state;
    this.#state = undefined;
    if (state) await state.client.close().catch(() => undefined);
  }
}
