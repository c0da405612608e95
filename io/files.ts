/**
 * Whether a path the user named is a file we can read. Opening a FIFO (named pipe) waits for a
 * writer that may never come, so the run would hang without a word; a folder, a device or a
 * socket give a raw EISDIR or worse. Every file we read (checkpoints, config.json, prompts files)
 * is looked at with fs.statSync first, and refused by what it is.
 */
import fs from 'node:fs';
import path from 'node:path';

/** 'a folder', 'a FIFO (named pipe)', ... for what is not a regular file; null for a regular file. */
export function notRegularFile(stat: fs.Stats): string | null {
  if (stat.isFile()) return null;
  if (stat.isDirectory()) return 'a folder';
  if (stat.isFIFO()) return 'a FIFO (named pipe)';
  if (stat.isSocket()) return 'a socket';
  if (stat.isCharacterDevice() || stat.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/** `p` with its symbolic links resolved, as far as it exists (a file still to be made: its folder's real path + its name). */
function canonical(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    try {
      return path.join(fs.realpathSync(path.dirname(p)), path.basename(p));
    } catch {
      return path.resolve(p);
    }
  }
}

/** Whether two paths name the same file or folder: the same real path, or (hard links) the same inode. */
export function samePath(a: string, b: string): boolean {
  if (canonical(a) === canonical(b)) return true;
  try {
    const x = fs.statSync(a), y = fs.statSync(b);
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}
