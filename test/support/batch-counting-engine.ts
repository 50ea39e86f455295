// A third-party engine for tests of the broker's DDL batcher (loaded through
// the config's `plugins`, or created in process): the built-in PostgreSQL
// engine, with every newUsers / deleteUsers call recorded (kind and the
// usernames it carried) in `calls` and, when DBROKER_TEST_BATCH_LOG names a
// file, appended to it as "<kind> <pid> <user>,<user>,...".
//
// When the PostgreSQL engine has its own newUsers / deleteUsers, they are
// called, so the batch tests run against the real batch path. Until then
// this wrapper implements them by calling the real newUser / deleteUser once
// per user, in turn, keeping each user's outcome: that exercises only the
// broker's batch bookkeeping (coalescing, per-user outcomes, lease updates),
// not batching in the database.

import { appendFileSync } from 'node:fs';
import type { DeleteUserRequest, DeleteUserResult, Engine, EngineFactory, NewUserRequest } from '../../src/engine/engine.ts';
import postgres from '../../plugins/postgres/index.ts';

export const BATCH_COUNTING_TYPE = 'batch-counting-postgres';

export interface BatchCall {
  kind: 'create' | 'drop';
  /** Single calls (newUser/deleteUser) have kind create/drop and `single` set. */
  single: boolean;
  usernames: string[];
}

export class BatchCountingEngine implements Engine {
  readonly type = BATCH_COUNTING_TYPE;
  readonly calls: BatchCall[] = [];
  /** Engine calls running now, and the most seen at once. */
  running = 0;
  maxRunning = 0;
  private readonly inner = postgres.create();
  initialize: Engine['initialize'] = (c, o) => this.inner.initialize(c, o);
  updateUser: Engine['updateUser'] = (r) => this.inner.updateUser(r);
  close: Engine['close'] = () => this.inner.close();
  checkAdmin: NonNullable<Engine['checkAdmin']> = () => this.inner.checkAdmin?.() ?? Promise.resolve([]);

  private record(call: BatchCall): void {
    this.calls.push(call);
    const log = process.env.DBROKER_TEST_BATCH_LOG;
    if (log) appendFileSync(log, `${call.kind}${call.single ? '1' : 'N'} ${process.pid} ${call.usernames.join(',')}\n`);
  }

  private async counted<T>(work: () => Promise<T>): Promise<T> {
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    try {
      return await work();
    } finally {
      this.running--;
    }
  }

  newUser(request: NewUserRequest): Promise<void> {
    this.record({ kind: 'create', single: true, usernames: [request.username] });
    return this.counted(() => this.inner.newUser(request));
  }

  deleteUser(request: DeleteUserRequest): Promise<DeleteUserResult | void> {
    this.record({ kind: 'drop', single: true, usernames: [request.username] });
    return this.counted(() => this.inner.deleteUser(request));
  }

  newUsers(requests: NewUserRequest[]): Promise<Array<Error | undefined>> {
    this.record({ kind: 'create', single: false, usernames: requests.map((r) => r.username) });
    return this.counted(async () => {
      if (this.inner.newUsers) return this.inner.newUsers(requests);
      const out: Array<Error | undefined> = [];
      for (const r of requests) out.push(await this.inner.newUser(r).then(() => undefined, (err: Error) => err));
      return out;
    });
  }

  deleteUsers(requests: DeleteUserRequest[]): Promise<Array<DeleteUserResult | Error>> {
    this.record({ kind: 'drop', single: false, usernames: requests.map((r) => r.username) });
    return this.counted(async () => {
      if (this.inner.deleteUsers) return this.inner.deleteUsers(requests);
      const out: Array<DeleteUserResult | Error> = [];
      for (const r of requests) out.push(await this.inner.deleteUser(r).then((res) => res ?? {}, (err: Error) => err));
      return out;
    });
  }
}

const factory: EngineFactory = {
  ...postgres,
  type: BATCH_COUNTING_TYPE,
  create: () => new BatchCountingEngine(),
};

export default factory;

/** Parse DBROKER_TEST_BATCH_LOG: one entry per engine call. */
export function readBatchLog(text: string): Array<BatchCall & { pid: number }> {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [tag, pid, users] = line.split(' ') as [string, string, string];
      return { kind: tag.startsWith('create') ? 'create' : 'drop', single: tag.endsWith('1'), pid: Number(pid), usernames: users.split(',') };
    });
}
