// Stream commands (SSC-4) of the sequential-access device type: reads and
// writes of fixed or variable blocks, filemarks, positioning, and the sense an
// application relies on (FILEMARK, EOM and ILI bits with the residue in
// INFORMATION, BLANK CHECK at end of data, early warning near the end of the
// cartridge). The drive's state is ssc-drive.ts; the table is tape.ts.

import type { ScsiCmd } from '../core/command';
import { CommandDef, DataDir, F } from '../core/opcodes';
import { Asc, ScsiError, SenseKey, invalidCdbField, mediumNotPresent, writeProtected } from '../core/sense';
import { ENTRY_OVERHEAD, MAX_TAPE_BLOCK, TAPE_DENSITY, earlyWarningZone, tapeDriveOf, type TapeDrive } from './ssc-drive';
import { FILEMARK, type Cartridge } from './tape-medium';

/** Additional sense codes of stream devices (SPC-5 table D.1). */
export const TapeAsc = {
  FILEMARK_DETECTED: 0x0001,
  END_OF_PARTITION_MEDIUM_DETECTED: 0x0002,
  BEGINNING_OF_PARTITION_MEDIUM_DETECTED: 0x0004,
  END_OF_DATA_DETECTED: 0x0005,
} as const;

const T_IO = 60;
/** Most bytes one fixed-block READ or WRITE moves (a buffer per command). */
const MAX_FIXED_TRANSFER = 8 * MAX_TAPE_BLOCK;
const T_LONG = 3600;

function drive(cmd: ScsiCmd): TapeDrive {
  const d = tapeDriveOf(cmd.lu);
  if (d === undefined) throw new Error('tape command on a unit that is no tape drive');
  return d;
}

/** The loaded cartridge (the engine has checked F.MEDIUM; a removal may have raced it). */
function loaded(d: TapeDrive): Cartridge {
  if (!d.loaded || d.cartridge === undefined) throw mediumNotPresent();
  return d.cartridge;
}

/** Signed 24-bit count of SPACE(6). */
function int24(cdb: Buffer, at: number): number {
  const v = cdb.readUIntBE(at, 3);
  return v & 0x800000 ? v - 0x1000000 : v;
}

/** INFORMATION of a residue: a negative one (an overlength block) in two's complement, as the fixed format has it. */
const residue = (n: number): number => n >>> 0;

const filemarkMet = (info: number, dataIn = 0): ScsiError =>
  new ScsiError(SenseKey.NO_SENSE, TapeAsc.FILEMARK_DETECTED, { filemark: true, info: residue(info), dataIn });
const endOfData = (info: number, dataIn = 0): ScsiError =>
  new ScsiError(SenseKey.BLANK_CHECK, TapeAsc.END_OF_DATA_DETECTED, { info: residue(info), dataIn });
const beginningMet = (info: number): ScsiError =>
  new ScsiError(SenseKey.NO_SENSE, TapeAsc.BEGINNING_OF_PARTITION_MEDIUM_DETECTED, { eom: true, info: residue(info) });
const earlyWarning = (info = 0): ScsiError =>
  new ScsiError(SenseKey.NO_SENSE, TapeAsc.END_OF_PARTITION_MEDIUM_DETECTED, { eom: true, info: residue(info) });
const volumeOverflow = (info: number): ScsiError =>
  new ScsiError(SenseKey.VOLUME_OVERFLOW, TapeAsc.END_OF_PARTITION_MEDIUM_DETECTED, { eom: true, info: residue(info) });

/** FIXED with no fixed block length set, or FIXED with SILI: INVALID FIELD IN CDB. */
function checkFixed(cmd: ScsiCmd, d: TapeDrive, sili: boolean): boolean {
  const fixed = (cmd.cdb[1] & 0x01) !== 0;
  if (fixed && (d.blockLength === 0 || sili)) throw invalidCdbField(1, sili ? 1 : 0);
  return fixed;
}

/** READ(6) and WRITE(6): TRANSFER LENGTH counts blocks (FIXED) or bytes. */
function decodeRw6(cmd: ScsiCmd): number {
  const d = drive(cmd);
  const n = cmd.cdb.readUIntBE(2, 3);
  cmd.blocks = n;
  if ((cmd.cdb[1] & 0x01) === 0) {
    if (n > MAX_TAPE_BLOCK) throw invalidCdbField(2);
    return n;
  }
  if (d.blockLength === 0) return 0; // refused when it runs (checkFixed)
  if (n * d.blockLength > MAX_FIXED_TRANSFER) throw invalidCdbField(2);
  return n * d.blockLength;
}

