// Leases: issue (write-ahead), renew, revoke, and the revocation work the
// loop hands back here.
//
// Issuance writes the lease row (sealed username, due at the lease's end)
// durably *before* the database user is created (committed: an engine may
// run the statements while the row's fsync is in flight and waits for it
// before COMMIT, NewUserRequest.writeAhead). That row is the lease: nothing
// is written after the user exists, so the answer waits for one store write,
// not two. Recovery rolls forward: after a crash the broker cannot know
// whether its answer reached the client, so a lease whose issuance was cut
// short lives to its own end like any other and is revoked then (deleteUser
// is idempotent: a user that was never made is no error). No database user
// ever exists without a lease that tracks it, and no credential a client
// holds is revoked before its TTL. An issuance that fails in this process
// forgets its lease (nothing was made) or makes it due now.
// While this process is issuing a lease, lookup and renew do not see it, and
// a revocation that reaches it waits until the issuance ends, so the user is
// never dropped before it is made: a synchronous revoke (sys/leases/revoke,
// revoke-prefix) waits and then revokes, answering only once the drop is
// done; the loop's and other asynchronous ones are deferred and made due
// when the issuance ends.
// Users are created and dropped by the connection's DdlBatcher, maybe in one
// engine call with others; a batch that fails as a whole counts as a failed
// creation (or revocation) for each of its leases.
// Rows in state "pending" were written by versions that activated leases in
// a second write; recovery still makes them due (recoverInterrupted).

import type { Token } from '../auth/token-store.ts';
import type { Broker } from '../broker.ts';
import type { ConnectionRecord } from '../database/connections.ts';
import type { DdlBatcher } from '../database/ddl-batcher.ts';
import type { RoleRecord } from '../database/database-backend.ts';
import { BATCH_LIMIT } from '../engine/engine.ts';
import { errors, isBrokerError, messageOf } from '../errors.ts';
import type { ConnectionKey, LeaseRow, LeaseStatus } from '../storage/storage.ts';
import { fault } from '../util/faults.ts';
import { generatePassword, randomString } from '../util/random.ts';

/** In-database expiry runs this much past the lease end (VALID UNTIL). */
export const EXPIRY_GRACE_MS = 5_000;
/** A creation the database did not answer may still be running there: its lease is revoked this much later. */
const UNANSWERED_GRACE_MS = 120_000;
/** A claimed lease becomes due again after this if its revocation never finished. */
export const CLAIM_MS = 120_000;
/** From this many failed attempts on, a lease is reported as irrevocable (and still retried). */
export const IRREVOCABLE_AFTER = 5;
const BACKOFF_BASE_MS = 1_000;
const BACKOFF_CAP_MS = 3_600_000;
/**
 * How many leases a synchronous revoke-prefix revokes at once: a full batch,
 * so the connection's batcher can drop them in one engine call.
 */
const PREFIX_CONCURRENCY = BATCH_LIMIT;
const PREFIX_PAGE = 256;

interface LeaseContext {
  username: string;
  revocationStatements: string[];
  renewStatements: string[];
  displayName: string;
}

export interface IssueRequest {
  mount: string;
  role: RoleRecord;
  connection: ConnectionRecord;
  username: string;
  token: Token | null;
}

const identity = (id: string): string => `lease/${id}`;
const isNotActive = (err: unknown): boolean => isBrokerError(err) && err.code === errors.NOT_ACTIVE.code;

/** Exponential backoff with jitter (50–100 % of the step), capped. */
export function backoffMs(attempts: number): number {
  const step = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(30, attempts - 1));
  return Math.round(step * (0.5 + Math.random() * 0.5));
}

export class LeaseManager {
  /**
   * Leases this process is issuing right now (row written, user being
   * created), each with the end of its issuance (never rejects): hidden from
   * lookup and renew; a synchronous revocation waits for it.
   */
  private readonly issuing = new Map<string, Promise<void>>();
  /** Issuing leases whose revocation was asked for meanwhile: revoked as soon as issued. */
  private readonly revokeWhenIssued = new Set<string>();
  /** Revocations since start that dropped the user with warnings (logged with each). */
  private revokedWithWarnings = 0;

  constructor(private readonly broker: Broker) {}

  private get storage() {
    return this.broker.storage;
  }

  private context(row: LeaseRow): LeaseContext {
    return this.broker.seal.keys.decryptJSON<LeaseContext>(identity(row.id), row.sealed);
  }

  private backend(mount: string) {
    const backend = this.broker.mounts.backend(mount);
    if (!backend) throw errors.MOUNT_NOT_FOUND(mount);
    return backend;
  }

