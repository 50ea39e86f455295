import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { lockStore, StoreInUseError } from '../../../src/storage/process-lock.ts';
import { startBroker } from '../../support/broker.ts';

test('a second broker on the same store refuses to start, naming storage.path', async () => {
  const first = await startBroker();
  try {
    const second = await startBroker({ dir: first.dir }).then(
      async (b) => {
        await b.stop();
        return 'started';
      },
      (err: Error) => err.message,
    );
    assert.match(second, /exited with 2/);
    assert.match(second, /storage\.path/);
    assert.match(second, /in use by another dbroker process \(pid \d+/);
    // The first broker is unaffected.
    assert.equal((await first.api('GET', 'sys/health')).status, 501);
  } finally {
    await first.stop();
    first.remove();
  }
});

test('a lock left by a killed broker is taken over; a clean stop removes it', async () => {
  const broker = await startBroker();
  try {
    await broker.kill();
    assert.ok(existsSync(`${broker.storagePath}.lock`), 'SIGKILL leaves the lock file');
    await broker.start();
    assert.equal((await broker.api('GET', 'sys/health')).status, 501);
    await broker.stop();
    assert.ok(!existsSync(`${broker.storagePath}.lock`), 'a clean stop removes the lock file');
  } finally {
    broker.remove();
  }
});

test('lockStore: a live owner blocks, a dead or garbage owner does not', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dbroker-lock-'));
  const store = join(dir, 'x.db');
  try {
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    writeFileSync(`${store}.lock`, String(sleeper.pid));
    assert.throws(() => lockStore(store), StoreInUseError);
    sleeper.kill('SIGKILL');
    await new Promise((ok) => sleeper.once('exit', ok));
    const release = lockStore(store);
    release();
    writeFileSync(`${store}.lock`, 'not a pid');
    lockStore(store)();
    assert.ok(!existsSync(`${store}.lock`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
