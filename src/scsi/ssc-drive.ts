// The state of one emulated tape drive (SSC-4): the cartridge in it, whether
// it is loaded (threaded and ready), the position, and the mode parameters an
// initiator sets (fixed or variable blocks, compression). Commands that touch
// the medium run one at a time, in the order they arrived: a tape has one
// head. Operators and the media changer put cartridges in and take them out
// through insert() and remove().

import type { LogicalUnit } from '../core/logical-unit';
import { Asc } from '../core/sense';
import type { Cartridge, CartridgeShelf } from './tape-medium';

/** Density code of the virtual format (vendor-specific range, SSC-4 table 30's 80h..FFh). */
export const TAPE_DENSITY = 0x80;
/** Largest block READ BLOCK LIMITS reports: bounds the memory one command may need. */
export const MAX_TAPE_BLOCK = 1 << 20;
/** Room a write keeps for the store's own framing of it (backstores/tape.ts uses 16 bytes a write). */
export const ENTRY_OVERHEAD = 64;
/** Bytes of a cartridge before its end past which writes report early warning. */
export function earlyWarningZone(capacity: number): number {
  return Math.min(Math.max(Math.floor(capacity / 50), 1 << 20), 64 << 20);
}

export class TapeDrive {
  cartridge: Cartridge | undefined = undefined;
  /** Threaded and ready; a cartridge may sit in an unloaded drive (after LOAD UNLOAD with LOAD 0). */
  loaded = false;
  /** Logical object number of the position (objects between the beginning of the partition and it). */
  pos = 0;
  /** Fixed block length for READ/WRITE with FIXED=1; 0: variable blocks. */
  blockLength = 0;
  /** Data compression page DCE: recorded and reported; the data is stored as it came. */
  compression = false;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    readonly lu: LogicalUnit,
    readonly shelf: CartridgeShelf,
  ) {
    lu.medium = { present: false, preventers: new Set() };
  }

  /** Runs fn after every command queued before it. */
  serial<T>(fn: () => T | Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }

  get barcode(): string | undefined {
    return this.cartridge?.barcode;
  }

  private ready(on: boolean): void {
    this.loaded = on;
    this.lu.medium!.present = on;
  }

  /** Threads the cartridge in the drive (LOAD): position at the beginning. */
  load(): void {
    this.pos = 0;
    this.ready(true);
  }

  /** Rewinds and unthreads (LOAD UNLOAD with LOAD 0); the cartridge stays in the drive. */
  async unload(): Promise<void> {
    if (this.cartridge && this.loaded) await this.cartridge.flush();
    this.pos = 0;
    this.ready(false);
  }

  /** Removal is prevented (PREVENT ALLOW MEDIUM REMOVAL from some nexus). */
  get prevented(): boolean {
    return this.lu.medium!.preventers.size !== 0;
  }

  /** A cartridge goes in and is loaded; every nexus learns of it (NOT READY TO READY CHANGE). */
  insert(barcode: string): Promise<void> {
    return this.serial(async () => {
      if (this.cartridge) throw new Error(`the drive holds ${this.cartridge.barcode} already`);
      this.cartridge = await this.shelf.open(barcode);
      this.blockLength = 0;
      this.load();
      this.lu.raiseUa(Asc.NOT_READY_TO_READY_CHANGE);
      this.lu.mediumChanged();
    });
  }

  /** Takes the cartridge out (unloading it first); refused while removal is prevented unless forced. */
  remove(force = false): Promise<string> {
    return this.serial(async () => {
      const c = this.cartridge;
      if (!c) throw new Error('the drive is empty');
      if (this.prevented && !force) throw new Error(`removal of ${c.barcode} is prevented by an initiator (PREVENT ALLOW MEDIUM REMOVAL)`);
      await this.unload();
      this.cartridge = undefined;
      await this.shelf.close(c);
      this.lu.mediumChanged();
      return c.barcode;
    });
  }
}

const drives = new WeakMap<LogicalUnit, TapeDrive>();

/** Makes a unit a tape drive whose cartridges come from the shelf. */
export function attachTapeDrive(lu: LogicalUnit, shelf: CartridgeShelf): TapeDrive {
  const d = new TapeDrive(lu, shelf);
  drives.set(lu, d);
  return d;
}

export function tapeDriveOf(lu: LogicalUnit): TapeDrive | undefined {
  return drives.get(lu);
}
