// Connections of one mount: their sealed configuration and one live engine
// (with its bounded pool) per connection, opened lazily. Every engine call
// goes through `run`, which bounds its time and maps engine errors to coded
// broker errors without secrets.
//
// The root credential: while a root rotation is under way the record holds
// the new password as `pendingPassword` (sealed, written before the database
// changes). Whenever it is unclear which of the two the database has (after a
// crash, or when an engine call fails to log in), `settle` tries the current
// and then the pending password and keeps whichever logs in. Changes of the
// root credential are serialised per connection with `exclusive`.
//
// Creating and dropping dynamic users goes through the connection's
// DdlBatcher (`batcher`), the only issuer of that DDL per connection in this
// process; it batches waiting requests into one engine call.

import type { Broker } from '../broker.ts';
import { EngineConnectionError, scrubSecrets, type ConnectionConfig, type Engine, type EngineFactory, type StatementKind, type StatementsToTry, type TryOutcome } from '../engine/engine.ts';
import { BrokerError, errors, isBrokerError } from '../errors.ts';
import { checkDatabaseTexts } from './database-text.ts';
import { DdlBatcher } from './ddl-batcher.ts';
import { KeyedLock } from './keyed-lock.ts';

export interface ConnectionRecord {
  name: string;
  pluginName: string;
  connectionUrl: string;
  username: string;
  password: string;
  /** Set while a root rotation is under way: the new password, written before the database changes. */
  pendingPassword?: string;
  verifyConnection: boolean;
  allowedRoles: string[];
  rootRotationStatements: string[];
  passwordPolicy: string;
  maxOpenConnections: number;
  /** As configured (Vault: 0 = max_open_connections, negative = keep none idle); absent in records before it was applied. */
  maxIdleConnections?: number;
  /** Seconds a pooled connection may be reused (0 = forever). */
  maxConnectionLifetime?: number;
  usernameTemplate: string;
  /** Engine-specific fields, passed through to the engine. */
  options: Record<string, unknown>;
  rotation?: RootRotationState;
}

export interface RootRotationState {
  schedule?: string;
  period?: number;
  lastRotation?: number;
  lastError?: string;
  nextRotation?: number;
  failures?: number;
}

const ENGINE_TIMEOUT_MS = 30_000;

/** Longest wait (ms) for the database to try statements at their write (Connections.tryStatements); past it they are saved with a warning. */
export const TRY_STATEMENTS_MS = 5_000;
/** A retired engine is closed once its operations finish, or after this at the latest. */
const RETIRE_GRACE_MS = ENGINE_TIMEOUT_MS + 5_000;

interface Live {
  engine: Engine;
  ready: Promise<void>;
  /** The root password it logs in with. */
  password: string;
  /** Operations running on it; a replaced engine is closed when they are done. */
  inFlight: number;
  retired: boolean;
}

function liveEntry(engine: Engine, ready: Promise<void>, password: string): Live {
  return { engine, ready, password, inFlight: 0, retired: false };
}

export type SettledOn = 'current' | 'pending' | 'none';

export class Connections {
  private readonly live = new Map<string, Live>();
  private readonly locks = new KeyedLock();
  private readonly batchers = new Map<string, DdlBatcher>();
  /** max_open_connections of each connection, as last read or written. */
  private readonly poolSizes = new Map<string, number>();

  constructor(
    private readonly broker: Broker,
    private readonly mount: string,
  ) {}

  entryPath(name: string): string {
    return `mounts/${this.mount}config/${name}`;
  }

  async read(name: string): Promise<ConnectionRecord | undefined> {
    const rec = await this.broker.readEntry<ConnectionRecord>(this.entryPath(name));
    if (rec) this.poolSizes.set(name, rec.maxOpenConnections);
    return rec;
  }

  async mustRead(name: string): Promise<ConnectionRecord> {
    const rec = await this.read(name);
    if (!rec) throw errors.CONNECTION_NOT_FOUND(name);
    return rec;
  }

  async write(rec: ConnectionRecord): Promise<void> {
    await this.broker.writeEntry(this.entryPath(rec.name), rec);
    this.poolSizes.set(rec.name, rec.maxOpenConnections);
  }

  async names(): Promise<string[]> {
    const prefix = this.entryPath('');
    return (await this.broker.storage.listEntries(prefix)).map((p) => p.slice(prefix.length));
  }

  async remove(name: string): Promise<void> {
    await this.drop(name);
    await this.broker.storage.deleteEntry(this.entryPath(name));
    this.poolSizes.delete(name);
    this.batchers.delete(name);
  }

