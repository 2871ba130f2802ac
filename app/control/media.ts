// Control API methods for removable media: what an operator does with the
// cartridges and discs of tape drives, media changers and CD/DVD drives.
// They change the media in the units, not the configuration (whose
// `cartridge`, `cartridges` and `dev` fields say what the units start with).

import { resolve } from 'node:path';
import type { StorageObject } from '../../src/model/storage-object';
import { tapeDriveOf, type TapeDrive } from '../../src/scsi/ssc-drive';
import { libraryOf, ElementType, type MediaLibrary } from '../../src/scsi/smc-library';
import { opticalDriveOf, type OpticalDrive } from '../../src/scsi/mmc-drive';
import type { CartridgeShelf } from '../../src/scsi/tape-medium';
import { parseSize } from '../config/size';

type Params = Record<string, unknown>;
interface Method {
  params: Record<string, { type: 'string' | 'int' | 'bool' | 'object' | 'size' | 'scalar'; required?: boolean }>;
  doc: string;
  run(p: Params): Promise<unknown> | unknown;
}

const path = { type: 'string', required: true } as const;
const str = { type: 'string', required: true } as const;
const optBool = { type: 'bool' } as const;

const TYPE_NAME: Record<number, string> = {
  [ElementType.TRANSPORT]: 'transport', [ElementType.STORAGE]: 'slot', [ElementType.IMPORT_EXPORT]: 'import_export', [ElementType.DRIVE]: 'drive',
};

export function mediaMethods(find: (path: unknown) => StorageObject): Record<string, Method> {
  const tape = (p: unknown): TapeDrive => need(tapeDriveOf(find(p).lu), p, 'a tape drive');
  const changer = (p: unknown): MediaLibrary => need(libraryOf(find(p).lu), p, 'a media changer');
  const optical = (p: unknown): OpticalDrive => need(opticalDriveOf(find(p).lu), p, 'a CD/DVD drive');
  const shelf = (p: unknown): CartridgeShelf => {
    const lu = find(p).lu;
    const s = tapeDriveOf(lu)?.shelf ?? libraryOf(lu)?.shelf;
    return need(s, p, 'a tape drive or media changer');
  };
  return {
    'media.status': {
      doc: 'The media of a tape drive (cartridge, loaded, position), a changer (every element) or a CD/DVD drive (image, tray).',
      params: { path },
      run: (p) => {
        const lu = find(p.path).lu;
        const t = tapeDriveOf(lu);
        if (t) return { cartridge: t.barcode ?? null, loaded: t.loaded, position: t.pos, prevented: t.prevented };
        const l = libraryOf(lu);
        if (l) {
          return {
            elements: l.elements.map((e) => ({ address: e.address, type: TYPE_NAME[e.type], cartridge: l.content(e) ?? null, ...(e.driveName ? { drive: e.driveName } : {}) })),
            shelf: l.shelf.list().filter((b) => !l.holds(b)),
          };
        }
        const o = optical(p.path);
        return { image: o.disc.image ?? null, present: o.present, tray_open: o.trayOpen, prevented: o.prevented };
      },
    },
    'cartridges.list': {
      doc: 'Every cartridge on the shelf of a tape drive or changer (its directory).',
      params: { path },
      run: (p) => shelf(p.path).list(),
    },
    'cartridges.create': {
      doc: 'Makes a blank cartridge on the shelf of a tape drive or changer; capacity with units (default 1GiB).',
      params: { path, barcode: str, capacity: { type: 'size' } },
      run: async (p) => {
        await shelf(p.path).create(p.barcode as string, p.capacity === undefined ? 1 << 30 : parseSize(p.capacity as string | number));
        return { barcode: p.barcode };
      },
    },
    'tape.load': {
      doc: 'Puts a cartridge from the shelf in a tape drive and loads it.',
      params: { path, barcode: str },
      run: async (p) => {
        await tape(p.path).insert(p.barcode as string);
        return { cartridge: p.barcode };
      },
    },
    'tape.unload': {
      doc: 'Takes the cartridge out of a tape drive (back to the shelf); refused while an initiator prevents removal, unless forced.',
      params: { path, force: optBool },
      run: async (p) => ({ cartridge: await tape(p.path).remove(p.force === true) }),
    },
    'changer.import': {
      doc: 'The operator puts cartridges from the shelf in the import/export slots (comma-separated barcodes).',
      params: { path, barcodes: str },
      run: (p) => changer(p.path).operate((p.barcodes as string).split(',').map((b) => b.trim()).filter(Boolean), false),
    },
    'changer.export': {
      doc: 'The operator takes every cartridge out of the import/export slots (to the shelf).',
      params: { path },
      run: (p) => changer(p.path).operate([], true),
    },
    'optical.insert': {
      doc: 'Puts an ISO image in a CD/DVD drive (replacing the disc there); refused while an initiator prevents removal, unless forced.',
      params: { path, image: str, force: optBool },
      run: async (p) => {
        await optical(p.path).insert(resolve(p.image as string), p.force === true);
        return { image: resolve(p.image as string) };
      },
    },
    'optical.eject': {
      doc: 'Ejects the disc of a CD/DVD drive; refused (and reported to the initiator as an eject request) while it prevents removal, unless forced.',
      params: { path, force: optBool },
      run: async (p) => {
        await optical(p.path).eject(p.force === true);
        return {};
      },
    },
  };
}

function need<T>(x: T | undefined, path: unknown, what: string): T {
  if (x === undefined) throw new Error(`${String(path)} is not ${what}`);
  return x;
}
