// SCSI Primary Commands (SPC-5) a disk serves: the table entries, and the
// handlers small enough to live with them (TEST UNIT READY, REQUEST SENSE,
// REPORT LUNS). INQUIRY, mode pages, RSOC, ALUA and SPC-2 reservations have
// their own modules.
//
// Usage masks follow each CDB layout of SPC-5 (SPC-2 for RESERVE/RELEASE):
// reserved and obsolete bits, and the control byte's NACA (NormACA is 0), are
// 0, so the engine refuses them with a field pointer before a handler runs.

import type { ScsiCmd } from '../core/command';
import { CommandDef, DataDir, F } from '../core/opcodes';
import type { ItlNexus } from '../core/logical-unit';
import {
  Asc, ScsiError, encodeSense, invalidCdbField, lunNotSupported, noSense, unitAttention,
} from '../core/sense';
import { inquiry } from './inquiry';
import { modeSelect, modeSense } from './mode';
import { reportSupportedOpcodes, reportSupportedTmfs } from './rsoc';
import { explicitAlua, reportTargetPortGroups, setTargetPortGroups } from './alua';
import { release, reserve } from './reserve';

/** Recommended timeout (seconds) RSOC reports for these commands: the usual initiator default. */
const TIMEOUT = 30;

/**
 * REQUEST SENSE (SPC-5 6.39): a pending unit attention is reported as data
 * and cleared; otherwise NO SENSE. A LUN without a unit gets LOGICAL UNIT NOT
 * SUPPORTED as data. DESC picks the format.
 */
function requestSense(cmd: ScsiCmd): void {
  const desc = (cmd.cdb[1] & 0x01) !== 0;
  const itl: ItlNexus | undefined = cmd.itl;
  let e: ScsiError;
  if (itl === undefined) {
    e = lunNotSupported();
  } else {
    // A pending unit attention first; then the path's ALUA state; then a NOT READY condition (sanitize progress,
    // failure mode).
    const ua = itl.takeUa();
    e = ua !== undefined ? unitAttention(ua) : (cmd.lu.aluaAccess?.() ?? cmd.lu.notReady?.() ?? noSense());
  }
  cmd.respond(encodeSense(e, desc));
}

/** One LUN in SAM-5 single level format: peripheral device addressing below 256, flat space above. */
export function encodeLun(lun: number): Buffer {
  const b = Buffer.alloc(8);
  if (lun < 256) {
    b[1] = lun;
  } else {
    b[0] = 0x40 | (lun >> 8);
    b[1] = lun & 0xff;
  }
  return b;
}

/** REPORT LUNS (SPC-5 6.33). */
function reportLuns(cmd: ScsiCmd): void {
  const select = cmd.cdb[2];
  if (select > 2) throw invalidCdbField(2);
  if (cmd.dataLength < 16) throw invalidCdbField(6);
  // 01h asks for well-known LUNs only, and there are none. Without any LUN the
  // nexus still sees LUN 0, where INQUIRY says no unit is present (as LIO).
  let luns = select === 1 ? [] : cmd.session.lunNumbers();
  if (select !== 1 && luns.length === 0) luns = [0];
  const b = Buffer.alloc(8 + 8 * luns.length);
  b.writeUInt32BE(8 * luns.length, 0);
  luns.forEach((l, i) => encodeLun(l).copy(b, 8 + 8 * i));
  // SAM-5 5.14: REPORT LUNS clears REPORTED LUNS DATA HAS CHANGED on every LUN of the nexus.
  for (const itl of cmd.session.itls.values()) itl.clearUa(Asc.REPORTED_LUNS_DATA_CHANGED);
  cmd.respond(b);
}

const ALLOC_OK = F.NO_UA | F.NO_LUN_OK | F.RESERVE_OK;
const SB = F.STANDBY_OK;

