// Pass-through command tables (LIO's pscsi with passthrough_parse_cdb): the
// device answers every command but REPORT LUNS, which depends on the nexus's
// LUN map and so stays emulated. The tables below only say, per device type,
// which way each known opcode moves data and where its length lives, so the
// engine can fetch data-out and size data-in; opcodes we do not know follow
// what the initiator's transfer says. The device checks the CDB itself.

import type { ScsiCmd } from '../core/command';
import {
  CdbField, CommandDef, CommandTable, DataDir, F, cdbLengthOf, readField,
} from '../core/opcodes';
import {
  Asc, DeviceSense, ScsiError, SenseKey, Status, decodeSense, invalidCdbField, statusOnly,
} from '../core/sense';
import { sglCopyOut, type Sgl } from '../core/sgl';
import type { PassthroughResult } from '../core/backstore';
import { spcCommands } from './spc';

export const DEVICE_TYPE = { DISK: 0x00, TAPE: 0x01, CDROM: 0x05 } as const;

const OP = {
  MODE_SELECT_6: 0x15,
  MODE_SENSE_6: 0x1a,
  MODE_SELECT_10: 0x55,
  MODE_SENSE_10: 0x5a,
  REPORT_LUNS: 0xa0,
} as const;

// Linux host byte values (DID_*) worth retrying: the command never reached a verdict.
const DID_TRANSIENT = new Set([0x02, 0x03, 0x05, 0x08, 0x0b, 0x0c, 0x0d, 0x0e]);

/**
 * The error for a device's answer, or undefined when it succeeded. `moved` is
 * the data that reached the initiator before the device stopped.
 */
export function passthroughError(r: PassthroughResult, moved: number): ScsiError | undefined {
  if (r.hostStatus !== 0) {
    // As LIO: the device did not answer, so there is no sense of its own to return.
    const key = DID_TRANSIENT.has(r.hostStatus) ? SenseKey.ABORTED_COMMAND : SenseKey.NOT_READY;
    return new ScsiError(key, Asc.LU_COMMUNICATION_FAILURE);
  }
  if (r.status === Status.GOOD || r.status === Status.CONDITION_MET) return undefined;
  if (r.status === Status.CHECK_CONDITION && r.sense !== undefined && r.sense.length >= 8) {
    return new DeviceSense(r.sense, r.status, moved);
  }
  return statusOnly(r.status);
}

/** Bytes of the CDB the device gets: its own length, not the fabric's padding (iSCSI carries 16). */
function cdbToSend(cdb: Buffer): Buffer {
  const op = cdb[0];
  const n = op === 0x7f ? 8 + cdb[7] : cdbLengthOf(op);
  return n === 0 || n >= cdb.length ? cdb : cdb.subarray(0, n);
}

/** Reads one byte of a data buffer list. */
function byteAt(sgl: Sgl, offset: number): number {
  const b = Buffer.alloc(1);
  return sglCopyOut(sgl, offset, b) === 1 ? b[0] : 0;
}

/** Sets bits in one byte of a data buffer list (the response we hand on). */
function orByte(sgl: Sgl, offset: number, bits: number): void {
  for (const b of sgl) {
    if (offset < b.length) {
      b[offset] |= bits;
      return;
    }
    offset -= b.length;
  }
}