  /**
   * The batcher that creates and drops the dynamic users of connection
   * `name` (created on first use; see ddl-batcher.ts). Its engine calls go
   * through `run`, and the errors it reports per user are mapped like run's.
   */
  batcher(name: string): DdlBatcher {
    let batcher = this.batchers.get(name);
    if (!batcher) {
      batcher = new DdlBatcher({
        name,
        run: (secrets, op) => this.run(name, secrets, op),
        mapError: (err, secrets) => mapEngineError(name, err, secrets),
        mayAct: () => this.broker.cluster.canAct(),
        shape: () => {
          const live = this.live.get(name);
          const engine = live && !live.retired ? live.engine : undefined;
          return {
            maxOpen: this.poolSizes.get(name) ?? 1,
            newUsers: typeof engine?.newUsers === 'function',
            deleteUsers: typeof engine?.deleteUsers === 'function',
            ...(engine?.createSlots !== undefined ? { createSlots: engine.createSlots } : {}),
            ...(engine?.dropsNearCreates !== undefined ? { dropsNearCreates: engine.dropsNearCreates } : {}),
          };
        },
      });
      this.batchers.set(name, batcher);
    }
    return batcher;
  }

  factory(rec: ConnectionRecord): Promise<EngineFactory> {
    return this.broker.engines.get(rec.pluginName);
  }

  /** Open a new engine for `rec` with the given admin password (not cached). */
  async open(rec: ConnectionRecord, password: string, verify: boolean): Promise<Engine> {
    const engine = (await this.factory(rec)).create();
    try {
      await this.initialize(engine, rec, password, verify);
    } catch (err) {
      await engine.close().catch(() => undefined);
      throw err;
    }
    return engine;
  }

  private async initialize(engine: Engine, rec: ConnectionRecord, password: string, verify: boolean): Promise<void> {
    const config: ConnectionConfig = { connectionUrl: rec.connectionUrl, username: rec.username, password, maxOpenConnections: rec.maxOpenConnections, options: rec.options };
    const applied = (await this.factory(rec)).poolSettings ?? [];
    if (applied.includes('max_idle_connections')) config.maxIdleConnections = resolveMaxIdle(rec.maxIdleConnections ?? 0, rec.maxOpenConnections);
    if (applied.includes('max_connection_lifetime') && rec.maxConnectionLifetime) config.maxConnectionLifetime = rec.maxConnectionLifetime;
    return this.bounded(rec.name, [password], engine.initialize(config, { verify }));
  }

  /** The live engine of a connection, opened on first use. */
  async engine(name: string): Promise<Engine> {
    return (await this.liveOf(name)).engine;
  }

  /**
   * Open the connection's engine now, proving its login (a logged-in session
   * stays in the pool), unless it is open already: warming at unseal
   * (src/mounts/engine-warmup.ts). Rejects as `run` would; a failed warm-up
   * leaves nothing open.
   */
  async warm(name: string): Promise<void> {
    await this.liveOf(name, true);
  }

  private async liveOf(name: string, verify = false): Promise<Live> {
    let live = this.live.get(name);
    if (!live) {
      const rec = await this.mustRead(name);
      const factory = await this.factory(rec);
      // Another caller (or a rotation's replace) may have set one while we awaited.
      const raced = this.live.get(name);
      if (raced) {
        await raced.ready;
        return raced;
      }
      const engine = factory.create();
      const ready = this.initialize(engine, rec, rec.password, verify);
      const opened = liveEntry(engine, ready, rec.password);
      live = opened;
      this.live.set(name, opened);
      ready.catch(() => {
        if (this.live.get(name) === opened) this.live.delete(name);
        void engine.close().catch(() => undefined);
      });
    }
    await live.ready;
    return live;
  }

  /**
   * Put a freshly opened engine (logging in with `password`) in place of the
   * current one. The old one, with its pool and the sessions logged in with
   * the old password, is closed once the operations running on it are done.
   */
  async replace(name: string, engine: Engine, password: string): Promise<void> {
    const old = this.live.get(name);
    this.live.set(name, liveEntry(engine, Promise.resolve(), password));
    if (old) await this.retire(old);
  }

  /** Close the live engine of a connection (config changed, reset, deleted). */
  async drop(name: string): Promise<void> {
    const live = this.live.get(name);
    this.live.delete(name);
    if (live) await this.retire(live);
  }

  private async retire(live: Live): Promise<void> {
    live.retired = true;
    if (live.inFlight === 0) {
      await live.engine.close().catch(() => undefined);
      return;
    }
    const force = setTimeout(() => void live.engine.close().catch(() => undefined), RETIRE_GRACE_MS);
    force.unref();
  }

