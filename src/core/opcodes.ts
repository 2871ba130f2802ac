// Command tables as device types declare them. Each device type declares
// every opcode it serves once, with its handler, CDB usage mask, data
// direction and where its length and LBA live. Validation, dispatch and
// REPORT SUPPORTED OPERATION CODES all read the same declaration, so they
// cannot drift apart. The table itself (indexing, lookup) is command-table.ts,
// below the command and the unit; this module names them, the engine's flags
// and the CDB field readers.

import type { ScsiCmd } from './command';
import type { LogicalUnit } from './logical-unit';
import * as table from './command-table';
import type { CdbField, TableEntry } from './command-table';
import * as types from './types';

// What device types take from here though it is defined below. As constants:
// TypeScript compiles `export { } from` into a getter, and one getter turns a
// module's exports into a slow dictionary that the engine would read on every
// command.
export const DataDir = types.DataDir;
export type DataDir = types.DataDir;
export const CommandTable = table.CommandTable;
export type CommandTable = table.CommandTable;
export const serviceActionOf = table.serviceActionOf;
export type { CdbField, PrAccess, TableEntry } from './command-table';

// Behaviour flags, checked by the engine before the handler runs.
export const F = {
  /** Reported and executed without UNIT ATTENTION (INQUIRY, REPORT LUNS, REQUEST SENSE). */
  NO_UA: 1 << 0,
  /** Modifies the medium: refused on read-only storage and write-protected LUN mappings. */
  WRITE: 1 << 1,
  /** Needs the medium present (removable LUNs). */
  MEDIUM: 1 << 2,
  /** Allowed while another I_T nexus holds an SPC-2 reservation (SPC-2 5.5.1). */
  RESERVE_OK: 1 << 3,
  /** Served on a LUN the nexus has no mapping for (INQUIRY, REPORT LUNS, REQUEST SENSE). */
  NO_LUN_OK: 1 << 4,
  /** Executed as HEAD OF QUEUE whatever the initiator asked (as LIO does for INQUIRY, REPORT LUNS). */
  HEAD: 1 << 5,
  /** Takes the LBA range lock exclusively: nothing else writes the range meanwhile (COMPARE AND WRITE). */
  ATOMIC: 1 << 6,
  /** The LBA/blocks fields are checked against capacity before the handler runs. */
  LBA_CHECK: 1 << 7,
  /**
   * A write offered fewer bytes than its CDB asks (iSCSI EDTL below the transfer length) writes the whole
   * blocks offered and reports the overflow, as tgt does and libiscsi 1.19's residual tests expect.
   */
  CLIP_TO_EXPECTED: 1 << 8,
  /** Still served while a sanitize runs (SBC-4 4.11.2: INQUIRY, REPORT LUNS, REQUEST SENSE); the rest are NOT READY. */
  SANITIZE_OK: 1 << 9,
  /**
   * Served through a target port in the ALUA standby state (SPC-4 5.15.2.4.4: INQUIRY, LOG SENSE/SELECT, MODE
   * SENSE/SELECT, REPORT LUNS, REPORT/SET TARGET PORT GROUPS, REQUEST SENSE, PERSISTENT RESERVE IN/OUT, diagnostics,
   * echo buffers; "may support other commands": REPORT SUPPORTED OPERATION CODES / TASK MANAGEMENT FUNCTIONS, and
   * READ CAPACITY as LIO, so an initiator can size every path); the rest are NOT READY, 04/0B.
   */
  STANDBY_OK: 1 << 10,
} as const;

export type Handler = (cmd: ScsiCmd) => types.MaybePromise<void>;

/**
 * A command as a device type declares it in its table (fields in
 * command-table.ts's TableEntry): its functions take the engine's ScsiCmd and
 * the LogicalUnit it runs on.
 */
export type CommandDef = TableEntry<ScsiCmd, LogicalUnit>;

/** CDB length from the group code (SPC-5 4.2.5.1), for opcodes we do not know. */
export function cdbLengthOf(opcode: number): number {
  switch (opcode >> 5) {
    case 0: return 6;
    case 1: case 2: return 10;
    case 4: return 16;
    case 5: return 12;
    default: return 0; // variable or vendor specific
  }
}

export function readField(cdb: Uint8Array, f: CdbField): number {
  const [o, n] = f;
  switch (n) {
    case 1: return cdb[o];
    case 2: return (cdb[o] << 8) | cdb[o + 1];
    case 3: return (cdb[o] << 16) | (cdb[o + 1] << 8) | cdb[o + 2];
    case 4: return ((cdb[o] << 24) >>> 0) + ((cdb[o + 1] << 16) | (cdb[o + 2] << 8) | cdb[o + 3]);
    case 8: {
      const hi = ((cdb[o] << 24) >>> 0) + ((cdb[o + 1] << 16) | (cdb[o + 2] << 8) | cdb[o + 3]);
      const lo = ((cdb[o + 4] << 24) >>> 0) + ((cdb[o + 5] << 16) | (cdb[o + 6] << 8) | cdb[o + 7]);
      // Past 2^53 the value is only used to say "out of range", so precision loss is harmless.
      return hi * 0x100000000 + lo;
    }
    default: throw new Error(`unsupported CDB field size ${n}`);
  }
}

/**
 * First bit set outside the usage mask, as [byte, bit], or undefined. The
 * opcode byte is not checked (it selected the entry).
 */
export function firstInvalidBit(cdb: Uint8Array, usage: readonly number[], restricted?: readonly number[]): [number, number] | undefined {
  if (restricted !== undefined) {
    for (let j = 0; j < restricted.length; j++) {
      const i = restricted[j];
      const bad = cdb[i] & ~usage[i];
      if (bad !== 0) return [i, 31 - Math.clz32(bad)];
    }
    return undefined;
  }
  for (let i = 1; i < usage.length; i++) {
    const bad = cdb[i] & ~usage[i];
    if (bad !== 0) return [i, 31 - Math.clz32(bad)];
  }
  return undefined;
}
