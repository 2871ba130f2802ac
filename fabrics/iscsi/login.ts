// The login phase of one connection (RFC 7143 6, 11.12, 11.13): stages
// (security, operational, full feature), the login keys, CHAP, operational
// negotiation, status classes, and the session the connection ends up in:
// a new one, a reinstated one (same initiator and ISID), or an existing one
// joined by TSIH (MC/S).

import { countRefusal, loginCounts } from './login-counts';
import { log } from '../../src/core/log';
import type { Sgl } from '../../src/core/sgl';
import type { Root } from '../../src/model/root';
import { AccessDenied, type AttributeValue, type Tpg, type Auth } from '../../src/model/target';
import { ChapServer } from './chap';
import type { Connection, LoginPhase } from './connection';
import { IscsiSession } from './iscsi-session';
import { KeyPairs, Negotiation, encodeText, parseText } from './keys';
import { BHS_LEN, H, L, Login, LoginStatus, Stage, isidOf, pad4 } from './pdu';
import { loginResponsePdu } from './pdu-builders';
import { sessionRegistry } from './session-registry';

/** Keys only the login layer handles; the rest go to the negotiation. */
const LOGIN_KEYS = new Set(['InitiatorName', 'InitiatorAlias', 'TargetName', 'SessionType', 'AuthMethod']);

/** Seconds a login may take before the TPG is known (its login_timeout applies after). */
const LOGIN_TIMEOUT_S = 15;
/** Login text continued over several PDUs may not grow past this. */
const MAX_LOGIN_TEXT = 64 * 1024;

/** A login request as it came (no digests before full feature phase): header, data, padding. */
const pduBytes = (h: Buffer, data: Sgl): Buffer[] => {
  const len = data.reduce((n, b) => n + b.length, 0);
  return [h.subarray(0, BHS_LEN + h[H.TOTAL_AHS] * 4), ...data, Buffer.alloc(pad4(len))];
};

const flatten = (data: Sgl): Buffer => (data.length === 1 ? data[0] : Buffer.concat(data as Buffer[]));

/** The portal a login came in on (portal.ts). */
export interface LoginPortal {
  /** The TPGs listening on it: the login's target is among them. */
  readonly tpgs: ReadonlySet<Tpg>;
  readonly root: Root;
  /** Discovery CHAP settings (fabric_modules: iscsi discovery_auth). */
  discoveryAuth(): Auth & { enable?: boolean };
  /**
   * Hands the connection to the thread serving targetName when it lives on another one (handoff.ts), with
   * `pdu`, the login request (all its PDUs), of which `answered` were acknowledged here (C bit); true when
   * it did (the connection is gone from here).
   */
  handOff?(conn: Connection, targetName: string, pdu: Buffer[], answered: number): boolean;
}

export class LoginMachine implements LoginPhase {
  private stage: number = Stage.SECURITY;
  private firstPdu = true;
  private isid = '';
  private tsih = 0;
  private itt = 0;
  private cmdSN = 0;
  private initiatorName: string | undefined;
  private targetName: string | undefined;
  private discovery = false;
  private tpg: Tpg | undefined;
  private authMethod: 'CHAP' | 'None' | undefined;
  private chap: ChapServer | undefined;
  private authDone = false;
  private negotiation: Negotiation | undefined;
  private joining: IscsiSession | undefined;
  /** Text of a request continued over several PDUs (C bit). */
  private partial: Buffer[] = [];
  /**
   * The first request's PDUs while it continues (C bit) and nothing but their empty acknowledgements went
   * out: the login may still move to another thread, with them. Undefined once any other response went out.
   */
  private firstRequest: Buffer[] | undefined = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly startedAt = Date.now();

  constructor(
    private readonly conn: Connection,
    private readonly portal: LoginPortal,
    /** Responses another thread already sent for this login (handoff.ts): numbered, not sent again. */
    private answeredElsewhere = 0,
  ) {
    this.armTimer(LOGIN_TIMEOUT_S);
  }