  /** Run `op` on a live engine, counted so a replacement does not close it underneath. */
  private async onLive<T>(live: Live, name: string, secrets: Array<string | undefined>, op: (engine: Engine) => Promise<T>): Promise<T> {
    live.inFlight++;
    try {
      return await this.bounded(name, secrets, op(live.engine));
    } finally {
      live.inFlight--;
      if (live.retired && live.inFlight === 0) void live.engine.close().catch(() => undefined);
    }
  }

  /** Engine operations running on the connection's live engine now (0 when none is open); for the pool gauge. */
  /** Whether the connection's engine (its pool) is open now; it opens on first use. */
  isOpen(name: string): boolean {
    const live = this.live.get(name);
    return live !== undefined && !live.retired;
  }

  inUse(name: string): number {
    return this.live.get(name)?.inFlight ?? 0;
  }

  /** Run `work` alone among the root-credential changes of this connection (rotation, settle, config write). */
  exclusive<T>(name: string, work: () => Promise<T>): Promise<T> {
    return this.locks.run(name, work);
  }

  /** Wait for running and queued exclusive work (rotations, config writes) to end. */
  idle(): Promise<void> {
    return this.locks.idle();
  }

  /**
   * Run an engine operation on a connection, bounded in time, with errors
   * mapped. When the admin login fails, settle the root credential (an
   * interrupted rotation may have changed it) and, if that found a working
   * one, try once more.
   */
  async run<T>(name: string, secrets: Array<string | undefined>, op: (engine: Engine) => Promise<T>): Promise<T> {
    let used: Engine | undefined;
    try {
      const live = await this.liveOf(name);
      used = live.engine;
      return await this.onLive(live, name, secrets, op);
    } catch (err) {
      if (!isConnectionFailure(err) || !(await this.recover(name, used))) throw err;
    }
    return this.onLive(await this.liveOf(name), name, secrets, op);
  }

  /** After a failed login with `used`: whether a retry may now succeed. */
  private recover(name: string, used: Engine | undefined): Promise<boolean> {
    return this.exclusive(name, async () => {
      // Replaced meanwhile (a rotation committed, a reset): retry with the new one.
      const current = this.live.get(name);
      if (used && current && current.engine !== used) return true;
      const rec = await this.read(name);
      if (!rec) return false;
      if (rec.pendingPassword) return (await this.settle(rec)) !== 'none';
      // A live engine still on an older password: reopen with the stored one.
      if (current && current.password !== rec.password) {
        await this.drop(name);
        return true;
      }
      return false;
    });
  }

  /** Settle the root credential of `name` (serialised with rotations). */
  reconcile(name: string): Promise<SettledOn> {
    return this.exclusive(name, async () => this.settle(await this.mustRead(name)));
  }

  /**
   * Keep the current password if it logs in, otherwise the pending one;
   * clear the pending one either way. Leaves both stored when neither logs in
   * (database down), so nothing is lost. The caller holds `exclusive(name)`.
   */
  async settle(rec: ConnectionRecord): Promise<SettledOn> {
    const pending = rec.pendingPassword;
    if (!pending) return 'current';
    for (const which of ['current', 'pending'] as const) {
      const password = which === 'current' ? rec.password : pending;
      let engine: Engine;
      try {
        engine = await this.open(rec, password, true);
      } catch {
        continue;
      }
      const settled: ConnectionRecord = { ...rec, password };
      delete settled.pendingPassword;
      try {
        await this.write(settled);
      } catch (err) {
        await engine.close().catch(() => undefined);
        throw err;
      }
      await this.replace(rec.name, engine, password);
      this.broker.logger.info({ mount: this.mount, connection: rec.name, settledOn: which }, 'root credential settled');
      return which;
    }
    this.broker.logger.error({ mount: this.mount, connection: rec.name }, 'neither the current nor the pending root credential logs in; both are kept');
    return 'none';
  }