/** Runs a command on the device; its status, sense and data are the answer. */
async function passThrough(cmd: ScsiCmd): Promise<void> {
  const dev = cmd.lu.backstore.passthrough;
  if (dev === undefined) throw new ScsiError(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE);
  const n = cmd.transferLength;
  const sgl = n === 0 ? undefined : cmd.dir === DataDir.IN ? cmd.inBuffers() : cmd.dir === DataDir.OUT ? cmd.out() : undefined;
  let r: PassthroughResult;
  try {
    r = await dev.execute(cdbToSend(cmd.cdb), sgl === undefined ? DataDir.NONE : cmd.dir, sgl, n);
  } catch (e) {
    // The kernel refuses a transfer larger than the device's queue takes before the device sees it.
    if (n > 0 && (e as NodeJS.ErrnoException).code === 'EINVAL') throw transferTooLong(cmd);
    throw e;
  }
  let moved = sgl === undefined ? 0 : Math.max(0, Math.min(n, n - r.resid));
  if (r.status === Status.CHECK_CONDITION && r.sense !== undefined) moved = movedBeforeCheck(cmd, r.sense, n);
  if (cmd.dir === DataDir.IN) cmd.dataInLength = moved;
  const err = passthroughError(r, moved);
  if (err !== undefined) throw err;
  if (r.status === Status.CONDITION_MET) cmd.status = Status.CONDITION_MET;
  afterGood(cmd, sgl, moved);
}

function transferTooLong(cmd: ScsiCmd): ScsiError {
  const field = cmd.def.blocksField ?? cmd.def.lengthField;
  return field !== undefined ? invalidCdbField(field[0]) : new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB);
}

const TAPE_READS = new Set([0x08, 0x0f, 0x88]);

/**
 * Data-in that is valid along with a CHECK CONDITION. Residual counts are
 * not reliable on errors (HBAs and emulators leave them at 0), so only a tape
 * READ, whose INFORMATION field is by SSC-4 the residue (bytes, or blocks in
 * fixed mode) when it stops at a filemark or on a block of another length,
 * hands on data; otherwise, as LIO, a failed command returns none.
 */
function movedBeforeCheck(cmd: ScsiCmd, sense: Buffer, n: number): number {
  if (cmd.dir !== DataDir.IN || cmd.lu.deviceType !== DEVICE_TYPE.TAPE || !TAPE_READS.has(cmd.cdb[0])) return 0;
  const d = decodeSense(sense);
  if (d.info === undefined) return 0;
  // A negative residue: the block was longer than asked, and all n bytes came.
  let residue = Number(BigInt.asIntN(d.descriptor ? 64 : 32, d.info));
  if ((cmd.cdb[1] & 1) !== 0) residue *= cmd.lu.backstore.passthrough?.tapeBlockLength ?? 0;
  return Math.max(0, Math.min(n, n - residue));
}

/**
 * What the core adds to a device's good answer (as LIO's pscsi_complete_cmd):
 * MODE SENSE shows WP on a write-protected LUN; a tape's MODE SELECT sets the
 * block length later fixed-block READ/WRITE transfers are sized by.
 */
function afterGood(cmd: ScsiCmd, sgl: Sgl | undefined, moved: number): void {
  const op = cmd.cdb[0];
  if (sgl === undefined) return;
  if (op === OP.MODE_SENSE_6 || op === OP.MODE_SENSE_10) {
    const at = op === OP.MODE_SENSE_6 ? 2 : 3; // DEVICE-SPECIFIC PARAMETER
    const type = cmd.lu.deviceType;
    if ((cmd.itl?.writeProtect || cmd.lu.writeProtected) && moved > at && type !== DEVICE_TYPE.CDROM) {
      orByte(sgl, at, 0x80);
    }
    return;
  }
  if ((op === OP.MODE_SELECT_6 || op === OP.MODE_SELECT_10) && cmd.lu.deviceType === DEVICE_TYPE.TAPE) {
    const six = op === OP.MODE_SELECT_6;
    const header = six ? 4 : 8;
    const bdLength = six ? byteAt(sgl, 3) : (byteAt(sgl, 6) << 8) | byteAt(sgl, 7);
    if (bdLength < 8 || cmd.transferLength < header + 8) return;
    const len = (byteAt(sgl, header + 5) << 16) | (byteAt(sgl, header + 6) << 8) | byteAt(sgl, header + 7);
    cmd.lu.backstore.passthrough!.tapeBlockLength = len;
  }
}

// ---- the tables: direction and length of the opcodes each device type knows

type Length = undefined | number | CdbField | ((cmd: ScsiCmd) => number);