  /** The whole login must finish within the TPG's login_timeout (counted from the connection). */
  private armTimer(seconds: number): void {
    clearTimeout(this.timer);
    const left = Math.max(0, seconds * 1000 - (Date.now() - this.startedAt));
    this.timer = setTimeout(() => {
      log.warn(`iscsi: connection ${this.conn.id}: login took longer than ${seconds} s`);
      this.conn.destroy();
    }, left);
    this.timer.unref();
  }

  receive(h: Buffer, data: Sgl): void {
    try {
      this.step(h, data);
    } catch (e) {
      log.warn(`iscsi: login on connection ${this.conn.id}: ${(e as Error).stack ?? e}`);
      this.fail(h, LoginStatus.TARGET_ERROR);
    }
  }

  private step(h: Buffer, data: Sgl): void {
    const flags = h[H.FLAGS];
    const csg = (flags >> Login.CSG_SHIFT) & Login.STAGE_MASK;
    const nsg = flags & Login.STAGE_MASK;
    const transit = (flags & Login.TRANSIT) !== 0;
    if (this.firstPdu) {
      this.firstPdu = false;
      if (h[L.VERSION_MIN] > 0) return this.fail(h, LoginStatus.UNSUPPORTED_VERSION);
      this.isid = isidOf(h);
      this.tsih = h.readUInt16BE(L.TSIH);
      this.itt = h.readUInt32BE(H.ITT);
      this.cmdSN = h.readUInt32BE(H.W24);
      this.conn.cid = h.readUInt16BE(L.CID);
      this.conn.statSN = h.readUInt32BE(H.W28);
      this.stage = csg;
    } else if (isidOf(h) !== this.isid || h.readUInt16BE(L.TSIH) !== this.tsih) {
      return this.fail(h, LoginStatus.INITIATOR_ERROR);
    }
    this.itt = h.readUInt32BE(H.ITT);
    if (csg !== this.stage || csg === 2 || csg === Stage.FULL_FEATURE || (transit && (nsg === 2 || nsg <= csg))) {
      return this.fail(h, LoginStatus.INITIATOR_ERROR);
    }
    if ((flags & Login.CONTINUE) !== 0) {
      // More text follows: acknowledge with an empty response (RFC 7143 11.12.2).
      if (transit) return this.fail(h, LoginStatus.INITIATOR_ERROR);
      this.partial.push(Buffer.from(flatten(data)));
      if (this.partial.reduce((n, b) => n + b.length, 0) > MAX_LOGIN_TEXT) {
        return this.fail(h, LoginStatus.OUT_OF_RESOURCES, 'login text too long');
      }
      const first = this.firstRequest !== undefined && this.tpg === undefined;
      if (first) this.firstRequest!.push(Buffer.concat(pduBytes(h, data)));
      return this.respond(csg, 0, false, [], LoginStatus.SUCCESS, first);
    }
    const text = this.partial.length ? Buffer.concat([...this.partial, flatten(data)]) : flatten(data);
    this.partial = [];
    const parsed = parseText(text);
    if (typeof parsed === 'string') return this.fail(h, LoginStatus.INITIATOR_ERROR, parsed);
    const keys = new Map<string, string>();
    const rest: KeyPairs = [];
    for (const [k, v] of parsed) {
      if (LOGIN_KEYS.has(k) || k.startsWith('CHAP_')) {
        if (keys.has(k)) return this.fail(h, LoginStatus.INITIATOR_ERROR, `key ${k} twice`);
        keys.set(k, v);
      } else rest.push([k, v]);
    }
    const reply: KeyPairs = [];

    // Login keys: who is logging in, to what.
    if (keys.has('InitiatorName')) this.initiatorName = keys.get('InitiatorName');
    if (keys.has('SessionType')) {
      const t = keys.get('SessionType');
      if (t !== 'Discovery' && t !== 'Normal') return this.fail(h, LoginStatus.SESSION_TYPE_UNSUPPORTED);
      this.discovery = t === 'Discovery';
    }
    if (keys.has('TargetName')) this.targetName = keys.get('TargetName');
    if (this.tpg === undefined) {
      if (!this.initiatorName) return this.fail(h, LoginStatus.MISSING_PARAMETER, 'no InitiatorName');
      // A target of another thread: the connection goes there before anything but the acknowledgements of
      // this request's PDUs is answered, and logs in there.
      const first = this.firstRequest;
      if (!this.discovery && first !== undefined && this.targetName &&
        this.portal.handOff?.(this.conn, this.targetName, [...first, ...pduBytes(h, data)], first.length) === true) {
        return this.dispose();
      }
      const err = this.resolveTarget(reply);
      if (err !== undefined) return this.fail(h, err, this.whyRefused(err));
    }
    if (this.negotiation === undefined) {
      this.negotiation = new Negotiation(this.offers(), this.joining === undefined, this.discovery);
    }

    if (csg === Stage.SECURITY) {
      const err = this.security(keys, reply);
      if (err !== undefined) return this.fail(h, err);
    } else if (!this.authDone && this.authRequired()) {
      // Skipping the security stage when authentication is required.
      return this.fail(h, LoginStatus.AUTH_FAILED, 'authentication required');
    }

    const neg = this.negotiation.answer(rest);
    if ('status' in neg) return this.fail(h, LoginStatus.INITIATOR_ERROR, neg.reason);
    reply.push(...neg.reply);

    let go = transit;
    if (csg === Stage.SECURITY && !this.authDone) go = false;
    if (go && nsg === Stage.FULL_FEATURE) {
      const offers = this.negotiation.finalOffers();
      if (offers.length) reply.push(...offers);
      if (this.negotiation.awaitingAnswers) go = false;
    }
    if (!go) return this.respond(csg, 0, false, reply);
    this.stage = nsg;
    if (nsg === Stage.FULL_FEATURE) return this.finish(csg, reply);
    return this.respond(csg, nsg, true, reply);
  }

