// The session's PDUs besides SCSI and task management: NOP-Out and NOP-In
// both ways (RFC 7143 11.18, 11.19), Text requests (SendTargets, answered in
// pieces under a TTT when long; 11.10, 11.11) and Logout (11.14, 11.15).

import { loginCounts } from './login-counts';
import type { Session as CoreSession } from '../../src/core/session';
import { sglLength, type Sgl } from '../../src/core/sgl';
import type { Root } from '../../src/model/root';
import type { Tpg } from '../../src/model/target';
import type { CommandWindow } from './command-window';
import type { Connection } from './connection';
import { sendTargets } from './discovery';
import { encodeText, parseText, type OperationalParams } from './keys';
import { H, LO, LOGOUT_REASON_MASK, LogoutReason, LogoutRsp, NO_TAG, RejectReason } from './pdu';
import { logoutResponsePdu, newTtt, nopInPingPdu, nopInReplyPdu, textResponsePdu } from './pdu-builders';
import type { Retentions } from './recovery';

/** A text response still to send in pieces: ITT, TTT and the remaining bytes. */
export interface TextRest {
  itt: number;
  ttt: number;
  rest: Buffer;
}

/** What these PDUs need of their session (iscsi-session.ts). */
export interface ControlSession {
  readonly window: CommandWindow;
  readonly kept: Retentions<Connection>;
  readonly connections: ReadonlySet<Connection>;
  readonly params: OperationalParams;
  readonly core: CoreSession | undefined;
  readonly root: Root;
  readonly tpg: Tpg;
  readonly initiatorName: string;
  readonly discovery: boolean;
  textRest: TextRest | undefined;
  close(why: string): void;
}

export function nopOut(s: ControlSession, c: Connection, h: Buffer, data: Sgl): void {
  const itt = h.readUInt32BE(H.ITT);
  const ttt = h.readUInt32BE(H.W20);
  if (ttt !== NO_TAG) {
    // The answer to our ping.
    if (ttt === c.pingTtt) c.pingTtt = NO_TAG;
    return;
  }
  if (itt === NO_TAG) return; // a ping that wants no answer
  const n = Math.min(sglLength(data), c.maxXmitDataSegmentLength);
  const r = nopInReplyPdu(c, s.window, h, n);
  // A copy: the echo may wait in the socket's queue (or for a SNACK) after the receive slab it came in is reused.
  const echo = n > 0 ? [Buffer.concat(data as Buffer[], n)] : [];
  c.send(r, echo);
  s.kept.response(c, r, echo);
}

/** A target ping of an idle initiator (NOP-In with a TTT it must echo). */
export function sendPing(s: ControlSession, c: Connection): void {
  const ttt = newTtt();
  c.pingTtt = ttt;
  c.pingSent = Date.now();
  c.send(nopInPingPdu(c, s.window, ttt));
}

export function text(s: ControlSession, c: Connection, h: Buffer, data: Sgl): void {
  const itt = h.readUInt32BE(H.ITT);
  const ttt = h.readUInt32BE(H.W20);
  let body: Buffer;
  if (ttt !== NO_TAG) {
    // Continuing a long response we started.
    if (s.textRest === undefined || s.textRest.ttt !== ttt || s.textRest.itt !== itt) {
      return c.reject(h, RejectReason.INVALID_FIELD);
    }
    body = s.textRest.rest;
    s.textRest = undefined;
  } else {
    s.textRest = undefined;
    const flat = data.length === 1 ? data[0] : Buffer.concat(data as Buffer[]);
    const pairs = parseText(flat);
    if (typeof pairs === 'string') return c.reject(h, RejectReason.PROTOCOL_ERROR);
    const reply: [string, string][] = [];
    for (const [k, v] of pairs) {
      if (k === 'SendTargets') {
        if (v === '' && s.discovery) continue;
        reply.push(...sendTargets(s.root, c.localAddress, s.initiatorName, v === '' ? s.tpg.target.wwn : v, s.discovery));
      } else reply.push([k, 'NotUnderstood']);
    }
    body = encodeText(reply);
  }
  const max = c.maxXmitDataSegmentLength;
  let tttOut = NO_TAG;
  if (body.length > max) {
    tttOut = newTtt();
    s.textRest = { itt, ttt: tttOut, rest: body.subarray(max) };
    body = body.subarray(0, max);
  }
  const r = textResponsePdu(c, s.window, h, itt, tttOut, body.length);
  c.send(r, [body]);
  s.kept.response(c, r, [body]);
}

export function logout(s: ControlSession, c: Connection, h: Buffer): void {
  const reason = h[H.FLAGS] & LOGOUT_REASON_MASK;
  const itt = h.readUInt32BE(H.ITT);
  let code: number = LogoutRsp.OK;
  let target: Connection | undefined = c;
  if (reason === LogoutReason.CLOSE_CONNECTION || reason === LogoutReason.REMOVE_FOR_RECOVERY) {
    const cid = h.readUInt16BE(LO.CID);
    target = [...s.connections].find((x) => x.cid === cid);
    if (target === undefined) code = LogoutRsp.NO_CID;
    else if (reason === LogoutReason.REMOVE_FOR_RECOVERY) code = LogoutRsp.NO_RECOVERY;
  } else if (reason !== LogoutReason.CLOSE_SESSION) {
    return c.reject(h, RejectReason.INVALID_FIELD);
  }
  if (code === LogoutRsp.OK) loginCounts.logouts++;
  // A session whose access was revoked keeps nothing for a reconnection to reclaim.
  const retain = s.core?.closed ? 0 : s.params.defaultTime2Retain;
  const r = logoutResponsePdu(c, s.window, itt, code, s.params.defaultTime2Wait, retain);
  c.send(r);
  s.kept.response(c, r);
  if (code !== LogoutRsp.OK) return;
  if (reason === LogoutReason.CLOSE_SESSION) {
    for (const x of s.connections) x.end();
    s.close('logout');
  } else target!.end();
}