interface Entry {
  op: number;
  name: string;
  dir: DataDir;
  /** Fixed bytes, a length field, or a decoder; undefined: no data. */
  len?: Length;
  flags?: number;
  lbaField?: CdbField;
  blocksField?: CdbField;
}

const none = (op: number, name: string, flags = 0): Entry => ({ op, name, dir: DataDir.NONE, flags });
const dataIn = (op: number, name: string, len: Length): Entry => ({ op, name, dir: DataDir.IN, len });
const dataOut = (op: number, name: string, len: Length, flags = 0): Entry => ({ op, name, dir: DataDir.OUT, len, flags });
/** Block I/O sized by the unit's logical block: the engine derives the length from blocksField. */
const blocks = (op: number, name: string, dir: DataDir, lbaField: CdbField, blocksField: CdbField, flags = 0): Entry =>
  ({ op, name, dir, lbaField, blocksField, flags });

const blockBytes = (cmd: ScsiCmd, count: number): number => count * cmd.lu.blockSize;
/** READ(6)/WRITE(6) of SBC: 0 blocks means 256. */
const sixByteBlocks = (cmd: ScsiCmd): number => blockBytes(cmd, cmd.cdb[4] === 0 ? 256 : cmd.cdb[4]);
/** VERIFY / WRITE AND VERIFY with BYTCHK (byte 1 bits 2..1): 00 no data, 01 the blocks, 11 one block. */
const verifyBytes = (blocksField: CdbField) => (cmd: ScsiCmd): number => {
  const bytchk = (cmd.cdb[1] >> 1) & 3;
  if (bytchk === 0) return 0;
  return blockBytes(cmd, bytchk === 3 ? 1 : readField(cmd.cdb, blocksField));
};
/** WRITE SAME: one block of data, none with NDOB (byte 1 bit 0 of the 16-byte form). */
const writeSameBytes = (cmd: ScsiCmd): number => (cmd.cdb[0] === 0x93 && (cmd.cdb[1] & 1) !== 0 ? 0 : cmd.lu.blockSize);

/** SSC READ/WRITE: TRANSFER LENGTH counts blocks of the current length with FIXED, bytes without. */
const tapeBytes = (field: CdbField) => (cmd: ScsiCmd): number => {
  const count = readField(cmd.cdb, field);
  if ((cmd.cdb[1] & 1) === 0) return count;
  return count * (cmd.lu.backstore.passthrough?.tapeBlockLength ?? 0);
};
/** READ POSITION: short and long forms have fixed sizes; the extended form an allocation length. */
const readPositionBytes = (cmd: ScsiCmd): number => {
  switch (cmd.cdb[1] & 0x1f) {
    case 0x00: case 0x01: return 20;
    case 0x06: return 32;
    default: return readField(cmd.cdb, [7, 2]);
  }
};

