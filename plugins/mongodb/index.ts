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
  // Empty: root rotation runs updateUser in the admin login's own database
  // (its authSource, usually admin). A statement {"db": "..."} names another.
  defaultRootRotationStatements: [],
  validateStatements,
  create: () => new MongoEngine(),
};

export default mongodbEngine;
