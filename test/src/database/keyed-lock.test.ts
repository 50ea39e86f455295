import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KeyedLock } from '../../../src/database/keyed-lock.ts';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('work on one key runs in order, one at a time; other keys run alongside', async () => {
  const lock = new KeyedLock();
  const log: string[] = [];
  const job = (key: string, name: string, ms: number) =>
    lock.run(key, async () => {
      log.push(`${name}+`);
      await tick(ms);
      log.push(`${name}-`);
    });
  await Promise.all([job('a', 'a1', 20), job('a', 'a2', 1), job('b', 'b1', 5)]);
  assert.deepEqual(log, ['a1+', 'b1+', 'b1-', 'a1-', 'a2+', 'a2-']);
});

test('a failure does not block the next work on the key', async () => {
  const lock = new KeyedLock();
  await assert.rejects(lock.run('a', async () => Promise.reject(new Error('boom'))), /boom/);
  assert.equal(await lock.run('a', async () => 42), 42);
  await lock.idle();
  assert.equal(lock.busy('a'), false);
});

test('idle waits for running and queued work, including work queued meanwhile', async () => {
  const lock = new KeyedLock();
  let done = 0;
  void lock.run('a', async () => {
    await tick(10);
    done++;
    void lock.run('b', async () => {
      await tick(10);
      done++;
    });
  });
  void lock.run('a', async () => {
    done++;
  }).catch(() => undefined);
  await lock.idle();
  assert.equal(done, 3);
  await lock.idle(); // idle when nothing runs
});
