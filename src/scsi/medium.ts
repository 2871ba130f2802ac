// Removable medium (SBC-4 5.25 START STOP UNIT, SPC-5 6.13 PREVENT ALLOW
// MEDIUM REMOVAL). A unit with the `removable` attribute can have its medium
// ejected (every F.MEDIUM command then answers MEDIUM NOT PRESENT) and
// loaded again; a prevention held by any I_T nexus refuses both. Preventions
// end with their nexus (logout, connection loss), an I_T nexus reset and a
// LUN reset (session.ts, tmr.ts).

import type { ScsiCmd } from '../core/command';
import type { LogicalUnit } from '../core/logical-unit';
import { CommandDef, DataDir } from '../core/opcodes';
import { Asc, ScsiError, SenseKey, invalidCdbField } from '../core/sense';

type Medium = NonNullable<LogicalUnit['medium']>;

/** The medium state of a removable unit (created on first use); undefined for fixed media. */
export function mediumOf(lu: LogicalUnit): Medium | undefined {
  if (!lu.so.attributes.removable) return lu.medium;
  return (lu.medium ??= { present: true, preventers: new Set() });
}

const removalPrevented = (): ScsiError => new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.MEDIUM_REMOVAL_PREVENTED);

function startStopUnit(cmd: ScsiCmd): void {
  const b4 = cmd.cdb[4];
  const powerCondition = b4 >> 4;
  const loej = (b4 & 0x02) !== 0;
  const start = (b4 & 0x01) !== 0;
  // We have no power states: the unit is always active. A POWER CONDITION other
  // than 0h makes START and LOEJ ignored (SBC-4 5.25), so it changes nothing.
  if (powerCondition !== 0 || !loej) return;
  const m = mediumOf(cmd.lu);
  if (!m) throw invalidCdbField(4, 1); // nothing to load or eject on fixed media
  if (m.preventers.size !== 0) throw removalPrevented();
  if (start === m.present) return;
  m.present = start;
  // Other nexuses learn that a medium arrived (SBC-4 4.23: NOT READY TO READY CHANGE).
  if (start) cmd.lu.raiseUa(Asc.NOT_READY_TO_READY_CHANGE, cmd.session);
}

function preventAllow(cmd: ScsiCmd): void {
  const prevent = cmd.cdb[4] & 0x03;
  if (prevent > 1) throw invalidCdbField(4, 1); // 10b and 11b are for media changers
  const m = mediumOf(cmd.lu);
  if (!m) return; // fixed media cannot be removed anyway
  if (prevent) m.preventers.add(cmd.itl);
  else m.preventers.delete(cmd.itl);
}

export const mediumCommands: CommandDef[] = [
  {
    // Loading is what it is for: it does not need the medium present.
    // pr 'write', but START=1 with power condition 0h is 'allowed' (SPC-5 table 66; pr.ts reads the CDB).
    name: 'START STOP UNIT', opcode: 0x1b, usage: [0x1b, 0x01, 0x00, 0x0f, 0xf7, 0x00], dir: DataDir.NONE,
    flags: 0, pr: 'write', timeout: 30, execute: startStopUnit,
  },
  {
    // pr 'write', but PREVENT=00b is 'allowed' (SPC-5 table 66; pr.ts reads the CDB).
    name: 'PREVENT ALLOW MEDIUM REMOVAL', opcode: 0x1e, usage: [0x1e, 0x00, 0x00, 0x00, 0x03, 0x00], dir: DataDir.NONE,
    flags: 0, pr: 'write', execute: preventAllow,
  },
];