  /**
   * The TPG's parameters, ErrorRecoveryLevel raised to default_erl (the
   * TPG's attribute, or the initiator's ACL attribute): LIO offers that
   * attribute, tsio the higher of it and the parameter.
   */
  private offers(): Record<string, AttributeValue> {
    const tpg = this.tpg!;
    const p = tpg.parameters;
    const num = (v: AttributeValue | undefined): number => Number(v ?? 0) || 0;
    const param = num(p.ErrorRecoveryLevel);
    const erl = Math.max(param, num(tpg.attributes.default_erl), num(tpg.acls.get(this.initiatorName!)?.attributes.default_erl));
    return erl === param ? p : { ...p, ErrorRecoveryLevel: erl };
  }

  /** Finds the target and TPG (normal sessions) and checks the initiator may use it. */
  private resolveTarget(reply: KeyPairs): number | undefined {
    const portal = this.portal;
    if (this.discovery) {
      // Discovery sessions belong to no target; any TPG on the portal holds their parameters.
      const tpg = [...portal.tpgs][0];
      if (!tpg) return LoginStatus.SERVICE_UNAVAILABLE;
      this.tpg = tpg;
      return undefined;
    }
    if (!this.targetName) return LoginStatus.MISSING_PARAMETER;
    const tpg = [...portal.tpgs].find((t) => t.target.wwn === this.targetName);
    if (!tpg) return LoginStatus.NOT_FOUND;
    if (!tpg.enabled) return LoginStatus.SERVICE_UNAVAILABLE;
    if (tpg.lunMapFor(this.initiatorName!) === undefined) return LoginStatus.FORBIDDEN;
    this.tpg = tpg;
    if (this.tsih !== 0) {
      const s = sessionRegistry.get(this.tsih);
      if (!s || s.tpg !== tpg || s.initiatorName !== this.initiatorName || s.isid !== this.isid) return LoginStatus.NO_SESSION;
      if (s.connections.size >= s.params.maxConnections && ![...s.connections].some((c) => c.cid === this.conn.cid)) {
        return LoginStatus.TOO_MANY_CONNECTIONS;
      }
      this.joining = s;
    }
    reply.push(['TargetPortalGroupTag', String(tpg.tag)]);
    const alias = tpg.parameters.TargetAlias;
    if (typeof alias === 'string' && alias !== '') reply.push(['TargetAlias', alias]);
    this.armTimer(Number(tpg.attributes.login_timeout ?? LOGIN_TIMEOUT_S));
    return undefined;
  }