async function read6(cmd: ScsiCmd): Promise<void> {
  const d = drive(cmd);
  const sili = (cmd.cdb[1] & 0x02) !== 0;
  const fixed = checkFixed(cmd, d, sili);
  const n = cmd.blocks;
  if (n === 0) return;
  await d.serial(() => (fixed ? readFixed(cmd, d, n) : readVariable(cmd, d, n, sili)));
}

async function readVariable(cmd: ScsiCmd, d: TapeDrive, n: number, sili: boolean): Promise<void> {
  const c = loaded(d);
  if (d.pos >= c.count) throw endOfData(n);
  const len = c.lengthOf(d.pos);
  if (len === FILEMARK) {
    d.pos++;
    throw filemarkMet(n);
  }
  const take = Math.min(len, n);
  const sgl = cmd.inBuffers();
  if (take > 0) await c.read(d.pos, take, sgl, 0);
  d.pos++;
  cmd.dataInLength = Math.min(take, cmd.dataInLength);
  // A shorter block is fine with SILI; a longer one is always reported, its tail lost (SSC-4 6.4).
  if (len < n && sili) return;
  if (len !== n) throw new ScsiError(SenseKey.NO_SENSE, Asc.NO_ADDITIONAL_SENSE, { ili: true, info: residue(n - len), dataIn: take });
}

async function readFixed(cmd: ScsiCmd, d: TapeDrive, n: number): Promise<void> {
  const c = loaded(d);
  const size = d.blockLength;
  const sgl = cmd.inBuffers();
  for (let done = 0; done < n;) {
    if (d.pos >= c.count) throw endOfData(n - done, done * size);
    const len = c.lengthOf(d.pos);
    if (len === FILEMARK) {
      d.pos++;
      throw filemarkMet(n - done, done * size);
    }
    if (len !== size) {
      // Past the block of the wrong length; INFORMATION counts it among those not read.
      d.pos++;
      throw new ScsiError(SenseKey.NO_SENSE, Asc.NO_ADDITIONAL_SENSE, { ili: true, info: n - done, dataIn: done * size });
    }
    const run = c.runFrom(d.pos, n - done);
    await c.read(d.pos, run * size, sgl, done * size);
    d.pos += run;
    done += run;
  }
}

/** Room left before the physical end, and whether the position is past early warning. */
function room(c: Cartridge): { left: number; warned: boolean } {
  const left = c.capacity - c.used;
  return { left, warned: left <= earlyWarningZone(c.capacity) };
}

function checkWritable(c: Cartridge): void {
  if (c.writeProtected) throw writeProtected();
}

async function write6(cmd: ScsiCmd): Promise<void> {
  const d = drive(cmd);
  const fixed = checkFixed(cmd, d, false);
  const n = cmd.blocks;
  if (n === 0) return;
  await d.serial(async () => {
    const c = loaded(d);
    checkWritable(c);
    const size = fixed ? d.blockLength : n;
    const want = fixed ? n : 1;
    const fits = Math.max(0, Math.floor((room(c).left - ENTRY_OVERHEAD) / size));
    const count = Math.min(want, fits);
    if (count > 0) {
      await c.write(d.pos, count, size, cmd.out());
      d.pos += count;
    }
    // A block that does not fit is not written at all (VOLUME OVERFLOW with the residue).
    if (count < want) throw volumeOverflow(fixed ? want - count : n);
    if (room(c).warned) throw earlyWarning();
  });
}

async function writeFilemarks(cmd: ScsiCmd): Promise<void> {
  const d = drive(cmd);
  const n = cmd.cdb.readUIntBE(2, 3);
  const immed = (cmd.cdb[1] & 0x01) !== 0;
  await d.serial(async () => {
    const c = loaded(d);
    if (n > 0) {
      checkWritable(c);
      await c.write(d.pos, n, FILEMARK, undefined);
      d.pos += n;
    }
    // WRITE FILEMARKS is how an application flushes the drive's buffer (SSC-4 4.2.10).
    if (!immed) await c.flush();
    if (n > 0 && room(c).warned) throw earlyWarning();
  });
}

const SpaceCode = { BLOCKS: 0, FILEMARKS: 1, SEQUENTIAL_FILEMARKS: 2, END_OF_DATA: 3 } as const;

