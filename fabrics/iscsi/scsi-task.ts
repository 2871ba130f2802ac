// One SCSI command in flight on a connection: the data-out it has received
// (views of the receive slabs it holds), what the core asked for, the R2Ts
// outstanding and sent, its data-in buffer, and how it ends waiting.

import { sglLength, type Sgl } from '../../src/core/sgl';
import { Asc, ScsiError, SenseKey } from '../../src/core/sense';
import { log } from '../../src/core/log';
import type { Connection } from './connection';
import { rxPool, type RxSlab } from './rx-slab';
import { dataInPool } from './data-in-pool';

const EMPTY: Buffer[] = [];

/** One SCSI command in flight on a connection. */
export class Task {
  /** Data-out received so far, in offset order. */
  bufs: Buffer[] = EMPTY;
  received = 0;
  /** End of the unsolicited region (immediate data plus unsolicited Data-Out). */
  unsolEnd = 0;
  /** Bytes the core asked for (-1 until it asks). */
  need = -1;
  resolve: ((s: Sgl) => void) | undefined;
  reject: ((e: Error) => void) | undefined;
  /** Next offset to solicit, R2Ts outstanding, their serial number. */
  r2tNext = 0;
  r2tOutstanding = 0;
  r2tSN = 0;
  /** TTT of each outstanding R2T -> the offset its burst ends at. */
  r2ts: Map<number, number> | undefined;
  /** ERL 1: every R2T sent, by R2TSN (R2T SNACK), and where asking again for lost data ends. */
  r2tLog: { ttt: number; offset: number; length: number }[] | undefined;
  recoverEnd = 0;
  recoveries = 0;
  /** Expected DataSN of the current data sequence. */
  dataSN = 0;
  done = false;
  /** Took a CmdSN (not immediate): counts against the window until it completes. */
  windowed = false;
  /** ERL 0: a Data-Out of it failed its data digest; it fails once its outstanding data has come. */
  crcError = false;
  /** Why it stopped waiting for data (abandon()). */
  failure: Error | undefined;
  /** Receive slabs its CDB and data-out lie in: held until the core completes the command (or unpin()). */
  readonly slabs: RxSlab[] = [];
  /** The core fetches its data-out (not all of it came with the command); its CDB is then a copy, not a slab's. */
  fetches = false;
  /** Data-Out timeout (checkDataOut): `received` at the last check, since when it has not moved, timeouts so far. */
  seenReceived = -1;
  stalledSince = 0;
  dataOutTimeouts = 0;
  /** When it arrived (rxPool.tick). */
  readonly born = rxPool.tick;
  /** Pooled buffer the core reads into (READ commands); back to the pool by releaseDataIn(). */
  dataInBuf: Buffer | undefined;
  /** Ends the loan of data-in the backstore lent instead (Completion.release), by releaseDataIn(). */
  lent: (() => void) | undefined;

  constructor(
    readonly conn: Connection,
    readonly itt: number,
    readonly lun: number,
    readonly edtl: number,
  ) {}

  /**
   * Gives up waiting for data-out: the core then fails the command, or ends
   * it as aborted when task management or the nexus loss marked it first.
   */
  abandon(why: string | ScsiError): void {
    this.done = true;
    // An ordinary end (session closed, task aborted): a plain Error would reach the core as an internal failure, logged as a warning.
    if (typeof why === 'string') log.debug(`iscsi: task 0x${this.itt.toString(16)}: ${why}; no more data-out awaited`);
    this.failure = typeof why === 'string' ? new ScsiError(SenseKey.ABORTED_COMMAND, Asc.DATA_PHASE_ERROR) : why;
    const r = this.reject;
    this.resolve = this.reject = undefined;
    if (r) r(this.failure);
  }

  /**
   * Its data-out is slow to come: what it received so far is copied out of
   * the receive slabs and they go (rx-slab.ts). Only while the core has none
   * of it yet (before fetch, or waiting in it): what the core holds is used in place.
   */
  unpin(): void {
    if (!this.fetches || this.slabs.length === 0 || (this.need >= 0 && this.resolve === undefined)) return;
    this.bufs = rxPool.copyOut(this.bufs);
    rxPool.releaseAll(this.slabs);
  }

  /**
   * The Data-In buffer is no longer needed: sent and written by the socket,
   * or never to be sent. The only way a pooled buffer goes back.
   */
  releaseDataIn(): void {
    const b = this.dataInBuf;
    this.dataInBuf = undefined;
    if (b !== undefined) dataInPool.give(b);
    const lent = this.lent;
    this.lent = undefined;
    if (lent !== undefined) lent();
  }

  add(data: Sgl): void {
    if (this.bufs === EMPTY) this.bufs = [];
    rxPool.retain(data, this.slabs);
    for (const b of data) this.bufs.push(b);
    this.received += sglLength(data);
  }
}
