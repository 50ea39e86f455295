// Static roles of one mount, in Vault's API shape: `static-roles/:name`
// (settings), `static-creds/:name` (the current credential) and
// `rotate-role/:name`. A static role manages the password of database users
// that already exist; see static-role-rotation.ts for how rotations work.

import type { Broker } from '../broker.ts';
import { errors } from '../errors.ts';
import type { RequestContext, Route } from '../http/route.ts';
import { duration, durationField, statementsField, name, object, stringList } from '../http/schema.ts';
import { generatePassword } from '../util/random.ts';
import { roleAllowed } from './allowed-roles.ts';
import { checkCredentialConfig, credentialConfig } from './credential-config.ts';
import { checkDatabaseText } from './database-text.ts';
import { checkStatements } from './connections.ts';
import type { DatabaseBackend } from './database-backend.ts';
import { checkCron, checkPeriod, nextRotationAt } from './rotation-schedule.ts';
import { planOf, rotationTarget, StaticRoleRotation } from './static-role-rotation.ts';
import { StaticRoleStore, type RotationStrategy, type StaticRoleRecord } from './static-role-store.ts';

const ROLE_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

const username = { type: 'string', minLength: 1, maxLength: 256 } as const;

const staticRoleSchema = object({
  db_name: name,
  username,
  rotation_period: duration,
  rotation_schedule: { type: 'string', maxLength: 128 },
  rotation_window: duration,
  rotation_statements: stringList,
  credential_type: { type: 'string', enum: ['password'] },
  credential_config: credentialConfig,
  // Vault 1.18+: a static role whose user rotates its own password. Refused
  // when set (see write): here the connection's admin always rotates.
  self_managed_password: { type: 'string', maxLength: 1024 },
  skip_import_rotation: { type: 'boolean' },
  password: { type: 'string', minLength: 1, maxLength: 1024 },
  rotation_strategy: { type: 'string', enum: ['single', 'alternating'] },
  alternate_username: username,
});

function iso(ms: number | undefined): string | null {
  return ms ? new Date(ms).toISOString() : null;
}

export class StaticRoles {
  readonly store: StaticRoleStore;
  readonly rotation: StaticRoleRotation;

  constructor(
    private readonly broker: Broker,
    private readonly backend: DatabaseBackend,
  ) {
    this.store = new StaticRoleStore(broker, backend.mount);
    this.rotation = new StaticRoleRotation(broker, backend, this.store);
  }

  routes(): Route[] {
    return [
      { methods: ['LIST'], pattern: 'static-roles', auth: 'token', handler: async (ctx) => this.listing(ctx.path) },
      { methods: ['GET', 'PUT', 'DELETE'], pattern: 'static-roles/:name', auth: 'token', schema: staticRoleSchema, handler: (ctx) => this.role(ctx) },
      { methods: ['GET'], pattern: 'static-creds/:name', auth: 'token', handler: (ctx) => this.creds(ctx) },
      {
        methods: ['PUT'],
        pattern: 'rotate-role/:name',
        auth: 'token',
        handler: async (ctx) => {
          await this.rotation.rotate(await this.existing(ctx.params.name!), 'manual');
          return undefined;
        },
      },
    ];
  }

  resume(): Promise<void> {
    return this.rotation.resume();
  }

  stop(): void {
    this.rotation.stop();
  }

  private async listing(path: string) {
    const keys = await this.store.names();
    if (keys.length === 0) throw errors.EMPTY_LIST(path);
    return { data: { keys } };
  }

  /** The name of a role that exists, or a 400 like Vault's "unknown role". */
  private async existing(roleName: string): Promise<string> {
    if (!ROLE_NAME.test(roleName) || !(await this.store.read(roleName))) throw errors.ROLE_NOT_FOUND(roleName.slice(0, 128));
    return roleName;
  }

  private async role(ctx: RequestContext) {
    const roleName = ctx.params.name!;
    if (!ROLE_NAME.test(roleName)) throw errors.BAD_FIELD('name', 'may contain only letters, digits, "_", "." and "-" (1 to 128 characters)');
    if (ctx.method === 'GET') {
      const rec = await this.store.read(roleName);
      if (!rec) throw errors.ENTRY_NOT_FOUND(ctx.path);
      return { data: this.view(rec) };
    }
    if (ctx.method === 'DELETE') {
      // The database users stay as they are (as in Vault); only the management ends.
      await this.rotation.exclusive(roleName, async () => {
        this.rotation.unschedule(roleName);
        await this.store.remove(roleName);
      });
      return undefined;
    }
    return this.rotation.exclusive(roleName, () => this.write(roleName, ctx.body));
  }

