// Crash injection for tests: DBROKER_FAULTS=point[,point] makes the process
// die abruptly (SIGKILL, no cleanup) when it reaches a named point, so tests
// can prove that no crash leaves an orphaned user or a lost root password.

const enabled = new Set((process.env.DBROKER_FAULTS ?? '').split(',').map((s) => s.trim()).filter(Boolean));

export type FaultPoint =
  | 'issue.after_write_ahead'
  | 'issue.after_create_user'
  /** The batcher: the engine's creation batch returned (its users committed), no lease updated yet. */
  | 'issue.after_batch_commit'
  | 'revoke.after_delete_user'
  | 'rotate.after_pending'
  | 'rotate.after_db_change'
  | 'rotate.before_commit'
  | 'static.after_pending'
  | 'static.after_db_change';

export function fault(point: FaultPoint): void {
  if (enabled.has(point)) process.kill(process.pid, 'SIGKILL');
}
