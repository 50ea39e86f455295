// The database secrets engine mounted at one path: connections, roles and
// creds, in Vault's API shape. Engine specifics stay behind the Engine
// interface; this file only knows the generic fields.

import type { Broker } from '../broker.ts';
import { errors, messageOf } from '../errors.ts';
import type { RequestContext, Route } from '../http/route.ts';
import { duration, durationField, listField, statementsField, name, object, stringList } from '../http/schema.ts';
import { checkCredentialConfig, credentialConfig } from './credential-config.ts';
import { checkDatabaseText, checkOptionText } from './database-text.ts';
import { roleAllowed } from './allowed-roles.ts';
import { checkStatements, Connections, isConnectionFailure, type ConnectionRecord } from './connections.ts';
import { RootRotation } from './root-rotation.ts';
import { StaticRoles } from './static-roles.ts';
import { checkUsernameTemplate, DEFAULT_USERNAME_TEMPLATE, generateUsername } from './username-template.ts';
import type { Engine, EngineFactory, PoolSetting, StatementKind } from '../engine/engine.ts';

export interface RoleRecord {
  name: string;
  dbName: string;
  creationStatements: string[];
  revocationStatements: string[];
  rollbackStatements: string[];
  renewStatements: string[];
  defaultTtl: number;
  maxTtl: number;
  usernameTemplate: string;
}

/** Config fields the broker itself understands; every other field goes to the engine as an option. */
/**
 * Vault 1.19's automated root rotation fields (Vault docs, "database secrets
 * engine API": rotation_period, rotation_schedule, rotation_window,
 * disable_automated_rotation). Clients such as Terraform send them at their
 * defaults, which are accepted; any other value is refused with a pointer to
 * dbroker's own fields, which do the same job (README "Scheduled root rotation").
 */
const AUTOMATED_ROTATION_FIELDS: Record<string, string> = {
  rotation_period: 'use root_rotation_period',
  rotation_schedule: 'use root_rotation_schedule (cron, UTC)',
  rotation_window: 'scheduled root rotations run at their time, with retries; there is no window',
  disable_automated_rotation: 'root rotation is automated only when root_rotation_period or root_rotation_schedule is set; leave them unset instead',
};

const KNOWN_CONFIG_FIELDS = new Set([
  'plugin_name',
  'plugin_version',
  'connection_url',
  'username',
  'password',
  'verify_connection',
  'allowed_roles',
  'root_rotation_statements',
  'password_policy',
  'max_open_connections',
  'max_idle_connections',
  'max_connection_lifetime',
  'username_template',
  'root_rotation_schedule',
  'root_rotation_period',
  ...Object.keys(AUTOMATED_ROTATION_FIELDS),
]);

const NAME = /^[A-Za-z0-9_.-]{1,128}$/;

function checkName(value: string, field = 'name'): string {
  if (!NAME.test(value)) throw errors.BAD_FIELD(field, 'may contain only letters, digits, "_", "." and "-" (1 to 128 characters)');
  if (/^\.+$/.test(value)) throw errors.BAD_FIELD(field, 'must not consist of dots only');
  return value;
}

