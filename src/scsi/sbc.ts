// SBC-4 block commands of the direct-access device type: each opcode declared
// once with its CDB usage mask (the bits SBC-4 defines that we serve; anything
// else is INVALID FIELD IN CDB, including RDPROTECT/WRPROTECT, since we keep
// no protection information), its fields, flags and persistent reservation
// class from the standards' tables of commands and reservations: 'read' is
// allowed under Write Exclusive and conflicts under Exclusive Access;
// SYNCHRONIZE CACHE and READ DEFECT DATA conflict under both ('write'), as
// SPC-2 table B.2 lists them. Handlers live in the sbc-*.ts modules.

import type { CommandDef } from '../core/opcodes';
import { DataDir, F } from '../core/opcodes';
import * as rw from './sbc-rw';
import * as info from './sbc-info';
import * as thin from './sbc-unmap';
import { SanitizeAction, decodeSanitize, sanitize, servesBlockErase, servesOverwrite } from './sbc-sanitize';
import { provisioning } from './provisioning';

export {
  MAX_ATOMIC_BLOCKS, MAX_COMPARE_AND_WRITE_BLOCKS, ATOMIC_ALIGNMENT, ATOMIC_GRANULARITY, dpoFuaSupported,
} from './sbc-rw';

/** VPD B0 WSNZ: WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 is refused (it never means "to the end"). */
export const WSNZ = true;

const SERVICE_ACTION_IN_16 = 0x9e;

/** Nominal timeouts in seconds, for REPORT SUPPORTED OPERATION CODES. */
const T_IO = 30;
const T_LONG = 300;
const T_SANITIZE = 3600;

const MEDIUM_READ = F.MEDIUM | F.LBA_CHECK;
const MEDIUM_WRITE = F.MEDIUM | F.LBA_CHECK | F.WRITE;
/** Plain block writes: an initiator offering fewer bytes than the CDB asks gets those whole blocks written. */
const BLOCK_WRITE = MEDIUM_WRITE | F.CLIP_TO_EXPECTED;

const ff = (n: number): number[] => new Array<number>(n).fill(0xff);

// CDB byte 1 of READ/WRITE (10/12/16): DPO (bit 4) and FUA (bit 3).
const DPO_FUA = 0x18;
// GROUP NUMBER: bits 5..0.
const GROUP = 0x3f;
// The control byte: no NACA (we have no ACA), no link.
const CONTROL = 0x00;

function readDef(name: string, usage: number[], lbaField: [number, number], blocksField: [number, number]): CommandDef {
  return {
    name, opcode: usage[0], usage, dir: DataDir.IN, lbaField, blocksField, flags: MEDIUM_READ, pr: 'read',
    timeout: T_IO, decode: rw.decodeRw, execute: rw.read, locate: rw.locateRead,
  };
}

function writeDef(name: string, usage: number[], lbaField: [number, number], blocksField: [number, number]): CommandDef {
  return {
    name, opcode: usage[0], usage, dir: DataDir.OUT, lbaField, blocksField, flags: BLOCK_WRITE, pr: 'write',
    timeout: T_IO, decode: rw.decodeRw, execute: rw.write, locate: rw.locateWrite,
  };
}

function sanitizeDef(name: string, serviceAction: number, served?: CommandDef['served']): CommandDef {
  return {
    name, opcode: 0x48, serviceAction, served,
    // IMMED (bit 7), AUSE (bit 5), SERVICE ACTION; PARAMETER LIST LENGTH.
    usage: [0x48, 0xa0 | 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, CONTROL],
    dir: DataDir.OUT, lengthField: [7, 2],
    // Not F.MEDIUM: SANITIZE is how a unit in sanitize failure mode gets out of it.
    flags: F.WRITE, pr: 'write', timeout: T_SANITIZE, decode: decodeSanitize, execute: sanitize,
  };
}

