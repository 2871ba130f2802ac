// An iSCSI session in full feature phase (RFC 7143 4, 11): the CmdSN window
// and ordering, SCSI commands with immediate, unsolicited and solicited
// (R2T) data, Data-In with status in the last PDU, NOP both ways, task
// management, text (SendTargets), logout, asynchronous logout requests, and
// several connections (MC/S). Data-out buffers handed to the core are views
// of what the socket read; READ data goes to the socket as it is, from the
// backstore's own memory when it lends it (RAM) or else from a recycled
// buffer (data-in-pool.ts), either given back once the socket has written it.

import { loginCounts } from './login-counts';
import type { Completion } from '../../src/core/command';
import type { Session as CoreSession } from '../../src/core/session';
import type { TmfFunction, TmfResult } from '../../src/core/tmr';
import { sglLength, sglSlice, type Sgl } from '../../src/core/sgl';
import { Asc, ScsiError, SenseKey, Status } from '../../src/core/sense';
import { log } from '../../src/core/log';
import type { Tpg } from '../../src/model/target';
import type { Connection } from './connection';
import type { OperationalParams } from './keys';
import { encodeText, parseText } from './keys';
import {
  AS, AsyncEvent, Cmd, F_FINAL, H, LO, LOGOUT_REASON_MASK, LogoutReason, LogoutRsp, NO_TAG, Op, RSP_COMPLETED, RejectReason,
  RSP_EXP_DATA_SN, Rsp, SN, SNACK_TYPE_MASK, SnackType, TASK_ATTR, TEXT_CONTINUE, TMF_FUNCTION_MASK, TMF_RESPONSE, TmfFn, TmfRsp, decodeLun, encodeLun, isImmediate, opcodeOf, parseAhs, snLess,
} from './pdu';
import type { Portal } from './portal';
import { sendTargets } from './discovery';
import { Retention, type ReadRecord, type SnackResult } from './recovery';
import { rxPool, type RxSlab } from './rx-slab';
import { dataInPool } from './data-in-pool';

/** Live sessions by TSIH. */
export const sessions = new Map<number, IscsiSession>();
let nextTsih = 1;
function allocTsih(): number {
  for (;;) {
    const t = nextTsih;
    nextTsih = nextTsih >= 0xffff ? 1 : nextTsih + 1;
    if (!sessions.has(t)) return t;
  }
}

let nextTtt = 1;
function allocTtt(): number {
  const t = nextTtt;
  nextTtt = nextTtt >= 0x7fffffff ? 1 : nextTtt + 1;
  return t;
}

const EMPTY: Buffer[] = [];
rxPool.onSweep(() => {
  for (const s of sessions.values()) s.unpin();
});
/** Recovery R2Ts one command gets (ERL 1) before it fails: an initiator whose data keeps arriving bad cannot loop. */
const MAX_RECOVERIES = 8;
/** Seconds an initiator whose access was revoked has to log out before its connections are dropped. */
const REVOKE_GRACE_S = 2;

/** A PDU that arrived ahead of ExpCmdSN (MC/S, a CmdSN gap left by a discarded command), with the unsolicited Data-Out that came after it. */
interface Early {
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

/** Ahead of its CmdSN for a while: what it holds of receive slabs is copied, and the slabs go. */
function unpinEarly(e: Early): void {
  e.data = rxPool.copyOut(e.data);
  if (e.dataOut !== undefined) for (const d of e.dataOut) d[1] = rxPool.copyOut(d[1]);
  rxPool.releaseAll(e.slabs);
}

/** One SCSI command in flight on a connection. */
class Task {
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

export class IscsiSession {
  readonly tsih = allocTsih();
  readonly connections = new Set<Connection>();
  expCmdSN: number;
  /** SCSI commands that consumed a CmdSN and have not completed. */
  private inflight = 0;
  private readonly depth: number;
  /** Non-immediate PDUs that arrived ahead of ExpCmdSN (MC/S), by CmdSN. */
  private readonly early = new Map<number, Early>();
  /** The same by ITT, for the unsolicited Data-Out that may follow them before they can run. */
  private readonly earlyByItt = new Map<number, Early>();
  private readonly tasks = new Map<number, Task>();
  /** Negotiated ErrorRecoveryLevel: 1 keeps what SNACKs may ask for again (recovery.ts). */
  private readonly erl: number;
  private readonly retentions = new Map<Connection, Retention>();
  /** Text response still to send in pieces: ITT, TTT and the remaining bytes. */
  private textRest: { itt: number; ttt: number; rest: Buffer } | undefined;
  private closing = false;
  private readonly onComplete = (c: Completion): void => this.complete(c);
  /** Resolves when the last connection is gone (shutdown waits for logouts). */
  private endWaiters: (() => void)[] = [];

  constructor(
    readonly tpg: Tpg,
    readonly portal: Portal,
    readonly initiatorName: string,
    readonly isid: string,
    readonly discovery: boolean,
    readonly params: OperationalParams,
    readonly core: CoreSession | undefined,
    cmdSN: number,
  ) {
    this.expCmdSN = cmdSN >>> 0;
    this.depth = Number(tpg.attributes.default_cmdsn_depth ?? 64);
    this.erl = params.errorRecoveryLevel;
    sessions.set(this.tsih, this);
    if (core) core.onClosed = () => this.revoke();
  }

  get maxCmdSN(): number {
    return (this.expCmdSN + this.depth - 1 - this.inflight) >>> 0;
  }

