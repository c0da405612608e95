/**
 * Lock files: `<something>.lock`, created exclusively, holding the pid of the process that holds
 * it. A lock whose process is gone (killed, crashed) is stale and taken over. download.ts waits
 * for a live holder (two downloads of one file queue); output.ts refuses at once (two runs
 * writing into one --out folder).
 */
import fs from 'node:fs';

/** Whether a process with this pid exists (EPERM: it does, but belongs to another user). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes `lockFile` for this process if it can: returns null when the lock is ours now, or the
 * pid of the live process that holds it. A lock holding no pid, our own pid (an earlier life of
 * this process) or the pid of a process that is gone is taken over. Errors other than "exists"
 * (a folder that cannot be written) are thrown as they are.
 */
export function tryLock(lockFile: string): number | null {
  for (;;) {
    // the lock appears with our pid already in it (written under another name, then linked:
    // link fails if the name exists), so no one ever reads a lock that is still empty
    const mine = `${lockFile}.${process.pid}.new`;
    fs.writeFileSync(mine, `${process.pid}\n`);
    try {
      fs.linkSync(mine, lockFile);
      return null;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST' && createWithPid(lockFile)) return null; // a file system without hard links
    } finally {
      fs.rmSync(mine, { force: true });
    }
    let pid = NaN;
    try {
      pid = Number.parseInt(fs.readFileSync(lockFile, 'utf8'), 10);
    } catch {
      continue; // released meanwhile: try again
    }
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) return pid;
    // stale: rename it away first, so that of two processes taking it over only one succeeds
    const stale = `${lockFile}.stale-${process.pid}`;
    try {
      fs.renameSync(lockFile, stale);
      fs.rmSync(stale, { force: true });
    } catch {
      // someone else took it over first; the next round sees their lock
    }
  }
}

/** Creates `lockFile` holding our pid the plain way: true, or false when it exists already. */
function createWithPid(lockFile: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(lockFile, 'wx');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    fs.writeSync(fd, `${process.pid}\n`);
  } finally {
    fs.closeSync(fd);
  }
  return true;
}
