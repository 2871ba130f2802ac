// The element state of an emulated media changer (SMC-3 4.2): one medium
// transport, storage slots, import/export slots and data transfer elements
// (the tape drives, whose own state says which cartridge they hold). Moves
// keep the state file current; an operator reaches the import/export slots
// from outside (cartridges between the shelf and the library), and every
// nexus learns of it from IMPORT OR EXPORT ELEMENT ACCESSED.

import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { LogicalUnit } from '../core/logical-unit';
import type { TapeDrive } from './ssc-drive';
import type { CartridgeShelf } from './tape-medium';

export const ElementType = { ALL: 0, TRANSPORT: 1, STORAGE: 2, IMPORT_EXPORT: 3, DRIVE: 4 } as const;
export type ElementType = (typeof ElementType)[keyof typeof ElementType];

/** First element address of each type (the element address assignment page reports them). */
export const ElementBase = { TRANSPORT: 0x0000, IMPORT_EXPORT: 0x0010, DRIVE: 0x0100, STORAGE: 0x1000 } as const;

/** IMPORT OR EXPORT ELEMENT ACCESSED (SPC-5 table D.1). */
export const IMPORT_EXPORT_ACCESSED = 0x2801;

export interface Element {
  type: ElementType;
  address: number;
  /** The cartridge it holds (a drive's comes from the drive itself). */
  barcode: string | undefined;
  /** Where the cartridge came from (SVALID, SOURCE STORAGE ELEMENT ADDRESS). */
  source: number | undefined;
  /** A drive element: its drive's name, and the drive once found. */
  driveName?: string;
}

export interface LibraryLayout {
  slots: number;
  importExport: number;
  /** Tape storage object names, one drive element each. */
  drives: string[];
}

/** Finds a tape drive by its storage object name (the composition root knows where they are). */
export type DriveLookup = (name: string) => TapeDrive | undefined;

interface SavedState {
  slots: (string | null)[];
  importExport: (string | null)[];
  drives: Record<string, string | null>;
  sources: Record<string, number>;
}

export class MediaLibrary {
  readonly elements: Element[] = [];
  private readonly byAddress = new Map<number, Element>();

  constructor(
    readonly lu: LogicalUnit,
    readonly shelf: CartridgeShelf,
    readonly layout: LibraryLayout,
    private readonly stateFile: string,
    private readonly findDrive: DriveLookup,
    initial: string[],
  ) {
    const add = (type: ElementType, address: number, driveName?: string) => {
      const e: Element = { type, address, barcode: undefined, source: undefined, driveName };
      this.elements.push(e);
      this.byAddress.set(address, e);
    };
    add(ElementType.TRANSPORT, ElementBase.TRANSPORT);
    for (let i = 0; i < layout.importExport; i++) add(ElementType.IMPORT_EXPORT, ElementBase.IMPORT_EXPORT + i);
    layout.drives.forEach((name, i) => add(ElementType.DRIVE, ElementBase.DRIVE + i, name));
    for (let i = 0; i < layout.slots; i++) add(ElementType.STORAGE, ElementBase.STORAGE + i);
    if (existsSync(stateFile)) this.restore(JSON.parse(readFileSync(stateFile, 'utf8')) as SavedState);
    else this.ofType(ElementType.STORAGE).forEach((e, i) => (e.barcode = initial[i]));
    if (initial.length > layout.slots) throw new Error(`${initial.length} cartridges do not fit in ${layout.slots} slots`);
  }

  ofType(type: ElementType): Element[] {
    return this.elements.filter((e) => e.type === type);
  }

  element(address: number): Element | undefined {
    return this.byAddress.get(address);
  }

  /** The drive of a drive element (its tape storage object may be created after the changer). */
  drive(e: Element): TapeDrive | undefined {
    return e.driveName === undefined ? undefined : this.findDrive(e.driveName);
  }

  /** What an element holds now: a drive answers for itself. */
  content(e: Element): string | undefined {
    if (e.type !== ElementType.DRIVE) return e.barcode;
    const d = this.drive(e);
    return d ? d.barcode : e.barcode;
  }

