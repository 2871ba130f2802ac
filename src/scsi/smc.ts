// The media changer device type (peripheral device type 08h, SMC-3): READ
// ELEMENT STATUS with volume tags and drive identifiers, MOVE MEDIUM,
// INITIALIZE ELEMENT STATUS (WITH RANGE), POSITION TO ELEMENT, and the
// element address assignment, transport geometry and device capabilities mode
// pages. The elements themselves are smc-library.ts.

import type { ScsiCmd } from '../core/command';
import { CommandDef, CommandTable, DataDir } from '../core/opcodes';
import { Asc, ScsiError, SenseKey, invalidCdbField } from '../core/sense';
import { spcCommands } from './spc';
import { mediumCommands } from './medium';
import { putAscii } from './inquiry';
import { ElementBase, ElementType, libraryOf, type Element, type MediaLibrary } from './smc-library';
import { applyControl, blankPage, controlPage, controlState, withModeProfile, type ControlState, type ModeProfile } from './mode-frame';

export const DEVICE_TYPE_CHANGER = 0x08;

/** Additional sense codes of media changers (SPC-5 table D.1). */
const ChangerAsc = {
  INVALID_ELEMENT_ADDRESS: 0x2101,
  DESTINATION_ELEMENT_FULL: 0x3b0d,
  SOURCE_ELEMENT_EMPTY: 0x3b0e,
} as const;

const T_MOVE = 300;
const T_IO = 60;

function library(cmd: ScsiCmd): MediaLibrary {
  const l = libraryOf(cmd.lu);
  if (l === undefined) throw new Error('changer command on a unit that is no media changer');
  return l;
}

const illegal = (asc: number): ScsiError => new ScsiError(SenseKey.ILLEGAL_REQUEST, asc);

/** An element named by a CDB field: INVALID ELEMENT ADDRESS when there is none (and, for types, not of them). */
function elementAt(l: MediaLibrary, address: number, types?: ElementType[]): Element {
  const e = l.element(address);
  if (e === undefined || (types && !types.includes(e.type))) throw illegal(ChangerAsc.INVALID_ELEMENT_ADDRESS);
  return e;
}

/** The transport a MOVE MEDIUM or POSITION TO ELEMENT names: 0 is the default one. */
function checkTransport(l: MediaLibrary, address: number): void {
  if (address !== 0) elementAt(l, address, [ElementType.TRANSPORT]);
}

const HOLDERS = [ElementType.STORAGE, ElementType.IMPORT_EXPORT, ElementType.DRIVE] as ElementType[];

async function moveMedium(cmd: ScsiCmd): Promise<void> {
  const l = library(cmd);
  const cdb = cmd.cdb;
  checkTransport(l, cdb.readUInt16BE(2));
  const from = elementAt(l, cdb.readUInt16BE(4), HOLDERS);
  const to = elementAt(l, cdb.readUInt16BE(6), HOLDERS);
  await l.settle();
  if (l.content(from) === undefined) throw illegal(ChangerAsc.SOURCE_ELEMENT_EMPTY);
  if (from === to) return;
  if (l.content(to) !== undefined) throw illegal(ChangerAsc.DESTINATION_ELEMENT_FULL);
  const fromDrive = l.drive(from);
  // A drive whose cartridge an initiator keeps in (PREVENT ALLOW MEDIUM REMOVAL on the drive) does not give it up.
  if (fromDrive?.prevented) throw illegal(Asc.MEDIUM_REMOVAL_PREVENTED);
  if ((from.type === ElementType.DRIVE && !fromDrive) || (to.type === ElementType.DRIVE && !l.drive(to))) {
    throw new ScsiError(SenseKey.HARDWARE_ERROR, 0x3b00); // SEQUENTIAL POSITIONING ERROR: the drive is not configured
  }
  await l.move(from, to);
}

async function initializeElementStatus(cmd: ScsiCmd): Promise<void> {
  const l = library(cmd);
  if (cmd.cdb[0] === 0x37 && (cmd.cdb[1] & 0x01) !== 0) {
    // WITH RANGE: the first element must exist.
    const start = cmd.cdb.readUInt16BE(2);
    if (l.elements.every((e) => e.address < start)) throw illegal(ChangerAsc.INVALID_ELEMENT_ADDRESS);
  }
  // Nothing is ever unknown here: the inventory is the state. Drives are looked at again.
  await l.settle();
}

