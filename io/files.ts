/**
 * Whether a path the user named is a file we can read. Opening a FIFO (named pipe) waits for a
 * writer that may never come, so the run would hang without a word; a folder, a device or a
 * socket give a raw EISDIR or worse. Every file we read (checkpoints, config.json, prompts files)
 * is looked at with fs.statSync first, and refused by what it is.
 */
import type fs from 'node:fs';

/** 'a folder', 'a FIFO (named pipe)', ... for what is not a regular file; null for a regular file. */
export function notRegularFile(stat: fs.Stats): string | null {
  if (stat.isFile()) return null;
  if (stat.isDirectory()) return 'a folder';
  if (stat.isFIFO()) return 'a FIFO (named pipe)';
  if (stat.isSocket()) return 'a socket';
  if (stat.isCharacterDevice() || stat.isBlockDevice()) return 'a device';
  return 'not a regular file';
}