function spaceBlocks(d: TapeDrive, c: Cartridge, n: number): void {
  const from = d.pos;
  if (n > 0) {
    const fm = c.nextFilemark(from);
    if (from + n <= fm) {
      d.pos = from + n;
      return;
    }
    if (fm < c.count) {
      d.pos = fm + 1; // past the filemark, on its end-of-partition side
      throw filemarkMet(n - (fm - from));
    }
    d.pos = c.count;
    throw endOfData(n - (c.count - from));
  }
  const back = -n;
  const fm = c.prevFilemark(from);
  if (from - back > fm) {
    d.pos = from - back;
    return;
  }
  if (fm >= 0) {
    d.pos = fm; // before the filemark, on its beginning-of-partition side
    throw filemarkMet(back - (from - fm - 1));
  }
  d.pos = 0;
  throw beginningMet(back - from);
}

function spaceFilemarks(d: TapeDrive, c: Cartridge, n: number): void {
  if (n > 0) {
    for (let done = 0; done < n; done++) {
      const fm = c.nextFilemark(d.pos);
      if (fm >= c.count) {
        d.pos = c.count;
        throw endOfData(n - done);
      }
      d.pos = fm + 1;
    }
    return;
  }
  for (let done = 0; done < -n; done++) {
    const fm = c.prevFilemark(d.pos);
    if (fm < 0) {
      d.pos = 0;
      throw beginningMet(-n - done);
    }
    d.pos = fm;
  }
}

async function space6(cmd: ScsiCmd): Promise<void> {
  const d = drive(cmd);
  const code = cmd.cdb[1] & 0x0f;
  const n = int24(cmd.cdb, 2);
  if (code > SpaceCode.END_OF_DATA || code === SpaceCode.SEQUENTIAL_FILEMARKS) throw invalidCdbField(1, 3);
  await d.serial(() => space(d, code, n));
}

function space(d: TapeDrive, code: number, n: number): void {
  const c = loaded(d);
  if (code === SpaceCode.END_OF_DATA) {
    d.pos = c.count;
    return;
  }
  if (n === 0) return;
  if (code === SpaceCode.BLOCKS) spaceBlocks(d, c, n);
  else spaceFilemarks(d, c, n);
}

async function space16(cmd: ScsiCmd): Promise<void> {
  const d = drive(cmd);
  const code = cmd.cdb[1] & 0x0f;
  const n = Number(cmd.cdb.readBigInt64BE(4));
  if (code > SpaceCode.END_OF_DATA || code === SpaceCode.SEQUENTIAL_FILEMARKS) throw invalidCdbField(1, 3);
  if (cmd.cdb.readUInt16BE(12) !== 0) throw invalidCdbField(12); // PARAMETER LENGTH: no parameter data
  await d.serial(() => space(d, code, n));
}

async function rewind(cmd: ScsiCmd): Promise<void> {
  const d = drive(cmd);
  await d.serial(async () => {
    const c = loaded(d);
    await c.flush();
    d.pos = 0;
  });
}

/** LOCATE(10) and (16): to a logical object, a logical file, or end of data. */
async function locate(cmd: ScsiCmd): Promise<void> {
  const d = drive(cmd);
  const cdb = cmd.cdb;
  const sixteen = cdb[0] === 0x92;
  const cp = (cdb[1] & 0x02) !== 0;
  const partition = sixteen ? cdb[3] : cdb[8];
  if (cp && partition !== 0) throw invalidCdbField(sixteen ? 3 : 8); // one partition
  const destType = sixteen ? (cdb[1] >> 3) & 0x07 : 0;
  if (destType !== 0 && destType !== 1 && destType !== 3) throw invalidCdbField(1, 5);
  const id = sixteen ? Number(cdb.readBigUInt64BE(4)) : cdb.readUInt32BE(3);
  await d.serial(() => {
    const c = loaded(d);
    if (destType === 3) {
      d.pos = c.count;
      return;
    }
    if (destType === 1) {
      // Logical file n starts after the n-th filemark.
      d.pos = 0;
      for (let f = 0; f < id; f++) {
        const fm = c.nextFilemark(d.pos);
        if (fm >= c.count) {
          d.pos = c.count;
          throw endOfData(0);
        }
        d.pos = fm + 1;
      }
      return;
    }
    if (id > c.count) {
      d.pos = c.count;
      throw endOfData(0);
    }
    d.pos = id;
  });
}

const ReadPosition = { SHORT: 0x00, SHORT_VENDOR: 0x01, LONG: 0x06, EXTENDED: 0x08 } as const;

function positionFlags(d: TapeDrive, c: Cartridge): number {
  const r = room(c);
  return (d.pos === 0 ? 0x80 : 0) | (r.left <= 0 ? 0x40 : 0) | (r.warned && d.pos === c.count ? 0x01 : 0);
}