  async issue(req: IssueRequest): Promise<{ id: string; ttl: number; password: string; warnings: string[] }> {
    // Vault's order (framework.CalculateTTL): the role's TTLs, else the mount's, else the
    // broker-wide ones; the max is also capped by the mount's (or broker-wide) max.
    const mount = this.broker.mounts.ttls(req.mount);
    const now = Date.now();
    const warnings: string[] = [];
    const maxTtl = req.role.maxTtl > 0 ? Math.min(req.role.maxTtl, mount.maxTtl) : mount.maxTtl;
    if (req.role.maxTtl > mount.maxTtl) warnings.push(`the role's max_ttl of ${req.role.maxTtl}s is capped to the mount's max_lease_ttl of ${mount.maxTtl}s`);
    let ttl = Math.min(req.role.defaultTtl > 0 ? req.role.defaultTtl : mount.defaultTtl, maxTtl);
    let maxExpire = now + maxTtl * 1000;
    // A lease never outlives the token that asked for it.
    const tokenEnd = req.token?.expiresAt ?? null;
    if (tokenEnd !== null && tokenEnd < now + ttl * 1000) {
      ttl = Math.max(1, Math.floor((tokenEnd - now) / 1000));
      warnings.push(`TTL capped to the requesting token's remaining TTL (${ttl}s)`);
    }
    if (tokenEnd !== null) maxExpire = Math.min(maxExpire, tokenEnd);
    const id = `${req.mount}creds/${req.role.name}/${randomString(24)}`;
    const password = generatePassword();
    const expireTime = now + ttl * 1000;
    const ctx: LeaseContext = {
      username: req.username,
      revocationStatements: req.role.revocationStatements,
      renewStatements: req.role.renewStatements,
      displayName: req.token?.displayName ?? '',
    };
    let issued!: () => void;
    this.issuing.set(id, new Promise<void>((resolve) => (issued = resolve)));
    try {
      // HA: a deposed node creates no user (a write after it lost the lock is fenced, too).
      if (!this.broker.cluster.canAct()) throw errors.NOT_ACTIVE('leadership moved during issuance');
      // The row is the lease as it will stay: due at its end (see the top of this file). It is
      // written while the engine starts: an engine that waits for the write-ahead itself
      // (PostgreSQL: before COMMIT) runs its statements during the write and its fsync; the
      // batcher makes any other engine wait before it is called.
      const written = this.storage.insertLeaseWriteAhead({
        id,
        mount: req.mount,
        role: req.role.name,
        connection: req.connection.name,
        state: 'active',
        issueTime: now,
        expireTime,
        maxExpireTime: maxExpire,
        lastRenewal: null,
        dueAt: expireTime,
        attempts: 0,
        lastError: null,
        tokenHash: req.token?.idHash ?? null,
        sealed: this.broker.seal.keys.encryptJSON(identity(id), ctx),
      });
      const durable = written.then(({ durable }) => {
        fault('issue.after_write_ahead');
        return durable;
      });
      durable.catch(() => undefined); // the engine or the batcher reports it (WriteAheadFailed)
      // The connection's batcher may create this user together with others waiting for the same
      // connection; the lease is settled here, after the batch committed.
      const batcher = this.backend(req.mount).connections.batcher(req.connection.name);
      const request = {
        username: req.username,
        password,
        expiration: new Date(expireTime + EXPIRY_GRACE_MS),
        creationStatements: req.role.creationStatements,
        rollbackStatements: req.role.rollbackStatements,
        // database-backend.ts names every credential with generateUsername.
        uniqueName: true,
        writeAhead: durable,
      };
      await batcher.create(request, async (outcome) => {
        if (!outcome.ok) {
          // A row that was never written has nothing to settle (and no user was committed).
          const rowWritten = await written.then(() => true, () => false);
          // NOT_ACTIVE: deposed while the request waited; nothing was created, and this node may not write.
          if (rowWritten && !isNotActive(outcome.error)) await this.settleFailedIssue(id, outcome.error);
          throw outcome.error;
        }
        fault('issue.after_create_user');
      });
    } finally {
      this.issuing.delete(id);
      issued();
      // A revocation deferred while the user was being made (a revoke-prefix, the loop
      // claiming the row of a short lease or of a failed issuance) runs now.
      if (this.revokeWhenIssued.delete(id)) await this.expediteDeferred(id);
    }
    this.broker.revocationDueBy(expireTime);
    return { id, ttl, password, warnings };
  }

