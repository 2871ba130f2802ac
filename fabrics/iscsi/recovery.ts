// ErrorRecoveryLevel 1 on one connection (RFC 7143 7.1, 7.2, 11.16): what
// the target keeps to answer SNACKs, and the answers. Kept only when the
// session negotiated ERL >= 1; at ERL 0 nothing here is created.
//
// Kept: every numbered response not yet acknowledged (StatSN below the
// initiator's ExpStatSN), as a copy of its header and data segment (small:
// SCSI Response with sense, NOP-In, TMF, Text, Logout), and for reads the
// Data-In headers (copies) and the command's data-in buffers (held, not
// copied) until the status is acknowledged or a DataACK covers them.
//
// Bound: at most RETAIN_BYTES of data and RETAIN_RESPONSES responses per
// connection. An initiator that does not acknowledge (ExpStatSN or DataACK)
// makes the oldest records go first; a SNACK for one of those is then
// rejected like one for acknowledged numbers (Protocol Error), the initiator's
// own recovery (abort, session) takes over. Memory never grows past the bound.
//
// A Data-Out lost to its data digest needs no timer: its sound header says
// whether it ended its sequence, so the recovery R2T (scsi-commands.ts
// sequenceEnd) goes out at once. Data that stops coming altogether is the
// ACL's dataout_timeout (scsi-commands.ts checkDataOut).
//
// Header digest errors stay fatal at every level: the RFC lets a receiver
// skip to a later PDU, but without markers (gone from RFC 7143) nothing tells
// where that PDU starts once the header (and its length) cannot be trusted,
// so the connection drops (connection.ts), and at ERL 1 that ends the session.

import { sglSlice, type Sgl } from '../../src/core/sgl';
import { log } from '../../src/core/log';
import { BHS_LEN, H, RejectReason, Rsp, RSP_SNACK_TAG, RSP_STATUS, dataLengthOf, snLess } from './pdu';
import { scsiResponsePdu, type SnWindow } from './pdu-builders';

// Both bounds are stated in specs/fabrics/iscsi.yaml (ErrorRecoveryLevel).
/** Data-in bytes (plus response copies) one connection keeps for retransmission at most. */
export const RETAIN_BYTES = 32 << 20;
/** Unacknowledged numbered responses one connection keeps at most. */
export const RETAIN_RESPONSES = 4096;

/** The connection a retention sends on (connection.ts). */
export interface RecoveryLink {
  /** Sends a PDU: its header, then as much of data as its DataSegmentLength says. */
  send(h: Buffer, data?: Sgl): void;
  /** A fresh header sized for the connection's header digest. */
  header(opcode: number, flags: number): Buffer;
  readonly sendsHeaderDigest: boolean;
}

/**
 * What a read sent: its Data-In headers by DataSN and its data, held until
 * acknowledged. The data-in buffers are the core's, held by reference: a send
 * path that recycles data-in buffers once written must leave alone those a
 * record holds (`sgl` set) until releaseRead() or a full DataACK drops them.
 */
export class ReadRecord {
  readonly headers: Buffer[] = [];
  /** The data-in buffers; undefined once released. */
  sgl: Sgl | undefined;
  /** DataSNs below this are acknowledged (DataACK). */
  acked = 0;
  status: StatusRecord | undefined;

  constructor(
    readonly itt: number,
    /** Target Transfer Tag of the A-bit PDUs: a DataACK names the read by it. */
    readonly ttt: number,
    sgl: Sgl,
    readonly bytes: number,
  ) {
    this.sgl = sgl;
  }

  /** Records a Data-In header as sent (a copy: the original belongs to the send path). */
  sent(h: Buffer): void {
    this.headers.push(Buffer.from(h.subarray(0, BHS_LEN)));
  }
}

interface StatusRecord {
  readonly statSN: number;
  /** A copy of the response's BHS (for status in a Data-In, that PDU's). */
  readonly header: Buffer;
  /** A copy of its data segment (SCSI Response, NOP-In, Text...); Data-In data lives in `read`. */
  readonly data: Buffer | undefined;
  /** The read whose status this is; its data goes when the status is acknowledged. */
  read: ReadRecord | undefined;
  /** The status rode in the last Data-In PDU. */
  readonly inData: boolean;
}

/** A Reject reason, or undefined when the SNACK was answered. */
export type SnackResult = number | undefined;

export class Retention {
  /** By StatSN, oldest first (Map order is insertion order, and StatSN only grows). */
  private readonly statuses = new Map<number, StatusRecord>();
  private readonly reads = new Map<number, ReadRecord>();
  private readonly byTtt = new Map<number, ReadRecord>();
  private bytes = 0;
  /** The highest ExpStatSN seen: everything below is acknowledged. */
  private expStatSN: number;

  constructor(
    private readonly link: RecoveryLink,
    /** The session's command window: what is sent again shows its current ExpCmdSN and MaxCmdSN. */
    private readonly window: SnWindow,
    statSN: number,
  ) {
    this.expStatSN = statSN;
  }

