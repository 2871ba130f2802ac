// Command tables. Each device type declares every opcode it serves once, with
// its handler, CDB usage mask, data direction and where its length and LBA
// live. Validation, dispatch and REPORT SUPPORTED OPERATION CODES all read the
// same declaration, so they cannot drift apart.

import type { ScsiCmd } from './command';
import type { LogicalUnit } from './logical-unit';
import type { DataDir, MaybePromise } from './types';

export { DataDir } from './types';

/** A big-endian field of the CDB: [byte offset, size in bytes]. */
export type CdbField = readonly [offset: number, size: number];

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
} as const;

export type Handler = (cmd: ScsiCmd) => MaybePromise<void>;

/**
 * Persistent-reservation access class of a command (SPC-5 table 67ff): how it
 * fares when another nexus holds a reservation. Filled by the PR module's tables.
 */
export type PrAccess = 'read' | 'write' | 'allowed' | 'conflict';

export interface CommandDef {
  name: string;
  opcode: number;
  /** Service action, for opcodes that carry one (byte 1 bits 4..0; bytes 8..9 for 7Fh). */
  serviceAction?: number;
  /**
   * CDB usage data as REPORT SUPPORTED OPERATION CODES returns it: one byte per
   * CDB byte, 1 where the bit may be set. Its length is the CDB length. A set
   * bit outside the mask is INVALID FIELD IN CDB pointing at that bit.
   */
  usage: readonly number[];
  dir: DataDir;
  /** Allocation length (IN) or parameter list length (OUT), in bytes. */
  lengthField?: CdbField;
  /** LOGICAL BLOCK ADDRESS field. */
  lbaField?: CdbField;
  /** TRANSFER LENGTH / NUMBER OF LOGICAL BLOCKS field. */
  blocksField?: CdbField;
  /** Decodes fields the declarative ones cannot express; returns the data length in bytes. */
  decode?: (cmd: ScsiCmd) => number;
  flags: number;
  /** Persistent reservation access class (SPC-5 5.14.1). */
  pr?: PrAccess;
  /** Nominal command timeout in seconds, for RSOC's timeouts descriptor. */
  timeout?: number;
  execute: Handler;
  /**
   * Served on this unit only when true (a feature its attributes or backstore may lack): otherwise the command
   * is refused as unknown and REPORT SUPPORTED OPERATION CODES does not list it. Absent: always served.
   */
  served?: (lu: LogicalUnit) => boolean;
  /** Filled by CommandTable: the CDB bytes whose usage mask is not 0xff, the only ones firstInvalidBit must read. */
  restricted?: readonly number[];
}

// Every key of CommandDef, in one order: a table's entries are copies laid out
// from it, so they share one hidden class and the engine's reads of def.flags,
// def.execute... stay monomorphic however many different commands it has seen.
const ENTRY_LAYOUT: { [K in keyof Required<CommandDef>]: undefined } = {
  name: undefined, opcode: undefined, serviceAction: undefined, usage: undefined, dir: undefined,
  lengthField: undefined, lbaField: undefined, blocksField: undefined, decode: undefined, flags: undefined,
  pr: undefined, timeout: undefined, execute: undefined, served: undefined, restricted: undefined,
};

function entry(d: CommandDef): CommandDef {
  const restricted: number[] = [];
  for (let i = 1; i < d.usage.length; i++) if (d.usage[i] !== 0xff) restricted.push(i);
  return { ...ENTRY_LAYOUT, ...d, restricted };
}

/** Commands of one device type, indexed for dispatch. */
export class CommandTable {
  // Two arrays, not one of mixed types: the dispatch reads a plain entry without a type test.
  private readonly byOpcode: (CommandDef | undefined)[] = new Array(256).fill(undefined);
  private readonly byServiceAction: (Map<number, CommandDef> | undefined)[] = new Array(256).fill(undefined);
  readonly all: readonly CommandDef[];

  /**
   * @param fallback serves every opcode (and service action) the table does not
   * declare: a pass-through table hands them to the device.
   */
  readonly fallback: CommandDef | undefined;

  constructor(readonly deviceType: number, defs: readonly CommandDef[], fallback?: CommandDef) {
    this.fallback = fallback && entry(fallback);
    this.all = defs.map(entry).sort((a, b) => a.opcode - b.opcode || (a.serviceAction ?? 0) - (b.serviceAction ?? 0));
    for (const d of this.all) {
      if (d.usage.length < 6 || d.usage[0] !== d.opcode) throw new Error(`${d.name}: usage must start with its opcode`);
      const plain = this.byOpcode[d.opcode];
      const sas = this.byServiceAction[d.opcode];
      if (d.serviceAction === undefined) {
        if (plain || sas) throw new Error(`opcode ${d.opcode.toString(16)} declared twice`);
        this.byOpcode[d.opcode] = d;
      } else {
        if (plain) throw new Error(`${d.name}: opcode has no service actions`);
        const m = sas ?? new Map<number, CommandDef>();
        if (m.has(d.serviceAction)) throw new Error(`${d.name}: service action declared twice`);
        m.set(d.serviceAction, d);
        this.byServiceAction[d.opcode] = m;
      }
    }
  }

  /** True when the opcode uses service actions. */
  hasServiceActions(opcode: number): boolean {
    return this.byServiceAction[opcode] !== undefined;
  }

  /** The command a CDB names; undefined for an unknown opcode, null for an unknown service action. */
  lookup(cdb: Uint8Array): CommandDef | null | undefined {
    const d = this.byOpcode[cdb[0]];
    if (d !== undefined) return d;
    const m = this.byServiceAction[cdb[0]];
    if (m === undefined) return this.fallback;
    return m.get(serviceActionOf(cdb)) ?? this.fallback ?? null;
  }

  find(opcode: number, serviceAction?: number): CommandDef | undefined {
    if (serviceAction === undefined) return this.byOpcode[opcode];
    return this.byServiceAction[opcode]?.get(serviceAction);
  }
}

export function serviceActionOf(cdb: Uint8Array): number {
  return cdb[0] === 0x7f ? (cdb[8] << 8) | cdb[9] : cdb[1] & 0x1f;
}

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
