// Static roles as stored: one sealed entry per role under the mount, holding
// the role's settings and its credential state (current password, the
// write-ahead pending one, rotation bookkeeping).

import type { Broker } from '../broker.ts';

export type RotationStrategy = 'single' | 'alternating';

export interface StaticCredential {
  username: string;
  password: string;
}

export interface StaticRoleRecord {
  name: string;
  dbName: string;
  /** The database user (for "alternating", the first of the two). */
  username: string;
  /** Seconds; 0 when a schedule is used. */
  rotationPeriod: number;
  /** Cron expression (UTC); '' when a period is used. */
  rotationSchedule: string;
  /** Seconds after a scheduled time within which a missed rotation still runs; 0 = always. */
  rotationWindow: number;
  rotationStatements: string[];
  credentialType: 'password';
  skipImportRotation: boolean;
  strategy: RotationStrategy;
  /** "alternating": the second database user; '' for "single". */
  alternateUsername: string;

  /** The credential handed out now. Password '' = not known yet (skip_import_rotation without password). */
  active: StaticCredential;
  /** "alternating": the other user's credential, valid until the next rotation. */
  previous?: StaticCredential;
  /** Written before the database changes; the next rotation (or a read) applies it. */
  pending?: StaticCredential;

  lastVaultRotation?: number;
  nextRotation?: number;
  lastError?: string;
  failures?: number;
}

export class StaticRoleStore {
  constructor(
    private readonly broker: Broker,
    private readonly mount: string,
  ) {}

  private path(name: string): string {
    return `mounts/${this.mount}static-roles/${name}`;
  }

  async read(name: string): Promise<StaticRoleRecord | undefined> {
    return this.broker.readEntry<StaticRoleRecord>(this.path(name));
  }

  async write(rec: StaticRoleRecord): Promise<void> {
    await this.broker.writeEntry(this.path(rec.name), rec);
  }

  async remove(name: string): Promise<void> {
    await this.broker.storage.deleteEntry(this.path(name));
  }

  async names(): Promise<string[]> {
    const prefix = this.path('');
    return (await this.broker.storage.listEntries(prefix)).map((p) => p.slice(prefix.length));
  }
}