  /** Await `work` for at most the engine timeout, mapping its errors (secrets scrubbed). */
  async bounded<T>(name: string, secrets: Array<string | undefined>, work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new EngineConnectionError(`no answer within ${ENGINE_TIMEOUT_MS / 1000}s`)), ENGINE_TIMEOUT_MS);
    });
    try {
      return await Promise.race([work, timeout]);
    } catch (err) {
      throw mapEngineError(name, err, secrets);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Try statements on the database of connection `name` before they are
   * saved (Engine.tryStatements, for engines that have it). Returns warnings
   * for the write when they could not be tried: the database did not answer
   * within TRY_STATEMENTS_MS or could not be reached, or the statements cannot
   * be tried without keeping something. The write goes on then, as Vault
   * saves statements without contacting the database.
   * @throws BrokerError 400 naming the field (`<kind>_statements`) when the database refused a statement.
   */
  async tryStatements(name: string, what: StatementsToTry): Promise<string[]> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<TryOutcome>((resolve) => {
      timer = setTimeout(() => resolve({ tried: false, reason: `the database did not answer within ${TRY_STATEMENTS_MS / 1000}s` }), TRY_STATEMENTS_MS);
    });
    const attempt = this.run<TryOutcome>(name, [], (engine) => engine.tryStatements?.(what) ?? Promise.resolve({ tried: true }));
    attempt.catch(() => undefined);
    let outcome: TryOutcome;
    try {
      outcome = await Promise.race([attempt, late]);
    } catch (err) {
      if (isBrokerError(err) && err.code === errors.ENGINE_INPUT.code) {
        // StatementRefusedError names its field first ("creation_statements: …"); BAD_FIELD names it once.
        const field = what.lists.map((l) => `${l.kind}_statements`).find((f) => err.message.startsWith(`${f}: `));
        throw field ? errors.BAD_FIELD(field, err.message.slice(field.length + 2)) : err;
      }
      outcome = { tried: false, reason: err instanceof Error ? err.message : String(err) };
    } finally {
      clearTimeout(timer);
    }
    if (outcome.tried) return [];
    this.broker.logger.warn({ connection: name, reason: outcome.reason }, 'statements not tried on the database');
    return [`the statements were not tried on the database (${outcome.reason}): a statement it refuses fails when it is used instead`];
  }

  /** Close every engine now (seal, unmount, shutdown), running operations or not. */
  async close(): Promise<void> {
    const all = [...this.live.values()];
    this.live.clear();
    for (const live of all) {
      live.retired = true;
      await live.engine.close().catch(() => undefined);
    }
  }
}

/**
 * Engine errors are recognised by name, not only by class: a third-party
 * engine may import its own copy of engine.ts, whose classes differ from ours.
 */
function engineErrorKind(err: unknown): 'input' | 'connection' | 'limit' | undefined {
  const name = typeof err === 'object' && err !== null ? (err as { name?: unknown }).name : undefined;
  if (name === 'EngineInputError') return 'input';
  if (name === 'EngineLimitError') return 'limit';
  if (name === 'EngineConnectionError') return 'connection';
  return undefined;
}

export function mapEngineError(connection: string, err: unknown, secrets: Array<string | undefined>): BrokerError {
  if (err instanceof BrokerError) return err;
  const raw = typeof err === 'object' && err !== null ? (err as { message?: unknown }).message : undefined;
  const message = scrubSecrets(typeof raw === 'string' ? raw : String(err), secrets);
  switch (engineErrorKind(err)) {
    case 'input':
      return errors.ENGINE_INPUT(message);
    case 'connection':
      return errors.ENGINE_CONNECTION(connection, message);
    case 'limit':
      return errors.ENGINE_LIMIT(connection, message);
    default:
      return errors.ENGINE_FAILED(connection, message);
  }
}

/**
 * Check statements when they are written, so bad ones are a 400 naming
 * `field` now rather than a failure at creds or rotation time: text no
 * database takes (database-text.ts), then the engine's own validation.
 */
export function checkStatements(factory: EngineFactory, kind: StatementKind, field: string, statements: string[]): void {
  checkDatabaseTexts(field, statements);
  if (!factory.validateStatements) return;
  try {
    factory.validateStatements(kind, statements);
  } catch (err) {
    const mapped = mapEngineError('(validation)', err, []);
    if (mapped.statusCode !== 400) throw mapped;
    // Engines name the field themselves ("creation_statements: …"); BAD_FIELD names it once.
    const own = `${field}: `;
    throw errors.BAD_FIELD(field, mapped.message.startsWith(own) ? mapped.message.slice(own.length) : mapped.message);
  }
}

/**
 * The idle connections a pool keeps for a configured max_idle_connections, as
 * Vault's SQL connection producer resolves it (sdk/database/helper/connutil):
 * 0 means max_open_connections, more than that is capped to it, and a
 * negative value keeps none.
 */
export function resolveMaxIdle(configured: number, maxOpen: number): number {
  if (configured < 0) return 0;
  if (configured === 0) return maxOpen;
  return Math.min(configured, maxOpen);
}

/** Whether a (mapped) error means the database was unreachable or refused the admin login. */
export function isConnectionFailure(err: unknown): boolean {
  return err instanceof BrokerError ? err.code === errors.ENGINE_CONNECTION.code : engineErrorKind(err) === 'connection';
}