  view(rec: StaticRoleRecord): Record<string, unknown> {
    return {
      db_name: rec.dbName,
      username: rec.username,
      ...(rec.rotationSchedule ? { rotation_schedule: rec.rotationSchedule, rotation_window: rec.rotationWindow } : { rotation_period: rec.rotationPeriod }),
      rotation_statements: rec.rotationStatements,
      credential_type: rec.credentialType,
      credential_config: {},
      skip_import_rotation: rec.skipImportRotation,
      rotation_strategy: rec.strategy,
      ...(rec.strategy === 'alternating' ? { alternate_username: rec.alternateUsername, active_username: rec.active.username } : {}),
      last_vault_rotation: iso(rec.lastVaultRotation),
      next_vault_rotation: iso(rec.nextRotation),
      last_rotation_error: rec.lastError ?? null,
    };
  }

  private async write(roleName: string, body: Record<string, unknown>): Promise<{ warnings: string[] } | undefined> {
    const existing = await this.store.read(roleName);
    const dbName = (body.db_name as string | undefined) ?? existing?.dbName;
    if (!dbName) throw errors.BAD_REQUEST('missing required field "db_name"');
    if (existing && dbName !== existing.dbName) throw errors.BAD_FIELD('db_name', `cannot change the connection of an existing static role (it is "${existing.dbName}")`);
    checkCredentialConfig(body.credential_config);
    if (typeof body.self_managed_password === 'string' && body.self_managed_password !== '') {
      throw errors.BAD_FIELD('self_managed_password', 'is not supported: dbroker rotates static roles with the connection\'s admin login (leave it empty)');
    }
    for (const field of ['username', 'alternate_username'] as const) {
      if (typeof body[field] === 'string') checkDatabaseText(field, body[field]);
    }
    const conn = await this.backend.connections.read(dbName);
    if (!conn) throw errors.BAD_FIELD('db_name', `no connection named "${dbName}" on this mount`);
    if (!roleAllowed(conn.allowedRoles, roleName)) throw errors.ROLE_NOT_ALLOWED(roleName, dbName);
    const factory = await this.backend.connections.factory(conn);

    const user = (body.username as string | undefined) ?? existing?.username;
    if (!user) throw errors.BAD_REQUEST('missing required field "username"');
    if (existing && user !== existing.username) throw errors.BAD_FIELD('username', 'cannot change the username of an existing static role');
    const strategy = (body.rotation_strategy as RotationStrategy | undefined) ?? existing?.strategy ?? 'single';
    if (existing && strategy !== existing.strategy) throw errors.BAD_FIELD('rotation_strategy', 'cannot change the rotation strategy of an existing static role');
    let alternate = '';
    if (strategy === 'alternating') {
      alternate = (body.alternate_username as string | undefined) ?? existing?.alternateUsername ?? `${user}_b`;
      if (existing && alternate !== existing.alternateUsername) throw errors.BAD_FIELD('alternate_username', 'cannot change the alternate username of an existing static role');
      if (alternate === user) throw errors.BAD_FIELD('alternate_username', 'must differ from username');
    } else if (body.alternate_username !== undefined) {
      throw errors.BAD_FIELD('alternate_username', 'is only for rotation_strategy "alternating"');
    }
    for (const [field, value] of [['username', user], ['alternate_username', alternate]] as const) {
      if (!value) continue;
      if (value.length > factory.maxUsernameLength) throw errors.BAD_FIELD(field, `is longer than ${factory.maxUsernameLength} characters, the limit of ${factory.type}`);
      if (value === conn.username) throw errors.BAD_FIELD(field, `"${value}" is the admin user of connection "${dbName}"; rotate it with rotate-root/${dbName}`);
    }
    if (!existing) await this.checkNotManaged(roleName, dbName, [user, alternate].filter(Boolean));

    const schedule = (body.rotation_schedule as string | undefined) ?? (body.rotation_period === undefined ? existing?.rotationSchedule : undefined) ?? '';
    const period = durationField(body, 'rotation_period') ?? (body.rotation_schedule === undefined ? existing?.rotationPeriod : undefined) ?? 0;
    if (schedule && period) throw errors.BAD_FIELD('rotation_schedule', 'set either rotation_schedule or rotation_period, not both');
    if (!schedule && !period) throw errors.BAD_REQUEST('one of "rotation_period" or "rotation_schedule" is required');
    if (schedule) checkCron('rotation_schedule', schedule);
    checkPeriod('rotation_period', period);
    const window = durationField(body, 'rotation_window') ?? (schedule ? existing?.rotationWindow : 0) ?? 0;
    if (window > 0 && !schedule) throw errors.BAD_FIELD('rotation_window', 'is only for rotation_schedule');
    if (window > 0 && window < 3600) throw errors.BAD_FIELD('rotation_window', 'must be at least 1 hour (as in Vault)');

    const statements = statementsField(body, 'rotation_statements') ?? existing?.rotationStatements ?? [];
    if (statements.length > 0) checkStatements(factory, 'rotation', 'rotation_statements', statements);
    const skipImport = (body.skip_import_rotation as boolean | undefined) ?? existing?.skipImportRotation ?? false;
    const password = body.password as string | undefined;
    if (password !== undefined && (existing || !skipImport)) {
      throw errors.BAD_FIELD('password', 'is accepted only when creating a static role with skip_import_rotation (the current password of the user)');
    }

    const now = Date.now();
    const rec: StaticRoleRecord = {
      name: roleName,
      dbName,
      username: user,
      rotationPeriod: schedule ? 0 : period,
      rotationSchedule: schedule,
      rotationWindow: window,
      rotationStatements: statements,
      credentialType: 'password',
      skipImportRotation: skipImport,
      strategy,
      alternateUsername: alternate,
      active: existing?.active ?? { username: user, password: password ?? '' },
      ...(existing?.previous ? { previous: existing.previous } : {}),
      ...(existing?.pending ? { pending: existing.pending } : {}),
      ...(existing?.lastVaultRotation ? { lastVaultRotation: existing.lastVaultRotation } : {}),
      ...(existing?.lastError ? { lastError: existing.lastError, failures: existing.failures ?? 1 } : {}),
    };
    const planChanged = !existing || existing.rotationSchedule !== rec.rotationSchedule || existing.rotationPeriod !== rec.rotationPeriod;
    const next = planChanged ? nextRotationAt(planOf(rec), now) : existing.nextRotation;
    if (next !== undefined) rec.nextRotation = next;

    if (existing || skipImport) {
      // Rotation statements the database refuses are a 400 now, not a failed rotation later
      // (without skip_import_rotation, the import rotation below runs them for real).
      const changed = statements.length > 0 && (!existing || statements.join('\0') !== existing.rotationStatements.join('\0'));
      const warnings = changed ? await this.backend.connections.tryStatements(dbName, { lists: [{ kind: 'rotation', statements }] }) : [];
      await this.store.write(rec);
      this.rotation.schedule(rec);
      return warnings.length > 0 ? { warnings } : undefined;
    }
    await this.importRotation(rec);
    return undefined;
  }

