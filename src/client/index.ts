// dbroker/client: the Node SDK. A broker client (login, read, renew, revoke,
// lifetime watcher) and connection pools that keep their lease renewed and
// re-key themselves before it ends. See README.md, "Client SDK".

export { BrokerClient, type AuthInfo, type BrokerClientOptions, type DatabaseCredentials, type LoginMethod, type SecretResponse } from './broker-client.ts';
export { BrokerRequestError, BrokerUnreachableError, isPermissionDenied, isTransient } from './errors.ts';
export { Backoff, type BackoffOptions } from './backoff.ts';
export { LifetimeWatcher, type LifetimeWatcherOptions } from './lifetime-watcher.ts';
export { CredentialRotator, type CredentialSource, type LeasedCredentials, type RenewEvent, type RotateEvent, type RotatorStats } from './credential-rotator.ts';
export { createPgPool, type PgPoolOptions, type RotatingPgPool } from './pg-pool.ts';
export { createMysqlPool, type MysqlPoolOptions, type RotatingMysqlPool } from './mysql-pool.ts';
export { createMongoClient, type MongoClientFactoryOptions, type RotatingMongoClient } from './mongo-client.ts';
