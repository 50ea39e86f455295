// createMongoClient: a MongoDB client that takes its login from the broker and
// re-keys itself (see credential-rotator.ts). Work goes through run(), which
// holds the current client until the callback settles:
//
//   import { createMongoClient } from 'dbroker/client';
//   const mongo = await createMongoClient({ broker: { address, token }, role: 'app', url: 'mongodb://db:27017/app' });
//   const n = await mongo.run((client) => client.db('app').collection('orders').countDocuments());

import type { MongoClient, MongoClientOptions } from 'mongodb';
import { CredentialRotator, type CredentialSource, type LeasedCredentials, type RenewEvent, type RotateEvent, type RotatorStats } from './credential-rotator.ts';

export interface MongoClientFactoryOptions extends CredentialSource {
  /** Connection string without credentials, e.g. `mongodb://127.0.0.1:27017/?directConnection=true`. */
  url: string;
  /** Database the broker creates users in (default `admin`, as the broker's MongoDB engine does by default). */
  authSource?: string;
  /** Driver options, without `auth` (it comes from the broker). */
  options?: Omit<MongoClientOptions, 'auth'>;
}

export interface RotatingMongoClient {
  /**
   * Run `fn` with the current client. Don't keep the client (or a Db or
   * Collection from it) past the callback: it is closed after a rotation.
   */
  run<T>(fn: (client: MongoClient) => Promise<T>): Promise<T>;
  rotate(): Promise<void>;
  end(): Promise<void>;
  readonly credentials: LeasedCredentials | undefined;
  readonly stats: RotatorStats;
  on(event: 'rotate', listener: (e: RotateEvent) => void): this;
  on(event: 'renew', listener: (e: RenewEvent) => void): this;
  on(event: 'error', listener: (e: Error) => void): this;
}

/** AuthenticationFailed (18): the handshake refused the login, before the operation ran. */
const loginRefused = (err: unknown): boolean => (err as { code?: unknown }).code === 18;

/**
 * Obtain credentials for `role`, connect (checked with `ping`) and keep them
 * fresh. Throws what the broker or the server answered when the first
 * credentials cannot be obtained or used.
 */
export async function createMongoClient(opts: MongoClientFactoryOptions): Promise<RotatingMongoClient> {
  if (/^mongodb(\+srv)?:\/\/[^/]*@/i.test(opts.url)) throw new TypeError('url must not carry credentials (they come from the broker)');
  const { MongoClient } = await import('mongodb');
  const authSource = opts.authSource ?? 'admin';
  const open = async (creds: LeasedCredentials): Promise<MongoClient> => {
    const client = new MongoClient(opts.url, { ...opts.options, authSource, auth: { username: creds.username, password: creds.password } });
    try {
      await client.db(authSource).command({ ping: 1 });
    } catch (err) {
      await client.close().catch(() => undefined);
      throw err;
    }
    return client;
  };
  const rotator = new CredentialRotator<MongoClient>(opts, open, (client) => client.close());
  await rotator.start();
  const api: RotatingMongoClient = {
    run: (fn) => rotator.use(fn, loginRefused),
    rotate: () => rotator.rotate(),
    end: () => rotator.end(),
    get credentials() {
      return rotator.credentials;
    },
    stats: rotator.stats,
    on(event, listener) {
      rotator.on(event, listener as (...args: unknown[]) => void);
      return api;
    },
  };
  return api;
}
