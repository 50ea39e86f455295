// MongoDB engine: `mongodb-database-plugin` (statements are JSON, see statements.ts).

import type { EngineFactory } from '../../src/engine/engine.ts';
import { MONGODB_TYPE, MongoEngine } from './engine.ts';
import { validateStatements } from './statements.ts';

const mongodbEngine: EngineFactory = {
  type: MONGODB_TYPE,
  // MongoDB has no small fixed limit on user names (a user@db name only has
  // to stay under 10,000 bytes to be used with sessions); 100 is Vault's
  // limit for this plugin, long enough for the default template.
  maxUsernameLength: 100,
  // Vault's default for this plugin (plugins/database/mongodb/mongodb.go).
  defaultUsernameTemplate: '{{ printf "v-%s-%s-%s-%s" (.DisplayName | truncate 15) (.RoleName | truncate 15) (random 20) (unix_time) | replace "." "-" | truncate 100 }}',
  // The driver has neither a cap on idle connections nor a connection
  // lifetime: max_idle_connections and max_connection_lifetime are refused.
  poolSettings: [],
  // Empty: root rotation runs updateUser in the admin login's own database
  // (its authSource, usually admin). A statement {"db": "..."} names another.
  defaultRootRotationStatements: [],
  validateStatements,
  create: () => new MongoEngine(),
};

export default mongodbEngine;
