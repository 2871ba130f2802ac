// A session's command window (RFC 7143 3.2.2.1, 4.2.2.1): ExpCmdSN, the
// next CmdSN it runs, and MaxCmdSN, the last it accepts, default_cmdsn_depth
// ahead less the commands still in flight. Non-immediate PDUs run in CmdSN
// order across the session's connections: one that arrives ahead of ExpCmdSN
// (MC/S, or a gap left by a discarded command) is parked, with the
// unsolicited Data-Out that follows it, until its turn; one outside the
// window is dropped.

import type { Sgl } from '../../src/core/sgl';
import type { Connection } from './connection';
import { H, snLess } from './pdu';
import { rxPool, type RxSlab } from './rx-slab';

/** A PDU that arrived ahead of ExpCmdSN, with the unsolicited Data-Out that came after it. */
interface Parked {
  conn: Connection;
  h: Buffer;
  data: Sgl;
  slabs: RxSlab[];
  dataOut: [Buffer, Sgl][] | undefined;
  /** Bytes in dataOut: never more than FirstBurstLength (what unsolicited data may be). */
  dataOutBytes: number;
  /** When it arrived (rxPool.tick). */
  born: number;
}

/** What runs the PDUs the window lets through (the session). */
export interface InOrder {
  execute(c: Connection, h: Buffer, data: Sgl): void;
  dataOut(c: Connection, h: Buffer, data: Sgl): void;
}

export class CommandWindow {
  expCmdSN: number;
  /** SCSI commands that consumed a CmdSN and have not completed. */
  private inflight = 0;
  /** By CmdSN. */
  private readonly parked = new Map<number, Parked>();
  /** The SCSI commands among them by ITT, for the unsolicited Data-Out that may follow them before they can run. */
  private readonly parkedByItt = new Map<number, Parked>();

  constructor(
    cmdSN: number,
    private readonly depth: number,
    private readonly run: InOrder,
  ) {
    this.expCmdSN = cmdSN >>> 0;
  }

  get maxCmdSN(): number {
    return (this.expCmdSN + this.depth - 1 - this.inflight) >>> 0;
  }

  /** A SCSI command took a CmdSN: it counts against the window until it completes (ended()). */
  began(): void {
    this.inflight++;
  }

  ended(): void {
    this.inflight--;
  }

  /** Whether sn lies in [ExpCmdSN, MaxCmdSN]. */
  holds(sn: number): boolean {
    return !snLess(sn, this.expCmdSN) && !snLess(this.maxCmdSN, sn);
  }

  /**
   * A non-immediate PDU with CmdSN sn: run now when it is next, with
   * whatever was parked behind it; parked when ahead within the window;
   * silently dropped outside it (RFC 7143 4.2.2.1): false then.
   */
  order(c: Connection, h: Buffer, data: Sgl, sn: number, isCommand: boolean): boolean {
    if (sn === this.expCmdSN) {
      this.expCmdSN = (sn + 1) >>> 0;
      this.run.execute(c, h, data);
      // Anything that arrived early on another connection may go now.
      while (this.parked.size > 0) {
        const next = this.parked.get(this.expCmdSN);
        if (!next) break;
        this.parked.delete(this.expCmdSN);
        this.expCmdSN = (this.expCmdSN + 1) >>> 0;
        const itt = next.h.readUInt32BE(H.ITT);
        if (this.parkedByItt.get(itt) === next) this.parkedByItt.delete(itt);
        this.run.execute(next.conn, next.h, next.data);
        for (const [dh, dd] of next.dataOut ?? []) this.run.dataOut(next.conn, dh, dd);
        rxPool.releaseAll(next.slabs);
      }
      return true;
    }
    if (!this.holds(sn)) return false;
    if (!this.parked.has(sn)) {
      const e: Parked = { conn: c, h: Buffer.from(h), data, slabs: [], dataOut: undefined, dataOutBytes: 0, born: rxPool.tick };
      rxPool.retain(data, e.slabs);
      this.parked.set(sn, e);
      if (isCommand) this.parkedByItt.set(e.h.readUInt32BE(H.ITT), e);
    }
    return true;
  }

  /**
   * Unsolicited Data-Out (h, data: len bytes) for ITT itt: taken in when
   * that command is parked and came on c, to run after it; beyond
   * `firstBurst` bytes it is dropped. False when no such command is parked.
   */
  parkDataOut(c: Connection, itt: number, h: Buffer, data: Sgl, len: number, firstBurst: number): boolean {
    const waiting = this.parkedByItt.get(itt);
    if (waiting === undefined || waiting.conn !== c) return false;
    waiting.dataOutBytes += len;
    if (waiting.dataOutBytes > firstBurst) return true; // more than unsolicited data may be
    rxPool.retain(data, waiting.slabs);
    (waiting.dataOut ??= []).push([Buffer.from(h), data]);
    return true;
  }

  /** Parked PDUs of c that arrived at tick `old` or before copy what they hold of receive slabs, and let the slabs go. */
  unpin(c: Connection, old: number): void {
    for (const e of this.parked.values()) {
      if (e.conn !== c || e.born > old || e.slabs.length === 0) continue;
      e.data = rxPool.copyOut(e.data);
      if (e.dataOut !== undefined) for (const d of e.dataOut) d[1] = rxPool.copyOut(d[1]);
      rxPool.releaseAll(e.slabs);
    }
  }

  /** The session ended: nothing parked will run. */
  clear(): void {
    for (const e of this.parked.values()) rxPool.releaseAll(e.slabs);
    this.parked.clear();
    this.parkedByItt.clear();
  }
}