  addConnection(c: Connection): void {
    this.connections.add(c);
    c.session = this;
    c.ffp = true;
  }

  /** A connection ended: `graceful` when logged out (or replaced by a login with its CID), else it failed. */
  connectionClosed(c: Connection, graceful = false): void {
    if (!this.connections.delete(c)) return;
    this.retentions.get(c)?.clear();
    this.retentions.delete(c);
    // ERL 0 (RFC 7143 6.1.4, 7.1.3): a connection failure is a session failure; its tasks cannot move elsewhere.
    if (!graceful || this.connections.size === 0) return this.close(graceful ? 'last connection logged out' : 'connection failed (ERL 0)');
    // A connection that logged out alone takes its tasks with it: none waits for data that cannot come.
    for (const t of this.tasks.values()) if (t.conn === c && !t.done) t.abandon('connection logged out');
  }

  /**
   * The core closed the nexus (its ACL, TPG or demo mode admission went away
   * live). Like LIO the session must end, but rather than dropping the
   * connections at once we first ask the initiator to log out (Async Message,
   * AsyncEvent 1): a clean logout tells it why, and its re-login then gets a
   * login status (authorization failure) instead of a connection error it would
   * retry. Commands meanwhile get no answer (the nexus is gone); those that
   * remain end with the connections after REVOKE_GRACE_S.
   */
  private revoke(): void {
    if (this.closing) return;
    log.info(`iscsi: session ${this.tsih} of ${this.initiatorName}: access revoked; requesting logout`);
    void this.requestLogout(REVOKE_GRACE_S);
    setTimeout(() => this.close('access revoked'), REVOKE_GRACE_S * 1000).unref();
  }

  /** Ends the session: connections, tasks (the core aborts them silently), the nexus. */
  close(why: string): void {
    if (this.closing) return;
    this.closing = true;
    log.debug(`iscsi: session ${this.tsih} of ${this.initiatorName}: ${why}`);
    sessions.delete(this.tsih);
    for (const c of [...this.connections]) c.destroy();
    // The nexus loss marks every task aborted first; then writes stop waiting for data that will not come.
    const done = this.core ? this.core.close() : Promise.resolve();
    // Tasks stay listed until the core completes them: their data-out is in use until then (complete()).
    for (const t of this.tasks.values()) t.abandon('session closed');
    for (const e of this.early.values()) rxPool.releaseAll(e.slabs);
    this.early.clear();
    this.earlyByItt.clear();
    void done.then(() => {
      for (const w of this.endWaiters) w();
      this.endWaiters = [];
    });
  }

  /**
   * The sweep (rx-slab.ts): on a connection that keeps more than its share of
   * receive slabs, the commands that have waited for their data since the
   * sweep before or longer let theirs go.
   */
  unpin(): void {
    const old = rxPool.tick - 2;
    for (const c of this.connections) {
      if (!rxPool.crowded(c.socket)) continue;
      for (const t of this.tasks.values()) if (t.conn === c && t.born <= old) t.unpin();
      for (const e of this.early.values()) if (e.conn === c && e.born <= old && e.slabs.length > 0) unpinEarly(e);
    }
  }

  /** Asks the initiator to log out (shutdown); resolves when it did or time ran out. */
  requestLogout(seconds: number): Promise<void> {
    if (this.closing) return Promise.resolve();
    const p = new Promise<void>((resolve) => this.endWaiters.push(resolve));
    for (const c of this.connections) {
      const h = c.header(Op.ASYNC, F_FINAL);
      h.writeUInt32BE(NO_TAG, H.ITT);
      this.stamp(c, h, true);
      h[AS.EVENT] = AsyncEvent.LOGOUT_REQUEST;
      h.writeUInt16BE(seconds, AS.PARAM3);
      c.send(h);
      this.retain(c, h);
    }
    return p;
  }

  /** StatSN (advancing it when the PDU carries status), ExpCmdSN, MaxCmdSN. */
  private stamp(c: Connection, h: Buffer, status: boolean): void {
    h.writeUInt32BE(c.statSN, H.W24);
    if (status) c.statSN = (c.statSN + 1) >>> 0;
    h.writeUInt32BE(this.expCmdSN, H.W28);
    h.writeUInt32BE(this.maxCmdSN, H.W32);
  }

  /** ERL 1: what this connection keeps for SNACKs (created on first use). */
  private retention(c: Connection): Retention {
    let r = this.retentions.get(c);
    if (r === undefined) {
      r = new Retention({
        send: (h, data, len) => c.send(h, data, len),
        refresh: (h) => {
          h.writeUInt32BE(this.expCmdSN, H.W28);
          h.writeUInt32BE(this.maxCmdSN, H.W32);
        },
        header: (op, flags) => c.header(op, flags),
      }, c.statSN);
      this.retentions.set(c, r);
    }
    return r;
  }

  /** A numbered response just sent: at ERL 1 it is kept until acknowledged. */
  private retain(c: Connection, h: Buffer, data?: Sgl, len = 0, read?: ReadRecord, inData = false): void {
    if (this.erl !== 0) this.retention(c).response(h, data, len, read, inData);
  }