export const spcCommands: CommandDef[] = [
  {
    name: 'TEST UNIT READY', opcode: 0x00, usage: [0x00, 0, 0, 0, 0, 0],
    dir: DataDir.NONE, flags: F.MEDIUM, pr: 'allowed', timeout: TIMEOUT, execute: () => {},
  },
  {
    name: 'REQUEST SENSE', opcode: 0x03, usage: [0x03, 0x01, 0, 0, 0xff, 0],
    dir: DataDir.IN, lengthField: [4, 1], flags: ALLOC_OK | F.SANITIZE_OK | SB, pr: 'allowed', timeout: TIMEOUT, execute: requestSense,
  },
  {
    name: 'INQUIRY', opcode: 0x12, usage: [0x12, 0x01, 0xff, 0xff, 0xff, 0],
    dir: DataDir.IN, lengthField: [3, 2], flags: ALLOC_OK | F.HEAD | F.SANITIZE_OK | SB, pr: 'allowed', timeout: TIMEOUT, execute: inquiry,
  },
  {
    name: 'MODE SELECT(6)', opcode: 0x15, usage: [0x15, 0x11, 0, 0, 0xff, 0],
    dir: DataDir.OUT, lengthField: [4, 1], flags: SB, pr: 'write', timeout: TIMEOUT, execute: modeSelect,
  },
  {
    name: 'RESERVE(6)', opcode: 0x16, usage: [0x16, 0, 0, 0, 0, 0],
    dir: DataDir.NONE, flags: 0, pr: 'conflict', timeout: TIMEOUT, execute: reserve,
  },
  {
    name: 'RELEASE(6)', opcode: 0x17, usage: [0x17, 0, 0, 0, 0, 0],
    dir: DataDir.NONE, flags: F.RESERVE_OK, pr: 'conflict', timeout: TIMEOUT, execute: release,
  },
  {
    name: 'MODE SENSE(6)', opcode: 0x1a, usage: [0x1a, 0x08, 0xff, 0xff, 0xff, 0],
    dir: DataDir.IN, lengthField: [4, 1], flags: SB, pr: 'write', timeout: TIMEOUT, execute: modeSense,
  },
  {
    name: 'MODE SELECT(10)', opcode: 0x55, usage: [0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
    dir: DataDir.OUT, lengthField: [7, 2], flags: SB, pr: 'write', timeout: TIMEOUT, execute: modeSelect,
  },
  {
    name: 'RESERVE(10)', opcode: 0x56, usage: [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    dir: DataDir.NONE, flags: 0, pr: 'conflict', timeout: TIMEOUT, execute: reserve,
  },
  {
    name: 'RELEASE(10)', opcode: 0x57, usage: [0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    dir: DataDir.NONE, flags: F.RESERVE_OK, pr: 'conflict', timeout: TIMEOUT, execute: release,
  },
  {
    name: 'MODE SENSE(10)', opcode: 0x5a, usage: [0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0],
    dir: DataDir.IN, lengthField: [7, 2], flags: SB, pr: 'write', timeout: TIMEOUT, execute: modeSense,
  },
  {
    name: 'REPORT LUNS', opcode: 0xa0, usage: [0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
    dir: DataDir.IN, lengthField: [6, 4], flags: ALLOC_OK | F.HEAD | F.SANITIZE_OK | SB, pr: 'allowed', timeout: TIMEOUT, execute: reportLuns,
  },
  {
    name: 'REPORT TARGET PORT GROUPS', opcode: 0xa3, serviceAction: 0x0a,
    usage: [0xa3, 0xea, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
    dir: DataDir.IN, lengthField: [6, 4], flags: SB, pr: 'allowed', timeout: TIMEOUT, execute: reportTargetPortGroups,
  },
  {
    name: 'SET TARGET PORT GROUPS', opcode: 0xa4, serviceAction: 0x0a,
    usage: [0xa4, 0x0a, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
    dir: DataDir.OUT, lengthField: [6, 4], flags: SB, pr: 'conflict', timeout: TIMEOUT, execute: setTargetPortGroups, served: explicitAlua,
  },
  {
    name: 'REPORT SUPPORTED OPERATION CODES', opcode: 0xa3, serviceAction: 0x0c,
    usage: [0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0],
    dir: DataDir.IN, lengthField: [6, 4], flags: SB, pr: 'allowed', timeout: TIMEOUT, execute: reportSupportedOpcodes,
  },
  {
    name: 'REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS', opcode: 0xa3, serviceAction: 0x0d,
    usage: [0xa3, 0x0d, 0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
    dir: DataDir.IN, lengthField: [6, 4], flags: SB, pr: 'allowed', timeout: TIMEOUT, execute: reportSupportedTmfs,
  },
];
