// The database secrets engine mounted at one path: connections, roles and
// creds, in Vault's API shape. Engine specifics stay behind the Engine
// interface; this file only knows the generic fields.

import type { Broker } from '../broker.ts';
import { errors } from '../errors.ts';
import type { RequestContext, Route } from '../http/route.ts';
import { duration, durationField, listField, statementsField, name, object, stringList } from '../http/schema.ts';
import { checkStatements, Connections, isConnectionFailure, type ConnectionRecord } from './connections.ts';
import { RootRotation } from './root-rotation.ts';
import { StaticRoles } from './static-roles.ts';
import { DEFAULT_USERNAME_TEMPLATE, renderUsername } from './username-template.ts';
import type { StatementKind } from '../engine/engine.ts';

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
    plugin_name: name,
    plugin_version: { type: 'string', maxLength: 64 },
    connection_url: { type: 'string', minLength: 1, maxLength: 4096 },
    username: { type: 'string', maxLength: 256 },
    password: { type: 'string', maxLength: 1024 },
    verify_connection: { type: 'boolean' },
    allowed_roles: stringList,
    root_rotation_statements: stringList,
    password_policy: { type: 'string', maxLength: 128 },
    max_open_connections: { type: 'integer', minimum: 1, maximum: 1000 },
    max_idle_connections: { type: 'integer', minimum: 0, maximum: 1000 },
    max_connection_lifetime: duration,
    username_template: { type: 'string', maxLength: 1024 },
    root_rotation_schedule: { type: 'string', maxLength: 128 },
    root_rotation_period: duration,
  },
  required: ['plugin_name'],
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
    credential_config: { type: 'object' },
  },
  ['db_name'],
);

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
      return { data: this.configView(rec) };
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
      connection_details: { connection_url: maskUrl(rec.connectionUrl), username: rec.username, max_open_connections: rec.maxOpenConnections, ...visibleOptions(rec.options) },
      allowed_roles: rec.allowedRoles,
      root_credentials_rotate_statements: rec.rootRotationStatements,
      password_policy: rec.passwordPolicy,
      verify_connection: rec.verifyConnection,
      username_template: rec.usernameTemplate,
      root_rotation_schedule: r.schedule ?? '',
      root_rotation_period: r.period ?? 0,
      last_root_rotation: r.lastRotation ? new Date(r.lastRotation).toISOString() : null,
      next_root_rotation: r.nextRotation ? new Date(r.nextRotation).toISOString() : null,
      last_root_rotation_error: r.lastError ?? null,
    };
  }

  private async writeConfig(connName: string, body: Record<string, unknown>) {
    const existing = await this.connections.read(connName);
    const options: Record<string, unknown> = { ...(existing?.options ?? {}) };
    for (const [k, v] of Object.entries(body)) if (!KNOWN_CONFIG_FIELDS.has(k)) options[k] = v;
    const pluginName = body.plugin_name as string;
    if (existing && existing.pluginName !== pluginName) throw errors.BAD_FIELD('plugin_name', `cannot change the plugin of an existing connection (it is "${existing.pluginName}")`);
    const factory = await this.broker.engines.get(pluginName);
    const connectionUrl = (body.connection_url as string | undefined) ?? existing?.connectionUrl;
    if (!connectionUrl) throw errors.BAD_REQUEST('missing required field "connection_url"');
    const rotationStatements = statementsField(body, 'root_rotation_statements') ?? existing?.rootRotationStatements ?? [];
    if (rotationStatements.length > 0) checkStatements(factory, 'root_rotation', 'root_rotation_statements', rotationStatements);
    const usernameTemplate = (body.username_template as string | undefined) ?? existing?.usernameTemplate ?? '';
    if (usernameTemplate) renderUsername(usernameTemplate, { DisplayName: 'token', RoleName: 'role' }, factory.maxUsernameLength);
    const rec: ConnectionRecord = {
      name: connName,
      pluginName,
      connectionUrl,
      username: (body.username as string | undefined) ?? existing?.username ?? '',
      password: (body.password as string | undefined) ?? existing?.password ?? '',
      verifyConnection: (body.verify_connection as boolean | undefined) ?? true,
      allowedRoles: listField(body, 'allowed_roles') ?? existing?.allowedRoles ?? [],
      rootRotationStatements: rotationStatements,
      passwordPolicy: (body.password_policy as string | undefined) ?? existing?.passwordPolicy ?? '',
      maxOpenConnections: (body.max_open_connections as number | undefined) ?? existing?.maxOpenConnections ?? 4,
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
    await this.connections.write(rec);
    await this.connections.replace(connName, engine, rec.password);
    this.rotation.schedule(rec);
    return undefined;
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
    if (role.maxTtl > this.broker.config.maxLeaseTtl) throw errors.BAD_FIELD('max_ttl', `must not exceed the system max_lease_ttl (${this.broker.config.maxLeaseTtl}s)`);
    const template = role.usernameTemplate || conn.usernameTemplate;
    if (template) renderUsername(template, { DisplayName: 'token', RoleName: roleName }, factory.maxUsernameLength);
    await this.broker.writeEntry(this.roleEntry(roleName), role);
    return undefined;
  }

  private async creds(ctx: RequestContext) {
    const roleName = ctx.params.name!;
    const role = NAME.test(roleName) ? await this.readRole(roleName) : undefined;
    if (!role) throw errors.ROLE_NOT_FOUND(roleName.slice(0, 128));
    const conn = await this.connections.mustRead(role.dbName);
    if (!conn.allowedRoles.includes('*') && !conn.allowedRoles.includes(roleName)) throw errors.ROLE_NOT_ALLOWED(roleName, conn.name);
    const factory = await this.connections.factory(conn);
    const template = role.usernameTemplate || conn.usernameTemplate || DEFAULT_USERNAME_TEMPLATE;
    const username = renderUsername(template, { DisplayName: ctx.token?.displayName ?? 'token', RoleName: roleName }, factory.maxUsernameLength);
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