  /** A PDU from a connection in full feature phase. */
  receive(c: Connection, h: Buffer, data: Sgl): void {
    const op = opcodeOf(h);
    // ExpStatSN (every initiator PDU) acknowledges the responses below it.
    if (this.erl !== 0) this.retention(c).acknowledge(h.readUInt32BE(H.W28), c.statSN);
    if (op === Op.DATA_OUT) return this.dataOut(c, h, data);
    if (op === Op.SNACK) return this.erl === 0 ? c.reject(h, RejectReason.NOT_SUPPORTED) : this.snack(c, h);
    if (op !== Op.SCSI_CMD && op !== Op.NOP_OUT && op !== Op.TMF_REQ && op !== Op.TEXT_REQ && op !== Op.LOGOUT_REQ) {
      return c.reject(h, op === Op.LOGIN_REQ ? RejectReason.PROTOCOL_ERROR : RejectReason.NOT_SUPPORTED);
    }
    // Acknowledged status: the initiator's ExpStatSN; only NOP-Out pings need none.
    if (isImmediate(h)) return this.execute(c, h, data);
    const sn = h.readUInt32BE(H.W24);
    if (sn === this.expCmdSN) {
      this.expCmdSN = (sn + 1) >>> 0;
      this.execute(c, h, data);
      // Anything that arrived early on another connection may go now.
      while (this.early.size > 0) {
        const next = this.early.get(this.expCmdSN);
        if (!next) break;
        this.early.delete(this.expCmdSN);
        this.expCmdSN = (this.expCmdSN + 1) >>> 0;
        const itt = next.h.readUInt32BE(H.ITT);
        if (this.earlyByItt.get(itt) === next) this.earlyByItt.delete(itt);
        this.execute(next.conn, next.h, next.data);
        for (const [dh, dd] of next.dataOut ?? []) this.dataOut(next.conn, dh, dd);
        rxPool.releaseAll(next.slabs);
      }
      return;
    }
    // Outside the window: silently ignored (RFC 7143 4.2.2.1).
    if (snLess(sn, this.expCmdSN) || snLess(this.maxCmdSN, sn)) {
      log.debug(`iscsi: session ${this.tsih}: CmdSN ${sn} outside [${this.expCmdSN}, ${this.maxCmdSN}] dropped`);
      return;
    }
    if (!this.early.has(sn)) {
      const e: Early = { conn: c, h: Buffer.from(h), data, slabs: [], dataOut: undefined, dataOutBytes: 0, born: rxPool.tick };
      rxPool.retain(data, e.slabs);
      this.early.set(sn, e);
      if (op === Op.SCSI_CMD) this.earlyByItt.set(e.h.readUInt32BE(H.ITT), e);
    }
  }

  private execute(c: Connection, h: Buffer, data: Sgl): void {
    switch (opcodeOf(h)) {
      case Op.SCSI_CMD:
        return this.scsiCommand(c, h, data);
      case Op.NOP_OUT:
        return this.nopOut(c, h, data);
      case Op.TMF_REQ:
        return void this.tmf(c, h);
      case Op.TEXT_REQ:
        return this.text(c, h, data);
      case Op.LOGOUT_REQ:
        return this.logout(c, h);
    }
  }

  // ---- SCSI commands ------------------------------------------------------

  private scsiCommand(c: Connection, h: Buffer, data: Sgl): void {
    const core = this.core;
    if (core === undefined) return c.reject(h, RejectReason.PROTOCOL_ERROR); // discovery session
    if (core.closed) return; // access revoked: the logout request is out, the connections drop soon
    const flags = h[H.FLAGS];
    const itt = h.readUInt32BE(H.ITT);
    const edtl = h.readUInt32BE(H.W20);
    const lun = decodeLun(h);
    const write = (flags & Cmd.WRITE) !== 0;
    const immLen = sglLength(data);
    let cdb = h.subarray(H.CDB, H.CDB + 16);
    if (h[H.TOTAL_AHS] !== 0) {
      const ahs = parseAhs(h);
      if (ahs === undefined) return c.reject(h, RejectReason.PROTOCOL_ERROR);
      // Bidirectional commands: the core has no second data buffer, so the command is not supported.
      if (ahs.bidiReadLength !== undefined) return c.reject(h, RejectReason.NOT_SUPPORTED);
      // Longer CDBs (variable length, 32 bytes and more): the unit's table decides whether it knows them.
      if (ahs.cdbTail !== undefined) cdb = Buffer.concat([cdb, ahs.cdbTail]);
    }
    if (write && (flags & Cmd.READ) !== 0) return c.reject(h, RejectReason.NOT_SUPPORTED); // bidirectional
    if (immLen > 0 && (!write || !this.params.immediateData || immLen > this.params.firstBurstLength || immLen > edtl)) {
      return c.reject(h, RejectReason.PROTOCOL_ERROR);
    }
    const finalBit = (flags & F_FINAL) !== 0;
    if (!finalBit && (!write || this.params.initialR2T)) return c.reject(h, RejectReason.PROTOCOL_ERROR);
    const overlap = this.tasks.has(itt);
    const task = new Task(c, itt, lun, edtl);
    // An overlapped command is refused at once by the core (OVERLAPPED COMMANDS ATTEMPTED): it never waits.
    if (!isImmediate(h) && !overlap) {
      task.windowed = true;
      this.inflight++;
    }
    if (!overlap) this.tasks.set(itt, task);
    // The CDB is a view of the header; a command that waits for its data-out gets a copy, so that it can let the slab go (unpin()).
    task.fetches = write && immLen < edtl;
    if (!task.fetches) rxPool.retain([h], task.slabs);
    else if (cdb.buffer === h.buffer) cdb = Buffer.from(cdb);
    let fetch: ((n: number) => Promise<Sgl>) | undefined;
    // Reads get a recycled buffer (an overlapped command is answered at once, it needs none). At ERL 1
    // the data outlives the send, kept for SNACKs (recovery.ts): the garbage collector owns it then.
    let dataIn: Sgl | undefined;
    // Such reads may also get the backstore's memory itself (RAM) rather than a copy: sent as it is, then released.
    const lend = (flags & Cmd.READ) !== 0 && !write && !overlap && this.erl === 0;
    if (lend) {
      const b = dataInPool.take(edtl);
      if (b !== undefined) {
        task.dataInBuf = b;
        dataIn = [b.length === edtl ? b : b.subarray(0, edtl)];
      }
    }
    if (write && edtl > 0) {
      if (immLen > 0) task.add(data);
      task.unsolEnd = finalBit ? immLen : Math.min(edtl, this.params.firstBurstLength);
      task.r2tNext = task.unsolEnd;
      if (task.fetches) fetch = (n: number) => this.fetch(task, n);
    }
    core.submit(
      {
        cdb,
        lun,
        tag: itt,
        taskAttr: TASK_ATTR[flags & Cmd.ATTR_MASK],
        expectedLength: edtl,
        dataOut: write && task.received > 0 && fetch === undefined ? task.bufs : undefined,
        fetchDataOut: fetch,
        dataIn,
        lendDataIn: lend,
      },
      overlap ? (cmp) => this.respondOverlap(cmp, task) : this.onComplete,
    );
  }

