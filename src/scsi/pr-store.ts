// Persistent reservation state that survives a restart (APTPL, SPC-5
// 5.14.5): one JSON file per storage object, named by its unit serial, in
// <stateDir>/pr/. Written atomically: temporary file, fsync, rename, fsync of
// the directory, so a crash leaves either the old state or the new one.

import { readFileSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

export interface SavedRegistration {
  /** Reservation key, 16 hex digits. */
  key: string;
  name: string;
  isid?: string;
  /** Target port name (Tpg.portName); absent when registered on all target ports. */
  tport?: string;
  relTgtPort: number;
}

export interface SavedPrState {
  generation: number;
  registrations: SavedRegistration[];
  /** Index of the holder in registrations (-1 for the all-registrants types), type and scope. */
  reservation?: { holder: number; type: number; scope: number };
}

export class PrStore {
  readonly dir: string;
  readonly file: string;
  private chain: Promise<void> = Promise.resolve();

  constructor(stateDir: string, serial: string) {
    this.dir = join(stateDir, 'pr');
    this.file = join(this.dir, `${serial.replace(/[^A-Za-z0-9._-]/g, '_')}.json`);
  }

  /** The saved state, read once at start; undefined when there is none or it is unreadable. */
  load(): SavedPrState | undefined {
    try {
      const s = JSON.parse(readFileSync(this.file, 'utf8')) as SavedPrState;
      return Array.isArray(s.registrations) ? s : undefined;
    } catch {
      return undefined;
    }
  }

  /** Saves the state (undefined: removes it). Saves are serialized, in call order. */
  save(state: SavedPrState | undefined): Promise<void> {
    const next = this.chain.then(() => (state ? this.write(state) : rm(this.file, { force: true })));
    this.chain = next.catch(() => {});
    return next;
  }

  private async write(state: SavedPrState): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const tmp = `${this.file}.tmp`;
    const f = await open(tmp, 'w', 0o600);
    try {
      await f.writeFile(JSON.stringify(state));
      await f.sync();
    } finally {
      await f.close();
    }
    await rename(tmp, this.file);
    const d = await open(this.dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }
}