  /** expedite() for a revocation deferred while `id` was issuing; never throws (a failure is logged, the lease stays due later). */
  private async expediteDeferred(id: string): Promise<void> {
    try {
      await this.expedite(id);
    } catch (err) {
      this.broker.logger.error({ leaseId: id, err: messageOf(err) }, 'a revocation deferred during issuance could not be scheduled');
    }
  }

  /**
   * After newUser failed. An input error (a bad template, a username that is
   * taken) or a limit error (the database refused at one of its limits and
   * rolled back) means nothing was created: forget the lease, so the loop never
   * drops a role this lease does not own. Anything else may have left a user
   * (a rollback that failed, a commit whose answer was lost): the lease is
   * marked revoking and made due, so the loop drops it, now, or after UNANSWERED_GRACE_MS when the
   * database did not answer (a creation that timed out may still be running there).
   */
  private async settleFailedIssue(id: string, err: unknown): Promise<void> {
    const code = isBrokerError(err) ? err.code : undefined;
    if ((code === errors.ENGINE_INPUT.code || code === errors.ENGINE_LIMIT.code) && !this.revokeWhenIssued.has(id)) {
      await this.storage.deleteLease(id);
      return;
    }
    const unanswered = code === errors.ENGINE_CONNECTION.code && !this.revokeWhenIssued.has(id);
    // Never answered, so never active: renew refuses it and the active-lease gauge leaves it out.
    await this.storage.updateLease(id, { state: 'revoking', dueAt: Date.now() + (unanswered ? UNANSWERED_GRACE_MS : 0) });
    if (!unanswered) this.broker.wakeRevocation();
  }

  /** The lease's row. @throws BrokerError LEASE_NOT_FOUND for an unknown lease and for one still being issued. */
  async lookup(id: string): Promise<LeaseRow> {
    const row = await this.storage.getLease(id);
    if (!row || this.unfinished(row)) throw errors.LEASE_NOT_FOUND();
    return row;
  }

  /**
   * What sys/leases/lookup shows of a lease: its status columns only, so the
   * lookup neither reads nor decrypts the sealed revocation context.
   * @throws BrokerError LEASE_NOT_FOUND for an unknown lease and for one still being issued.
   */
  async status(id: string): Promise<LeaseStatus> {
    const row = await this.storage.getLeaseStatus(id);
    if (!row || this.unfinished(row)) throw errors.LEASE_NOT_FOUND();
    return row;
  }

  /** Whether a lease's issuance has not finished: this process is issuing it, or it is a pending row of an older version. */
  private unfinished(row: { id: string; state: string }): boolean {
    return row.state === 'pending' || this.issuing.has(row.id);
  }

  /** Renew: `increment` from now (default: the role's TTL), capped at max_ttl from issue time. */
  async renew(id: string, increment: number): Promise<{ row: LeaseRow; ttl: number; warnings: string[] }> {
    const row = await this.lookup(id);
    if (row.state !== 'active') throw errors.LEASE_NOT_RENEWABLE('it is being revoked');
    const now = Date.now();
    if (row.expireTime <= now) throw errors.LEASE_NOT_RENEWABLE('it has expired');
    // Less than a second to the max: a renewal would be capped to a TTL of 0 (Vault refuses it too).
    if (row.maxExpireTime - now < 1000) throw errors.LEASE_PAST_MAX();
    const backend = this.backend(row.mount);
    const role = await backend.readRole(row.role);
    const fallback = role && role.defaultTtl > 0 ? role.defaultTtl : this.broker.mounts.ttls(row.mount).defaultTtl;
    const wanted = increment > 0 ? increment : fallback;
    const warnings: string[] = [];
    let expireTime = now + wanted * 1000;
    if (expireTime > row.maxExpireTime) {
      expireTime = row.maxExpireTime;
      warnings.push(`TTL of "${wanted}s" exceeded the effective max_ttl of "${Math.floor((row.maxExpireTime - now) / 1000)}s"; TTL value is capped accordingly`);
    }
    const ctx = this.context(row);
    await backend.connections.run(row.connection, [], (engine) =>
      engine.updateUser({ username: ctx.username, expiration: { value: new Date(expireTime + EXPIRY_GRACE_MS), statements: ctx.renewStatements } }),
    );
    // Only push the due time if the loop has not claimed the lease meanwhile.
    const current = await this.storage.getLease(id);
    if (!current || current.state !== 'active') throw errors.LEASE_NOT_RENEWABLE('it is being revoked');
    await this.storage.updateLease(id, { expireTime, dueAt: expireTime, lastRenewal: now });
    const updated = { ...current, expireTime, dueAt: expireTime, lastRenewal: now };
    return { row: updated, ttl: Math.max(0, Math.round((expireTime - now) / 1000)), warnings };
  }

