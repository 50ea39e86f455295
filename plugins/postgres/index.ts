// PostgreSQL engine: `postgresql-database-plugin`.

import { EngineInputError, type EngineFactory, type StatementKind, type Statements } from '../../src/engine/engine.ts';
import { creationWarnings } from './acl-limit.ts';
import { splitStatements, validateSqlStatements } from '../sql-common/statements.ts';
import { DEFAULT_ROOT_ROTATION, placeholdersFor, postgresDialect } from './dialect.ts';
import { POSTGRES_TYPE, PostgresEngine } from './engine.ts';

function validateStatements(kind: StatementKind, statements: Statements): void {
  const field = `${kind}_statements`;
  try {
    if (kind === 'creation' && statements.every((s) => splitStatements(s, postgresDialect).length === 0)) {
      throw new EngineInputError('must not be empty');
    }
    validateSqlStatements(statements, postgresDialect, placeholdersFor(kind));
  } catch (err) {
    if (err instanceof EngineInputError) throw new EngineInputError(`${field}: ${err.message}`);
    throw err;
  }
}

const postgresEngine: EngineFactory = {
  type: POSTGRES_TYPE,
  maxUsernameLength: 63,
  defaultRootRotationStatements: DEFAULT_ROOT_ROTATION,
  // Vault's default (v-<display 8>-<role 8>-<random 20>-<unix time>) is the broker's DEFAULT_USERNAME_TEMPLATE.
  poolSettings: ['max_idle_connections', 'max_connection_lifetime'],
  validateStatements,
  creationWarnings,
  create: () => new PostgresEngine(),
};

export default postgresEngine;