  /** The core wants n bytes of data-out: what came unsolicited, the rest by R2T. */
  private fetch(task: Task, n: number): Promise<Sgl> {
    task.need = n;
    if (task.done) return Promise.reject(task.failure instanceof ScsiError ? task.failure : new ScsiError(SenseKey.ABORTED_COMMAND, Asc.DATA_PHASE_ERROR));
    if (task.received >= n) return Promise.resolve(sglSlice(task.bufs, 0, n));
    return new Promise<Sgl>((resolve, reject) => {
      task.resolve = resolve;
      task.reject = reject;
      this.solicit(task);
    });
  }

  /** Sends R2Ts up to MaxOutstandingR2T, each for at most MaxBurstLength. */
  private solicit(task: Task): void {
    const c = task.conn;
    while (task.r2tOutstanding < this.params.maxOutstandingR2T && task.r2tNext < task.need && !task.done && !task.crcError) {
      // A recovery R2T asks for exactly what was lost; the next ones go on from there.
      const end = task.r2tNext < task.recoverEnd ? Math.min(task.recoverEnd, task.need) : task.need;
      const len = Math.min(this.params.maxBurstLength, end - task.r2tNext);
      const ttt = allocTtt();
      (task.r2ts ??= new Map()).set(ttt, task.r2tNext + len);
      task.r2tOutstanding++;
      if (this.erl !== 0) (task.r2tLog ??= []).push({ ttt, offset: task.r2tNext, length: len });
      this.sendR2t(c, task, ttt, task.r2tSN++, task.r2tNext, len);
      task.r2tNext += len;
      c.soliciting.add(task);
    }
  }

  /**
   * Called about once a second for each connection: a command whose
   * solicited Data-Out has not advanced for `timeoutMs` (ACL dataout_timeout)
   * ends as in LIO. At ERL 0 the connection fails, and its tasks end with
   * it, freeing what they hold (receive memory, a logical unit where an
   * ORDERED task waits behind them). At ERL 1 a recovery R2T asks again for
   * all that is missing, until `retries` timeouts (dataout_timeout_retries).
   */
  checkDataOut(c: Connection, now: number, timeoutMs: number, retries: number): void {
    for (const task of this.tasks.values()) {
      if (task.conn !== c || task.done || task.r2tOutstanding === 0) continue;
      if (task.received !== task.seenReceived) {
        task.seenReceived = task.received;
        task.stalledSince = now;
        continue;
      }
      if (now - task.stalledSince < timeoutMs) continue;
      const what = `task 0x${task.itt.toString(16)}: no Data-Out for [${task.received}, ${task.r2tNext}) in ${timeoutMs / 1000} s`;
      if (this.erl === 0 || ++task.dataOutTimeouts >= retries) {
        log.warn(`iscsi: ${this.initiatorName}: ${what}; dropping its connection`);
        c.destroy();
        return;
      }
      log.debug(`iscsi: ${this.initiatorName}: ${what}; asking again`);
      task.stalledSince = now;
      task.r2ts!.clear();
      task.r2tOutstanding = 0;
      task.dataSN = 0;
      this.askAgain(task, task.r2tNext);
    }
  }

  /** ERL 1: recovery R2Ts for what is missing of [received, end) (RFC 7143 7.8; R2TSN goes on), then the rest. */
  private askAgain(task: Task, end: number): void {
    if (end > task.recoverEnd) task.recoverEnd = end;
    if (task.r2tNext > task.received) task.r2tNext = task.received;
    if (task.resolve !== undefined) this.solicit(task);
  }

  private sendR2t(c: Connection, task: Task, ttt: number, r2tSN: number, offset: number, len: number): void {
    const h = c.header(Op.R2T, F_FINAL);
    encodeLun(h, task.lun);
    h.writeUInt32BE(task.itt, H.ITT);
    h.writeUInt32BE(ttt, H.W20);
    this.stamp(c, h, false);
    h.writeUInt32BE(r2tSN, H.W36);
    h.writeUInt32BE(offset, H.W40);
    h.writeUInt32BE(len, H.W44);
    c.send(h);
  }

