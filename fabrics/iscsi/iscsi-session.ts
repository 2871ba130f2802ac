// An iSCSI session in full feature phase (RFC 7143 4, 11): its connections
// (several: MC/S), each PDU handed to the part that handles it (the command
// window orders them by CmdSN: command-window.ts; SCSI commands and their
// data: scsi-commands.ts; task management: task-management.ts; NOP, text and
// logout: nop-text-logout.ts; what ERL 1 keeps: recovery.ts), and the
// session's end: logout, failure, reinstatement, access revoked (an
// asynchronous logout request first).

import type { Session as CoreSession } from '../../src/core/session';
import type { Sgl } from '../../src/core/sgl';
import { log } from '../../src/core/log';
import type { Root } from '../../src/model/root';
import type { Tpg } from '../../src/model/target';
import { CommandWindow, type InOrder } from './command-window';
import type { Connection, SessionLink } from './connection';
import type { OperationalParams } from './keys';
import { logout, nopOut, sendPing, text, type ControlSession, type TextRest } from './nop-text-logout';
import { H, Op, RejectReason, isImmediate, opcodeOf } from './pdu';
import { logoutRequestPdu } from './pdu-builders';
import { Retentions } from './recovery';
import { rxPool } from './rx-slab';
import { ScsiCommands } from './scsi-commands';
import { taskManagement, type TmfSession } from './task-management';

/** Seconds an initiator whose access was revoked has to log out before its connections are dropped. */
const REVOKE_GRACE_S = 2;

/** Where sessions are listed while they live (session-registry.ts). */
export interface SessionList {
  /** A TSIH no live session has. */
  newTsih(): number;
  add(s: IscsiSession): void;
  remove(s: IscsiSession): void;
}

export class IscsiSession implements SessionLink, InOrder, TmfSession, ControlSession {
  readonly tsih: number;
  readonly connections = new Set<Connection>();
  readonly window: CommandWindow;
  /** What ERL 1 keeps for SNACKs, per connection. */
  readonly kept: Retentions<Connection>;
  readonly commands: ScsiCommands;
  /** Text response still to send in pieces (nop-text-logout.ts). */
  textRest: TextRest | undefined;
  /** Negotiated ErrorRecoveryLevel. */
  private readonly erl: number;
  private closing = false;
  /** Resolves when the last connection is gone (shutdown waits for logouts). */
  private endWaiters: (() => void)[] = [];
  /** Set by close(): resolves once every task of the session has ended (the nexus is closed). */
  private closed: Promise<void> | undefined;

  constructor(
    private readonly registry: SessionList,
    readonly tpg: Tpg,
    readonly root: Root,
    readonly initiatorName: string,
    readonly isid: string,
    readonly discovery: boolean,
    readonly params: OperationalParams,
    readonly core: CoreSession | undefined,
    cmdSN: number,
  ) {
    this.tsih = registry.newTsih();
    this.erl = params.errorRecoveryLevel;
    this.window = new CommandWindow(cmdSN, Number(tpg.attributes.default_cmdsn_depth ?? 64), this);
    this.kept = new Retentions(this.erl, this.window);
    this.commands = new ScsiCommands(core, params, this.window, this.kept, initiatorName);
    registry.add(this);
    if (core) core.onClosed = () => this.revoke();
  }

  addConnection(c: Connection): void {
    this.connections.add(c);
    c.session = this;
    c.ffp = true;
  }

  /** A connection ended: `graceful` when logged out (or replaced by a login with its CID), else it failed. */
  connectionClosed(c: Connection, graceful = false): void {
    if (!this.connections.delete(c)) return;
    this.kept.forget(c);
    // ERL 0 (RFC 7143 6.1.4, 7.1.3): a connection failure is a session failure; its tasks cannot move elsewhere.
    if (!graceful || this.connections.size === 0) return this.close(graceful ? 'last connection logged out' : 'connection failed (ERL 0)');
    // A connection that logged out alone takes its tasks with it: none waits for data that cannot come.
    this.commands.connectionGone(c);
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
    this.registry.remove(this);
    for (const c of [...this.connections]) c.destroy();
    // The nexus loss marks every task aborted first; then writes stop waiting for data that will not come.
    const done = this.core ? this.core.close() : Promise.resolve();
    this.commands.sessionClosed();
    this.window.clear();
    this.closed = done.then(() => {
      for (const w of this.endWaiters) w();
      this.endWaiters = [];
    });
  }

