// The engines the bench knows, by command-line name.

import { mongodbTarget } from './mongodb.ts';
import { mysqlTarget } from './mysql.ts';
import { postgresTarget } from './postgres.ts';
import type { BenchTarget } from './target.ts';

export const TARGETS: Record<string, BenchTarget> = {
  postgres: postgresTarget,
  mysql: mysqlTarget,
  mongodb: mongodbTarget,
};

const ALIASES: Record<string, string> = { pg: 'postgres', postgresql: 'postgres', mariadb: 'mysql', mongo: 'mongodb', ferretdb: 'mongodb' };

export function targetNamed(name: string): BenchTarget | undefined {
  return TARGETS[ALIASES[name.toLowerCase()] ?? name.toLowerCase()];
}
