// One broker process per store. Two brokers on one SQLite file would both run
// the revocation loop and both rotate root passwords, so the second one must
// refuse to start. A lock file holds the owner's pid; a file left by a process
// that is gone (SIGKILL, power loss) is taken over.

import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class StoreInUseError extends Error {
  override name = 'StoreInUseError';
}

/** Take the lock for `storePath`; returns a release function. */
export function lockStore(storePath: string): () => void {
  const file = `${storePath}.lock`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
      throw new StoreInUseError(`the store is in use by another dbroker process (pid ${owner}; lock file ${file})`);
    }
    rmSync(file, { force: true });
  }
  throw new StoreInUseError(`could not take the lock file ${file}`);
}