  /**
   * ERL 1: a data sequence (unsolicited, or one R2T's) ended short of its
   * end because a PDU of it was discarded: ask for the rest again with a
   * recovery R2T. With DataSequenceInOrder
   * and one outstanding R2T, only the last sequence can be short.
   */
  private sequenceEnd(task: Task, ttt: number): void {
    task.dataSN = 0;
    if (task.crcError) return this.crcSequenceEnd(task, ttt);
    const end = ttt === NO_TAG ? task.unsolEnd : task.r2ts?.get(ttt);
    if (end === undefined || task.received >= end) return;
    if (ttt !== NO_TAG) {
      task.r2ts!.delete(ttt);
      task.r2tOutstanding--;
    }
    if (++task.recoveries > MAX_RECOVERIES) {
      task.abandon(new ScsiError(SenseKey.ABORTED_COMMAND, Asc.PROTOCOL_SERVICE_CRC_ERROR));
      return;
    }
    log.debug(`iscsi: ${this.initiatorName}: task 0x${task.itt.toString(16)}: data [${task.received}, ${end}) lost; asking again`);
    this.askAgain(task, end);
  }

  /**
   * ERL 0, a command with a Data-Out lost to its digest: once every
   * outstanding sequence has ended, it fails with PROTOCOL SERVICE CRC ERROR
   * (RFC 7143 7.8: the response waits for the data still under way).
   */
  private crcSequenceEnd(task: Task, ttt: number): void {
    if (ttt !== NO_TAG && task.r2ts?.delete(ttt)) task.r2tOutstanding--;
    if (task.r2tOutstanding === 0) task.abandon(new ScsiError(SenseKey.ABORTED_COMMAND, Asc.PROTOCOL_SERVICE_CRC_ERROR));
  }

  /**
   * A PDU whose data digest failed; its header is sound. Rejected (RFC 7143
   * 7.8): a command with immediate data is then as if never received, so
   * ExpCmdSN stays and the initiator's retry (same ITT and CmdSN) fills the
   * gap. At ERL 1 a Data-Out is asked for again at the end of its sequence;
   * at ERL 0 the command fails (PROTOCOL SERVICE CRC ERROR) once its
   * outstanding data has come.
   */
  dataDigestError(c: Connection, h: Buffer): void {
    c.reject(h, RejectReason.DATA_DIGEST);
    if (opcodeOf(h) !== Op.DATA_OUT) return;
    const task = this.tasks.get(h.readUInt32BE(H.ITT));
    const ttt = h.readUInt32BE(H.W20);
    if (task === undefined || task.conn !== c || task.done || (ttt !== NO_TAG && !task.r2ts?.has(ttt))) return;
    if (this.erl === 0) task.crcError = true;
    if ((h[H.FLAGS] & F_FINAL) !== 0) this.sequenceEnd(task, ttt);
  }

  private dataOut(c: Connection, h: Buffer, data: Sgl): void {
    const itt = h.readUInt32BE(H.ITT);
    const ttt = h.readUInt32BE(H.W20);
    const task = this.tasks.get(itt);
    const len = sglLength(data);
    const waiting = task === undefined && ttt === NO_TAG ? this.earlyByItt.get(itt) : undefined;
    if (waiting !== undefined && waiting.conn === c) {
      // Unsolicited data of a command still waiting for its CmdSN: it is taken in when the command runs.
      waiting.dataOutBytes += len;
      if (waiting.dataOutBytes > this.params.firstBurstLength) return; // more than unsolicited data may be
      rxPool.retain(data, waiting.slabs);
      (waiting.dataOut ??= []).push([Buffer.from(h), data]);
      return;
    }
    if (task === undefined || task.conn !== c) {
      // Unsolicited data of a command that already ended (refused early) is dropped quietly.
      if (ttt === NO_TAG && task === undefined) return;
      return c.reject(h, RejectReason.INVALID_FIELD);
    }
    const offset = h.readUInt32BE(H.W40);
    if (ttt === NO_TAG) {
      if (offset + len > task.unsolEnd) return c.reject(h, RejectReason.PROTOCOL_ERROR);
    } else if (task.r2ts === undefined || !task.r2ts.has(ttt)) {
      return c.reject(h, RejectReason.INVALID_FIELD);
    } else if (offset + len > task.r2ts.get(ttt)!) {
      return c.reject(h, RejectReason.PROTOCOL_ERROR);
    }
    if (task.done) return; // the rest of a command that already failed
    const final = (h[H.FLAGS] & F_FINAL) !== 0;
    // DataPDUInOrder and DataSequenceInOrder are Yes: data comes at the next offset.
    if (offset !== task.received || h.readUInt32BE(H.W36) !== task.dataSN) {
      log.debug(`iscsi: ${this.initiatorName}: Data-Out at offset ${offset} DataSN ${h.readUInt32BE(H.W36)}, expected ${task.received} DataSN ${task.dataSN}`);
      // ERL 1: past a discarded PDU nothing is kept; the end of the sequence asks for the rest again.
      // ERL 0 after a digest error: the same, but the end of the data fails the command.
      if (this.erl !== 0 || task.crcError) {
        if (final) this.sequenceEnd(task, ttt);
        return;
      }
      // ERL 0 has no within-command recovery: the PDU is rejected and the command fails.
      c.reject(h, RejectReason.PROTOCOL_ERROR);
      task.abandon(new ScsiError(SenseKey.ABORTED_COMMAND, Asc.DATA_PHASE_ERROR));
      return;
    }
    task.dataSN++;
    if (len > 0) task.add(data);
    if (final) {
      if (this.erl !== 0 || task.crcError) this.sequenceEnd(task, ttt);
      task.dataSN = 0;
    }
    if (ttt !== NO_TAG && task.r2ts!.has(ttt) && task.received >= task.r2ts!.get(ttt)!) {
      task.r2ts!.delete(ttt);
      task.r2tOutstanding--;
    }
    if (task.resolve !== undefined) {
      if (task.received >= task.need) {
        const r = task.resolve;
        task.resolve = task.reject = undefined;
        r(sglSlice(task.bufs, 0, task.need));
      } else this.solicit(task);
    }
  }