  /** Cartridges a restart left in drives go back in once the drives exist. */
  async settle(): Promise<void> {
    for (const e of this.ofType(ElementType.DRIVE)) {
      const d = this.drive(e);
      if (d && e.barcode !== undefined && d.barcode === undefined) await d.insert(e.barcode);
      if (d) e.barcode = d.barcode;
    }
  }

  /** Every barcode the library holds. */
  holds(barcode: string): boolean {
    return this.elements.some((e) => this.content(e) === barcode);
  }

  /** Moves a cartridge; the caller has checked both addresses. */
  async move(from: Element, to: Element): Promise<void> {
    const barcode = this.content(from)!;
    const fromDrive = this.drive(from);
    if (fromDrive) await fromDrive.remove();
    const toDrive = this.drive(to);
    if (toDrive) {
      try {
        await toDrive.insert(barcode);
      } catch (e) {
        if (fromDrive) await fromDrive.insert(barcode);
        throw e;
      }
    }
    from.barcode = undefined;
    to.barcode = barcode;
    // SOURCE STORAGE ELEMENT ADDRESS: the last slot the cartridge left (a drive passes on where its came from).
    to.source = from.type === ElementType.DRIVE ? from.source : from.address;
    if (from !== to) from.source = undefined;
    this.save();
  }

  /**
   * The operator opens the import/export slots: takes out what they hold (to
   * the shelf), puts in the given cartridges from the shelf, closes them.
   */
  operate(insert: string[] = [], remove = true): { removed: string[]; inserted: string[] } {
    if (this.lu.medium?.preventers.size) throw new Error('the import/export slots are locked (PREVENT ALLOW MEDIUM REMOVAL)');
    const slots = this.ofType(ElementType.IMPORT_EXPORT);
    if (slots.length === 0) throw new Error('this library has no import/export slot');
    // Everything is checked before anything moves: a refused request changes nothing.
    const staying = remove ? [] : slots.filter((e) => e.barcode !== undefined);
    for (const b of insert) {
      if (!this.shelf.has(b)) throw new Error(`no cartridge ${b} on the shelf`);
      if (this.holds(b) && !(remove && slots.some((e) => e.barcode === b))) throw new Error(`cartridge ${b} is in the library already`);
    }
    if (insert.length > slots.length - staying.length) throw new Error('not enough empty import/export slots');
    const removed: string[] = [];
    if (remove) {
      for (const e of slots) {
        if (e.barcode !== undefined) removed.push(e.barcode);
        e.barcode = undefined;
        e.source = undefined;
      }
    }
    for (const b of insert) slots.find((e) => e.barcode === undefined)!.barcode = b;
    this.save();
    this.lu.raiseUa(IMPORT_EXPORT_ACCESSED);
    this.lu.mediumChanged();
    return { removed, inserted: insert };
  }

  private restore(s: SavedState): void {
    this.ofType(ElementType.STORAGE).forEach((e, i) => (e.barcode = s.slots[i] ?? undefined));
    this.ofType(ElementType.IMPORT_EXPORT).forEach((e, i) => (e.barcode = s.importExport[i] ?? undefined));
    for (const e of this.ofType(ElementType.DRIVE)) e.barcode = s.drives[e.driveName!] ?? undefined;
    for (const e of this.elements) e.source = e.barcode !== undefined ? s.sources[e.address] : undefined;
  }

  save(): void {
    const at = (type: ElementType) => this.ofType(type).map((e) => this.content(e) ?? null);
    const s: SavedState = {
      slots: at(ElementType.STORAGE),
      importExport: at(ElementType.IMPORT_EXPORT),
      drives: Object.fromEntries(this.ofType(ElementType.DRIVE).map((e) => [e.driveName!, this.content(e) ?? null])),
      sources: Object.fromEntries(this.elements.filter((e) => e.source !== undefined).map((e) => [e.address, e.source!])),
    };
    writeFileSync(`${this.stateFile}.new`, JSON.stringify(s, null, 1));
    renameSync(`${this.stateFile}.new`, this.stateFile);
  }
}

const libraries = new WeakMap<LogicalUnit, MediaLibrary>();

export function attachLibrary(lib: MediaLibrary): MediaLibrary {
  libraries.set(lib.lu, lib);
  lib.lu.medium = { present: true, preventers: new Set() };
  return lib;
}

export function libraryOf(lu: LogicalUnit): MediaLibrary | undefined {
  return libraries.get(lu);
}