  private credentials(): Auth {
    if (this.discovery) return this.portal.discoveryAuth();
    const acl = this.tpg!.acls.get(this.initiatorName!);
    if (acl && acl.auth.userid) return acl.auth;
    return this.tpg!.auth;
  }

  private authRequired(): boolean {
    if (this.discovery) return this.portal.discoveryAuth().enable === true;
    return this.tpg!.attributes.authentication === true;
  }

  private security(keys: Map<string, string>, reply: KeyPairs): number | undefined {
    if (this.authMethod === undefined) {
      const offered = keys.get('AuthMethod');
      if (offered === undefined) {
        if (this.authRequired()) return LoginStatus.AUTH_FAILED;
        this.authDone = true;
        return undefined;
      }
      const list = offered.split(',');
      const creds = this.credentials();
      const canChap = !!creds.userid && !!creds.password;
      if (this.authRequired()) {
        if (!list.includes('CHAP') || !canChap) return LoginStatus.AUTH_FAILED;
        this.authMethod = 'CHAP';
      } else if (list.includes('CHAP') && canChap && (list[0] === 'CHAP' || !list.includes('None'))) {
        this.authMethod = 'CHAP';
      } else if (list.includes('None')) {
        this.authMethod = 'None';
      } else {
        reply.push(['AuthMethod', 'Reject']);
        return LoginStatus.AUTH_FAILED;
      }
      reply.push(['AuthMethod', this.authMethod]);
      if (this.authMethod === 'None') {
        this.authDone = true;
        return undefined;
      }
      this.chap = new ChapServer(creds);
      if (!keys.has('CHAP_A')) return undefined;
    }
    if (this.authMethod === 'CHAP' && !this.authDone) {
      if (![...keys.keys()].some((k) => k.startsWith('CHAP_'))) return undefined;
      const r = this.chap!.step(keys);
      if ('error' in r) {
        log.notice(`iscsi: login of ${this.initiatorName} from ${this.peer()} to ${this.targetName ?? 'discovery'}: CHAP failed: ${r.reason}`);
        return r.error === 'auth' ? LoginStatus.AUTH_FAILED : LoginStatus.INITIATOR_ERROR;
      }
      reply.push(...r.reply);
      if (r.done) this.authDone = true;
    }
    return undefined;
  }

  /**
   * The last login response: the connection enters full feature phase in its
   * session. Session reinstatement (RFC 7143 6.3.5): the old session with
   * this initiator port ends first, and the new one starts only once its
   * tasks have all ended: a write of the old session still in a backstore
   * cannot land after a write of the new one to the same blocks.
   */
  private finish(csg: number, reply: KeyPairs): void {
    const old = this.joining ? [] : this.sameInitiatorPort();
    if (old.length === 0) return this.enter(csg, reply);
    for (const o of old) o.close('reinstated');
    void Promise.all(old.map((o) => o.ended())).then(() => {
      if (this.conn.closed) return;
      try {
        this.enter(csg, reply);
      } catch (e) {
        log.warn(`iscsi: login on connection ${this.conn.id}: ${(e as Error).stack ?? e}`);
        this.conn.destroy();
      }
    });
  }

  /** Normal sessions of this TPG with this login's initiator name and ISID. */
  private sameInitiatorPort(): IscsiSession[] {
    if (this.discovery) return [];
    return [...sessionRegistry.values()].filter((o) => o.tpg === this.tpg && !o.discovery && o.initiatorName === this.initiatorName && o.isid === this.isid);
  }