/** SPC commands every device type shares (REPORT LUNS aside). */
const SPC: Entry[] = [
  none(0x00, 'TEST UNIT READY'),
  { ...dataIn(0x03, 'REQUEST SENSE', [4, 1]), flags: F.NO_UA },
  // The device's own INQUIRY data and VPD pages are its identity (as LIO's pscsi).
  { ...dataIn(0x12, 'INQUIRY', [3, 2]), flags: F.NO_UA | F.HEAD },
  dataOut(0x15, 'MODE SELECT(6)', [4, 1]),
  none(0x16, 'RESERVE(6)'),
  none(0x17, 'RELEASE(6)'),
  dataIn(0x1a, 'MODE SENSE(6)', [4, 1]),
  dataIn(0x1c, 'RECEIVE DIAGNOSTIC RESULTS', [3, 2]),
  dataOut(0x1d, 'SEND DIAGNOSTIC', [3, 2]),
  none(0x1e, 'PREVENT ALLOW MEDIUM REMOVAL'),
  dataOut(0x3b, 'WRITE BUFFER', [6, 3]),
  dataIn(0x3c, 'READ BUFFER', [6, 3]),
  dataOut(0x4c, 'LOG SELECT', [7, 2]),
  dataIn(0x4d, 'LOG SENSE', [7, 2]),
  dataOut(0x55, 'MODE SELECT(10)', [7, 2]),
  dataOut(0x56, 'RESERVE(10)', [7, 2]),
  dataOut(0x57, 'RELEASE(10)', [7, 2]),
  dataIn(0x5a, 'MODE SENSE(10)', [7, 2]),
  dataIn(0x5e, 'PERSISTENT RESERVE IN', [7, 2]),
  dataOut(0x5f, 'PERSISTENT RESERVE OUT', [5, 4]),
  dataOut(0x83, 'EXTENDED COPY', [10, 4]),
  dataIn(0x84, 'RECEIVE COPY RESULTS', [10, 4]),
  dataIn(0x8c, 'READ ATTRIBUTE', [10, 4]),
  dataOut(0x8d, 'WRITE ATTRIBUTE', [10, 4]),
  dataIn(0xa2, 'SECURITY PROTOCOL IN', [6, 4]),
  dataIn(0xa3, 'MAINTENANCE IN', [6, 4]),
  dataOut(0xa4, 'MAINTENANCE OUT', [6, 4]),
  dataOut(0xb5, 'SECURITY PROTOCOL OUT', [6, 4]),
];

/** SBC-4 direct access (type 00h). */
const SBC: Entry[] = [
  { ...blocks(0x08, 'READ(6)', DataDir.IN, [1, 3], [4, 1]), len: sixByteBlocks },
  { ...blocks(0x0a, 'WRITE(6)', DataDir.OUT, [1, 3], [4, 1], F.WRITE), len: sixByteBlocks },
  none(0x1b, 'START STOP UNIT'),
  dataIn(0x25, 'READ CAPACITY(10)', 8),
  blocks(0x28, 'READ(10)', DataDir.IN, [2, 4], [7, 2]),
  blocks(0x2a, 'WRITE(10)', DataDir.OUT, [2, 4], [7, 2], F.WRITE),
  { ...blocks(0x2e, 'WRITE AND VERIFY(10)', DataDir.OUT, [2, 4], [7, 2], F.WRITE) },
  { ...blocks(0x2f, 'VERIFY(10)', DataDir.OUT, [2, 4], [7, 2]), len: verifyBytes([7, 2]) },
  none(0x34, 'PRE-FETCH(10)'),
  none(0x35, 'SYNCHRONIZE CACHE(10)'),
  dataIn(0x37, 'READ DEFECT DATA(10)', [7, 2]),
  dataOut(0x41, 'WRITE SAME(10)', writeSameBytes, F.WRITE),
  dataOut(0x42, 'UNMAP', [7, 2], F.WRITE),
  dataOut(0x48, 'SANITIZE', [7, 2], F.WRITE),
  blocks(0x88, 'READ(16)', DataDir.IN, [2, 8], [10, 4]),
  { ...blocks(0x89, 'COMPARE AND WRITE', DataDir.OUT, [2, 8], [13, 1], F.WRITE), len: (c) => blockBytes(c, 2 * c.cdb[13]) },
  blocks(0x8a, 'WRITE(16)', DataDir.OUT, [2, 8], [10, 4], F.WRITE),
  blocks(0x8e, 'WRITE AND VERIFY(16)', DataDir.OUT, [2, 8], [10, 4], F.WRITE),
  { ...blocks(0x8f, 'VERIFY(16)', DataDir.OUT, [2, 8], [10, 4]), len: verifyBytes([10, 4]) },
  none(0x90, 'PRE-FETCH(16)'),
  none(0x91, 'SYNCHRONIZE CACHE(16)'),
  dataOut(0x93, 'WRITE SAME(16)', writeSameBytes, F.WRITE),
  dataIn(0x9e, 'SERVICE ACTION IN(16)', [10, 4]),
  blocks(0xa8, 'READ(12)', DataDir.IN, [2, 4], [6, 4]),
  blocks(0xaa, 'WRITE(12)', DataDir.OUT, [2, 4], [6, 4], F.WRITE),
  blocks(0xae, 'WRITE AND VERIFY(12)', DataDir.OUT, [2, 4], [6, 4], F.WRITE),
  { ...blocks(0xaf, 'VERIFY(12)', DataDir.OUT, [2, 4], [6, 4]), len: verifyBytes([6, 4]) },
];