function positionToElement(cmd: ScsiCmd): void {
  const l = library(cmd);
  checkTransport(l, cmd.cdb.readUInt16BE(2));
  elementAt(l, cmd.cdb.readUInt16BE(4));
}

/** ELEMENT STATUS DATA flags byte (SMC-3 6.10.2). */
function statusFlags(l: MediaLibrary, e: Element): number {
  let f = l.content(e) !== undefined ? 0x01 : 0; // FULL
  if (e.type === ElementType.IMPORT_EXPORT) f |= 0x02 | 0x08 | 0x10 | 0x20; // IMPEXP: placed by the operator; ACCESS, EXENAB, INENAB
  else if (e.type !== ElementType.TRANSPORT) f |= 0x08; // ACCESS
  return f;
}

const VOLTAG_LEN = 36;
const DVCID_LEN = 4 + 16;

function descriptor(l: MediaLibrary, e: Element, voltag: boolean, dvcid: boolean): Buffer {
  const drive = e.type === ElementType.DRIVE;
  const b = Buffer.alloc(12 + (voltag ? VOLTAG_LEN : 0) + (dvcid && drive ? DVCID_LEN : 0));
  b.writeUInt16BE(e.address, 0);
  b[2] = statusFlags(l, e);
  const barcode = l.content(e);
  if (barcode !== undefined && e.source !== undefined) {
    b[9] = 0x80; // SVALID
    b.writeUInt16BE(e.source, 10);
  }
  let o = 12;
  if (voltag) {
    // PRIMARY VOLUME TAG: 32 bytes of barcode, blank-padded; volume sequence number 0.
    if (barcode !== undefined) putAscii(b, o, 32, barcode);
    o += VOLTAG_LEN;
  }
  if (dvcid && drive) {
    // The drive's identifier: its NAA designator, as its VPD page 83h has it.
    const naa = l.drive(e)?.lu.so.naa;
    b[o] = 0x01; // binary
    b[o + 1] = 0x03; // NAA
    b[o + 3] = 16;
    naa?.copy(b, o + 4);
  }
  return b;
}

async function readElementStatus(cmd: ScsiCmd): Promise<void> {
  const l = library(cmd);
  await l.settle();
  const cdb = cmd.cdb;
  const voltag = (cdb[1] & 0x10) !== 0;
  const type = cdb[1] & 0x0f;
  const start = cdb.readUInt16BE(2);
  const count = cdb.readUInt16BE(4);
  const dvcid = (cdb[6] & 0x01) !== 0;
  if (type > ElementType.DRIVE) throw invalidCdbField(1, 3);
  const chosen = l.elements
    .filter((e) => (type === ElementType.ALL || e.type === type) && e.address >= start)
    .sort((a, b) => a.address - b.address)
    .slice(0, count);
  if (chosen.length === 0 && l.elements.every((e) => e.address < start)) throw illegal(ChangerAsc.INVALID_ELEMENT_ADDRESS);
  // One element status page per run of elements of one type.
  const pages: Buffer[] = [];
  for (let i = 0; i < chosen.length;) {
    let j = i;
    while (j < chosen.length && chosen[j].type === chosen[i].type) j++;
    const descs = chosen.slice(i, j).map((e) => descriptor(l, e, voltag, dvcid));
    const h = Buffer.alloc(8);
    h[0] = chosen[i].type;
    h[1] = voltag ? 0x80 : 0; // PVOLTAG
    h.writeUInt16BE(descs[0].length, 2);
    h.writeUIntBE(descs.reduce((n, d) => n + d.length, 0), 5, 3);
    pages.push(h, ...descs);
    i = j;
  }
  const body = Buffer.concat(pages);
  const hdr = Buffer.alloc(8);
  hdr.writeUInt16BE(chosen[0]?.address ?? 0, 0);
  hdr.writeUInt16BE(chosen.length, 2);
  hdr.writeUIntBE(body.length, 5, 3);
  cmd.respond(Buffer.concat([hdr, body]));
}

