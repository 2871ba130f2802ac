// saveconfig's file handling: written atomically (temporary file, fsync,
// rename, fsync of the directory) with mode 0600 since it holds CHAP secrets;
// the version it replaces is kept beside it, the newest BACKUPS of them.

import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync, copyFileSync, chmodSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export const DEFAULT_SAVE_PATH = '/etc/tsio/saveconfig.yaml';
export const BACKUPS = 10;

function stamp(d = new Date()): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}-${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}`;
}

/** Backups of path, oldest first. */
export function listBackups(path: string): string[] {
  const prefix = `${basename(path)}.backup-`;
  try {
    return readdirSync(dirname(path)).filter((f) => f.startsWith(prefix)).sort().map((f) => join(dirname(path), f));
  } catch {
    return [];
  }
}

/** Writes text to path atomically; returns the backup made of the previous version, if any. */
export function saveAtomically(path: string, text: string): string | undefined {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  let previous: string | undefined;
  try {
    previous = readFileSync(path, 'utf8');
  } catch {
    previous = undefined;
  }
  let backup: string | undefined;
  if (previous !== undefined && previous !== text) {
    backup = `${path}.backup-${stamp()}`;
    copyFileSync(path, backup);
    chmodSync(backup, 0o600);
    const all = listBackups(path);
    for (const old of all.slice(0, Math.max(0, all.length - BACKUPS))) unlinkSync(old);
  }
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
  return backup;
}