/** SSC-4 sequential access (type 01h). */
const SSC: Entry[] = [
  none(0x01, 'REWIND'),
  dataOut(0x04, 'FORMAT MEDIUM', [3, 2], F.WRITE),
  dataIn(0x05, 'READ BLOCK LIMITS', 6),
  dataIn(0x08, 'READ(6)', tapeBytes([2, 3])),
  dataOut(0x0a, 'WRITE(6)', tapeBytes([2, 3]), F.WRITE),
  dataIn(0x0f, 'READ REVERSE(6)', tapeBytes([2, 3])),
  none(0x10, 'WRITE FILEMARKS(6)', F.WRITE),
  none(0x11, 'SPACE(6)'),
  { ...dataOut(0x13, 'VERIFY(6)', (c) => ((c.cdb[1] & 2) !== 0 ? tapeBytes([2, 3])(c) : 0)) },
  none(0x19, 'ERASE(6)', F.WRITE),
  none(0x1b, 'LOAD UNLOAD'),
  none(0x2b, 'LOCATE(10)'),
  dataIn(0x34, 'READ POSITION', readPositionBytes),
  dataIn(0x44, 'REPORT DENSITY SUPPORT', [7, 2]),
  none(0x80, 'WRITE FILEMARKS(16)', F.WRITE),
  none(0x82, 'ALLOW OVERWRITE'),
  dataIn(0x88, 'READ(16)', tapeBytes([12, 3])),
  dataOut(0x8a, 'WRITE(16)', tapeBytes([12, 3]), F.WRITE),
  none(0x91, 'SPACE(16)'),
  none(0x92, 'LOCATE(16)'),
  none(0x93, 'ERASE(16)', F.WRITE),
];

/** MMC-6 CD/DVD (type 05h). */
const MMC: Entry[] = [
  none(0x1b, 'START STOP UNIT'),
  dataIn(0x23, 'READ FORMAT CAPACITIES', [7, 2]),
  dataIn(0x25, 'READ CAPACITY', 8),
  blocks(0x28, 'READ(10)', DataDir.IN, [2, 4], [7, 2]),
  blocks(0x2a, 'WRITE(10)', DataDir.OUT, [2, 4], [7, 2], F.WRITE),
  none(0x2b, 'SEEK(10)'),
  blocks(0x2e, 'WRITE AND VERIFY(10)', DataDir.OUT, [2, 4], [7, 2], F.WRITE),
  none(0x2f, 'VERIFY(10)'),
  none(0x35, 'SYNCHRONIZE CACHE'),
  dataIn(0x42, 'READ SUB-CHANNEL', [7, 2]),
  dataIn(0x43, 'READ TOC/PMA/ATIP', [7, 2]),
  dataIn(0x44, 'READ HEADER', [7, 2]),
  none(0x45, 'PLAY AUDIO(10)'),
  dataIn(0x46, 'GET CONFIGURATION', [7, 2]),
  none(0x47, 'PLAY AUDIO MSF'),
  dataIn(0x4a, 'GET EVENT STATUS NOTIFICATION', [7, 2]),
  none(0x4b, 'PAUSE/RESUME'),
  none(0x4e, 'STOP PLAY/SCAN'),
  dataIn(0x51, 'READ DISC INFORMATION', [7, 2]),
  dataIn(0x52, 'READ TRACK INFORMATION', [7, 2]),
  none(0x53, 'RESERVE TRACK', F.WRITE),
  dataOut(0x54, 'SEND OPC INFORMATION', [7, 2]),
  none(0x58, 'REPAIR TRACK', F.WRITE),
  none(0x5b, 'CLOSE TRACK/SESSION', F.WRITE),
  dataIn(0x5c, 'READ BUFFER CAPACITY', [7, 2]),
  dataOut(0x5d, 'SEND CUE SHEET', [6, 3], F.WRITE),
  none(0xa1, 'BLANK', F.WRITE),
  dataOut(0xa3, 'SEND KEY', [8, 2]),
  dataIn(0xa4, 'REPORT KEY', [8, 2]),
  none(0xa6, 'LOAD/UNLOAD MEDIUM'),
  none(0xa7, 'SET READ AHEAD'),
  blocks(0xa8, 'READ(12)', DataDir.IN, [2, 4], [6, 4]),
  blocks(0xaa, 'WRITE(12)', DataDir.OUT, [2, 4], [6, 4], F.WRITE),
  dataIn(0xad, 'READ DISC STRUCTURE', [8, 2]),
  dataOut(0xb6, 'SET STREAMING', [9, 2]),
  none(0xbb, 'SET CD SPEED'),
  dataIn(0xbd, 'MECHANISM STATUS', [8, 2]),
  dataOut(0xbf, 'SEND DISC STRUCTURE', [8, 2], F.WRITE),
];

