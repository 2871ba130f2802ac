// The state of one emulated CD/DVD drive (MMC-6): the disc in its tray, the
// tray, and the media event an initiator has not polled yet (GET EVENT
// STATUS NOTIFICATION). The disc itself is the unit's store (its size is the
// disc's); changing it goes through a DiscChanger, the store's own insert
// and eject.

import type { LogicalUnit } from '../core/logical-unit';
import { Asc } from '../core/sense';
import { mediumOf } from './medium';

/** Media event codes (MMC-6 table 157). */
export const MediaEvent = { NONE: 0, EJECT_REQUEST: 1, NEW_MEDIA: 2, MEDIA_REMOVAL: 3, MEDIA_CHANGED: 4 } as const;

/** What the drive needs of its store to change discs. */
export interface DiscChanger {
  readonly image: string | undefined;
  insert(path: string): Promise<void>;
  eject(): Promise<void>;
}

export class OpticalDrive {
  /** The media event waiting to be reported, or NONE. */
  event: number = MediaEvent.NONE;
  trayOpen = false;
  /** Told of every medium change (fabrics that announce it themselves, tests). */
  readonly listeners = new Set<(event: number) => void>();

  constructor(
    readonly lu: LogicalUnit,
    readonly disc: DiscChanger,
  ) {
    mediumOf(lu)!.present = disc.image !== undefined;
  }

  get present(): boolean {
    return mediumOf(this.lu)!.present;
  }

  get prevented(): boolean {
    return mediumOf(this.lu)!.preventers.size !== 0;
  }

  private note(event: number): void {
    this.event = event;
    for (const l of [...this.listeners]) l(event);
    this.lu.mediumChanged();
  }

  /** The initiator opened the tray (START STOP UNIT with LoEj). */
  opened(): void {
    this.trayOpen = true;
    this.note(MediaEvent.MEDIA_REMOVAL);
  }

  /** The initiator closed the tray: the disc in it, if any, is back. */
  closed(): void {
    this.trayOpen = false;
    const m = mediumOf(this.lu)!;
    m.present = this.disc.image !== undefined;
    if (m.present) this.note(MediaEvent.NEW_MEDIA);
  }

  /** An operator's eject: refused while an initiator prevents removal, unless forced. */
  async eject(force = false): Promise<void> {
    if (this.prevented && !force) {
      this.note(MediaEvent.EJECT_REQUEST); // the initiator hears that someone pressed the button
      throw new Error('medium removal is prevented by an initiator (PREVENT ALLOW MEDIUM REMOVAL); force to eject anyway');
    }
    mediumOf(this.lu)!.present = false;
    await this.disc.eject();
    this.note(MediaEvent.MEDIA_REMOVAL);
  }

  /** An operator puts a disc in (replacing the one there): every nexus learns of the new medium. */
  async insert(path: string, force = false): Promise<void> {
    if (this.disc.image !== undefined && this.prevented && !force) {
      throw new Error('medium removal is prevented by an initiator (PREVENT ALLOW MEDIUM REMOVAL); force to change the disc anyway');
    }
    await this.disc.insert(path);
    this.trayOpen = false;
    mediumOf(this.lu)!.present = true;
    this.lu.raiseUa(Asc.NOT_READY_TO_READY_CHANGE);
    this.note(MediaEvent.NEW_MEDIA);
  }
}

const drives = new WeakMap<LogicalUnit, OpticalDrive>();

export function attachOpticalDrive(lu: LogicalUnit, disc: DiscChanger): OpticalDrive {
  const d = new OpticalDrive(lu, disc);
  drives.set(lu, d);
  return d;
}

export function opticalDriveOf(lu: LogicalUnit): OpticalDrive | undefined {
  return drives.get(lu);
}
