// What the bench needs from each engine: how the broker connects to it, the
// role's creation statements, and a direct client that runs those same
// statements itself (the baseline) and finds or drops the bench's users.

export interface DirectSession {
  /** Run the role's creation statements for `name` (one transaction where the engine has them). */
  createUser(name: string, password: string): Promise<void>;
  /** Drop the user (and anything granted to it). */
  dropUser(name: string): Promise<void>;
  close(): Promise<void>;
}

export interface BenchTarget {
  /** Short name used on the command line and in the table (postgres, mysql, mongodb). */
  readonly engine: string;
  readonly label: string;
  /** Why the engine cannot be benchmarked here, or undefined when it can. */
  unavailable(): Promise<string | undefined>;
  /** Body for `PUT database/config/:name`. */
  connectionConfig(): Promise<Record<string, unknown>>;
  /** The role's creation statements (broker templates). */
  readonly creationStatements: string[];
  /** One database session of its own (the baseline opens one per client). */
  openDirect(): Promise<DirectSession>;
  /** How many users whose name starts with `prefix` exist. */
  countUsers(prefix: string): Promise<number>;
  /** Drop every user whose name starts with `prefix`; returns how many. */
  dropUsers(prefix: string): Promise<number>;
}

/** Bench user names are letters and digits only, so a prefix needs no escaping in LIKE or a regex. */
export function checkPrefix(prefix: string): string {
  if (!/^[A-Za-z0-9]+$/.test(prefix)) throw new Error(`bench user prefix "${prefix}" must be letters and digits`);
  return prefix;
}