  /** After close(): resolves once its tasks have all ended (a reinstating login waits for it). */
  ended(): Promise<void> {
    return (this.closed ?? Promise.resolve()).catch(() => undefined);
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
      this.commands.unpin(c, old);
      this.window.unpin(c, old);
    }
  }

  /** Shutdown: no new command runs; resolves once those in flight have ended. */
  quiesce(): Promise<void> {
    return this.commands.quiesce();
  }

  /** Asks the initiator to log out (shutdown); resolves when it did or time ran out. */
  requestLogout(seconds: number): Promise<void> {
    if (this.closing) return Promise.resolve();
    const p = new Promise<void>((resolve) => this.endWaiters.push(resolve));
    for (const c of this.connections) {
      const h = logoutRequestPdu(c, this.window, seconds);
      c.send(h);
      this.kept.response(c, h);
    }
    return p;
  }

  /** A PDU from a connection in full feature phase. */
  receive(c: Connection, h: Buffer, data: Sgl): void {
    const op = opcodeOf(h);
    // ExpStatSN (every initiator PDU) acknowledges the responses below it.
    if (this.erl !== 0) this.kept.acknowledge(c, h.readUInt32BE(H.W28));
    if (op === Op.DATA_OUT) return this.commands.dataOut(c, h, data);
    if (op === Op.SNACK) return this.erl === 0 ? c.reject(h, RejectReason.NOT_SUPPORTED) : this.commands.snack(c, h);
    if (op !== Op.SCSI_CMD && op !== Op.NOP_OUT && op !== Op.TMF_REQ && op !== Op.TEXT_REQ && op !== Op.LOGOUT_REQ) {
      return c.reject(h, op === Op.LOGIN_REQ ? RejectReason.PROTOCOL_ERROR : RejectReason.NOT_SUPPORTED);
    }
    // Acknowledged status: the initiator's ExpStatSN; only NOP-Out pings need none.
    if (isImmediate(h)) return this.execute(c, h, data);
    const sn = h.readUInt32BE(H.W24);
    if (!this.window.order(c, h, data, sn, op === Op.SCSI_CMD)) {
      log.debug(`iscsi: session ${this.tsih}: CmdSN ${sn} outside [${this.window.expCmdSN}, ${this.window.maxCmdSN}] dropped`);
    }
  }

  /** A PDU in its CmdSN turn (or immediate). */
  execute(c: Connection, h: Buffer, data: Sgl): void {
    switch (opcodeOf(h)) {
      case Op.SCSI_CMD:
        return this.commands.submit(c, h, data);
      case Op.NOP_OUT:
        return nopOut(this, c, h, data);
      case Op.TMF_REQ:
        return void taskManagement(this, c, h);
      case Op.TEXT_REQ:
        return text(this, c, h, data);
      case Op.LOGOUT_REQ:
        return logout(this, c, h);
    }
  }

  /** Unsolicited Data-Out that waited with its command for the command's CmdSN turn. */
  dataOut(c: Connection, h: Buffer, data: Sgl): void {
    this.commands.dataOut(c, h, data);
  }

  dataDigestError(c: Connection, h: Buffer): void {
    this.commands.dataDigestError(c, h);
  }

  /** Data-Out timeouts (scsi-commands.ts), about once a second per connection. */
  checkDataOut(c: Connection, now: number, timeoutMs: number, retries: number): void {
    this.commands.checkDataOut(c, now, timeoutMs, retries);
  }

  /** A target ping of an idle initiator. */
  ping(c: Connection): void {
    sendPing(this, c);
  }
}
