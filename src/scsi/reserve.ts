// SPC-2 RESERVE and RELEASE (6) and (10), logical unit reservations only:
// third-party and extent reservations are refused by the usage masks. The
// engine refuses other nexuses' commands while one is held (F.RESERVE_OK
// marks those it lets through); LUN reset and I_T nexus loss drop it.

import type { ScsiCmd } from '../core/command';
import { reservationConflict } from '../core/sense';

export function reserve(cmd: ScsiCmd): void {
  const lu = cmd.lu;
  // The engine already refused a reservation held by another nexus; check again for clarity.
  if (lu.reservation !== undefined && lu.reservation !== cmd.session) throw reservationConflict();
  lu.reservation = cmd.session;
}

export function release(cmd: ScsiCmd): void {
  const lu = cmd.lu;
  // A release from a nexus that holds nothing is GOOD and changes nothing (SPC-2 7.21.2).
  if (lu.reservation === cmd.session) lu.reservation = undefined;
}
