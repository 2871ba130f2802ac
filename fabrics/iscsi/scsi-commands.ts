// The SCSI commands of one session (RFC 7143 11.3-11.8): each goes to the
// core with its immediate and unsolicited data; the rest of its data-out is
// asked for by R2T when the core wants it, and asked for again when lost
// (ERL 1: digest errors, R2T SNACKs, Data-Out timeouts). The answer is
// Data-In PDUs with status in the last one when it can carry it, else a SCSI
// Response. Data-out buffers handed to the core are views of what the socket
// read; READ data goes to the socket as it is, from the backstore's own
// memory when it lends it (RAM) or else from a recycled buffer
// (data-in-pool.ts), either given back once the socket has written it.

import type { Completion } from '../../src/core/command';
import type { Session as CoreSession } from '../../src/core/session';
import { sglLength, sglSlice, type Sgl } from '../../src/core/sgl';
import { Asc, ScsiError, SenseKey, Status } from '../../src/core/sense';
import { log } from '../../src/core/log';
import type { CommandWindow } from './command-window';
import type { Connection } from './connection';
import type { OperationalParams } from './keys';
import {
  Cmd, F_FINAL, H, NO_TAG, Op, RejectReason, Rsp, SN, SNACK_TYPE_MASK, SnackType, TASK_ATTR, decodeLun, isImmediate, opcodeOf, parseAhs,
} from './pdu';
import { dataInPdu, newTtt, r2tPdu, scsiResponsePdu, senseSegment } from './pdu-builders';
import type { ReadRecord, Retentions, SnackResult } from './recovery';
import { rxPool } from './rx-slab';
import { dataInPool } from './data-in-pool';
import { Task } from './scsi-task';

/** Recovery R2Ts one command gets (ERL 1) before it fails: an initiator whose data keeps arriving bad cannot loop. */
const MAX_RECOVERIES = 8;

export class ScsiCommands {
  private readonly tasks = new Map<number, Task>();
  /** Negotiated ErrorRecoveryLevel: 1 keeps what SNACKs may ask for again (recovery.ts). */
  private readonly erl: number;
  private readonly onComplete = (c: Completion): void => this.complete(c);
  /** Shutting down (quiesce()): new commands are not run; told when the last one in flight ends. */
  private quiescing = false;
  private idle: (() => void) | undefined;

  constructor(
    /** The nexus; undefined in a discovery session, which takes no SCSI commands. */
    private readonly core: CoreSession | undefined,
    private readonly params: OperationalParams,
    private readonly window: CommandWindow,
    private readonly kept: Retentions<Connection>,
    /** For the log. */
    private readonly initiatorName: string,
  ) {
    this.erl = kept.erl;
  }

