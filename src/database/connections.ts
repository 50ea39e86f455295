// Connections of one mount: their sealed configuration and one live engine
// (with its bounded pool) per connection, opened lazily. Every engine call
// goes through `run`, which bounds its time and maps engine errors to coded
// broker errors without secrets.

import type { Broker } from '../broker.ts';
import { EngineConnectionError, EngineInputError, scrubSecrets, type Engine, type EngineFactory } from '../engine/engine.ts';
import { BrokerError, errors } from '../errors.ts';

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

interface Live {
  engine: Engine;
  ready: Promise<void>;
}

export class Connections {
  private readonly live = new Map<string, Live>();

  constructor(
    private readonly broker: Broker,
    private readonly mount: string,
  ) {}

  entryPath(name: string): string {
    return `mounts/${this.mount}config/${name}`;
  }

  async read(name: string): Promise<ConnectionRecord | undefined> {
    const path = this.entryPath(name);
    const sealed = await this.broker.storage.getEntry(path);
    return sealed ? this.broker.seal.keys.decryptJSON<ConnectionRecord>(path, sealed) : undefined;
  }

  async mustRead(name: string): Promise<ConnectionRecord> {
    const rec = await this.read(name);
    if (!rec) throw errors.CONNECTION_NOT_FOUND(name);
    return rec;
  }

  async write(rec: ConnectionRecord): Promise<void> {
    const path = this.entryPath(rec.name);
    await this.broker.storage.putEntry(path, this.broker.seal.keys.encryptJSON(path, rec));
  }

  async names(): Promise<string[]> {
    const prefix = this.entryPath('');
    return (await this.broker.storage.listEntries(prefix)).map((p) => p.slice(prefix.length));
  }

  async remove(name: string): Promise<void> {
    await this.drop(name);
    await this.broker.storage.deleteEntry(this.entryPath(name));
  }

  factory(rec: ConnectionRecord): Promise<EngineFactory> {
    return this.broker.engines.get(rec.pluginName);
  }

  /** Open a new engine for `rec` with the given admin password (not cached). */
  async open(rec: ConnectionRecord, password: string, verify: boolean): Promise<Engine> {
    const engine = (await this.factory(rec)).create();
    try {
      await this.bounded(
        rec.name,
        [password],
        engine.initialize(
          { connectionUrl: rec.connectionUrl, username: rec.username, password, maxOpenConnections: rec.maxOpenConnections, options: rec.options },
          { verify },
        ),
      );
    } catch (err) {
      await engine.close().catch(() => undefined);
      throw err;
    }
    return engine;
  }

  /** The live engine of a connection, opened on first use. */
  async engine(name: string): Promise<Engine> {
    let live = this.live.get(name);
    if (!live) {
      const rec = await this.mustRead(name);
      const engine = (await this.factory(rec)).create();
      const ready = this.bounded(
        name,
        [rec.password],
        engine.initialize(
          { connectionUrl: rec.connectionUrl, username: rec.username, password: rec.password, maxOpenConnections: rec.maxOpenConnections, options: rec.options },
          { verify: false },
        ),
      );
      live = { engine, ready };
      this.live.set(name, live);
      ready.catch(() => {
        if (this.live.get(name) === live) this.live.delete(name);
        void engine.close().catch(() => undefined);
      });
    }
    await live.ready;
    return live.engine;
  }

  /** Put a freshly opened engine in place of the current one (after a root rotation). */
  async replace(name: string, engine: Engine): Promise<void> {
    const old = this.live.get(name);
    this.live.set(name, { engine, ready: Promise.resolve() });
    if (old) await old.engine.close().catch(() => undefined);
  }

  /** Close the live engine of a connection (config changed, reset, deleted). */
  async drop(name: string): Promise<void> {
    const live = this.live.get(name);
    this.live.delete(name);
    if (live) await live.engine.close().catch(() => undefined);
  }

  /** Run an engine operation on a connection, bounded in time, with errors mapped. */
  async run<T>(name: string, secrets: Array<string | undefined>, op: (engine: Engine) => Promise<T>): Promise<T> {
    const engine = await this.engine(name);
    return this.bounded(name, secrets, op(engine));
  }

  private async bounded<T>(name: string, secrets: Array<string | undefined>, work: Promise<T>): Promise<T> {
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

  async close(): Promise<void> {
    for (const name of [...this.live.keys()]) await this.drop(name);
  }
}

export function mapEngineError(connection: string, err: unknown, secrets: Array<string | undefined>): BrokerError {
  if (err instanceof BrokerError) return err;
  const message = scrubSecrets(err instanceof Error ? err.message : String(err), secrets);
  if (err instanceof EngineInputError) return errors.ENGINE_INPUT(message);
  if (err instanceof EngineConnectionError) return errors.ENGINE_CONNECTION(connection, message);
  return errors.ENGINE_FAILED(connection, message);
}