  get retainedBytes(): number {
    return this.bytes;
  }

  get retainedResponses(): number {
    return this.statuses.size;
  }

  /** A read about to send its Data-In: the record its headers go into. */
  beginRead(itt: number, ttt: number, sgl: Sgl, length: number): ReadRecord {
    const old = this.reads.get(itt);
    if (old !== undefined) this.releaseRead(old);
    const r = new ReadRecord(itt, ttt, sgl, length);
    this.reads.set(itt, r);
    this.byTtt.set(ttt, r);
    this.bytes += length;
    return r;
  }

  /**
   * A numbered response was sent (h: its header, StatSN at W24; data: its
   * data segment): kept until acknowledged. `read`: the read it concludes;
   * `inData`: h is that read's last Data-In, whose data stays in the read record.
   */
  response(h: Buffer, data: Sgl | undefined, read?: ReadRecord, inData = false): void {
    const statSN = h.readUInt32BE(H.W24);
    const len = dataLengthOf(h);
    const copy = !inData && len > 0 && data !== undefined ? Buffer.concat(sglSlice(data, 0, len)) : undefined;
    const r: StatusRecord = { statSN, header: Buffer.from(h.subarray(0, BHS_LEN)), data: copy, read, inData };
    if (read !== undefined) read.status = r;
    this.statuses.set(statSN, r);
    this.bytes += BHS_LEN + (copy?.length ?? 0);
    this.bound();
  }

  /** The initiator's ExpStatSN (any PDU): responses below it, and their reads, are released. */
  acknowledge(exp: number, nextStatSN: number): void {
    if (exp === this.expStatSN || !snLess(this.expStatSN, exp) || snLess(nextStatSN, exp)) return;
    this.expStatSN = exp;
    for (const [sn, r] of this.statuses) {
      if (!snLess(sn, exp)) break;
      this.dropStatus(r);
    }
  }

  /** Data SNACK: Data-In PDUs of a read by DataSN, sent again as they were. */
  dataSnack(itt: number, beg: number, run: number): SnackResult {
    const r = this.reads.get(itt);
    if (r === undefined) return RejectReason.PROTOCOL_ERROR; // acknowledged, released, or never a read
    if (beg === 0 && run === 0) beg = r.acked;
    const end = run === 0 ? r.headers.length : beg + run;
    if (beg >= end || end > r.headers.length) return RejectReason.INVALID_FIELD;
    if (beg < r.acked || r.sgl === undefined) return RejectReason.PROTOCOL_ERROR;
    for (let k = beg; k < end; k++) this.resendDataIn(r, k, false);
    return undefined;
  }

  /** Status SNACK: numbered responses by StatSN, sent again as they were. */
  statusSnack(beg: number, run: number, nextStatSN: number): SnackResult {
    if (beg === 0 && run === 0) beg = this.expStatSN;
    const end = run === 0 ? nextStatSN : (beg + run) >>> 0;
    if (snLess(beg, this.expStatSN)) return RejectReason.PROTOCOL_ERROR;
    if (!snLess(beg, end) || snLess(nextStatSN, end)) return RejectReason.INVALID_FIELD;
    const list: StatusRecord[] = [];
    for (let sn = beg; sn !== end; sn = (sn + 1) >>> 0) {
      const r = this.statuses.get(sn);
      if (r === undefined) return RejectReason.PROTOCOL_ERROR; // released beyond the bound
      list.push(r);
    }
    for (const r of list) this.resendStatus(r, undefined);
    return undefined;
  }

  /** DataACK: the initiator has a read's Data-In below DataSN `beg`; all of it frees the data. */
  dataAck(ttt: number, beg: number, run: number): SnackResult {
    const r = this.byTtt.get(ttt);
    if (r === undefined || run !== 0 || beg > r.headers.length) return RejectReason.INVALID_DATA_ACK;
    if (beg > r.acked) r.acked = beg;
    if (r.acked === r.headers.length && r.sgl !== undefined) {
      r.sgl = undefined;
      this.bytes -= r.bytes;
    }
    return undefined;
  }

  /**
   * R-Data SNACK: the unacknowledged Data-In again (our segment size never
   * changes in full feature phase, so resegmenting gives the same PDUs),
   * without status, then a SCSI Response with the SNACK Tag and the
   * original StatSN (RFC 7143 11.16.3).
   */
  rDataSnack(itt: number, tag: number): SnackResult {
    const r = this.reads.get(itt);
    if (r === undefined || r.status === undefined || r.sgl === undefined) return RejectReason.PROTOCOL_ERROR;
    for (let k = r.acked; k < r.headers.length; k++) this.resendDataIn(r, k, true);
    this.resendStatus(r.status, tag);
    return undefined;
  }

  /** Everything goes (connection closed). */
  clear(): void {
    this.statuses.clear();
    this.reads.clear();
    this.byTtt.clear();
    this.bytes = 0;
  }