  /** A SCSI Command PDU in its CmdSN turn (or immediate). */
  submit(c: Connection, h: Buffer, data: Sgl): void {
    const core = this.core;
    if (core === undefined) return c.reject(h, RejectReason.PROTOCOL_ERROR); // discovery session
    if (core.closed) return; // access revoked: the logout request is out, the connections drop soon
    // Shutting down: not run and not answered; the initiator reissues it to the restarted target (its unsolicited data is dropped).
    if (this.quiescing) return;
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
      this.window.began();
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

  // ---- Data-Out and R2T ---------------------------------------------------

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
      const ttt = newTtt();
      (task.r2ts ??= new Map()).set(ttt, task.r2tNext + len);
      task.r2tOutstanding++;
      if (this.erl !== 0) (task.r2tLog ??= []).push({ ttt, offset: task.r2tNext, length: len });
      c.send(r2tPdu(c, this.window, task.lun, task.itt, ttt, task.r2tSN++, task.r2tNext, len));
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

  /** A Data-Out PDU (no CmdSN: it is never ordered by the window). */
  dataOut(c: Connection, h: Buffer, data: Sgl): void {
    const itt = h.readUInt32BE(H.ITT);
    const ttt = h.readUInt32BE(H.W20);
    const task = this.tasks.get(itt);
    const len = sglLength(data);
    // Unsolicited data of a command still waiting for its CmdSN: it is taken in when the command runs.
    if (task === undefined && ttt === NO_TAG && this.window.parkDataOut(c, itt, h, data, len, this.params.firstBurstLength)) return;
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

  // ---- Completion: Data-In, SCSI Response ----------------------------------

  private complete(cmp: Completion): void {
    const task = this.tasks.get(cmp.tag);
    if (task === undefined) return cmp.release?.();
    this.tasks.delete(cmp.tag);
    task.done = true;
    if (this.idle !== undefined && this.tasks.size === 0) this.idle();
    if (task.slabs.length > 0) rxPool.releaseAll(task.slabs);
    if (task.windowed) this.window.ended();
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
    const statusInData = cmp.status === Status.GOOD && cmp.sense === undefined;
    let keep: ReadRecord | undefined;
    if (len > 0 && cmp.dataIn !== undefined) {
      if (this.erl !== 0) keep = this.kept.of(c).beginRead(itt, newTtt(), cmp.dataIn, len);
      const ackTtt = keep === undefined ? NO_TAG : keep.ttt;
      const lun = task === undefined ? 0 : task.lun;
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
        if (last && statusInData) flags |= Rsp.STATUS;
        // The DataACK names the read by its TTT (RFC 7143 11.7.4).
        if (keep !== undefined && (flags & F_FINAL) !== 0) flags |= Rsp.ACK;
        const h = dataInPdu(c, this.window, flags, itt, ackTtt, lun, dataSN++, off, n, cmp.status, residual);
        const done = last ? release : undefined;
        if (single !== undefined) c.send(h, [off === 0 && n === single.length ? single : single.subarray(off, off + n)], done);
        else c.send(h, sglSlice(sgl, off, n), done);
        if (keep !== undefined) keep.sent(h);
        off += n;
        if (burstLeft === 0) burstLeft = burst;
      }
      if (statusInData) {
        if (keep !== undefined) this.kept.response(c, keep.headers[keep.headers.length - 1], undefined, keep, true);
        return;
      }
    } else release?.();
    const sense = cmp.sense !== undefined && cmp.sense.length > 0 ? senseSegment(cmp.sense) : undefined;
    // The R2T and Data-In PDUs sent for the command (RFC 7143 11.4.6); SNACKs count on it.
    const expDataSN = this.erl !== 0 ? (keep?.headers.length ?? 0) + (task?.r2tSN ?? 0) : 0;
    const h = scsiResponsePdu(c, this.window, itt, cmp.status, residual, sense === undefined ? 0 : 2 + cmp.sense!.length, expDataSN);
    c.send(h, sense);
    this.kept.response(c, h, sense, keep);
  }

  // ---- Recovery, task management, ends -------------------------------------

  /** SNACK (ERL 1, RFC 7143 11.16): something sent before, again; or a DataACK. */
  snack(c: Connection, h: Buffer): void {
    const itt = h.readUInt32BE(H.ITT);
    const beg = h.readUInt32BE(SN.BEG_RUN);
    const run = h.readUInt32BE(SN.RUN_LENGTH);
    const kept = this.kept.of(c);
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
      if (task.r2ts?.has(r.ttt)) task.conn.send(r2tPdu(task.conn, this.window, task.lun, task.itt, r.ttt, sn, r.offset, r.length));
    }
    return undefined;
  }

  /**
   * Task management is about to abort the task with ITT `itt` (ABORT TASK),
   * or else those of `lun`: the writes among them waiting for data-out stop
   * waiting (the core has marked them aborted).
   */
  stopWaiting(itt: number | undefined, lun: number): void {
    for (const t of this.tasks.values()) {
      if (t.resolve !== undefined && (itt !== undefined ? t.itt === itt : t.lun === lun)) t.abandon('aborted');
    }
  }

  /** c logged out alone: none of its tasks waits for data that cannot come. */
  connectionGone(c: Connection): void {
    for (const t of this.tasks.values()) if (t.conn === c && !t.done) t.abandon('connection logged out');
  }

  /** Runs no new command from now on; resolves once none is in flight (the caller bounds the wait). */
  quiesce(): Promise<void> {
    this.quiescing = true;
    if (this.tasks.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.idle = () => {
        this.idle = undefined;
        resolve();
      };
    });
  }

  /** The session closed. Tasks stay listed until the core completes them: their data-out is in use until then (complete()). */
  sessionClosed(): void {
    for (const t of this.tasks.values()) t.abandon('session closed');
  }

  /** The sweep (rx-slab.ts): c's commands that have waited since tick `old` or before let their receive slabs go. */
  unpin(c: Connection, old: number): void {
    for (const t of this.tasks.values()) if (t.conn === c && t.born <= old) t.unpin();
  }
}