export const sbcCommands: CommandDef[] = [
  // READ(6)/WRITE(6): 21-bit LBA in bytes 1..3, TRANSFER LENGTH 0 means 256 blocks.
  {
    name: 'READ(6)', opcode: 0x08, usage: [0x08, 0x1f, 0xff, 0xff, 0xff, CONTROL], dir: DataDir.IN,
    lbaField: [1, 3], blocksField: [4, 1], flags: MEDIUM_READ, pr: 'read', timeout: T_IO,
    decode: rw.decode6, execute: rw.read, locate: rw.locateRead,
  },
  {
    name: 'WRITE(6)', opcode: 0x0a, usage: [0x0a, 0x1f, 0xff, 0xff, 0xff, CONTROL], dir: DataDir.OUT,
    lbaField: [1, 3], blocksField: [4, 1], flags: BLOCK_WRITE, pr: 'write', timeout: T_IO,
    decode: rw.decode6, execute: rw.write6, locate: rw.locateWrite,
  },
  readDef('READ(10)', [0x28, DPO_FUA, ...ff(4), GROUP, 0xff, 0xff, CONTROL], [2, 4], [7, 2]),
  readDef('READ(12)', [0xa8, DPO_FUA, ...ff(4), ...ff(4), GROUP, CONTROL], [2, 4], [6, 4]),
  readDef('READ(16)', [0x88, DPO_FUA, ...ff(8), ...ff(4), GROUP, CONTROL], [2, 8], [10, 4]),
  writeDef('WRITE(10)', [0x2a, DPO_FUA, ...ff(4), GROUP, 0xff, 0xff, CONTROL], [2, 4], [7, 2]),
  writeDef('WRITE(12)', [0xaa, DPO_FUA, ...ff(4), ...ff(4), GROUP, CONTROL], [2, 4], [6, 4]),
  writeDef('WRITE(16)', [0x8a, DPO_FUA, ...ff(8), ...ff(4), GROUP, CONTROL], [2, 8], [10, 4]),

  // VERIFY: DPO and BYTCHK (bits 2..1). The range and transfer checks depend on BYTCHK: decodeVerify.
  ...([
    ['VERIFY(10)', [0x2f, 0x16, ...ff(4), GROUP, 0xff, 0xff, CONTROL], [2, 4], [7, 2]],
    ['VERIFY(12)', [0xaf, 0x16, ...ff(4), ...ff(4), GROUP, CONTROL], [2, 4], [6, 4]],
    ['VERIFY(16)', [0x8f, 0x16, ...ff(8), ...ff(4), GROUP, CONTROL], [2, 8], [10, 4]],
  ] as const).map(([name, usage, lbaField, blocksField]): CommandDef => ({
    name, opcode: usage[0], usage, dir: DataDir.OUT, lbaField, blocksField, flags: F.MEDIUM, pr: 'read',
    timeout: T_LONG, decode: rw.decodeVerify, execute: rw.verify,
  })),
  ...([
    ['WRITE AND VERIFY(10)', [0x2e, 0x16, ...ff(4), GROUP, 0xff, 0xff, CONTROL], [2, 4], [7, 2]],
    ['WRITE AND VERIFY(12)', [0xae, 0x16, ...ff(4), ...ff(4), GROUP, CONTROL], [2, 4], [6, 4]],
    ['WRITE AND VERIFY(16)', [0x8e, 0x16, ...ff(8), ...ff(4), GROUP, CONTROL], [2, 8], [10, 4]],
  ] as const).map(([name, usage, lbaField, blocksField]): CommandDef => ({
    name, opcode: usage[0], usage, dir: DataDir.OUT, lbaField, blocksField, flags: BLOCK_WRITE, pr: 'write',
    timeout: T_IO, decode: rw.decodeWriteVerify, execute: rw.writeVerify,
  })),

  {
    name: 'COMPARE AND WRITE', opcode: 0x89, usage: [0x89, DPO_FUA, ...ff(8), 0, 0, 0, 0xff, GROUP, CONTROL],
    dir: DataDir.OUT, lbaField: [2, 8], blocksField: [13, 1], flags: MEDIUM_WRITE | F.ATOMIC, pr: 'write',
    // Only with emulate_caw; elsewhere an unknown opcode, so initiators (and conformance suites) skip it.
    served: (lu) => lu.so.attributes.emulate_caw, timeout: T_IO, decode: rw.decodeCompareAndWrite, execute: rw.compareAndWrite,
  },
  {
    name: 'ORWRITE(16)', opcode: 0x8b, usage: [0x8b, DPO_FUA, ...ff(8), ...ff(4), GROUP, CONTROL],
    dir: DataDir.OUT, lbaField: [2, 8], blocksField: [10, 4], flags: MEDIUM_WRITE | F.ATOMIC, pr: 'write',
    timeout: T_IO, decode: rw.decodeRw, execute: rw.orWrite,
  },
  {
    // ATOMIC BOUNDARY (bytes 10..11) is not served: VPD B0 reports no boundary support.
    name: 'WRITE ATOMIC(16)', opcode: 0x9c, usage: [0x9c, DPO_FUA, ...ff(8), 0, 0, 0xff, 0xff, GROUP, CONTROL],
    dir: DataDir.OUT, lbaField: [2, 8], blocksField: [12, 2], flags: MEDIUM_WRITE | F.ATOMIC, pr: 'write',
    timeout: T_IO, decode: rw.decodeAtomic, execute: rw.writeAtomic,
  },

  {
    // LBA and PMI are obsolete in SBC-4; we accept them as SBC-3 allowed.
    name: 'READ CAPACITY(10)', opcode: 0x25, usage: [0x25, 0, ...ff(4), 0, 0, 0x01, CONTROL], dir: DataDir.IN,
    flags: F.MEDIUM | F.STANDBY_OK, pr: 'allowed', timeout: T_IO, decode: info.decodeReadCapacity10, execute: info.readCapacity10,
  },
  {
    name: 'READ CAPACITY(16)', opcode: SERVICE_ACTION_IN_16, serviceAction: 0x10,
    usage: [SERVICE_ACTION_IN_16, 0x1f, ...ff(8), ...ff(4), 0x01, CONTROL], dir: DataDir.IN,
    flags: F.MEDIUM | F.STANDBY_OK, pr: 'allowed', timeout: T_IO, decode: info.decodeReadCapacity16, execute: info.readCapacity16,
  },
  {
    name: 'GET LBA STATUS', opcode: SERVICE_ACTION_IN_16, serviceAction: 0x12,
    usage: [SERVICE_ACTION_IN_16, 0x1f, ...ff(8), ...ff(4), 0, CONTROL], dir: DataDir.IN, lbaField: [2, 8],
    flags: F.MEDIUM, pr: 'read', timeout: T_IO, decode: thin.decodeGetLbaStatus, execute: thin.getLbaStatus,
  },

  {
    // SYNC_NV (bit 2, SBC-3; obsolete, still sent), IMMED (bit 1). NUMBER OF LOGICAL BLOCKS 0: to the end.
    name: 'SYNCHRONIZE CACHE(10)', opcode: 0x35, usage: [0x35, 0x06, ...ff(4), GROUP, 0xff, 0xff, CONTROL],
    dir: DataDir.NONE, lbaField: [2, 4], blocksField: [7, 2], flags: F.MEDIUM | F.LBA_CHECK, pr: 'write',
    timeout: T_LONG, execute: info.synchronizeCache,
  },
  {
    name: 'SYNCHRONIZE CACHE(16)', opcode: 0x91, usage: [0x91, 0x06, ...ff(8), ...ff(4), GROUP, CONTROL],
    dir: DataDir.NONE, lbaField: [2, 8], blocksField: [10, 4], flags: F.MEDIUM | F.LBA_CHECK, pr: 'write',
    timeout: T_LONG, execute: info.synchronizeCache,
  },
  {
    name: 'PRE-FETCH(10)', opcode: 0x34, usage: [0x34, 0x02, ...ff(4), GROUP, 0xff, 0xff, CONTROL],
    dir: DataDir.NONE, lbaField: [2, 4], blocksField: [7, 2], flags: F.MEDIUM | F.LBA_CHECK, pr: 'read',
    timeout: T_IO, execute: info.preFetch,
  },
  {
    name: 'PRE-FETCH(16)', opcode: 0x90, usage: [0x90, 0x02, ...ff(8), ...ff(4), GROUP, CONTROL],
    dir: DataDir.NONE, lbaField: [2, 8], blocksField: [10, 4], flags: F.MEDIUM | F.LBA_CHECK, pr: 'read',
    timeout: T_IO, execute: info.preFetch,
  },

  {
    // ANCHOR (bit 4) is refused by the decoder with a field pointer; UNMAP (bit 3).
    name: 'WRITE SAME(10)', opcode: 0x41, usage: [0x41, 0x18, ...ff(4), GROUP, 0xff, 0xff, CONTROL],
    dir: DataDir.OUT, lbaField: [2, 4], blocksField: [7, 2], flags: F.MEDIUM | F.WRITE, pr: 'write',
    timeout: T_LONG, decode: thin.decodeWriteSame, execute: thin.writeSame,
  },
  {
    // ANCHOR, UNMAP, NDOB (bit 0).
    name: 'WRITE SAME(16)', opcode: 0x93, usage: [0x93, 0x19, ...ff(8), ...ff(4), GROUP, CONTROL],
    dir: DataDir.OUT, lbaField: [2, 8], blocksField: [10, 4], flags: F.MEDIUM | F.WRITE, pr: 'write',
    timeout: T_LONG, decode: thin.decodeWriteSame, execute: thin.writeSame,
  },
  {
    name: 'UNMAP', opcode: 0x42, usage: [0x42, 0x01, 0, 0, 0, 0, GROUP, 0xff, 0xff, CONTROL], dir: DataDir.OUT,
    lengthField: [7, 2], flags: F.MEDIUM | F.WRITE, pr: 'write', timeout: T_LONG,
    // Only on a thin unit (LIO: emulate_tpu); elsewhere an unknown opcode, so initiators skip it.
    served: (lu) => provisioning(lu).unmap, decode: thin.decodeUnmap, execute: thin.unmap,
  },

  sanitizeDef('SANITIZE OVERWRITE', SanitizeAction.OVERWRITE, servesOverwrite),
  sanitizeDef('SANITIZE BLOCK ERASE', SanitizeAction.BLOCK_ERASE, servesBlockErase),
  sanitizeDef('SANITIZE EXIT FAILURE MODE', SanitizeAction.EXIT_FAILURE_MODE),

  {
    // REQ_PLIST, REQ_GLIST, DEFECT LIST FORMAT in byte 2.
    name: 'READ DEFECT DATA(10)', opcode: 0x37, usage: [0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, CONTROL],
    dir: DataDir.IN, lengthField: [7, 2], flags: F.MEDIUM, pr: 'write', timeout: T_IO,
    execute: info.readDefectData10,
  },
  {
    // Byte 1 carries the flags; bytes 2..5 the ADDRESS DESCRIPTOR INDEX.
    name: 'READ DEFECT DATA(12)', opcode: 0xb7, usage: [0xb7, 0x1f, ...ff(4), ...ff(4), 0, CONTROL],
    dir: DataDir.IN, lengthField: [6, 4], flags: F.MEDIUM, pr: 'write', timeout: T_IO,
    execute: info.readDefectData12,
  },
];