  private resendDataIn(r: ReadRecord, k: number, withoutStatus: boolean): void {
    const h = this.copyHeader(r.headers[k]);
    if (withoutStatus && (h[H.FLAGS] & Rsp.STATUS) !== 0) {
      h[H.FLAGS] &= ~(Rsp.STATUS | Rsp.OVERFLOW | Rsp.UNDERFLOW);
      h[RSP_STATUS] = 0;
      h.writeUInt32BE(0, H.W24);
      h.writeUInt32BE(0, H.W44);
    }
    this.refresh(h);
    this.link.send(h, sglSlice(r.sgl!, h.readUInt32BE(H.W40), dataLengthOf(h)));
  }

  /** A kept response again; `tag`: the SNACK Tag of an R-Data SNACK (a SCSI Response then, always). */
  private resendStatus(r: StatusRecord, tag: number | undefined): void {
    if (r.inData && (tag !== undefined || r.read?.sgl === undefined)) {
      // Status that rode in a Data-In whose data is gone (DataACK) or must not come again: a SCSI Response.
      const d = r.header;
      const residual = (d[H.FLAGS] & Rsp.OVERFLOW) !== 0 ? -d.readUInt32BE(H.W44) : d.readUInt32BE(H.W44);
      // Under its original StatSN, which it does not take again.
      const sent = { statSN: r.statSN, sendsHeaderDigest: this.link.sendsHeaderDigest };
      const h = scsiResponsePdu(sent, this.window, d.readUInt32BE(H.ITT), d[RSP_STATUS], residual, 0, r.read?.headers.length ?? 0);
      h.writeUInt32BE(tag ?? 0, RSP_SNACK_TAG);
      this.link.send(h);
      return;
    }
    if (r.inData) return this.resendDataIn(r.read!, r.read!.headers.length - 1, false);
    const h = this.copyHeader(r.header);
    if (tag !== undefined) h.writeUInt32BE(tag, RSP_SNACK_TAG);
    this.refresh(h);
    this.link.send(h, r.data === undefined ? undefined : [r.data]);
  }

  /** The current ExpCmdSN and MaxCmdSN in a header sent again. */
  private refresh(h: Buffer): void {
    h.writeUInt32BE(this.window.expCmdSN, H.W28);
    h.writeUInt32BE(this.window.maxCmdSN, H.W32);
  }

  private copyHeader(bhs: Buffer): Buffer {
    const h = this.link.header(0, 0);
    bhs.copy(h, 0, 0, BHS_LEN);
    return h;
  }

  private dropStatus(r: StatusRecord): void {
    this.statuses.delete(r.statSN);
    this.bytes -= BHS_LEN + (r.data?.length ?? 0);
    if (r.read !== undefined) this.releaseRead(r.read);
  }

  private releaseRead(r: ReadRecord): void {
    if (this.reads.get(r.itt) === r) this.reads.delete(r.itt);
    this.byTtt.delete(r.ttt);
    if (r.sgl !== undefined) this.bytes -= r.bytes;
    r.sgl = undefined;
  }

  /** Oldest records go first once over either bound. */
  private bound(): void {
    if (this.bytes <= RETAIN_BYTES && this.statuses.size <= RETAIN_RESPONSES) return;
    let n = 0;
    for (const r of this.statuses.values()) {
      if (this.bytes <= RETAIN_BYTES && this.statuses.size <= RETAIN_RESPONSES) break;
      this.dropStatus(r);
      n++;
    }
    log.debug(`iscsi: ${n} unacknowledged responses released (retention bound); SNACKs for them will be rejected`);
  }
}

/**
 * A session's retentions, one per connection (created on first use); at
 * ERL 0 nothing is kept and every call but of() does nothing.
 */
export class Retentions<C extends RecoveryLink & { readonly statSN: number }> {
  private readonly byConnection = new Map<C, Retention>();

  constructor(
    /** The session's ErrorRecoveryLevel. */
    readonly erl: number,
    private readonly window: SnWindow,
  ) {}

  /** What this connection keeps for SNACKs. */
  of(c: C): Retention {
    let r = this.byConnection.get(c);
    if (r === undefined) {
      r = new Retention(c, this.window, c.statSN);
      this.byConnection.set(c, r);
    }
    return r;
  }

  /** A numbered response just sent on c (Retention.response). */
  response(c: C, h: Buffer, data?: Sgl, read?: ReadRecord, inData = false): void {
    if (this.erl !== 0) this.of(c).response(h, data, read, inData);
  }

  /** The ExpStatSN of a PDU from c (Retention.acknowledge). */
  acknowledge(c: C, expStatSN: number): void {
    if (this.erl !== 0) this.of(c).acknowledge(expStatSN, c.statSN);
  }

  /** c closed: what it kept goes. */
  forget(c: C): void {
    this.byConnection.get(c)?.clear();
    this.byConnection.delete(c);
  }
}
