// Logical block provisioning thresholds (SBC-4 4.7.3.8): the resource counts of the LOGICAL BLOCK
// PROVISIONING log page, VPD B2's THRESHOLD EXPONENT, and the soft threshold's unit attention. Served on
// thin units whose store reports its space (Backstore.space: fileio). The resource is what the unit holds
// allocated plus what it may still allocate: the file system's free space, capped by tp_allocation_limit.

import type { LogicalUnit } from '../core/logical-unit';
import { Asc } from '../core/sense';
import { log } from '../core/log';
import { provisioning } from './provisioning';

/** Bytes per threshold set: counts in 1 MiB units fit 32 bits up to 4 PiB. */
const THRESHOLD_SET_BYTES = 1 << 20;
/** How often a watched unit's space is looked at: a statfs and an fstat, off the command path. */
export const THRESHOLD_POLL_MS = 1000;

/** Whether the unit reports provisioning resources (and so a threshold exponent, the log page, the UA). */
export function thresholdsServed(lu: LogicalUnit): boolean {
  return lu.backstore.space !== undefined && provisioning(lu).thin;
}

/** VPD B2 THRESHOLD EXPONENT: a threshold set is 2^exponent blocks; 0 when thresholds are not served. */
export function thresholdExponent(lu: LogicalUnit): number {
  return thresholdsServed(lu) ? Math.max(1, Math.log2(THRESHOLD_SET_BYTES / lu.blockSize)) : 0;
}

/** Provisioning resources in threshold sets (SBC-4 table "LOGICAL BLOCK PROVISIONING log parameters"). */
export interface LbpResources {
  /** AVAILABLE LBA MAPPING RESOURCE COUNT: what may still be allocated. */
  available: number;
  /** USED LBA MAPPING RESOURCE COUNT: what the unit holds. */
  used: number;
  /** Whether available is the file system's free space (shared with others) rather than the unit's own limit. */
  shared: boolean;
}

export async function lbpResources(lu: LogicalUnit): Promise<LbpResources> {
  const { used, free } = await lu.backstore.space!();
  const limit = lu.so.attributes.tp_allocation_limit * THRESHOLD_SET_BYTES;
  const own = limit === 0 ? Infinity : Math.max(0, limit - used);
  const sets = (bytes: number): number => Math.min(0xffffffff, Math.floor(bytes / THRESHOLD_SET_BYTES));
  return { available: sets(Math.min(free, own)), used: sets(Math.ceil(used / THRESHOLD_SET_BYTES) * THRESHOLD_SET_BYTES), shared: own >= free };
}

/** Whether the soft threshold is reached: used is at least tp_soft_threshold percent of used + available. */
function softReached(lu: LogicalUnit, r: LbpResources): boolean {
  const pct = lu.so.attributes.tp_soft_threshold;
  return pct > 0 && r.used * 100 >= pct * (r.used + r.available);
}

/**
 * Watches a unit's space while it lives: when use crosses the soft threshold, every I_T nexus gets THIN
 * PROVISIONING SOFT THRESHOLD REACHED (SITUA 0), once; it is armed again when use falls back below.
 * Attributes are read at each look, so thresholds set or changed live take effect.
 */
export function watchThresholds(lu: LogicalUnit): void {
  if (lu.backstore.space === undefined) return;
  let reached = false;
  let busy = false;
  const timer = setInterval(() => {
    if (lu.closed) {
      clearInterval(timer);
      return;
    }
    if (busy || !thresholdsServed(lu) || lu.fault !== undefined) return;
    busy = true;
    lbpResources(lu).then(
      (r) => {
        busy = false;
        const now = softReached(lu, r);
        if (now && !reached) {
          log.info(`${lu.so.path}: thin provisioning soft threshold reached (${r.used} of ${r.used + r.available} MiB in use)`);
          lu.raiseUa(Asc.THIN_PROVISIONING_SOFT_THRESHOLD_REACHED);
        }
        reached = now;
      },
      () => {
        busy = false; // the store closed or went away: its commands tell the rest
      },
    );
  }, THRESHOLD_POLL_MS);
  timer.unref();
}
