// MySQL / MariaDB engine factories: `mysql-database-plugin` (32-character
// usernames, MySQL >= 5.7 and MariaDB) and `mysql-legacy-database-plugin`
// (16 characters, for old servers), as in Vault.

import { EngineInputError, type EngineFactory, type StatementKind, type Statements } from '../../src/engine/engine.ts';
import { splitStatements, validateSqlStatements, type PlaceholderName } from '../sql-common/statements.ts';
import { mysqlDialect } from './dialect.ts';
import { MysqlEngine } from './engine.ts';
import { renderMysql } from './guard.ts';

// Which placeholders each kind of statement gets at run time.
const PLACEHOLDERS: Record<StatementKind, PlaceholderName[]> = {
  creation: ['name', 'username', 'password', 'expiration'],
  rollback: ['name', 'username', 'password', 'expiration'],
  revocation: ['name', 'username'],
  renew: ['name', 'username', 'expiration'],
  rotation: ['name', 'username', 'password'],
  root_rotation: ['name', 'username', 'password'],
};

function validateStatements(kind: StatementKind, statements: Statements): void {
  if (!Array.isArray(statements) || statements.some((s) => typeof s !== 'string')) {
    throw new EngineInputError(`${kind}_statements must be a list of strings`);
  }
  try {
    if (kind === 'creation' && statements.flatMap((s) => splitStatements(s, mysqlDialect)).length === 0) {
      throw new EngineInputError('must not be empty');
    }
    validateSqlStatements(statements, mysqlDialect, PLACEHOLDERS[kind]);
    renderMysql(statements, { name: 'n', username: 'n', password: 'p', expiration: '2000-01-01 00:00:00' });
  } catch (err) {
    if (err instanceof EngineInputError) throw new EngineInputError(`${kind}_statements: ${err.message}`);
    throw err;
  }
}

// Vault's default username templates (plugins/database/mysql/mysql.go):
// DefaultUserNameTemplate keeps 8 random characters within 32, and
// DefaultLegacyUserNameTemplate 9 within 16 (its role part is cut to 4).
const DEFAULT_TEMPLATE = '{{ printf "v-%s-%s-%s-%s" (.DisplayName | truncate 10) (.RoleName | truncate 10) (random 20) (unix_time) | truncate 32 }}';
const LEGACY_TEMPLATE = '{{ printf "v-%s-%s" (.RoleName | truncate 4) (random 20) | truncate 16 }}';

function factory(type: string, maxUsernameLength: number, defaultUsernameTemplate: string): EngineFactory {
  return {
    type,
    maxUsernameLength,
    defaultUsernameTemplate,
    poolSettings: ['max_idle_connections', 'max_connection_lifetime'],
    defaultRootRotationStatements: ["ALTER USER '{{username}}'@'%' IDENTIFIED BY '{{password}}'"],
    validateStatements,
    create: () => new MysqlEngine(type),
  };
}

const mysql: EngineFactory = factory('mysql-database-plugin', 32, DEFAULT_TEMPLATE);
export const mysqlLegacy: EngineFactory = factory('mysql-legacy-database-plugin', 16, LEGACY_TEMPLATE);
export default mysql;
