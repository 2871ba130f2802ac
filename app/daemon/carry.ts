// A unit re-homed live on another I/O thread (io_threads > 1, placement.ts)
// takes with it what must survive the move: its store's contents where they
// are in memory (rd_mcp: its shared pages, Backstore.handOver) and its
// persistent reservations (registrations, reservation, generation, APTPL).
// Stores on a device (fileio, block, rbd...) are simply reopened there. What
// does not move: pending unit attentions and nexus-bound state (the sessions
// end and log in again, so each starts with its own), MODE SELECT changes
// (back to the attributes), ALUA state and statistics counters.

import type { StorageObject } from '../../src/model/storage-object';
import type { SavedPrState } from '../../src/scsi/pr-store';
import { prState } from '../../src/scsi/pr';

/** Structured-cloneable: it crosses threads through main (io-protocol.ts). */
export interface CarriedUnit {
  store?: unknown;
  pr?: { state: SavedPrState; aptpl: boolean };
}

/** Taken from a drained unit right before its store closes. */
export function carryOut(so: StorageObject): CarriedUnit {
  const st = prState(so.lu);
  return {
    store: so.backstore.handOver?.(),
    pr: st.registrations.length > 0 ? { state: st.snapshot(), aptpl: st.aptpl } : undefined,
  };
}

/** Given to the unit opened on its new thread (its store already took `store` as `adopt`). */
export function carryIn(so: StorageObject, c: CarriedUnit): void {
  if (!c.pr) return;
  const st = prState(so.lu);
  st.restore(c.pr.state);
  st.aptpl = c.pr.aptpl;
}
