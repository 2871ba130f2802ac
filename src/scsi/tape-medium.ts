// What the tape device type (ssc.ts) and the media changer (smc.ts) need of
// the media they handle, whatever stores them (backstores/tape.ts keeps each
// cartridge in a file). A cartridge is a sequence of logical objects, blocks
// and filemarks, up to its end of data; SSC positions count those objects
// from the beginning of the partition (one partition here).

import type { MaybePromise } from '../core/backstore';
import type { Sgl } from '../core/sgl';

/** lengthOf() of a filemark. */
export const FILEMARK = -1;

export interface Cartridge {
  /** Volume tag (barcode): upper-case letters and digits. */
  readonly barcode: string;
  /** The cartridge's write-protect tab. */
  readonly writeProtected: boolean;
  /** Native capacity in bytes; writes past it end with VOLUME OVERFLOW. */
  readonly capacity: number;
  /** Bytes of the medium used before end of data (data and the format's own overhead). */
  readonly used: number;
  /** Logical objects (blocks and filemarks) before end of data. */
  readonly count: number;
  /** Byte length of block i, or FILEMARK (0 <= i < count). */
  lengthOf(i: number): number;
  /** Objects from i on (at most max) that are blocks of one length stored one after the other: one read moves them. */
  runFrom(i: number, max: number): number;
  /** Filemarks among the objects before object i (SSC's logical file identifier at i). */
  filemarksBefore(i: number): number;
  /** The first filemark at or after object i, or count when none is left. */
  nextFilemark(i: number): number;
  /** The last filemark before object i, or -1 when none is. */
  prevFilemark(i: number): number;
  /** Copies `length` bytes from the start of block i (and the blocks of its run after it) into sgl at sglOffset. */
  read(i: number, length: number, sgl: Sgl, sglOffset: number): MaybePromise<void>;
  /**
   * Discards every object from `at` on, then appends count blocks of `length` bytes taken from sgl (or count
   * filemarks when length is FILEMARK). The new objects end the data.
   */
  write(at: number, count: number, length: number, sgl: Sgl | undefined): Promise<void>;
  /** Discards every object from `at` on: end of data moves there. */
  erase(at: number): Promise<void>;
  /** What was written reaches stable storage. */
  flush(): Promise<void>;
}

/** Where cartridges live when no drive or library holds them, as the operator sees it. */
export interface CartridgeShelf {
  /** Barcodes of the cartridges the shelf knows (in a library or not). */
  list(): string[];
  has(barcode: string): boolean;
  /** Opens a cartridge for a drive; refused while another drive has it open. */
  open(barcode: string): Promise<Cartridge>;
  /** Closes a cartridge a drive is done with. */
  close(c: Cartridge): Promise<void>;
  /** Makes a new blank cartridge (capacity in bytes). */
  create(barcode: string, capacity: number): Promise<void>;
}

/** Barcodes as SMC volume tags carry them: 1 to 32 characters. */
export const BARCODE_RE = /^[A-Z0-9][A-Z0-9_-]{0,31}$/;
