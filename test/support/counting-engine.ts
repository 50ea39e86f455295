// A third-party engine for tests (loaded through the config's `plugins`): the
// built-in PostgreSQL engine, with every deleteUser call appended to the file
// named by DBROKER_TEST_DELETE_LOG as "<epoch ms> <pid> <username>" before the
// call runs, so a test counts revocations per user and per broker process.

import { appendFileSync } from 'node:fs';
import type { DeleteUserRequest, Engine, EngineFactory } from '../../src/engine/engine.ts';
import postgres from '../../plugins/postgres/index.ts';

export const COUNTING_TYPE = 'counting-postgres';

class CountingEngine implements Engine {
  readonly type = COUNTING_TYPE;
  private readonly inner = postgres.create();
  initialize: Engine['initialize'] = (c, o) => this.inner.initialize(c, o);
  newUser: Engine['newUser'] = (r) => this.inner.newUser(r);
  updateUser: Engine['updateUser'] = (r) => this.inner.updateUser(r);
  close: Engine['close'] = () => this.inner.close();

  checkAdmin: NonNullable<Engine['checkAdmin']> = () => this.inner.checkAdmin?.() ?? Promise.resolve([]);

  deleteUser(request: DeleteUserRequest): ReturnType<Engine['deleteUser']> {
    const log = process.env.DBROKER_TEST_DELETE_LOG;
    if (log) appendFileSync(log, `${Date.now()} ${process.pid} ${request.username}\n`);
    return this.inner.deleteUser(request);
  }
}

const counting: EngineFactory = {
  ...postgres,
  type: COUNTING_TYPE,
  create: () => new CountingEngine(),
};

export default counting;

/** Parse the log: calls per username, and the calls themselves. */
export function readDeleteLog(text: string): { perUser: Map<string, number>; calls: Array<{ at: number; pid: number; username: string }> } {
  const calls = text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [at, pid, username] = line.split(' ');
      return { at: Number(at), pid: Number(pid), username: username! };
    });
  const perUser = new Map<string, number>();
  for (const c of calls) perUser.set(c.username, (perUser.get(c.username) ?? 0) + 1);
  return { perUser, calls };
}
