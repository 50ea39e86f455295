// What the broker and its routes know about running beside other replicas:
// whether this node is active (runs the loops and schedules, serves
// requests) or a standby, and who leads. The broker hands its duties to the
// cluster, which starts them when this node becomes active and stops them when
// it stops being so. A single broker (no HA) is always active.

/** The work only the active node does (revocation loop, token expiry, rotation schedules, recovery). */
export interface ActiveDuties {
  start(): Promise<void>;
  /** Stop and wait for work in flight; safe to call when not started. */
  stop(): Promise<void>;
}

/** sys/leader's answer (Vault API docs, "/sys/leader"). */
export interface LeaderInfo {
  haEnabled: boolean;
  isSelf: boolean;
  /** The active node's api_addr ('' when none, or without HA). */
  leaderAddress: string;
  leaderClusterAddress: string;
  /** When the active node became active (ISO 8601), Vault's zero time when unknown. */
  activeTime: string;
}

export interface Cluster {
  readonly haEnabled: boolean;
  /** The node was unsealed: run `duties` now (no HA) or whenever this node wins the election (HA). */
  unsealed(duties: ActiveDuties): Promise<void>;
  /** The node is sealing: stop competing; if active, stop the duties and hand leadership over. */
  sealed(): Promise<void>;
  /** True on an unsealed node that is not the active one. */
  isStandby(): boolean;
  /**
   * Whether this node may act on the outside world now (drop or create a
   * database user): it is active and its leadership lease has not run out by
   * its own clock. Checked just before such actions, so a node that wakes up
   * from a pause does not act first and learn it was deposed after.
   */
  canAct(): boolean;
  leader(): Promise<LeaderInfo>;
  /** sys/step-down: give leadership up (on the active node; a standby forwards the request). */
  stepDown(): Promise<void>;
}

export const ZERO_TIME = '0001-01-01T00:00:00Z';

/** One broker on its store: always active. */
export class Standalone implements Cluster {
  readonly haEnabled = false;
  private duties: ActiveDuties | undefined;

  async unsealed(duties: ActiveDuties): Promise<void> {
    this.duties = duties;
    await duties.start();
  }

  async sealed(): Promise<void> {
    await this.duties?.stop();
    this.duties = undefined;
  }

  isStandby(): boolean {
    return false;
  }

  canAct(): boolean {
    return true;
  }

  async leader(): Promise<LeaderInfo> {
    return { haEnabled: false, isSelf: true, leaderAddress: '', leaderClusterAddress: '', activeTime: ZERO_TIME };
  }

  async stepDown(): Promise<void> {
    // Nothing to hand over to: like Vault without HA, a no-op.
  }
}
