// Control API methods for removable media: what an operator does with the
// cartridges and discs of tape drives, media changers and CD/DVD drives.
// They change the media in the units, not the configuration (whose
// `cartridge`, `cartridges` and `dev` fields say what the units start with).

import { resolve } from 'node:path';
import type { LogicalUnit } from '../../../src/core/logical-unit';
import { tapeDriveOf, type TapeDrive } from '../../../src/scsi/ssc-drive';
import { libraryOf, ElementType, type MediaLibrary } from '../../../src/scsi/smc-library';
import { opticalDriveOf, type OpticalDrive } from '../../../src/scsi/mmc-drive';
import type { CartridgeShelf } from '../../../src/scsi/tape-medium';
import { parseSize } from '../../config/size';
import type { ControlContext, MethodTable } from '../context';
import { liveStorageObject } from '../lookup';
import { optBool, optStr, str } from '../params';

const path = str;

const TYPE_NAME: Record<number, string> = {
  [ElementType.TRANSPORT]: 'transport', [ElementType.STORAGE]: 'slot', [ElementType.IMPORT_EXPORT]: 'import_export', [ElementType.DRIVE]: 'drive',
};

const unit = (c: ControlContext, p: unknown): LogicalUnit => liveStorageObject(c.live, p).lu;
const tape = (c: ControlContext, p: unknown): TapeDrive => need(tapeDriveOf(unit(c, p)), p, 'a tape drive');
const changer = (c: ControlContext, p: unknown): MediaLibrary => need(libraryOf(unit(c, p)), p, 'a media changer');
const optical = (c: ControlContext, p: unknown): OpticalDrive => need(opticalDriveOf(unit(c, p)), p, 'a CD/DVD drive');
const shelf = (c: ControlContext, p: unknown): CartridgeShelf => {
  const lu = unit(c, p);
  return need(tapeDriveOf(lu)?.shelf ?? libraryOf(lu)?.shelf, p, 'a tape drive or media changer');
};

export const mediaMethods: MethodTable = {
  'media.status': {
    doc: 'The media of a tape drive (cartridge, loaded, position), a changer (every element) or a CD/DVD drive (image, tray).',
    params: { path },
    run: (p, c) => {
      const lu = unit(c, p.path);
      const t = tapeDriveOf(lu);
      if (t) return { cartridge: t.barcode ?? null, loaded: t.loaded, position: t.pos, prevented: t.prevented };
      const l = libraryOf(lu);
      if (l) {
        return {
          elements: l.elements.map((e) => ({ address: e.address, type: TYPE_NAME[e.type], cartridge: l.content(e) ?? null, ...(e.driveName ? { drive: e.driveName } : {}) })),
          shelf: l.shelf.list().filter((b) => !l.holds(b)),
        };
      }
      const o = optical(c, p.path);
      return { image: o.disc.image ?? null, present: o.present, tray_open: o.trayOpen, prevented: o.prevented };
    },
  },
  'cartridges.list': {
    doc: 'Every cartridge on the shelf of a tape drive or changer (its directory).',
    params: { path },
    run: (p, c) => shelf(c, p.path).list(),
  },
  'cartridges.create': {
    doc: 'Makes a blank cartridge on the shelf of a tape drive or changer; capacity with units (default 1GiB).',
    params: { path, barcode: str, capacity: optStr },
    run: async (p, c) => {
      await shelf(c, p.path).create(p.barcode as string, p.capacity === undefined ? 1 << 30 : parseSize(p.capacity as string | number));
      return { barcode: p.barcode };
    },
  },
  'tape.load': {
    doc: 'Puts a cartridge from the shelf in a tape drive and loads it.',
    params: { path, barcode: str },
    run: async (p, c) => {
      await tape(c, p.path).insert(p.barcode as string);
      return { cartridge: p.barcode };
    },
  },
  'tape.unload': {
    doc: 'Takes the cartridge out of a tape drive (back to the shelf); refused while an initiator prevents removal, unless forced.',
    params: { path, force: optBool },
    run: async (p, c) => ({ cartridge: await tape(c, p.path).remove(p.force === true) }),
  },
  'changer.import': {
    doc: 'The operator puts cartridges from the shelf in the import/export slots (comma-separated barcodes).',
    params: { path, barcodes: str },
    run: (p, c) => changer(c, p.path).operate((p.barcodes as string).split(',').map((b) => b.trim()).filter(Boolean), false),
  },
  'changer.export': {
    doc: 'The operator takes every cartridge out of the import/export slots (to the shelf).',
    params: { path },
    run: (p, c) => changer(c, p.path).operate([], true),
  },
  'optical.insert': {
    doc: 'Puts an ISO image in a CD/DVD drive (replacing the disc there); refused while an initiator prevents removal, unless forced.',
    params: { path, image: str, force: optBool },
    run: async (p, c) => {
      await optical(c, p.path).insert(resolve(p.image as string), p.force === true);
      return { image: resolve(p.image as string) };
    },
  },
  'optical.eject': {
    doc: 'Ejects the disc of a CD/DVD drive; refused (and reported to the initiator as an eject request) while it prevents removal, unless forced.',
    params: { path, force: optBool },
    run: async (p, c) => {
      await optical(c, p.path).eject(p.force === true);
      return {};
    },
  },
};

function need<T>(x: T | undefined, path: unknown, what: string): T {
  if (x === undefined) throw new Error(`${String(path)} is not ${what}`);
  return x;
}
