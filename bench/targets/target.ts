// What the bench needs from each engine: how the broker connects to it, the
// role's creation statements, and a direct client that runs those same
// statements itself (the baseline) and finds or drops the bench's users.

export interface DirectSession {
  /** Run `statements` (broker templates) for `name` (one transaction where the engine has them). */
  createUser(name: string, password: string, statements: string[]): Promise<void>;
  /** Drop the user (and anything granted to it), as one user's revocation. */
  dropUser(name: string): Promise<void>;
  close(): Promise<void>;
}

/** What `prepare` made on the server for one run, and the role statements that use it. */
export interface RunSetup {
  /** Creation statements of the issuance and drain roles. */
  creationStatements: string[];
  /** Creation statements that grant a group role (the vault-benchmark-style run), or undefined if the engine has none. */
  groupStatements: string[] | undefined;
  /** One line on what the statements do, for the report. */
  describe: string;
}

export interface BenchTarget {
  /** Short name used on the command line and in the table (postgres, mysql, mongodb). */
  readonly engine: string;
  readonly label: string;
  /** Why the engine cannot be benchmarked here, or undefined when it can. */
  unavailable(): Promise<string | undefined>;
  /** Body for `PUT database/config/:name`. */
  connectionConfig(): Promise<Record<string, unknown>>;
  /**
   * Create what the run's roles grant: a group role named `group` (letters
   * and digits, not starting with any user prefix of the run) with read
   * access to something of the bench's own.
   */
  prepare(group: string): Promise<RunSetup>;
  /** Drop what `prepare` made (after every user of the run is gone); idempotent. */
  teardown(group: string): Promise<void>;
  /** One database session of its own (the baseline opens one per client). */
  openDirect(): Promise<DirectSession>;
  /** How many users whose name starts with `prefix` exist. */
  countUsers(prefix: string): Promise<number>;
  /** Drop every user whose name starts with `prefix` (many per statement where the engine allows); returns how many. */
  dropUsers(prefix: string): Promise<number>;
}

/** Bench user names are letters and digits only, so a prefix needs no escaping in LIKE or a regex. */
export function checkPrefix(prefix: string): string {
  if (!/^[A-Za-z0-9]+$/.test(prefix)) throw new Error(`bench user prefix "${prefix}" must be letters and digits`);
  return prefix;
}

/** Split `items` into slices of at most `size`. */
export function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