async function readPosition(cmd: ScsiCmd): Promise<void> {
  const d = drive(cmd);
  const sa = cmd.cdb[1] & 0x1f;
  await d.serial(() => {
    const c = loaded(d);
    const flags = positionFlags(d, c);
    let b: Buffer;
    if (sa === ReadPosition.LONG) {
      b = Buffer.alloc(32);
      b[0] = flags; // BOP, EOP, BPEW; MPU and LONU 0: the position is known
      b.writeBigUInt64BE(BigInt(d.pos), 8);
      b.writeBigUInt64BE(BigInt(c.filemarksBefore(d.pos)), 16);
    } else if (sa === ReadPosition.EXTENDED) {
      b = Buffer.alloc(32);
      b[0] = flags;
      b.writeUInt16BE(0x1c, 2);
      b.writeBigUInt64BE(BigInt(d.pos), 8);
      b.writeBigUInt64BE(BigInt(d.pos), 16);
    } else {
      b = Buffer.alloc(20);
      b[0] = flags; // nothing is buffered: BYCU and LOCU 0, the counts below are exact
      b.writeUInt32BE(d.pos >>> 0, 4);
      b.writeUInt32BE(d.pos >>> 0, 8);
    }
    cmd.respond(b);
  });
}

function decodeReadPosition(cmd: ScsiCmd): number {
  const sa = cmd.cdb[1] & 0x1f;
  const alloc = cmd.cdb.readUInt16BE(7);
  // The short and long forms have fixed lengths; their ALLOCATION LENGTH is zero (SSC-4 7.7).
  if (sa === ReadPosition.EXTENDED) return alloc;
  if (alloc !== 0 && alloc < (sa === ReadPosition.LONG ? 32 : 20)) return alloc;
  return sa === ReadPosition.LONG ? 32 : 20;
}

async function erase(cmd: ScsiCmd): Promise<void> {
  const d = drive(cmd);
  await d.serial(async () => {
    const c = loaded(d);
    checkWritable(c);
    // LONG or not, what follows the position is gone: end of data is written there.
    await c.erase(d.pos);
  });
}

async function loadUnload(cmd: ScsiCmd): Promise<void> {
  const d = drive(cmd);
  const b4 = cmd.cdb[4];
  const load = (b4 & 0x01) !== 0;
  const eot = (b4 & 0x04) !== 0;
  if (load && eot) throw invalidCdbField(4, 2);
  await d.serial(async () => {
    if (d.cartridge === undefined) throw mediumNotPresent();
    if (load) {
      if (!d.loaded) d.load();
      else d.pos = 0;
      if (eot) d.pos = d.cartridge.count;
      return;
    }
    if (d.prevented) throw new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.MEDIUM_REMOVAL_PREVENTED);
    await d.unload();
  });
}

function readBlockLimits(cmd: ScsiCmd): void {
  const b = Buffer.alloc(6);
  b[0] = 0; // GRANULARITY: any length
  b.writeUIntBE(MAX_TAPE_BLOCK, 1, 3);
  b.writeUInt16BE(1, 4);
  cmd.respond(b);
}

/** REPORT DENSITY SUPPORT (SSC-4 6.20): the one density this drive writes and reads. */
function reportDensitySupport(cmd: ScsiCmd): void {
  const d = drive(cmd);
  const media = (cmd.cdb[1] & 0x01) !== 0;
  if (media && (!d.loaded || d.cartridge === undefined)) throw mediumNotPresent();
  const b = Buffer.alloc(4 + 52);
  b.writeUInt16BE(b.length - 2, 0);
  const o = 4;
  b[o] = TAPE_DENSITY;
  b[o + 1] = TAPE_DENSITY;
  b[o + 2] = 0xa0; // WRTOK, DEFLT
  b.writeUInt16BE(127, o + 8); // MEDIA WIDTH in tenths of mm: half-inch
  b.writeUInt16BE(1, o + 10); // TRACKS
  const capacity = media ? d.cartridge!.capacity : 0;
  b.writeUInt32BE(Math.min(0xffffffff, Math.floor(capacity / 1e6)), o + 12); // CAPACITY in megabytes
  b.write('TSIO    ', o + 16, 8, 'ascii');
  b.write('VIRTUAL ', o + 24, 8, 'ascii');
  b.write('tsio virtual cartridge', o + 32, 20, 'ascii');
  cmd.respond(b);
}

const MEDIUM = F.MEDIUM;
const ff = (n: number): number[] => new Array<number>(n).fill(0xff);