  private complete(cmp: Completion): void {
    const task = this.tasks.get(cmp.tag);
    if (task === undefined) return cmp.release?.();
    this.tasks.delete(cmp.tag);
    task.done = true;
    if (task.slabs.length > 0) rxPool.releaseAll(task.slabs);
    if (task.windowed) this.inflight--;
    if (cmp.release !== undefined) {
      // The backstore lent its memory: the pooled buffer was not written, it can go back now.
      if (task.dataInBuf !== undefined) dataInPool.give(task.dataInBuf);
      task.dataInBuf = undefined;
      task.lent = cmp.release;
    }
    if (cmp.quiet || task.conn.closed) return task.releaseDataIn();
    this.respond(task.conn, task.itt, cmp, task);
  }

  private respondOverlap(cmp: Completion, task: Task): void {
    rxPool.releaseAll(task.slabs);
    const t = this.tasks.get(cmp.tag);
    if (t && !t.conn.closed) this.respond(t.conn, cmp.tag, cmp);
  }

  /**
   * Data-In PDUs (status in the last one when it can carry it), else a SCSI
   * Response. At ERL 1 the read's Data-In and the status are kept for SNACKs
   * (recovery.ts), and the last PDU of each burst asks for a DataACK. A
   * pooled or lent data-in buffer (ERL 0 only) goes back once the socket has
   * written the last Data-In PDU, or at once when none is sent.
   */
  private respond(c: Connection, itt: number, cmp: Completion, task?: Task): void {
    const release = task === undefined || (task.dataInBuf === undefined && task.lent === undefined) ? undefined : () => task.releaseDataIn();
    const len = cmp.dataInLength;
    const residual = cmp.residual;
    const resFlags = residual > 0 ? Rsp.UNDERFLOW : residual < 0 ? Rsp.OVERFLOW : 0;
    const statusInData = cmp.status === Status.GOOD && cmp.sense === undefined;
    let keep: ReadRecord | undefined;
    if (len > 0 && cmp.dataIn !== undefined) {
      if (this.erl !== 0) keep = this.retention(c).beginRead(itt, allocTtt(), cmp.dataIn, len);
      const seg = c.maxXmitDataSegmentLength;
      const burst = this.params.maxBurstLength;
      const sgl = cmp.dataIn;
      const single = sgl.length === 1 ? sgl[0] : undefined;
      let off = 0;
      let dataSN = 0;
      let burstLeft = burst;
      while (off < len) {
        const n = Math.min(seg, len - off, burstLeft);
        const last = off + n === len;
        burstLeft -= n;
        let flags = 0;
        if (last || burstLeft === 0) flags |= F_FINAL;
        if (last && statusInData) flags |= Rsp.STATUS | resFlags;
        if (keep !== undefined && (flags & F_FINAL) !== 0) flags |= Rsp.ACK;
        const h = c.header(Op.DATA_IN, flags);
        h.writeUInt32BE(itt, H.ITT);
        if ((flags & Rsp.ACK) !== 0) {
          // The DataACK names the read by this TTT; the LUN must then be valid too (RFC 7143 11.7.4).
          h.writeUInt32BE(keep!.ttt, H.W20);
          encodeLun(h, task?.lun ?? 0);
        } else h.writeUInt32BE(NO_TAG, H.W20);
        if (last && statusInData) {
          h[3] = cmp.status;
          this.stamp(c, h, true);
          h.writeUInt32BE(Math.abs(residual), H.W44);
        } else {
          h.writeUInt32BE(this.expCmdSN, H.W28);
          h.writeUInt32BE(this.maxCmdSN, H.W32);
        }
        h.writeUInt32BE(dataSN++, H.W36);
        h.writeUInt32BE(off, H.W40);
        const done = last ? release : undefined;
        if (single !== undefined) c.send(h, [off === 0 && n === single.length ? single : single.subarray(off, off + n)], n, done);
        else c.send(h, sglSlice(sgl, off, n), n, done);
        if (keep !== undefined) keep.sent(h);
        off += n;
        if (burstLeft === 0) burstLeft = burst;
      }
      if (statusInData) {
        if (keep !== undefined) this.retain(c, keep.headers[keep.headers.length - 1], undefined, 0, keep, true);
        return;
      }
    } else release?.();
    const h = c.header(Op.SCSI_RSP, F_FINAL | resFlags);
    h[2] = RSP_COMPLETED;
    h[3] = cmp.status;
    h.writeUInt32BE(itt, H.ITT);
    this.stamp(c, h, true);
    h.writeUInt32BE(Math.abs(residual), H.W44);
    // The R2T and Data-In PDUs sent for the command (RFC 7143 11.4.6); SNACKs count on it.
    if (this.erl !== 0) h.writeUInt32BE((keep?.headers.length ?? 0) + (task?.r2tSN ?? 0), RSP_EXP_DATA_SN);
    if (cmp.sense !== undefined && cmp.sense.length > 0) {
      const sl = Buffer.allocUnsafe(2);
      sl.writeUInt16BE(cmp.sense.length);
      c.send(h, [sl, cmp.sense], 2 + cmp.sense.length);
      this.retain(c, h, [sl, cmp.sense], 2 + cmp.sense.length, keep);
    } else {
      c.send(h);
      this.retain(c, h, undefined, 0, keep);
    }
  }