// The password runs to the last "@" of the authority (a password may hold "@").
function maskUrl(url: string): string {
  return url.replace(/(:\/\/[^:/@?#]*:)([^/?#]*)@/, (_m, head: string, pw: string) => (/^\{\{\s*password\s*\}\}$/.test(pw) ? `${head}${pw}@` : `${head}*****@`));
}

/** Engine options that hold secrets (TLS keys, service account files): never shown by GET. */
const SECRET_OPTION = /password|private_key|secret|token|service_account_json|credential/i;

function visibleOptions(options: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(options).filter(([k]) => !SECRET_OPTION.test(k)));
}

const configSchema = {
  type: 'object',
  properties: {
    plugin_name: { ...name, description: 'Required to create a connection; an update without it keeps the stored one (Vault).' },
    plugin_version: { type: 'string', maxLength: 64 },
    connection_url: { type: 'string', minLength: 1, maxLength: 4096 },
    username: { type: 'string', maxLength: 256 },
    password: { type: 'string', maxLength: 1024 },
    verify_connection: { type: 'boolean' },
    allowed_roles: stringList,
    root_rotation_statements: stringList,
    password_policy: { type: 'string', maxLength: 128 },
    max_open_connections: { type: 'integer', minimum: 1, maximum: 1000 },
    // Vault's TypeInt: the CLI sends numbers as strings. Negative: keep none idle.
    max_idle_connections: { anyOf: [{ type: 'integer', minimum: -1000, maximum: 1000 }, { type: 'string', pattern: '^\\s*-?\\d{1,4}\\s*$' }] },
    max_connection_lifetime: duration,
    username_template: { type: 'string', maxLength: 1024 },
    root_rotation_schedule: { type: 'string', maxLength: 128 },
    root_rotation_period: duration,
  },
  // plugin_name is required on create only (writeConfig): an update keeps the stored one, as Vault does.
  additionalProperties: true,
  maxProperties: 64,
};

const roleSchema = object(
  {
    db_name: name,
    creation_statements: stringList,
    revocation_statements: stringList,
    rollback_statements: stringList,
    renew_statements: stringList,
    default_ttl: duration,
    max_ttl: duration,
    username_template: { type: 'string', maxLength: 1024 },
    credential_type: { type: 'string', enum: ['password'] },
    credential_config: credentialConfig,
  },
  ['db_name'],
);

/** The username_template a role's creds use: the role's, else the connection's, else the engine's default. */
function effectiveTemplate(role: RoleRecord, conn: ConnectionRecord, factory: EngineFactory): string {
  return role.usernameTemplate || conn.usernameTemplate || factory.defaultUsernameTemplate || DEFAULT_USERNAME_TEMPLATE;
}

/**
 * Vault connection parameters dbroker does not apply are refused by name
 * rather than stored and ignored (plugin_version, password_policy).
 */
function refuseUnapplied(body: Record<string, unknown>): void {
  for (const [field, instead] of Object.entries(AUTOMATED_ROTATION_FIELDS)) {
    const v = body[field];
    const isDefault = v === undefined || v === null || v === false || v === 0 || v === '' || v === '0' || v === '0s';
    if (!isDefault) throw errors.BAD_FIELD(field, `is not supported: ${instead}`);
  }
  if (typeof body.plugin_version === 'string' && body.plugin_version.trim() !== '') {
    throw errors.BAD_FIELD('plugin_version', 'is not supported: dbroker\'s engines are built in and have no versions (leave it empty)');
  }
  if (typeof body.password_policy === 'string' && body.password_policy.trim() !== '') {
    throw errors.BAD_FIELD(
      'password_policy',
      'is not supported: dbroker has no sys/policies/password endpoint, and every credential gets its built-in generator\'s password ' +
        '(24 characters: upper and lower case letters, digits and "-"); leave it empty',
    );
  }
}

/** A pool setting the engine does not apply may only be given with its default (0). */
function checkPoolSetting(factory: EngineFactory, field: PoolSetting, set: boolean): void {
  if (set && !(factory.poolSettings ?? []).includes(field)) {
    throw errors.BAD_FIELD(field, `is not applied by ${factory.type} (its driver's pool has no such setting); leave it unset or 0`);
  }
}

export class DatabaseBackend {
  readonly connections: Connections;
  readonly rotation: RootRotation;
  readonly staticRoles: StaticRoles;

  constructor(
    private readonly broker: Broker,
    readonly mount: string,
  ) {
    this.connections = new Connections(broker, mount);
    this.rotation = new RootRotation(broker, this);
    this.staticRoles = new StaticRoles(broker, this);
  }

  private roleEntry(roleName: string): string {
    return `mounts/${this.mount}roles/${roleName}`;
  }

  async readRole(roleName: string): Promise<RoleRecord | undefined> {
    return this.broker.readEntry<RoleRecord>(this.roleEntry(roleName));
  }

  async close(): Promise<void> {
    this.rotation.stop();
    this.staticRoles.stop();
    // A rotation under way finishes (or fails) before the keys go away, so it
    // never runs on against a sealed broker; the next unseal reconciles anyway.
    await Promise.all([this.connections.idle(), this.staticRoles.rotation.idle()]);
    await this.connections.close();
  }

  routes(): Route[] {
    return [
      { methods: ['LIST'], pattern: 'config', auth: 'token', handler: async (ctx) => this.listing(ctx.path, await this.connections.names()) },
      { methods: ['GET', 'PUT', 'DELETE'], pattern: 'config/:name', auth: 'token', schema: configSchema, handler: (ctx) => this.config(ctx) },
      {
        methods: ['PUT'],
        pattern: 'reset/:name',
        auth: 'token',
        handler: async (ctx) => {
          const rec = await this.connections.mustRead(ctx.params.name!);
          await this.connections.drop(rec.name);
          await this.connections.engine(rec.name);
          return undefined;
        },
      },
      {
        methods: ['PUT'],
        pattern: 'rotate-root/:name',
        auth: 'token',
        handler: async (ctx) => {
          await this.rotation.rotate(ctx.params.name!, 'manual');
          return undefined;
        },
      },
      { methods: ['LIST'], pattern: 'roles', auth: 'token', handler: async (ctx) => this.listing(ctx.path, await this.roleNames()) },
      { methods: ['GET', 'PUT', 'DELETE'], pattern: 'roles/:name', auth: 'token', schema: roleSchema, handler: (ctx) => this.role(ctx) },
      { methods: ['GET', 'PUT'], pattern: 'creds/:name', auth: 'token', getChangesState: true, handler: (ctx) => this.creds(ctx) },
      ...this.staticRoles.routes(),
    ];
  }

  private listing(path: string, keys: string[]) {
    if (keys.length === 0) throw errors.EMPTY_LIST(path);
    return { data: { keys } };
  }

  private async roleNames(): Promise<string[]> {
    const prefix = this.roleEntry('');
    return (await this.broker.storage.listEntries(prefix)).map((p) => p.slice(prefix.length));
  }

  private async config(ctx: RequestContext) {
    const connName = checkName(ctx.params.name!);
    if (ctx.method === 'GET') {
      const rec = await this.connections.read(connName);
      if (!rec) throw errors.ENTRY_NOT_FOUND(ctx.path);
      // Beyond Vault: the pool and the leases on this connection, for the people who run it (UI, CLI).
      const pool = { open: this.connections.isOpen(connName), in_use: this.connections.inUse(connName), max_open_connections: rec.maxOpenConnections };
      const activeLeases = await this.broker.storage.countLeases({ mount: this.mount, connection: connName });
      return { data: { ...this.configView(rec), pool_status: pool, lease_count: activeLeases } };
    }
    if (ctx.method === 'DELETE') {
      const active = await this.broker.storage.countLeases({ mount: this.mount, connection: connName });
      if (active > 0) throw errors.IN_USE('connection', connName, active, `${this.mount}creds/`);
      await this.connections.exclusive(connName, async () => {
        this.rotation.unschedule(connName);
        await this.connections.remove(connName);
      });
      return undefined;
    }
    // Serialised with root rotations, so neither overwrites the other's root password.
    return this.connections.exclusive(connName, () => this.writeConfig(connName, ctx.body));
  }

  configView(rec: ConnectionRecord): Record<string, unknown> {
    const r = rec.rotation ?? {};
    return {
      plugin_name: rec.pluginName,
      plugin_version: '',
      connection_details: {
        connection_url: maskUrl(rec.connectionUrl),
        username: rec.username,
        max_open_connections: rec.maxOpenConnections,
        max_idle_connections: rec.maxIdleConnections ?? 0,
        max_connection_lifetime: `${rec.maxConnectionLifetime ?? 0}s`,
        ...visibleOptions(rec.options),
      },
      allowed_roles: rec.allowedRoles,
      root_credentials_rotate_statements: rec.rootRotationStatements,
      // Never applied (refused at write since issue 8); a value stored before that is not claimed.
      password_policy: '',
      verify_connection: rec.verifyConnection,
      username_template: rec.usernameTemplate,
      root_rotation_schedule: r.schedule ?? '',
      root_rotation_period: r.period ?? 0,
      last_root_rotation: r.lastRotation ? new Date(r.lastRotation).toISOString() : null,
      next_root_rotation: r.nextRotation ? new Date(r.nextRotation).toISOString() : null,
      last_root_rotation_error: r.lastError ?? null,
    };
  }

  /**
   * Create or update connection `connName` from a PUT/POST body, as Vault's
   * config/:name does (builtin/logical/database/path_config_connection.go):
   * a create needs plugin_name (400 `missing required field "plugin_name"`)
   * and connection_url; an update keeps every stored field the body leaves
   * out (plugin_name, connection_url, username, the root password,
   * verify_connection, allowed_roles, root_rotation_statements, the pool
   * settings, username_template, the rotation schedule and engine-specific
   * fields). A different plugin_name switches the connection's engine (Vault
   * allows it) and answers a warning. The new settings are opened (and, with
   * verify_connection, logged in) before they are saved; a failed login is a
   * 400 on connection_url with secrets scrubbed. Answers undefined (204) or
   * `{ warnings }` (200).
   */
  private async writeConfig(connName: string, body: Record<string, unknown>) {
    const existing = await this.connections.read(connName);
    const options: Record<string, unknown> = { ...(existing?.options ?? {}) };
    for (const [k, v] of Object.entries(body)) if (!KNOWN_CONFIG_FIELDS.has(k)) options[k] = v;
    // Vault (builtin/logical/database/path_config_connection.go): plugin_name is
    // required to create a connection; an update without it keeps the stored
    // one, and an update with another one switches the connection to it.
    const sentPlugin = body.plugin_name as string | undefined;
    if (sentPlugin === undefined && !existing) throw errors.BAD_REQUEST('missing required field "plugin_name"');
    const pluginName = sentPlugin ?? existing!.pluginName;
    const factory = await this.broker.engines.get(pluginName);
    const connectionUrl = (body.connection_url as string | undefined) ?? existing?.connectionUrl;
    if (!connectionUrl) throw errors.BAD_REQUEST('missing required field "connection_url"');
    refuseUnapplied(body);
    for (const field of ['connection_url', 'username', 'password', 'username_template'] as const) {
      if (typeof body[field] === 'string') checkDatabaseText(field, body[field]);
    }
    for (const [k, v] of Object.entries(options)) checkOptionText(k, v);
    const rotationStatements = statementsField(body, 'root_rotation_statements') ?? existing?.rootRotationStatements ?? [];
    if (rotationStatements.length > 0) checkStatements(factory, 'root_rotation', 'root_rotation_statements', rotationStatements);
    const usernameTemplate = (body.username_template as string | undefined) ?? existing?.usernameTemplate ?? '';
    if (usernameTemplate) checkUsernameTemplate(usernameTemplate, factory.maxUsernameLength);
    const maxOpenConnections = (body.max_open_connections as number | undefined) ?? existing?.maxOpenConnections ?? 4;
    const maxIdleConnections = body.max_idle_connections !== undefined && body.max_idle_connections !== null ? Number(body.max_idle_connections) : (existing?.maxIdleConnections ?? 0);
    const maxConnectionLifetime = durationField(body, 'max_connection_lifetime') ?? existing?.maxConnectionLifetime ?? 0;
    checkPoolSetting(factory, 'max_idle_connections', maxIdleConnections !== 0);
    checkPoolSetting(factory, 'max_connection_lifetime', maxConnectionLifetime !== 0);
    const rec: ConnectionRecord = {
      name: connName,
      pluginName,
      connectionUrl,
      username: (body.username as string | undefined) ?? existing?.username ?? '',
      password: (body.password as string | undefined) ?? existing?.password ?? '',
      // Vault keeps the stored verify_connection on update; true on create.
      verifyConnection: (body.verify_connection as boolean | undefined) ?? existing?.verifyConnection ?? true,
      allowedRoles: listField(body, 'allowed_roles') ?? existing?.allowedRoles ?? [],
      rootRotationStatements: rotationStatements,
      passwordPolicy: '',
      maxOpenConnections,
      maxIdleConnections,
      maxConnectionLifetime,
      usernameTemplate,
      options,
      ...(existing?.pendingPassword ? { pendingPassword: existing.pendingPassword } : {}),
    };
    // A password given here replaces any unsettled rotation's pending one.
    if (body.password !== undefined) delete rec.pendingPassword;
    rec.rotation = this.rotation.planFor(existing?.rotation, body);
    // Open (and with verify_connection, prove) the new settings before saving them.
    const engine = await this.connections.open(rec, rec.password, rec.verifyConnection).catch((err: unknown) => {
      // A login that does not work is bad input, like Vault's "error verifying connection".
      if (isConnectionFailure(err)) throw errors.BAD_FIELD('connection_url', `${(err as Error).message} (check connection_url, username and password, or set verify_connection=false)`);
      throw err;
    });
    // What the admin lacks for the whole job (ending revoked users' sessions): a warning, as Vault answers them.
    const warnings = rec.verifyConnection ? await this.adminWarnings(connName, engine, rec.password) : [];
    if (existing && existing.pluginName !== pluginName) {
      const leases = await this.broker.storage.countLeases({ mount: this.mount, connection: connName });
      warnings.push(
        `plugin_name changed from "${existing.pluginName}" to "${pluginName}" (Vault allows this): the roles and static roles on this connection ` +
          `keep statements written for "${existing.pluginName}", the connection keeps its engine-specific fields, and its ${leases} active ` +
          `lease(s) will be revoked through "${pluginName}"`,
      );
    }
    await this.connections.write(rec);
    await this.connections.replace(connName, engine, rec.password);
    this.rotation.schedule(rec);
    if (warnings.length === 0) return undefined;
    this.broker.logger.warn({ mount: this.mount, connection: connName, warnings }, 'connection admin lacks privileges');
    return { warnings };
  }

  private async adminWarnings(connName: string, engine: Engine, password: string): Promise<string[]> {
    if (!engine.checkAdmin) return [];
    try {
      return await this.connections.bounded(connName, [password], engine.checkAdmin());
    } catch (err) {
      return [`could not check the admin's privileges: ${messageOf(err)}`];
    }
  }

  private async role(ctx: RequestContext) {
    const roleName = checkName(ctx.params.name!);
    if (ctx.method === 'GET') {
      const role = await this.readRole(roleName);
      if (!role) throw errors.ENTRY_NOT_FOUND(ctx.path);
      return {
        data: {
          db_name: role.dbName,
          creation_statements: role.creationStatements,
          revocation_statements: role.revocationStatements,
          rollback_statements: role.rollbackStatements,
          renew_statements: role.renewStatements,
          default_ttl: role.defaultTtl,
          max_ttl: role.maxTtl,
          username_template: role.usernameTemplate,
          credential_type: 'password',
        },
      };
    }
    if (ctx.method === 'DELETE') {
      const active = await this.broker.storage.countLeases({ mount: this.mount, role: roleName });
      if (active > 0) throw errors.IN_USE('role', roleName, active, `${this.mount}creds/${roleName}/`);
      await this.broker.storage.deleteEntry(this.roleEntry(roleName));
      return undefined;
    }
    const body = ctx.body;
    const existing = await this.readRole(roleName);
    const dbName = body.db_name as string;
    const conn = await this.connections.read(dbName);
    if (!conn) throw errors.BAD_FIELD('db_name', `no connection named "${dbName}" on this mount`);
    const factory = await this.connections.factory(conn);
    checkCredentialConfig(body.credential_config);
    if (typeof body.username_template === 'string') checkDatabaseText('username_template', body.username_template);
    const statements = (field: string, kind: StatementKind, previous: string[] | undefined): string[] => {
      const list = statementsField(body, field) ?? previous ?? [];
      if (list.length > 0 || kind === 'creation') checkStatements(factory, kind, field, list);
      return list;
    };
    const role: RoleRecord = {
      name: roleName,
      dbName,
      creationStatements: statements('creation_statements', 'creation', existing?.creationStatements),
      revocationStatements: statements('revocation_statements', 'revocation', existing?.revocationStatements),
      rollbackStatements: statements('rollback_statements', 'rollback', existing?.rollbackStatements),
      renewStatements: statements('renew_statements', 'renew', existing?.renewStatements),
      defaultTtl: durationField(body, 'default_ttl') ?? existing?.defaultTtl ?? 0,
      maxTtl: durationField(body, 'max_ttl') ?? existing?.maxTtl ?? 0,
      usernameTemplate: (body.username_template as string | undefined) ?? existing?.usernameTemplate ?? '',
    };
    if (role.creationStatements.length === 0) throw errors.BAD_FIELD('creation_statements', 'is required');
    if (role.maxTtl > 0 && role.defaultTtl > role.maxTtl) throw errors.BAD_FIELD('default_ttl', 'must not exceed max_ttl');
    // A TTL above the mount's max (its own, else the broker-wide one) could only be capped at issue time.
    const mountMax = this.broker.mounts.ttls(this.mount).maxTtl;
    if (role.maxTtl > mountMax) throw errors.BAD_FIELD('max_ttl', `must not exceed the mount's max_lease_ttl (${mountMax}s)`);
    if (role.defaultTtl > mountMax) throw errors.BAD_FIELD('default_ttl', `must not exceed the mount's max_lease_ttl (${mountMax}s)`);
    checkUsernameTemplate(effectiveTemplate(role, conn, factory), factory.maxUsernameLength, roleName);
    // Statements the database refuses are a 400 now, not a failure at every creds request.
    const untried = await this.connections.tryStatements(conn.name, {
      lists: [
        { kind: 'creation', statements: role.creationStatements },
        { kind: 'renew', statements: role.renewStatements },
        { kind: 'revocation', statements: role.revocationStatements },
      ],
    });
    // Valid statements that will hurt at scale (PostgreSQL's ACL row limit): saved, with Vault's warnings (200).
    const warnings = [...(factory.creationWarnings?.(role.creationStatements) ?? []), ...untried];
    // Vault checks allowed_roles only at creds time; saying so now saves a surprise then.
    if (!roleAllowed(conn.allowedRoles, roleName)) {
      warnings.push(`connection "${conn.name}" does not allow this role (allowed_roles): creds for it are refused until the role is added to the connection's allowed_roles`);
    }
    await this.broker.writeEntry(this.roleEntry(roleName), role);
    if (warnings.length === 0) return undefined;
    this.broker.logger.warn({ mount: this.mount, role: roleName, warnings }, 'role written with warnings');
    return { warnings };
  }

  private async creds(ctx: RequestContext) {
    const roleName = ctx.params.name!;
    const role = NAME.test(roleName) ? await this.readRole(roleName) : undefined;
    if (!role) throw errors.ROLE_NOT_FOUND(roleName.slice(0, 128));
    const conn = await this.connections.mustRead(role.dbName);
    if (!roleAllowed(conn.allowedRoles, roleName)) throw errors.ROLE_NOT_ALLOWED(roleName, conn.name);
    const factory = await this.connections.factory(conn);
    const template = effectiveTemplate(role, conn, factory);
    const username = generateUsername(template, { DisplayName: ctx.token?.displayName ?? 'token', RoleName: roleName }, factory.maxUsernameLength);
    const labels = { mount: this.mount, role: roleName, connection: conn.name };
    const lease = await this.broker.leases.issue({ mount: this.mount, role, connection: conn, username, token: ctx.token ?? null }).catch((err: unknown) => {
      this.broker.metrics.creds(labels, false);
      throw err;
    });
    this.broker.metrics.creds(labels, true);
    return {
      leaseId: lease.id,
      leaseDuration: lease.ttl,
      renewable: true,
      data: { username, password: lease.password },
      ...(lease.warnings.length > 0 ? { warnings: lease.warnings } : {}),
    };
  }
}
