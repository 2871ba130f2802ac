// Asymmetric logical unit access, reduced to what INQUIRY's TPGS=01b promises:
// implicit ALUA with one target port group, always active/optimized
// (SPC-5 5.16). REPORT TARGET PORT GROUPS (MAINTENANCE IN, 6.36) reports it.

import type { ScsiCmd } from '../core/command';
import { invalidCdbField } from '../core/sense';

/** The one target port group, numbered as LIO's default_tg_pt_gp. */
export const TARGET_PORT_GROUP_ID = 0;

const AAS_ACTIVE_OPTIMIZED = 0x0;
const AO_SUP = 0x01;

export function reportTargetPortGroups(cmd: ScsiCmd): void {
  const format = cmd.cdb[1] >> 5;
  if (format > 1) throw invalidCdbField(1, 7);
  const hdr = format === 1 ? 8 : 4;
  const b = Buffer.alloc(hdr + 8 + 4);
  b.writeUInt32BE(b.length - 4, 0);
  if (format === 1) b[4] = 0x10; // FORMAT TYPE 001b; IMPLICIT TRANSITION TIME 0
  const d = hdr;
  b[d] = AAS_ACTIVE_OPTIMIZED; // PREF 0
  b[d + 1] = AO_SUP;
  b.writeUInt16BE(TARGET_PORT_GROUP_ID, d + 2);
  b[d + 7] = 1; // TARGET PORT COUNT: the port the command came through
  b.writeUInt16BE(cmd.session.tpg.relativePortId, d + 8 + 2);
  cmd.respond(b);
}
