// Expired tokens are revoked like revoked ones: the token, the tokens created
// from it, and (through the revocation loop) every lease they created. A
// lookup already refuses an expired token; this pass makes the cascade happen
// and keeps the token table from growing. It reads the expiry index a batch at
// a time, so it never loads all tokens. It runs while unsealed (started at
// unseal, stopped before the keys are dropped).

import type { Logger } from 'pino';

const BATCH = 256;

export interface ExpiryTarget {
  /** Hashes of tokens expired by now, oldest first. */
  expiredTokens(limit: number): Promise<string[]>;
  revokeToken(idHash: string): Promise<void>;
}

export class TokenExpiry {
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> = Promise.resolve();

  constructor(
    private readonly target: ExpiryTarget,
    private readonly logger: Logger,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.pass = this.pass.then(async () => void (await this.sweep()));
    }, this.intervalMs);
    this.timer.unref();
  }

  /** Stop the timer and wait for a pass in progress. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.pass;
  }

  /** Revoke every token expired by now. Returns how many. */
  async sweep(): Promise<number> {
    let revoked = 0;
    try {
      for (;;) {
        const batch = await this.target.expiredTokens(BATCH);
        for (const hash of batch) {
          await this.target.revokeToken(hash);
          revoked++;
        }
        if (batch.length < BATCH) break;
      }
      if (revoked > 0) this.logger.info({ revoked }, 'expired tokens revoked');
    } catch (err) {
      this.logger.error({ error: String(err) }, 'revoking expired tokens failed; will retry');
    }
    return revoked;
  }
}
