// REPORT SUPPORTED OPERATION CODES and REPORT SUPPORTED TASK MANAGEMENT
// FUNCTIONS (SPC-5 6.35, 6.36; MAINTENANCE IN service actions 0Ch and 0Dh).
// Both read the unit's own command table, so whatever a module adds there is
// reported exactly as dispatch and CDB checking see it.

import type { ScsiCmd } from '../core/command';
import type { CommandDef } from '../core/opcodes';
import { invalidCdbField } from '../core/sense';

const Support = { NOT_SUPPORTED: 0x1, STANDARD: 0x3 } as const;
const TIMEOUTS_DESC_LEN = 12;

/** Command timeouts descriptor (SPC-5 6.35.4): nominal time unknown, the recommended timeout in seconds. */
function timeouts(def: CommandDef): Buffer {
  const b = Buffer.alloc(TIMEOUTS_DESC_LEN);
  b.writeUInt16BE(TIMEOUTS_DESC_LEN - 2, 0);
  b.writeUInt32BE(def.timeout ?? 0, 8);
  return b;
}

function allCommands(defs: readonly CommandDef[], rctd: boolean): Buffer {
  const size = 8 + (rctd ? TIMEOUTS_DESC_LEN : 0);
  const b = Buffer.alloc(4 + defs.length * size);
  b.writeUInt32BE(b.length - 4, 0);
  defs.forEach((def, i) => {
    const o = 4 + i * size;
    b[o] = def.opcode;
    if (def.serviceAction !== undefined) {
      b.writeUInt16BE(def.serviceAction, o + 2);
      b[o + 5] |= 0x01; // SERVACTV
    }
    if (rctd) {
      b[o + 5] |= 0x02; // CTDP
      timeouts(def).copy(b, o + 8);
    }
    b.writeUInt16BE(def.usage.length, o + 6);
  });
  return b;
}

function oneCommand(def: CommandDef | undefined, rctd: boolean): Buffer {
  if (def === undefined) return Buffer.from([0, Support.NOT_SUPPORTED, 0, 0]);
  const b = Buffer.alloc(4 + def.usage.length + (rctd ? TIMEOUTS_DESC_LEN : 0));
  b[1] = (rctd ? 0x80 : 0) | Support.STANDARD;
  b.writeUInt16BE(def.usage.length, 2);
  b.set(def.usage, 4);
  if (rctd) timeouts(def).copy(b, 4 + def.usage.length);
  return b;
}

export function reportSupportedOpcodes(cmd: ScsiCmd): void {
  const cdb = cmd.cdb;
  const rctd = (cdb[2] & 0x80) !== 0;
  const option = cdb[2] & 0x07;
  const op = cdb[3];
  const sa = cdb.readUInt16BE(4);
  const table = cmd.lu.table;
  const lu = cmd.lu;
  // What this unit serves: a command its attributes or backstore leave out is reported as not supported.
  const serving = (def: CommandDef | undefined): CommandDef | undefined => (def?.served === undefined || def.served(lu) ? def : undefined);
  const known = table.find(op) !== undefined || table.hasServiceActions(op);
  switch (option) {
    case 0:
      return cmd.respond(allCommands(table.all.filter((d) => serving(d) !== undefined), rctd));
    case 1:
      // The opcode alone cannot name a command that has service actions.
      if (table.hasServiceActions(op)) throw invalidCdbField(2, 2);
      return cmd.respond(oneCommand(serving(table.find(op)), rctd));
    case 2:
      if (known && !table.hasServiceActions(op)) throw invalidCdbField(2, 2);
      return cmd.respond(oneCommand(serving(table.find(op, sa)), rctd));
    case 3:
      // The service action counts only for opcodes that have them.
      return cmd.respond(oneCommand(serving(table.hasServiceActions(op) ? table.find(op, sa) : table.find(op)), rctd));
    default:
      throw invalidCdbField(2, 2);
  }
}

// Byte 0: ATS, ATSS, CTSS, LURS, QTS (tmr.ts); CLEAR ACA and TARGET RESET are not supported.
const TMF_BYTE0 = 0x80 | 0x40 | 0x10 | 0x08 | 0x04;
// Byte 1: ITNRS.
const TMF_BYTE1 = 0x01;

export function reportSupportedTmfs(cmd: ScsiCmd): void {
  const repd = (cmd.cdb[2] & 0x80) !== 0;
  const b = Buffer.alloc(repd ? 16 : 4);
  b[0] = TMF_BYTE0;
  b[1] = TMF_BYTE1;
  if (repd) b[3] = 0x0c; // ADDITIONAL DATA LENGTH; no TMF timeouts reported
  cmd.respond(b);
}
