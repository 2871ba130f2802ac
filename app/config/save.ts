// saveconfig's file handling: written atomically (temporary file, fsync,
// rename, fsync of the directory) with mode 0600 since it holds CHAP secrets;
// the version it replaces is kept beside it, the newest BACKUPS of them, and
// only when the content changed (a save of the same configuration writes nothing).

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

export interface SaveOptions {
  /** How many backups to keep (default BACKUPS). */
  backups?: number;
}

/** The file's text without its leading comment lines (what a save compares). */
const bodyOf = (text: string): string => text.replace(/^(#[^\n]*\n)+/, '');

/**
 * Writes text to path atomically. When the file already holds the same text (leading # comments, such as the
 * date of the save, aside), nothing is written and no backup made; otherwise the previous version is kept.
 */
export function saveAtomically(path: string, text: string, opts: SaveOptions = {}): { changed: boolean; backup?: string } {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  let previous: string | undefined;
  try {
    previous = readFileSync(path, 'utf8');
  } catch {
    previous = undefined;
  }
  if (previous !== undefined && bodyOf(previous) === bodyOf(text)) return { changed: false };
  let backup: string | undefined;
  if (previous !== undefined) {
    backup = `${path}.backup-${stamp()}`;
    copyFileSync(path, backup);
    chmodSync(backup, 0o600);
    const all = listBackups(path);
    const keep = opts.backups ?? BACKUPS;
    for (const old of all.slice(0, Math.max(0, all.length - keep))) unlinkSync(old);
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
  return { changed: true, backup };
}