  /**
   * Revoke one lease now; one this process is still issuing is revoked once
   * issued (the answer waits). Unknown leases count as revoked. A failure leaves
   * it scheduled for retry (throws REVOCATION_FAILED). Returns the engine's
   * warnings: the user is gone but something could not be checked (e.g.
   * whether a session of it stays open), so the revocation is not clean.
   */
  async revoke(id: string): Promise<string[]> {
    const warnings: string[] = [];
    const error = await this.revokeNow(id, undefined, warnings);
    if (error) throw errors.REVOCATION_FAILED(error);
    return warnings;
  }

  /**
   * Claim and revoke one lease (only if it belongs to `mount`, when given);
   * returns the error, if any (the lease then stays scheduled for retry).
   */
  private async revokeNow(id: string, mount?: string, warnings?: string[]): Promise<string | undefined> {
    let row = await this.storage.getLease(id);
    const issuance = row && this.issuing.get(id);
    if (issuance) {
      // Its user may not exist yet: answer only once it is made and dropped (or was never made).
      await issuance;
      row = await this.storage.getLease(id);
    }
    if (!row || (mount !== undefined && row.mount !== mount)) return undefined;
    const now = Date.now();
    await this.storage.updateLease(id, { state: 'revoking', dueAt: now + CLAIM_MS, expireTime: Math.min(row.expireTime, now) });
    return this.revokeClaimed({ ...row, state: 'revoking' }, warnings);
  }

  /**
   * Drop the database user of a claimed lease and forget the lease; on
   * failure record the error and schedule a retry. Returns the error, if
   * any. The engine's warnings (a revocation that is done but not clean) are
   * logged, counted, and added to `warnings` when given.
   */
  async revokeClaimed(row: LeaseRow, warnings?: string[]): Promise<string | undefined> {
    if (this.deferIfIssuing(row)) return undefined;
    // HA: a deposed node leaves the lease to the active one (it stays claimed in the store).
    if (!this.broker.cluster.canAct()) throw errors.NOT_ACTIVE('the lease is left to the active node');
    let ctx: LeaseContext;
    let batcher: DdlBatcher;
    try {
      ctx = this.context(row);
      batcher = this.backend(row.mount).connections.batcher(row.connection);
    } catch (err) {
      return this.revocationFailed(row, err);
    }
    // The outcome comes once the drop is committed (possibly in one batch with other leases of the connection).
    return batcher.drop({ username: ctx.username, statements: ctx.revocationStatements }, async (outcome) => {
      if (!outcome.ok) {
        // Deposed while the drop waited: nothing was dropped; the lease stays claimed for the active node.
        if (isNotActive(outcome.error)) throw outcome.error;
        return this.revocationFailed(row, outcome.error);
      }
      try {
        fault('revoke.after_delete_user');
        await this.storage.deleteLease(row.id);
      } catch (err) {
        return this.revocationFailed(row, err);
      }
      this.broker.metrics.revocation({ mount: row.mount, connection: row.connection }, true);
      const notes = outcome.value?.warnings ?? [];
      if (notes.length > 0) {
        this.revokedWithWarnings++;
        this.broker.logger.warn(
          { leaseId: row.id, connection: row.connection, warnings: notes, revokedWithWarnings: this.revokedWithWarnings },
          'lease revoked with warnings: the user is dropped but its revocation is not known to be complete',
        );
        warnings?.push(...notes);
      }
      return undefined;
    });
  }

  /** Record a failed revocation on its lease (error, attempts, next retry with backoff); returns the message. */
  private async revocationFailed(row: LeaseRow, err: unknown): Promise<string> {
    this.broker.metrics.revocation({ mount: row.mount, connection: row.connection }, false);
    const message = messageOf(err);
    const attempts = row.attempts + 1;
    await this.storage.updateLease(row.id, { attempts, lastError: message, dueAt: Date.now() + backoffMs(attempts) });
    const log = { leaseId: row.id, connection: row.connection, attempts, error: message };
    if (attempts === IRREVOCABLE_AFTER) this.broker.logger.error(log, 'lease is now irrevocable; still retrying');
    else this.broker.logger.warn(log, 'lease revocation failed; will retry');
    return message;
  }