  private enter(csg: number, reply: KeyPairs): void {
    const conn = this.conn;
    const params = this.negotiation!.result();
    let s = this.joining;
    if (s === undefined) {
      const tpg = this.tpg!;
      // Another reinstating login of this initiator port that entered while this one waited gives way at once.
      for (const o of this.sameInitiatorPort()) o.close('reinstated');
      let core;
      if (!this.discovery) {
        try {
          core = tpg.openSession({ name: this.initiatorName!, isid: this.isid });
        } catch (e) {
          if (e instanceof AccessDenied) return this.failNow(LoginStatus.FORBIDDEN);
          throw e;
        }
      }
      s = new IscsiSession(sessionRegistry, tpg, this.portal.root, this.initiatorName!, this.isid, this.discovery, params, core, this.cmdSN);
    } else {
      // Connection reinstatement: an old connection with this CID gives way.
      for (const c of s.connections) if (c.cid === conn.cid) c.destroy(true);
    }
    this.tsih = s.tsih;
    loginCounts.accepted++;
    this.respond(csg, Stage.FULL_FEATURE, true, reply);
    clearTimeout(this.timer);
    conn.headerDigest = params.headerDigest;
    conn.dataDigest = params.dataDigest;
    conn.maxRecvDataSegmentLength = params.maxRecvDataSegmentLength;
    conn.maxXmitDataSegmentLength = params.maxXmitDataSegmentLength;
    if (this.joining) {
      // Connection-only keys were negotiated on this connection.
      const p = this.negotiation!.result();
      conn.headerDigest = p.headerDigest;
      conn.dataDigest = p.dataDigest;
    }
    conn.login = undefined;
    s.addConnection(conn);
  }

  /** firstAck: the empty acknowledgement of a PDU of the first request (C bit), which leaves the login movable. */
  private respond(csg: number, nsg: number, transit: boolean, reply: KeyPairs, status: number = LoginStatus.SUCCESS, firstAck = false): void {
    if (!firstAck) this.firstRequest = undefined;
    if (this.answeredElsewhere > 0) {
      // Sent by the thread that handed the connection over: only its StatSN is taken (the initiator has it).
      this.answeredElsewhere--;
      this.conn.statSN = (this.conn.statSN + 1) >>> 0;
      return;
    }
    const flags = (transit ? Login.TRANSIT : 0) | (csg << Login.CSG_SHIFT) | (transit ? nsg : 0);
    // A session joined (MC/S) reports its window; a new one the window it will open with.
    const window = this.joining?.window ?? { expCmdSN: this.cmdSN >>> 0, maxCmdSN: (this.cmdSN + this.depth() - 1) >>> 0 };
    const text = encodeText(reply);
    this.conn.send(loginResponsePdu(this.conn, window, flags, this.isid, this.tsih, this.itt, status, text.length), [text]);
  }

  private depth(): number {
    return Number(this.tpg?.attributes.default_cmdsn_depth ?? 64);
  }

  /** An administrator's reading of a refusal: who asked for what, and what stood in the way. */
  private whyRefused(status: number): string | undefined {
    if (status === LoginStatus.NOT_FOUND) return `no target ${this.targetName} on portal ${this.conn.localAddress}:${this.conn.localPort}`;
    if (status === LoginStatus.FORBIDDEN) return `the initiator is in no ACL of ${this.targetName} (and the TPG is not in demo mode)`;
    if (status === LoginStatus.SERVICE_UNAVAILABLE) return `the TPG of ${this.targetName} is disabled`;
    return undefined;
  }

  private peer(): string {
    const s = this.conn.socket;
    return s.remoteAddress ? `${s.remoteAddress.includes(':') ? `[${s.remoteAddress}]` : s.remoteAddress}:${s.remotePort}` : '?';
  }

  private fail(h: Buffer, status: number, why?: string): void {
    // Refused logins are the administrator's business (a typo in an ACL, someone probing): notice level.
    if (why) log.notice(`iscsi: login of ${this.initiatorName ?? '?'} from ${this.peer()} refused (0x${status.toString(16).padStart(4, '0')}): ${why}`);
    this.itt = h.readUInt32BE(H.ITT);
    this.failNow(status);
  }

  private failNow(status: number): void {
    countRefusal(status);
    clearTimeout(this.timer);
    this.respond(this.stage === Stage.FULL_FEATURE ? Stage.OPERATIONAL : this.stage, 0, false, [], status);
    this.conn.end();
  }

  dispose(): void {
    clearTimeout(this.timer);
  }
}