export const sscCommands: CommandDef[] = [
  {
    name: 'REWIND', opcode: 0x01, usage: [0x01, 0x01, 0, 0, 0, 0], dir: DataDir.NONE,
    flags: MEDIUM, pr: 'read', timeout: T_LONG, execute: rewind,
  },
  {
    name: 'READ BLOCK LIMITS', opcode: 0x05, usage: [0x05, 0, 0, 0, 0, 0], dir: DataDir.IN,
    flags: 0, pr: 'allowed', timeout: T_IO, decode: () => 6, execute: readBlockLimits,
  },
  {
    // SILI (bit 1), FIXED (bit 0); TRANSFER LENGTH in blocks or bytes.
    name: 'READ(6)', opcode: 0x08, usage: [0x08, 0x03, 0xff, 0xff, 0xff, 0], dir: DataDir.IN,
    flags: MEDIUM, pr: 'read', timeout: T_IO, decode: decodeRw6, execute: read6,
  },
  {
    name: 'WRITE(6)', opcode: 0x0a, usage: [0x0a, 0x01, 0xff, 0xff, 0xff, 0], dir: DataDir.OUT,
    flags: MEDIUM | F.WRITE, pr: 'write', timeout: T_IO, decode: decodeRw6, execute: write6,
  },
  {
    // IMMED (bit 0); setmarks (WSMK) are not served.
    name: 'WRITE FILEMARKS(6)', opcode: 0x10, usage: [0x10, 0x01, 0xff, 0xff, 0xff, 0], dir: DataDir.NONE,
    flags: MEDIUM | F.WRITE, pr: 'write', timeout: T_IO, execute: writeFilemarks,
  },
  {
    name: 'SPACE(6)', opcode: 0x11, usage: [0x11, 0x0f, 0xff, 0xff, 0xff, 0], dir: DataDir.NONE,
    flags: MEDIUM, pr: 'read', timeout: T_LONG, execute: space6,
  },
  {
    // IMMED (bit 1), LONG (bit 0).
    name: 'ERASE(6)', opcode: 0x19, usage: [0x19, 0x03, 0, 0, 0, 0], dir: DataDir.NONE,
    flags: MEDIUM | F.WRITE, pr: 'write', timeout: T_LONG, execute: erase,
  },
  {
    // IMMED; HOLD, EOT, RETEN, LOAD. Not F.MEDIUM: it is how a cartridge gets loaded.
    name: 'LOAD UNLOAD', opcode: 0x1b, usage: [0x1b, 0x01, 0, 0, 0x0f, 0], dir: DataDir.NONE,
    flags: 0, pr: 'write', timeout: T_LONG, execute: loadUnload,
  },
  {
    // BT (bit 2), CP (bit 1), IMMED (bit 0); LOGICAL OBJECT IDENTIFIER; PARTITION.
    name: 'LOCATE(10)', opcode: 0x2b, usage: [0x2b, 0x07, 0, ...ff(4), 0, 0xff, 0], dir: DataDir.NONE,
    flags: MEDIUM, pr: 'read', timeout: T_LONG, execute: locate,
  },
  ...([['READ POSITION (short form)', ReadPosition.SHORT], ['READ POSITION (short form, vendor)', ReadPosition.SHORT_VENDOR],
    ['READ POSITION (long form)', ReadPosition.LONG], ['READ POSITION (extended form)', ReadPosition.EXTENDED]] as const)
    .map(([name, sa]): CommandDef => ({
      name, opcode: 0x34, serviceAction: sa, usage: [0x34, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0], dir: DataDir.IN,
      flags: MEDIUM, pr: 'read', timeout: T_IO, decode: decodeReadPosition, execute: readPosition,
    })),
  {
    // MEDIA (bit 0): densities of the mounted medium only.
    name: 'REPORT DENSITY SUPPORT', opcode: 0x44, usage: [0x44, 0x01, 0, 0, 0, 0, 0, 0xff, 0xff, 0], dir: DataDir.IN,
    lengthField: [7, 2], flags: 0, pr: 'allowed', timeout: T_IO, execute: reportDensitySupport,
  },
  {
    // CODE; COUNT (signed 64 bits); PARAMETER LENGTH must be 0.
    name: 'SPACE(16)', opcode: 0x91, usage: [0x91, 0x0f, 0, 0, ...ff(8), 0xff, 0xff, 0, 0], dir: DataDir.NONE,
    flags: MEDIUM, pr: 'read', timeout: T_LONG, execute: space16,
  },
  {
    // DEST_TYPE (bits 5..3), CP, IMMED; PARTITION; LOGICAL IDENTIFIER.
    name: 'LOCATE(16)', opcode: 0x92, usage: [0x92, 0x3b, 0, 0xff, ...ff(8), 0, 0, 0, 0], dir: DataDir.NONE,
    flags: MEDIUM, pr: 'read', timeout: T_LONG, execute: locate,
  },
];