  /**
   * A lease this process is still issuing is revoked once issued instead
   * (its user may not exist yet). Returns whether the revocation was deferred.
   */
  private deferIfIssuing(row: LeaseRow): boolean {
    if (!this.issuing.has(row.id)) return false;
    this.revokeWhenIssued.add(row.id);
    return true;
  }

  /** Make one lease due now; the loop revokes it (revoke with sync=false). */
  async expedite(id: string): Promise<void> {
    const row = await this.storage.getLease(id);
    if (!row) return;
    if (this.deferIfIssuing(row)) return;
    const now = Date.now();
    if (row.dueAt > now) await this.storage.updateLease(id, { dueAt: now, expireTime: Math.min(row.expireTime, now) });
    this.broker.wakeRevocation();
  }

  /**
   * What a lease prefix names, by Vault's rule (vault/expiration.go,
   * revokePrefixCommon; the same for LIST sys/leases/lookup/): a prefix that
   * does not end in "/" and is itself a lease id names that one lease; any
   * other prefix names everything under `<prefix>/`. So
   * `database/creds/app` never reaches `database/creds/app-admin/...`.
   * Returns `{ id }` for one lease, else `{ prefix }` ending in "/".
   */
  async select(prefix: string): Promise<{ id: string } | { prefix: string }> {
    if (prefix.endsWith('/')) return { prefix };
    if (await this.storage.getLease(prefix)) return { id: prefix };
    return { prefix: prefix + '/' };
  }

  /**
   * Revoke every lease `prefix` names (see select). With `sync`, revoke them
   * here, a few at a time, and throw REVOCATION_FAILED if any failed (those
   * stay scheduled for retry); otherwise make them due now for the loop.
   * Returns how many were found.
   */
  async revokePrefix(prefix: string, sync = true): Promise<number> {
    const selected = await this.select(prefix);
    if ('id' in selected) {
      if (sync) await this.revoke(selected.id);
      else await this.expedite(selected.id);
      return 1;
    }
    if (!sync) {
      const n = await this.storage.expediteLeases({ prefix: selected.prefix }, Date.now());
      this.broker.wakeRevocation();
      return n;
    }
    return this.revokeUnder(selected.prefix);
  }

  /**
   * Revoke every lease of every mount, synchronously (dev mode at exit), but
   * those on the connection `except` names (one whose database goes away with
   * the process); throws like revokePrefix. Returns how many were revoked.
   */
  async revokeAll(except?: ConnectionKey): Promise<number> {
    return this.revokeUnder('', undefined, except);
  }

  /**
   * Forget every lease `prefix` names (see select) without contacting the
   * database (revoke-force): their users stay. Returns how many were forgotten.
   */
  async forget(prefix: string): Promise<number> {
    const selected = await this.select(prefix);
    if ('prefix' in selected) return this.storage.deleteLeases(selected.prefix);
    await this.storage.deleteLease(selected.id);
    return 1;
  }

  /**
   * Revoke every lease of a mount before it is unmounted. Throws if any
   * revocation fails (the mount stays). Lease ids start with the mount path,
   * but so may those of a mount nested under it: those are left alone.
   */
  async revokeMount(mount: string): Promise<void> {
    await this.revokeUnder(mount, mount);
  }

  private async revokeUnder(prefix: string, mount?: string, except?: ConnectionKey): Promise<number> {
    let found = 0;
    let failed = 0;
    let firstError = '';
    let after: string | undefined;
    for (;;) {
      const ids = await this.storage.listLeaseIds(prefix, PREFIX_PAGE, after);
      if (ids.length === 0) break;
      after = ids[ids.length - 1];
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < ids.length) {
          const id = ids[next++]!;
          if (except) {
            const row = await this.storage.getLease(id);
            if (row && row.mount === except.mount && row.connection === except.connection) continue;
          }
          found++;
          const error = await this.revokeNow(id, mount);
          if (error !== undefined) {
            failed++;
            firstError ||= error;
          }
        }
      };
      await Promise.all(Array.from({ length: PREFIX_CONCURRENCY }, worker));
    }
    if (failed > 0) throw errors.REVOCATION_FAILED(`${failed} of ${found} lease(s) under the prefix; first error: ${firstError}`);
    return found;
  }

  /**
   * After a restart or a takeover: interrupted revocations (and pending rows
   * of older versions' issuances) become due now. An interrupted issuance of
   * this version is an ordinary lease, revoked at its end.
   */
  async recoverInterrupted(): Promise<void> {
    const n = await this.storage.recoverInterrupted(Date.now());
    if (n > 0) this.broker.logger.info({ leases: n }, 'resuming interrupted lease work');
  }
}