  /** SNACK (ERL 1, RFC 7143 11.16): something sent before, again; or a DataACK. */
  private snack(c: Connection, h: Buffer): void {
    const itt = h.readUInt32BE(H.ITT);
    const beg = h.readUInt32BE(SN.BEG_RUN);
    const run = h.readUInt32BE(SN.RUN_LENGTH);
    const kept = this.retention(c);
    let why: SnackResult;
    switch (h[H.FLAGS] & SNACK_TYPE_MASK) {
      case SnackType.DATA_R2T: {
        // A write in progress: its R2Ts; else a read's Data-In.
        const task = this.tasks.get(itt);
        why = task !== undefined && task.conn === c && task.r2tLog !== undefined ? this.r2tSnack(task, beg, run) : kept.dataSnack(itt, beg, run);
        break;
      }
      case SnackType.STATUS:
        why = kept.statusSnack(beg, run, c.statSN);
        break;
      case SnackType.DATA_ACK:
        why = kept.dataAck(h.readUInt32BE(SN.TAG), beg, run);
        break;
      case SnackType.R_DATA:
        why = kept.rDataSnack(itt, h.readUInt32BE(SN.TAG));
        break;
      default:
        why = RejectReason.PROTOCOL_ERROR;
    }
    if (why !== undefined) c.reject(h, why);
  }

  /** R2T SNACK: the outstanding ones of the run again, as they were (StatSN, ExpCmdSN, MaxCmdSN current). */
  private r2tSnack(task: Task, beg: number, run: number): SnackResult {
    const sent = task.r2tLog!;
    if (beg === 0 && run === 0) run = sent.length;
    const end = run === 0 ? sent.length : beg + run;
    if (beg >= end || end > sent.length) return RejectReason.INVALID_FIELD;
    for (let sn = beg; sn < end; sn++) {
      const r = sent[sn];
      if (task.r2ts?.has(r.ttt)) this.sendR2t(task.conn, task, r.ttt, sn, r.offset, r.length);
    }
    return undefined;
  }

  // ---- NOP, TMF, text, logout ----------------------------------------------

  private nopOut(c: Connection, h: Buffer, data: Sgl): void {
    const itt = h.readUInt32BE(H.ITT);
    const ttt = h.readUInt32BE(H.W20);
    if (ttt !== NO_TAG) {
      // The answer to our ping.
      if (ttt === c.pingTtt) c.pingTtt = NO_TAG;
      return;
    }
    if (itt === NO_TAG) return; // a ping that wants no answer
    const r = c.header(Op.NOP_IN, F_FINAL);
    r.set(h.subarray(H.LUN, H.LUN + 8), H.LUN);
    r.writeUInt32BE(itt, H.ITT);
    r.writeUInt32BE(NO_TAG, H.W20);
    this.stamp(c, r, true);
    const n = Math.min(sglLength(data), c.maxXmitDataSegmentLength);
    // A copy: the echo may wait in the socket's queue (or for a SNACK) after the receive slab it came in is reused.
    const echo = n > 0 ? [Buffer.concat(data as Buffer[], n)] : [];
    c.send(r, echo, n);
    this.retain(c, r, echo, n);
  }

  /** A target ping of an idle initiator (NOP-In with a TTT it must echo). */
  ping(c: Connection): void {
    const ttt = allocTtt();
    c.pingTtt = ttt;
    c.pingSent = Date.now();
    const r = c.header(Op.NOP_IN, F_FINAL);
    r.writeUInt32BE(NO_TAG, H.ITT);
    r.writeUInt32BE(ttt, H.W20);
    this.stamp(c, r, false);
    c.send(r);
  }

