// The command table as the core indexes it: each entry found by opcode and
// service action, for dispatch and REPORT SUPPORTED OPERATION CODES alike.
// Device types declare their entries in opcodes.ts's terms (CommandDef, whose
// functions take the engine's ScsiCmd and LogicalUnit); this module sits below
// both of those, so it names them only by what it knows of them.

import type { DataDir, MaybePromise } from './types';

/** A big-endian field of the CDB: [byte offset, size in bytes]. */
export type CdbField = readonly [offset: number, size: number];

/**
 * Persistent-reservation access class of a command (SPC-5 table 67ff): how it
 * fares when another nexus holds a reservation. Filled by the PR module's tables.
 */
export type PrAccess = 'read' | 'write' | 'allowed' | 'conflict';

/**
 * The command and the unit an entry's functions are handed, as far as the
 * table knows them: the engine hands them its ScsiCmd and LogicalUnit, and
 * device types declare their functions with those types (CommandDef). The
 * functions are methods, whose parameter types TypeScript relates in either
 * direction, so such entries are TableEntries as they are.
 */
export interface TableCommand {
  readonly cdb: Buffer;
}
export interface TableUnit {
  readonly table: CommandTable;
}

/** One command of a table; Cmd and Unit are what its functions take. */
export interface TableEntry<Cmd = TableCommand, Unit = TableUnit> {
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
  decode?(cmd: Cmd): number;
  flags: number;
  /** Persistent reservation access class (SPC-5 5.14.1). */
  pr?: PrAccess;
  /** Nominal command timeout in seconds, for RSOC's timeouts descriptor. */
  timeout?: number;
  execute(cmd: Cmd): MaybePromise<void>;
  /**
   * Served on this unit only when true (a feature its attributes or backstore may lack): otherwise the command
   * is refused as unknown and REPORT SUPPORTED OPERATION CODES does not list it. Absent: always served.
   */
  served?(lu: Unit): boolean;
  /**
   * After the medium failed under the command (an EIO from its store), finds the first block that fails by
   * redoing parts of its I/O, and resolves with the error to report (its INFORMATION that block). Only on
   * the error path, under the command's range lock.
   */
  locate?(cmd: Cmd, e: unknown): Promise<unknown>;
  /** Filled by CommandTable: the CDB bytes whose usage mask is not 0xff, the only ones firstInvalidBit must read. */
  restricted?: readonly number[];
}

// Every key of TableEntry, in one order: a table's entries are copies laid out
// from it, so they share one hidden class and the engine's reads of def.flags,
// def.execute... stay monomorphic however many different commands it has seen.
const ENTRY_LAYOUT: { [K in keyof Required<TableEntry>]: undefined } = {
  name: undefined, opcode: undefined, serviceAction: undefined, usage: undefined, dir: undefined,
  lengthField: undefined, lbaField: undefined, blocksField: undefined, decode: undefined, flags: undefined,
  pr: undefined, timeout: undefined, execute: undefined, served: undefined, locate: undefined, restricted: undefined,
};

function entry(d: TableEntry): TableEntry {
  const restricted: number[] = [];
  for (let i = 1; i < d.usage.length; i++) if (d.usage[i] !== 0xff) restricted.push(i);
  return { ...ENTRY_LAYOUT, ...d, restricted };
}

/** Commands of one device type, indexed for dispatch. */
export class CommandTable {
  // Two arrays, not one of mixed types: the dispatch reads a plain entry without a type test.
  private readonly byOpcode: (TableEntry | undefined)[] = new Array(256).fill(undefined);
  private readonly byServiceAction: (Map<number, TableEntry> | undefined)[] = new Array(256).fill(undefined);
  readonly all: readonly TableEntry[];

  /**
   * @param fallback serves every opcode (and service action) the table does not
   * declare: a pass-through table hands them to the device.
   */
  readonly fallback: TableEntry | undefined;

  constructor(readonly deviceType: number, defs: readonly TableEntry[], fallback?: TableEntry) {
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
        const m = sas ?? new Map<number, TableEntry>();
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
  lookup(cdb: Uint8Array): TableEntry | null | undefined {
    const d = this.byOpcode[cdb[0]];
    if (d !== undefined) return d;
    const m = this.byServiceAction[cdb[0]];
    if (m === undefined) return this.fallback;
    return m.get(serviceActionOf(cdb)) ?? this.fallback ?? null;
  }

  find(opcode: number, serviceAction?: number): TableEntry | undefined {
    if (serviceAction === undefined) return this.byOpcode[opcode];
    return this.byServiceAction[opcode]?.get(serviceAction);
  }
}

export function serviceActionOf(cdb: Uint8Array): number {
  return cdb[0] === 0x7f ? (cdb[8] << 8) | cdb[9] : cdb[1] & 0x1f;
}