  /**
   * A new role takes over its user(s): each gets a password only the broker
   * knows ("alternating": the alternate first, so `username` ends active).
   * The first rotation's pending credential is stored with the role itself,
   * so a crash at any point leaves a role whose rotation finishes at unseal.
   * If a rotation fails, the role is not created (as in Vault).
   */
  private async importRotation(rec: StaticRoleRecord): Promise<void> {
    await this.store.write({ ...rec, pending: { username: rotationTarget(rec), password: generatePassword() } });
    try {
      let committed = await this.rotation.rotateLocked(rec.name, 'import');
      if (committed.strategy === 'alternating') committed = await this.rotation.rotateLocked(rec.name, 'import');
    } catch (err) {
      this.rotation.unschedule(rec.name);
      await this.store.remove(rec.name);
      throw err;
    }
  }

  /** Two roles managing one database user would undo each other's rotations. */
  private async checkNotManaged(roleName: string, dbName: string, users: string[]): Promise<void> {
    for (const other of await this.store.names()) {
      if (other === roleName) continue;
      const rec = await this.store.read(other);
      if (!rec || rec.dbName !== dbName) continue;
      const taken = users.find((u) => u === rec.username || u === rec.alternateUsername);
      if (taken) throw errors.BAD_FIELD(taken === users[0] ? 'username' : 'alternate_username', `"${taken}" is already managed by static role "${other}"`);
    }
  }

  private async creds(ctx: RequestContext) {
    const roleName = await this.existing(ctx.params.name!);
    let rec = (await this.store.read(roleName))!;
    // "single": a rotation under way (or interrupted) may already have replaced
    // the stored password in the database, so wait for it or finish it first.
    if (rec.strategy === 'single' || !rec.active.password) rec = await this.rotation.finish(roleName, 'read');
    if (!rec.active.password) {
      throw errors.BAD_REQUEST(`static role "${roleName}" has no known password yet (skip_import_rotation was set without a password); rotate it with rotate-role/${roleName}`);
    }
    const ttl = rec.nextRotation ? Math.max(0, Math.floor((rec.nextRotation - Date.now()) / 1000)) : 0;
    return {
      data: {
        username: rec.active.username,
        password: rec.active.password,
        last_vault_rotation: iso(rec.lastVaultRotation),
        ...(rec.rotationSchedule ? { rotation_schedule: rec.rotationSchedule, rotation_window: rec.rotationWindow } : { rotation_period: rec.rotationPeriod }),
        ttl,
      },
    };
  }
}
