// tsiod under systemd: the sd_notify protocol (Type=notify: READY=1 once
// every portal and socket listens, RELOADING=1 ... READY=1 around a reload,
// STOPPING=1 on shutdown) and journald's stream (log lines then carry their
// syslog priority). Outside systemd every call here does nothing.

import { fstatSync } from 'node:fs';
import { unixDatagramSend } from '../../native';
import { log } from '../../src/core/log';

/** Sends sd_notify state lines ("READY=1", "STATUS=..."); false when not run by systemd with Type=notify. */
export function sdNotify(...state: string[]): boolean {
  const path = process.env.NOTIFY_SOCKET;
  if (!path) return false;
  try {
    unixDatagramSend(path, Buffer.from(state.join('\n')));
    return true;
  } catch (e) {
    log.warn(`sd_notify ${state.join(' ')} to ${path}: ${(e as Error).message}`);
    return false;
  }
}

/** True when stderr is connected to the journal (systemd sets JOURNAL_STREAM to its device:inode). */
export function stderrIsJournal(): boolean {
  const js = process.env.JOURNAL_STREAM;
  if (!js) return false;
  const [dev, ino] = js.split(':');
  try {
    const st = fstatSync(2, { bigint: true });
    return String(st.dev) === dev && String(st.ino) === ino;
  } catch {
    return false;
  }
}

/** CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it beside (MONOTONIC_USEC=). */
export function monotonicUsec(): string {
  return String(process.hrtime.bigint() / 1000n);
}