  private async tmf(c: Connection, h: Buffer): Promise<void> {
    const fn = h[H.FLAGS] & TMF_FUNCTION_MASK;
    const itt = h.readUInt32BE(H.ITT);
    const rtt = h.readUInt32BE(H.W20);
    const refCmdSN = h.readUInt32BE(H.W32);
    const lun = decodeLun(h);
    let rsp: number = TmfRsp.NOT_SUPPORTED;
    const core = this.core;
    if (core === undefined) rsp = TmfRsp.AUTH_FAILED;
    else {
      const map: Record<number, TmfFunction> = {
        [TmfFn.ABORT_TASK]: 'abort-task',
        [TmfFn.ABORT_TASK_SET]: 'abort-task-set',
        [TmfFn.CLEAR_ACA]: 'clear-aca',
        [TmfFn.CLEAR_TASK_SET]: 'clear-task-set',
        [TmfFn.LUN_RESET]: 'lun-reset',
      };
      try {
        if (map[fn] !== undefined) {
          // The core marks the victims aborted synchronously; writes among them then stop waiting for data.
          const pending = core.taskManagement(map[fn], lun, rtt);
          for (const t of this.tasks.values()) {
            if (t.resolve !== undefined && (fn === TmfFn.ABORT_TASK ? t.itt === rtt : t.lun === lun)) t.abandon('aborted');
          }
          const r = await pending;
          rsp = tmfResponse(r);
          // A task that never arrived but whose CmdSN is in the window counts as received (RFC 7143 11.5.1).
          if (fn === TmfFn.ABORT_TASK && r === 'no-task' && !snLess(refCmdSN, this.expCmdSN) && !snLess(this.maxCmdSN, refCmdSN)) {
            rsp = TmfRsp.COMPLETE;
          }
        } else if (fn === TmfFn.TARGET_WARM_RESET || fn === TmfFn.TARGET_COLD_RESET) {
          for (const n of core.lunNumbers()) await core.taskManagement('lun-reset', n);
          rsp = TmfRsp.COMPLETE;
        } else if (fn === TmfFn.TASK_REASSIGN) {
          rsp = TmfRsp.NO_REASSIGN;
        }
      } catch (e) {
        log.warn(`iscsi: TMF ${fn}: ${(e as Error).message}`);
        rsp = TmfRsp.REJECTED;
      }
    }
    if (c.closed) return;
    const r = c.header(Op.TMF_RSP, F_FINAL);
    r[TMF_RESPONSE] = rsp;
    r.writeUInt32BE(itt, H.ITT);
    this.stamp(c, r, true);
    c.send(r);
    this.retain(c, r);
    if (fn === TmfFn.TARGET_COLD_RESET && rsp === TmfRsp.COMPLETE) this.close('target cold reset');
  }

  private text(c: Connection, h: Buffer, data: Sgl): void {
    const itt = h.readUInt32BE(H.ITT);
    const ttt = h.readUInt32BE(H.W20);
    let body: Buffer;
    if (ttt !== NO_TAG) {
      // Continuing a long response we started.
      if (this.textRest === undefined || this.textRest.ttt !== ttt || this.textRest.itt !== itt) {
        return c.reject(h, RejectReason.INVALID_FIELD);
      }
      body = this.textRest.rest;
      this.textRest = undefined;
    } else {
      this.textRest = undefined;
      const flat = data.length === 1 ? data[0] : Buffer.concat(data as Buffer[]);
      const pairs = parseText(flat);
      if (typeof pairs === 'string') return c.reject(h, RejectReason.PROTOCOL_ERROR);
      const reply: [string, string][] = [];
      for (const [k, v] of pairs) {
        if (k === 'SendTargets') {
          if (v === '' && this.discovery) continue;
          reply.push(...sendTargets(this.portal, c, this.initiatorName, v === '' ? this.tpg.target.wwn : v, this.discovery));
        } else reply.push([k, 'NotUnderstood']);
      }
      body = encodeText(reply);
    }
    const max = c.maxXmitDataSegmentLength;
    const more = body.length > max;
    const r = c.header(Op.TEXT_RSP, more ? TEXT_CONTINUE : F_FINAL);
    r.set(h.subarray(H.LUN, H.LUN + 8), H.LUN);
    r.writeUInt32BE(itt, H.ITT);
    let tttOut = NO_TAG;
    if (more) {
      tttOut = allocTtt();
      this.textRest = { itt, ttt: tttOut, rest: body.subarray(max) };
      body = body.subarray(0, max);
    }
    r.writeUInt32BE(tttOut, H.W20);
    this.stamp(c, r, true);
    c.send(r, [body], body.length);
    this.retain(c, r, [body], body.length);
  }

  private logout(c: Connection, h: Buffer): void {
    const reason = h[H.FLAGS] & LOGOUT_REASON_MASK;
    const itt = h.readUInt32BE(H.ITT);
    let code: number = LogoutRsp.OK;
    let target: Connection | undefined = c;
    if (reason === LogoutReason.CLOSE_CONNECTION || reason === LogoutReason.REMOVE_FOR_RECOVERY) {
      const cid = h.readUInt16BE(LO.CID);
      target = [...this.connections].find((x) => x.cid === cid);
      if (target === undefined) code = LogoutRsp.NO_CID;
      else if (reason === LogoutReason.REMOVE_FOR_RECOVERY) code = LogoutRsp.NO_RECOVERY;
    } else if (reason !== LogoutReason.CLOSE_SESSION) {
      return c.reject(h, RejectReason.INVALID_FIELD);
    }
    if (code === LogoutRsp.OK) loginCounts.logouts++;
    const r = c.header(Op.LOGOUT_RSP, F_FINAL);
    r[LO.RESPONSE] = code;
    r.writeUInt32BE(itt, H.ITT);
    this.stamp(c, r, true);
    r.writeUInt16BE(this.params.defaultTime2Wait, LO.TIME2WAIT);
    // A session whose access was revoked keeps nothing for a reconnection to reclaim.
    r.writeUInt16BE(this.core?.closed ? 0 : this.params.defaultTime2Retain, LO.TIME2RETAIN);
    c.send(r);
    this.retain(c, r);
    if (code !== LogoutRsp.OK) return;
    if (reason === LogoutReason.CLOSE_SESSION) {
      for (const x of this.connections) x.end();
      this.close('logout');
    } else target!.end();
  }
}

function tmfResponse(r: TmfResult): number {
  switch (r) {
    case 'complete':
    case 'succeeded':
      return TmfRsp.COMPLETE;
    case 'no-task':
      return TmfRsp.NO_TASK;
    case 'no-lun':
      return TmfRsp.NO_LUN;
    case 'not-supported':
      return TmfRsp.NOT_SUPPORTED;
    case 'rejected':
      return TmfRsp.REJECTED;
  }
}