/** The CDB length of an opcode's fixed-size form (variable and vendor groups: the 6 bytes every CDB has). */
function usageFor(op: number): number[] {
  const n = cdbLengthOf(op) || 6;
  // The device checks its own CDBs: every bit may be set as far as we are concerned.
  return [op, ...new Array<number>(n - 1).fill(0xff)];
}

function toDef(e: Entry): CommandDef {
  const def: CommandDef = {
    name: e.name, opcode: e.op, usage: usageFor(e.op), dir: e.dir, flags: e.flags ?? 0, execute: passThrough,
  };
  if (e.lbaField) def.lbaField = e.lbaField;
  if (e.blocksField) def.blocksField = e.blocksField;
  const len = e.len;
  if (typeof len === 'number') def.decode = () => len;
  else if (typeof len === 'function') def.decode = len;
  else if (len !== undefined) def.lengthField = len;
  return def;
}

/**
 * Opcodes no table names: the initiator's transfer says the direction (data
 * offered or to be fetched, as iSCSI's W bit: out; a buffer expected: in) and
 * the length, as LIO takes both from the fabric.
 */
const FALLBACK: CommandDef = {
  name: 'PASS-THROUGH',
  opcode: 0,
  usage: [0, 0xff, 0xff, 0xff, 0xff, 0xff],
  dir: DataDir.NONE,
  flags: 0,
  decode(cmd) {
    const expected = cmd.expectedLength ?? 0;
    if (expected === 0) return 0;
    cmd.dir = cmd.dataOut !== undefined || cmd.fetchDataOut !== undefined ? DataDir.OUT : DataDir.IN;
    return expected;
  },
  execute: passThrough,
};

const BY_TYPE: ReadonlyMap<number, readonly Entry[]> = new Map([
  [DEVICE_TYPE.DISK, SBC],
  [DEVICE_TYPE.TAPE, SSC],
  [DEVICE_TYPE.CDROM, MMC],
]);

const tables = new Map<number, CommandTable>();

/** The pass-through table of a peripheral device type (built once per type). */
export function passthroughTable(deviceType: number): CommandTable {
  let t = tables.get(deviceType);
  if (t === undefined) {
    const own = BY_TYPE.get(deviceType) ?? [];
    const ops = new Set(own.map((e) => e.op));
    const defs = [...SPC.filter((e) => !ops.has(e.op)), ...own].map(toDef);
    // REPORT LUNS answers for this nexus's LUN map, which the device cannot know.
    const reportLuns = spcCommands.find((d) => d.opcode === OP.REPORT_LUNS);
    if (reportLuns) defs.push(reportLuns);
    t = new CommandTable(deviceType, defs, FALLBACK);
    tables.set(deviceType, t);
  }
  return t;
}
