// The target's PDUs (RFC 7143 11), each built in one function from its
// fields, apart from sending (as LIO's iscsit_build_*_pdu): the basic header
// segment with the DataSegmentLength of what will follow it, and room for a
// header digest when the connection sends one. The layouts are pdu.ts's;
// connection.ts sends what is built here.
//
// Every target PDU reports the connection's StatSN and the session's command
// window (RFC 7143 4.2.2): a response that carries status takes the next
// StatSN, the others show the current one (or leave it reserved).

import {
  AS, AsyncEvent, BHS_LEN, F_FINAL, H, L, LO, NO_TAG, Op, REJECT_REASON, RSP_COMPLETED, RSP_EXP_DATA_SN, RSP_RESPONSE, RSP_STATUS, Rsp,
  TEXT_CONTINUE,
  TMF_RESPONSE, encodeLun, newHeader, setDataLength,
} from './pdu';

/** The connection a target PDU goes out on: its StatSN, and whether a header digest follows the BHS. */
export interface TxConnection {
  statSN: number;
  readonly sendsHeaderDigest: boolean;
}

/** The session's command window as target PDUs report it. */
export interface SnWindow {
  readonly expCmdSN: number;
  readonly maxCmdSN: number;
}

/** Before a session exists (a Reject during login): ExpCmdSN and MaxCmdSN stay zero. */
export const NO_WINDOW: SnWindow = { expCmdSN: 0, maxCmdSN: 0 };

function header(c: TxConnection, opcode: number, flags: number, dataLength: number): Buffer {
  const h = newHeader(opcode, flags, c.sendsHeaderDigest);
  if (dataLength !== 0) setDataLength(h, dataLength);
  return h;
}

/** StatSN (the next one taken when the PDU carries status), ExpCmdSN, MaxCmdSN. */
function numbered(h: Buffer, c: TxConnection, w: SnWindow, status: boolean): void {
  h.writeUInt32BE(c.statSN, H.W24);
  if (status) c.statSN = (c.statSN + 1) >>> 0;
  h.writeUInt32BE(w.expCmdSN, H.W28);
  h.writeUInt32BE(w.maxCmdSN, H.W32);
}

/** ExpCmdSN and MaxCmdSN only (StatSN reserved: Data-In without status). */
function windowed(h: Buffer, w: SnWindow): void {
  h.writeUInt32BE(w.expCmdSN, H.W28);
  h.writeUInt32BE(w.maxCmdSN, H.W32);
}

/** The U or O bit of a residual count: positive is underflow, negative overflow. */
export const residualFlags = (residual: number): number => (residual > 0 ? Rsp.UNDERFLOW : residual < 0 ? Rsp.OVERFLOW : 0);

/**
 * The Residual Count field of a residual: 32 bits, so an overflow past 4 GiB (a CDB asking for 2 TiB against an
 * EDTL of 0) saturates; the O bit still says the initiator's EDTL was short (RFC 7143 11.4.5).
 */
const residualCount = (residual: number): number => Math.min(Math.abs(residual), 0xffffffff);

/**
 * SCSI Data-In (RFC 7143 11.7). `flags`: F (end of a burst), S (status in
 * this PDU: status, residual and the next StatSN follow), A (asks for a
 * DataACK: the read is then named by `ttt` and `lun`, 11.7.4; else TTT is
 * the reserved tag).
 */
export function dataInPdu(
  c: TxConnection, w: SnWindow, flags: number, itt: number, ttt: number, lun: number,
  dataSN: number, offset: number, dataLength: number, status: number, residual: number,
): Buffer {
  const withStatus = (flags & Rsp.STATUS) !== 0;
  const h = header(c, Op.DATA_IN, withStatus ? flags | residualFlags(residual) : flags, dataLength);
  h.writeUInt32BE(itt, H.ITT);
  if ((flags & Rsp.ACK) !== 0) {
    h.writeUInt32BE(ttt, H.W20);
    encodeLun(h, lun);
  } else h.writeUInt32BE(NO_TAG, H.W20);
  if (withStatus) {
    h[RSP_STATUS] = status;
    numbered(h, c, w, true);
    h.writeUInt32BE(residualCount(residual), H.W44);
  } else windowed(h, w);
  h.writeUInt32BE(dataSN, H.W36);
  h.writeUInt32BE(offset, H.W40);
  return h;
}

/**
 * SCSI Response (RFC 7143 11.4), response Command Completed at Target.
 * `dataLength`: the sense segment's (senseSegment()), or 0; `expDataSN`: the
 * R2T and Data-In PDUs sent for the command (ERL >= 1), else 0.
 */
export function scsiResponsePdu(
  c: TxConnection, w: SnWindow, itt: number, status: number, residual: number, dataLength: number, expDataSN: number,
): Buffer {
  const h = header(c, Op.SCSI_RSP, F_FINAL | residualFlags(residual), dataLength);
  h[RSP_RESPONSE] = RSP_COMPLETED;
  h[RSP_STATUS] = status;
  h.writeUInt32BE(itt, H.ITT);
  numbered(h, c, w, true);
  h.writeUInt32BE(expDataSN, RSP_EXP_DATA_SN);
  h.writeUInt32BE(residualCount(residual), H.W44);
  return h;
}

/** A SCSI Response's data segment: SenseLength, then the sense data (RFC 7143 11.4.7). */
export function senseSegment(sense: Buffer): Buffer[] {
  const sl = Buffer.allocUnsafe(2);
  sl.writeUInt16BE(sense.length);
  return [sl, sense];
}