type ChangerMode = ControlState;

const changerMode: ModeProfile<ChangerMode> = {
  pages: [
    controlPage<ChangerMode>(),
    {
      // Element address assignment (SMC-3 7.3.4).
      code: 0x1d, length: 20, changeable: [],
      build(lu) {
        const l = libraryOf(lu)!;
        const p = blankPage(0x1d, 20);
        const put = (at: number, base: number, type: ElementType) => {
          p.writeUInt16BE(base, at);
          p.writeUInt16BE(l.ofType(type).length, at + 2);
        };
        put(2, ElementBase.TRANSPORT, ElementType.TRANSPORT);
        put(6, ElementBase.STORAGE, ElementType.STORAGE);
        put(10, ElementBase.IMPORT_EXPORT, ElementType.IMPORT_EXPORT);
        put(14, ElementBase.DRIVE, ElementType.DRIVE);
        return p;
      },
    },
    {
      // Transport geometry parameters (SMC-3 7.3.6): one transport, no rotation.
      code: 0x1e, length: 4, changeable: [],
      build: () => blankPage(0x1e, 4),
    },
    {
      // Device capabilities (SMC-3 7.3.3): storage slots, import/export slots and drives hold media, and any moves to any.
      code: 0x1f, length: 20, changeable: [],
      build() {
        const p = blankPage(0x1f, 20);
        p[2] = 0x0e; // StorDT, StorI/E, StorST
        p[4] = 0x0e; // from MT
        p[5] = 0x0e; // from ST
        p[6] = 0x0e; // from I/E
        p[7] = 0x0e; // from DT
        return p;
      },
    },
  ],
  current: (lu) => controlState(lu),
  defaults: (lu) => controlState(lu, true),
  apply: applyControl,
  deviceSpecific: () => 0,
};

/**
 * Byte 1 bits 7..5: the LUN field of SCSI-2 CDBs, obsolete since; mtx still fills it in (from the sg
 * driver's idea of the LUN), as real libraries accept. Ignored.
 */
const LUN = 0xe0;

export const smcCommands: CommandDef[] = [
  {
    name: 'INITIALIZE ELEMENT STATUS', opcode: 0x07, usage: [0x07, LUN, 0, 0, 0, 0], dir: DataDir.NONE,
    flags: 0, pr: 'write', timeout: T_MOVE, execute: initializeElementStatus,
  },
  {
    // INVERT is not served: one-sided media.
    name: 'POSITION TO ELEMENT', opcode: 0x2b, usage: [0x2b, LUN, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], dir: DataDir.NONE,
    flags: 0, pr: 'write', timeout: T_MOVE, execute: positionToElement,
  },
  {
    // RANGE (bit 0); STARTING ELEMENT ADDRESS; NUMBER OF ELEMENTS.
    name: 'INITIALIZE ELEMENT STATUS WITH RANGE', opcode: 0x37, usage: [0x37, LUN | 0x01, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0],
    dir: DataDir.NONE, flags: 0, pr: 'write', timeout: T_MOVE, execute: initializeElementStatus,
  },
  {
    name: 'MOVE MEDIUM', opcode: 0xa5, usage: [0xa5, LUN, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], dir: DataDir.NONE,
    flags: 0, pr: 'write', timeout: T_MOVE, execute: moveMedium,
  },
  {
    // VOLTAG (bit 4), ELEMENT TYPE CODE; STARTING ELEMENT ADDRESS; NUMBER OF ELEMENTS; MIXED (SMC-4), CURDATA, DVCID; ALLOCATION LENGTH.
    name: 'READ ELEMENT STATUS', opcode: 0xb8, usage: [0xb8, LUN | 0x1f, 0xff, 0xff, 0xff, 0xff, 0x07, 0xff, 0xff, 0xff, 0, 0],
    dir: DataDir.IN, lengthField: [7, 3], flags: 0, pr: 'read', timeout: T_IO, execute: readElementStatus,
  },
];

const preventAllow = mediumCommands.filter((d) => d.opcode === 0x1e);

export const changerTable = new CommandTable(DEVICE_TYPE_CHANGER, [...withModeProfile(spcCommands, changerMode), ...preventAllow, ...smcCommands]);