/** R2T (RFC 7143 11.8): `length` bytes at `offset` of the command's data-out, under a fresh TTT. */
export function r2tPdu(
  c: TxConnection, w: SnWindow, lun: number, itt: number, ttt: number, r2tSN: number, offset: number, length: number,
): Buffer {
  const h = header(c, Op.R2T, F_FINAL, 0);
  encodeLun(h, lun);
  h.writeUInt32BE(itt, H.ITT);
  h.writeUInt32BE(ttt, H.W20);
  numbered(h, c, w, false);
  h.writeUInt32BE(r2tSN, H.W36);
  h.writeUInt32BE(offset, H.W40);
  h.writeUInt32BE(length, H.W44);
  return h;
}

/** NOP-In answering a NOP-Out (RFC 7143 11.19): its LUN and ITT, the reserved TTT, the echoed data's length. */
export function nopInReplyPdu(c: TxConnection, w: SnWindow, nopOut: Buffer, dataLength: number): Buffer {
  const h = header(c, Op.NOP_IN, F_FINAL, dataLength);
  nopOut.copy(h, H.LUN, H.LUN, H.LUN + 8);
  h.writeUInt32BE(nopOut.readUInt32BE(H.ITT), H.ITT);
  h.writeUInt32BE(NO_TAG, H.W20);
  numbered(h, c, w, true);
  return h;
}

/** NOP-In pinging the initiator: the reserved ITT, a TTT it must echo; no StatSN taken. */
export function nopInPingPdu(c: TxConnection, w: SnWindow, ttt: number): Buffer {
  const h = header(c, Op.NOP_IN, F_FINAL, 0);
  h.writeUInt32BE(NO_TAG, H.ITT);
  h.writeUInt32BE(ttt, H.W20);
  numbered(h, c, w, false);
  return h;
}

/** Task Management Function Response (RFC 7143 11.6). */
export function tmfResponsePdu(c: TxConnection, w: SnWindow, itt: number, response: number): Buffer {
  const h = header(c, Op.TMF_RSP, F_FINAL, 0);
  h[TMF_RESPONSE] = response;
  h.writeUInt32BE(itt, H.ITT);
  numbered(h, c, w, true);
  return h;
}

/**
 * Text Response (RFC 7143 11.11) to `request` (its LUN): `ttt` NO_TAG on the
 * final piece, else the tag under which the initiator asks for the next one
 * (C bit set instead of F).
 */
export function textResponsePdu(c: TxConnection, w: SnWindow, request: Buffer, itt: number, ttt: number, dataLength: number): Buffer {
  const h = header(c, Op.TEXT_RSP, ttt === NO_TAG ? F_FINAL : TEXT_CONTINUE, dataLength);
  request.copy(h, H.LUN, H.LUN, H.LUN + 8);
  h.writeUInt32BE(itt, H.ITT);
  h.writeUInt32BE(ttt, H.W20);
  numbered(h, c, w, true);
  return h;
}

/** Logout Response (RFC 7143 11.15). */
export function logoutResponsePdu(
  c: TxConnection, w: SnWindow, itt: number, response: number, time2Wait: number, time2Retain: number,
): Buffer {
  const h = header(c, Op.LOGOUT_RSP, F_FINAL, 0);
  h[LO.RESPONSE] = response;
  h.writeUInt32BE(itt, H.ITT);
  numbered(h, c, w, true);
  h.writeUInt16BE(time2Wait, LO.TIME2WAIT);
  h.writeUInt16BE(time2Retain, LO.TIME2RETAIN);
  return h;
}

/** Asynchronous Message asking the initiator to log out within `seconds` (RFC 7143 11.9, AsyncEvent 1). */
export function logoutRequestPdu(c: TxConnection, w: SnWindow, seconds: number): Buffer {
  const h = header(c, Op.ASYNC, F_FINAL, 0);
  h.writeUInt32BE(NO_TAG, H.ITT);
  numbered(h, c, w, true);
  h[AS.EVENT] = AsyncEvent.LOGOUT_REQUEST;
  h.writeUInt16BE(seconds, AS.PARAM3);
  return h;
}

/** Reject (RFC 7143 11.17): the data segment is the rejected PDU's header; no StatSN taken. */
export function rejectPdu(c: TxConnection, w: SnWindow, reason: number): Buffer {
  const h = header(c, Op.REJECT, F_FINAL, BHS_LEN);
  h[REJECT_REASON] = reason;
  h.writeUInt32BE(NO_TAG, H.ITT);
  numbered(h, c, w, false);
  return h;
}

/**
 * Login Response (RFC 7143 11.13). `flags`: T, CSG and NSG (byte 1);
 * `isid`: 12 hex digits; `status`: class << 8 | detail (the TSIH goes out
 * only with success).
 */
export function loginResponsePdu(
  c: TxConnection, w: SnWindow, flags: number, isid: string, tsih: number, itt: number, status: number, dataLength: number,
): Buffer {
  const h = header(c, Op.LOGIN_RSP, flags, dataLength);
  h[L.VERSION_MAX] = 0;
  h[L.VERSION_MIN] = 0;
  h.write(isid.padEnd(12, '0'), L.ISID, 6, 'hex');
  h.writeUInt16BE(status === 0 ? tsih : 0, L.TSIH);
  h.writeUInt32BE(itt >>> 0, H.ITT);
  numbered(h, c, w, true);
  h[L.STATUS_CLASS] = status >> 8;
  h[L.STATUS_DETAIL] = status & 0xff;
  return h;
}

let nextTtt = 1;
/** A fresh Target Transfer Tag (R2T, DataACK, ping, text continuation): process-wide, never the reserved value. */
export function newTtt(): number {
  const t = nextTtt;
  nextTtt = nextTtt >= 0x7fffffff ? 1 : nextTtt + 1;
  return t;
}
