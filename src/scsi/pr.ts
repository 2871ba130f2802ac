// Persistent reservations (SPC-5 5.14, 6.15 PERSISTENT RESERVE IN, 6.16
// PERSISTENT RESERVE OUT), as LIO's target_core_pr.c serves them: the
// registrations and the reservation of each logical unit, the access check
// the engine runs before every command, and both commands' service actions.
//
// A registration belongs to an I_T nexus: an initiator port (name, and ISID
// when the fabric has one) and a target port (a TPG), or every target port
// (ALL_TG_PT). It outlives sessions: a re-login of the same initiator port is
// the same registrant. Only APTPL state outlives a restart (pr-store.ts).
//
// A unit on shared storage served by several gateways (the backstore's
// SharedRecord 'pr') keeps its state in the cluster instead: every PR OUT
// reads the record, applies its service action, and writes it back as a
// compare-and-swap (again from the top when another gateway wrote first);
// then it notifies every gateway, which takes the new state into its cache
// and carries out the action's unit attentions and aborts on its own nexuses
// before it acknowledges. Only then does the PR OUT complete. The access
// check on each command reads the local cache. State without APTPL ends
// when the last gateway does: the first gateway to open the record again,
// with no other gateway listening, clears it (powerOn).

import type { SharedRecord } from '../core/backstore';
import type { ScsiCmd } from '../core/command';
import type { ItNexus, LogicalUnit, Task } from '../core/logical-unit';
import { CommandDef, DataDir, F, PrAccess } from '../core/opcodes';
import {
  Asc, ScsiError, SenseKey, invalidCdbField, invalidOpcode, invalidParamField, paramListLengthError, reservationConflict,
} from '../core/sense';
import { sglFlatten } from '../core/sgl';
import { abortClearing } from '../core/tmr';
import { log } from '../core/log';
import { PrStore, SavedPrState } from './pr-store';
import { PortName, decodeTransportId, encodeTransportId } from './transport-id';

/** Reservation types (SPC-5 table 219). */
export const PrType = {
  WRITE_EXCLUSIVE: 1,
  EXCLUSIVE_ACCESS: 3,
  WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 5,
  EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 6,
  WRITE_EXCLUSIVE_ALL_REGISTRANTS: 7,
  EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 8,
} as const;

const VALID_TYPES = new Set<number>(Object.values(PrType));
const isAllRegistrants = (t: number): boolean => t === 7 || t === 8;
/** Registrants-only and all-registrants types: every registrant has the holder's access. */
const registrantsHaveAccess = (t: number): boolean => t >= 5;
/** Write Exclusive types: non-holders may still read. */
const isWriteExclusive = (t: number): boolean => t === 1 || t === 5 || t === 7;

export const PrOutAction = {
  REGISTER: 0, RESERVE: 1, RELEASE: 2, CLEAR: 3, PREEMPT: 4, PREEMPT_AND_ABORT: 5,
  REGISTER_AND_IGNORE: 6, REGISTER_AND_MOVE: 7,
} as const;

export const PrInAction = { READ_KEYS: 0, READ_RESERVATION: 1, REPORT_CAPABILITIES: 2, READ_FULL_STATUS: 3 } as const;

const INVALID_RELEASE_OF_PR = 0x2604;

export interface Registration {
  key: bigint;
  name: string;
  /** Set when the port was registered with its ISID (iSCSI); matches any ISID otherwise. */
  isid?: string;
  /** Target port (Tpg.portName); undefined when registered on every target port (ALL_TG_PT). */
  tport?: string;
  /** Relative target port identifier of the registering port (the TPG tag). */
  relTgtPort: number;
}

export interface Reservation {
  /** The holding registration; for all-registrants types, the one that reserved (every registrant holds). */
  holder: Registration;
  type: number;
  scope: number;
}

const sameName = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();

/** An I_T nexus (or the ports a registration covers) as events name it across gateways. */
interface PortRef {
  name: string;
  isid?: string;
  /** undefined: every target port. */
  tport?: string;
}

/**
 * What a PR OUT does beyond its state change, as data every gateway can carry out on its own
 * nexuses: unit attentions to the nexuses some registrations cover, or to every registered one,
 * and PREEMPT AND ABORT's aborts. The issuer's nexus is always left out.
 */
type PrEvent = { ua: number; to: PortRef[] } | { ua: number; registrants: true } | { abort: PortRef[] };

const portRef = (r: PortRef): PortRef => ({ name: r.name, isid: r.isid, tport: r.tport });
const nexusRef = (s: ItNexus): PortRef => ({ name: s.initiator.name, isid: s.initiator.isid?.toLowerCase(), tport: s.tpg.portName });
const isNexus = (ref: PortRef | undefined, s: ItNexus): boolean => ref !== undefined && sameName(ref.name, s.initiator.name) &&
  ref.isid === s.initiator.isid?.toLowerCase() && ref.tport === s.tpg.portName;

function matches(r: PortRef, s: ItNexus): boolean {
  return sameName(r.name, s.initiator.name) && (r.isid === undefined || r.isid === s.initiator.isid?.toLowerCase()) &&
    (r.tport === undefined || r.tport === s.tpg.portName);
}

/**
 * Rows of SPC-5 table 66 whose class depends on a CDB field: START STOP UNIT
 * with START=1 and POWER CONDITION 0h, and PREVENT ALLOW MEDIUM REMOVAL with
 * PREVENT=00b, are allowed from everyone; otherwise their table entry's class applies.
 */
const BY_CDB: Partial<Record<number, (cdb: Buffer) => PrAccess | undefined>> = {
  0x1b: (cdb) => ((cdb[4] & 0xf1) === 0x01 ? 'allowed' : undefined),
  0x1e: (cdb) => ((cdb[4] & 0x03) === 0 ? 'allowed' : undefined),
};

/** The persistent reservation state of one logical unit. */
export class PrState {
  generation = 0;
  registrations: Registration[] = [];
  reservation: Reservation | undefined = undefined;
  /** Activate persist through power loss: the state is saved on every change. */
  aptpl = false;
  /** Nexus -> its registration, rebuilt after every change (the access check is on the hot path). */
  private cache = new WeakMap<ItNexus, Registration | null>();
  /** PR OUT commands run one at a time per unit (they may wait for the disk). */
  private queue: Promise<void> = Promise.resolve();
  /** Version of the shared record the state was last read from or written as. */
  version = 0;

  constructor(
    readonly lu: LogicalUnit,
    readonly store: PrStore | undefined,
    /** Shared storage: the state lives in this record of the cluster (every gateway's). */
    readonly shared?: SharedRecord,
  ) {}

  /** There is somewhere to persist to: APTPL is offered (PTPL_C). */
  get persistent(): boolean {
    return this.store !== undefined || this.shared !== undefined;
  }

  /** The state as the shared record holds it. */
  encode(): Buffer {
    return Buffer.from(JSON.stringify({ ...this.snapshot(), aptpl: this.aptpl }));
  }

  /** Takes the shared record's state (empty: none) as this unit's. */
  decode(data: Buffer | undefined, version: number): void {
    const s = data !== undefined && data.length !== 0 ? (JSON.parse(data.toString()) as SavedPrState & { aptpl: boolean }) : undefined;
    this.restore(s ?? { generation: 0, registrations: [] });
    this.aptpl = s?.aptpl ?? false;
    this.version = version;
  }

  /** Reads the shared record again; takes it when it is newer than the cache. */
  async reload(): Promise<void> {
    const r = await this.shared!.read();
    this.decode(r.data, r.version);
  }

  registrationOf(s: ItNexus): Registration | undefined {
    let r = this.cache.get(s);
    if (r === undefined) {
      r = this.registrations.find((x) => matches(x, s)) ?? null;
      this.cache.set(s, r);
    }
    return r ?? undefined;
  }

  isHolder(reg: Registration | undefined): boolean {
    const res = this.reservation;
    if (!res || !reg) return false;
    return isAllRegistrants(res.type) || res.holder === reg;
  }

  /**
   * May the command run? (SPC-5 5.14.1, table 66.) Entries without a `pr`
   * class are treated as 'write', the most restrictive class for registered
   * and reserved access alike, until every table declares one.
   */
  check(cmd: Task): boolean {
    const cls: PrAccess = BY_CDB[cmd.cdb[0]]?.(cmd.cdb) ?? cmd.def.pr ?? 'write';
    if (cls === 'allowed') return true;
    // SPC-2 RESERVE/RELEASE conflict while any registration exists (SPC-5 5.14.3).
    if (cls === 'conflict') return false;
    const res = this.reservation;
    if (res === undefined) return true;
    const reg = this.registrationOf(cmd.session);
    if (reg !== undefined && (res.holder === reg || registrantsHaveAccess(res.type))) return true;
    return cls === 'read' && isWriteExclusive(res.type);
  }

  /** Called after every change: hooks the check into the engine only while it can refuse something. */
  changed(): void {
    this.cache = new WeakMap();
    this.lu.pr = this.registrations.length !== 0 ? this : undefined;
  }

  /** Runs fn alone among this unit's PR OUT commands. */
  serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.then(() => {}, () => {});
    return run;
  }

  snapshot(): SavedPrState {
    const regs = this.registrations;
    const s: SavedPrState = {
      generation: this.generation,
      registrations: regs.map((r) => ({
        key: r.key.toString(16).padStart(16, '0'), name: r.name, isid: r.isid, tport: r.tport, relTgtPort: r.relTgtPort,
      })),
    };
    if (this.reservation) {
      const { holder, type, scope } = this.reservation;
      s.reservation = { holder: regs.indexOf(holder), type, scope };
    }
    return s;
  }

  restore(s: SavedPrState): void {
    this.generation = s.generation >>> 0;
    this.registrations = s.registrations.map((r) => ({
      key: BigInt(`0x${r.key}`), name: r.name, isid: r.isid, tport: r.tport, relTgtPort: r.relTgtPort,
    }));
    const res = s.reservation;
    const holder = res ? this.registrations[res.holder] : undefined;
    this.reservation = res && holder && VALID_TYPES.has(res.type) ? { holder, type: res.type, scope: res.scope } : undefined;
    this.aptpl = true;
    this.changed();
  }

  /** Saves the state if APTPL is set; removes a saved state when it is not. */
  persist(): Promise<void> {
    if (!this.store) return Promise.resolve();
    return this.store.save(this.aptpl && this.registrations.length !== 0 ? this.snapshot() : undefined);
  }

  /**
   * Carries out events on this gateway's nexuses of the unit; issuer: the nexus that caused them
   * (left out), undefined for an administrator's change. Resolves once aborted tasks have ended.
   */
  apply(events: readonly PrEvent[], issuer: PortRef | undefined, issuerSession?: ItNexus): Promise<unknown> {
    const waits: Promise<unknown>[] = [];
    for (const ev of events) {
      const others = [...this.lu.nexuses].filter((i) => !isNexus(issuer, i.session));
      if ('abort' in ev) {
        const hit = others.filter((i) => ev.abort.some((r) => matches(r, i.session)));
        const cmds = hit.flatMap((i) => [...i.tasks.values()]);
        // PREEMPT AND ABORT: the preempted nexuses' tasks end as if cleared by another initiator.
        if (cmds.length !== 0) waits.push(abortClearing(this.lu, cmds, issuerSession));
      } else if ('to' in ev) {
        for (const itl of others) if (ev.to.some((r) => matches(r, itl.session))) itl.addUa(ev.ua);
      } else {
        for (const itl of others) if (this.registrationOf(itl.session) !== undefined) itl.addUa(ev.ua);
      }
    }
    return Promise.all(waits);
  }

  /** Removes a registration; releases the reservation it held (SPC-5 5.14.11.2.2). */
  unregister(reg: Registration, events: PrEvent[]): void {
    this.registrations = this.registrations.filter((r) => r !== reg);
    const res = this.reservation;
    if (!res) return;
    if (isAllRegistrants(res.type)) {
      // Held by every registrant: it ends with the last one.
      if (this.registrations.length === 0) this.reservation = undefined;
      else if (res.holder === reg) res.holder = this.registrations[0];
      return;
    }
    if (res.holder !== reg) return;
    this.reservation = undefined;
    this.changed();
    if (registrantsHaveAccess(res.type)) events.push({ ua: Asc.RESERVATIONS_RELEASED, registrants: true });
  }
}

const states = new WeakMap<LogicalUnit, PrState>();

/** The unit's persistent reservation state, created on first use. */
export function prState(lu: LogicalUnit): PrState {
  let s = states.get(lu);
  if (!s) {
    s = new PrState(lu, undefined);
    states.set(lu, s);
  }
  return s;
}

/**
 * Gives a unit its APTPL store and restores what it holds (at creation of
 * the storage object). Without a store, APTPL is not offered (PTPL_C = 0).
 */
export function attachPrStore(lu: LogicalUnit, stateDir: string | undefined): void | Promise<void> {
  const shared = lu.backstore.shared?.('pr');
  if (shared) return attachShared(lu, shared);
  const s = new PrState(lu, stateDir === undefined ? undefined : new PrStore(stateDir, lu.so.serial));
  states.set(lu, s);
  const saved = s.store?.load();
  if (saved) s.restore(saved);
}

/** What a gateway tells the others after it changed the shared state. */
interface PrNotice {
  version: number;
  state: string;
  events: PrEvent[];
  issuer?: PortRef;
}

/** Shared storage: the state is the cluster's record, kept current by every gateway's notices. */
async function attachShared(lu: LogicalUnit, shared: SharedRecord): Promise<void> {
  const s = new PrState(lu, undefined, shared);
  states.set(lu, s);
  const onMessage = async (msg: Buffer) => {
    const n = JSON.parse(msg.toString()) as PrNotice;
    if (n.version > s.version) s.decode(Buffer.from(n.state), n.version);
    await s.apply(n.events, n.issuer);
  };
  const onResync = () => {
    s.reload().catch((e) => log.warn(`PR state of ${lu.so.path}: reading it again failed`, e));
  };
  await powerOn(lu, shared);
  await shared.listen(onMessage, onResync);
  await s.reload();
}

/**
 * A gateway opens the unit's record while no other gateway serves the unit: the unit was down
 * (SPC-5 5.14.5), so state without APTPL is gone, as on a unit of one host (only APTPL state is
 * saved there). Each try reads the record after this gateway announced itself, then swaps it for
 * an empty one only if no gateway listens: one that starts at the same time announces itself
 * (a write) before it listens or reads, so one of the two swaps fails and both take the record.
 */
async function powerOn(lu: LogicalUnit, shared: SharedRecord): Promise<void> {
  if (shared.announce === undefined || shared.peers === undefined) return;
  await shared.announce();
  for (let i = 0; i < 5; i++) {
    const r = await shared.read();
    if (r.data === undefined || r.data.length === 0) return;
    if ((JSON.parse(r.data.toString()) as { aptpl?: boolean }).aptpl) return;
    if ((await shared.peers()).length !== 0) return;
    if ((await shared.swap(r.version, Buffer.alloc(0))) !== undefined) {
      log.info(`PR state of ${lu.so.path}: no other gateway serves the unit; registrations without APTPL cleared`);
      return;
    }
  }
}

// ---------------------------------------------------------------- admin

const TYPE_NAMES: Record<number, string> = {
  1: 'write_exclusive', 3: 'exclusive_access', 5: 'write_exclusive_registrants_only',
  6: 'exclusive_access_registrants_only', 7: 'write_exclusive_all_registrants', 8: 'exclusive_access_all_registrants',
};

/** What an administrator sees of a unit's reservation state (control API, tcli). */
export interface PrView {
  generation: number;
  aptpl: boolean;
  registrations: { initiator_port: string; target_port: string; rel_tgt_port: number; key: string; holder: boolean }[];
  reservation?: { initiator_port: string; key: string; type: string; scope: number };
}

const portOf = (r: Registration): string => (r.isid === undefined ? r.name : `${r.name},i,0x${r.isid}`);
const hexKey = (k: bigint): string => `0x${k.toString(16).padStart(16, '0')}`;

export function prView(lu: LogicalUnit): PrView {
  const st = prState(lu);
  const v: PrView = {
    generation: st.generation,
    aptpl: st.aptpl,
    registrations: st.registrations.map((r) => ({
      initiator_port: portOf(r), target_port: r.tport ?? 'all', rel_tgt_port: r.relTgtPort, key: hexKey(r.key), holder: st.isHolder(r),
    })),
  };
  const res = st.reservation;
  if (res) v.reservation = { initiator_port: portOf(res.holder), key: hexKey(res.holder.key), type: TYPE_NAMES[res.type] ?? String(res.type), scope: res.scope };
  return v;
}

/**
 * The administrator's escape hatch: drops every registration and the
 * reservation as a PR OUT CLEAR would (RESERVATIONS PREEMPTED to every
 * registered nexus, generation bumped) and removes the saved APTPL state.
 * Resolves with the number of registrations removed.
 */
export function prAdminClear(lu: LogicalUnit): Promise<number> {
  const st = prState(lu);
  return st.serialize(async () => {
    let cleared = 0;
    await change(st, undefined, undefined, (events) => {
      const regs = st.registrations;
      cleared = regs.length;
      if (regs.length === 0 && !st.persistent) return false;
      st.registrations = [];
      st.reservation = undefined;
      st.aptpl = false;
      if (regs.length !== 0) st.generation = (st.generation + 1) >>> 0;
      if (regs.length !== 0) events.push({ ua: Asc.RESERVATIONS_PREEMPTED, to: regs.map(portRef) });
      return true;
    });
    return cleared;
  });
}

/**
 * Applies a change to the unit's state and makes it last: fn changes the state (true when it did,
 * pushing what else happens as events; a ScsiError leaves it unchanged). Then the state is saved
 * (APTPL file) or swapped into the shared record and announced to every gateway, and the events
 * are carried out here. Runs inside st.serialize().
 */
async function change(st: PrState, issuer: PortRef | undefined, issuerSession: ItNexus | undefined,
  fn: (events: PrEvent[]) => boolean): Promise<void> {
  const shared = st.shared;
  if (shared === undefined) {
    const before = st.snapshot();
    const beforeAptpl = st.aptpl;
    const events: PrEvent[] = [];
    try {
      if (fn(events)) await st.persist();
    } catch (e) {
      if (!(e instanceof ScsiError)) {
        // The saved state could not be written: the change did not happen.
        log.warn(`PR state of ${st.lu.so.path} not saved`, e);
        st.restore(before);
        st.aptpl = beforeAptpl;
        throw new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.INSUFFICIENT_REGISTRATION_RESOURCES);
      }
      throw e;
    } finally {
      st.changed();
    }
    await st.apply(events, issuer, issuerSession);
    return;
  }
  for (;;) {
    const events: PrEvent[] = [];
    let version: number | undefined;
    try {
      await st.reload();
      const base = st.encode();
      try {
        if (!fn(events)) return;
      } catch (e) {
        st.decode(base, st.version);
        throw e;
      }
      const next = st.encode();
      version = await shared.swap(st.version, next);
      if (version === undefined) continue; // another gateway wrote first: from the top on its state
      st.version = version;
      const notice: PrNotice = { version, state: next.toString(), events, issuer };
      await shared.notify(Buffer.from(JSON.stringify(notice)));
    } catch (e) {
      if (e instanceof ScsiError) throw e;
      log.warn(`PR state of ${st.lu.so.path}: the shared record failed`, e);
      if (version === undefined) {
        // Nothing was written: the cluster did not answer. The initiator may retry.
        await st.reload().catch(() => undefined);
        throw new ScsiError(SenseKey.ABORTED_COMMAND, Asc.LU_COMMUNICATION_FAILURE);
      }
      // Written but not announced: the other gateways learn it when their watch comes back.
    } finally {
      st.changed();
    }
    await st.apply(events, issuer, issuerSession);
    return;
  }
}

// ---------------------------------------------------------------- PR IN

function prIn(cmd: ScsiCmd): void {
  if (!cmd.lu.so.attributes.emulate_pr) throw invalidOpcode();
  if (cmd.lu.reservation !== undefined) throw reservationConflict(); // SPC-2 reservation held (as LIO)
  const st = prState(cmd.lu);
  const sa = cmd.cdb[1] & 0x1f;
  switch (sa) {
    case PrInAction.READ_KEYS: {
      const b = Buffer.alloc(8 + 8 * st.registrations.length);
      b.writeUInt32BE(st.generation, 0);
      b.writeUInt32BE(8 * st.registrations.length, 4);
      st.registrations.forEach((r, i) => b.writeBigUInt64BE(r.key, 8 + 8 * i));
      return cmd.respond(b);
    }
    case PrInAction.READ_RESERVATION: {
      const res = st.reservation;
      const b = Buffer.alloc(res ? 24 : 8);
      b.writeUInt32BE(st.generation, 0);
      if (res) {
        b.writeUInt32BE(16, 4);
        // All-registrants types report key zero (SPC-5 6.15.3.3).
        b.writeBigUInt64BE(isAllRegistrants(res.type) ? 0n : res.holder.key, 8);
        b[21] = (res.scope << 4) | res.type;
      }
      return cmd.respond(b);
    }
    case PrInAction.REPORT_CAPABILITIES: {
      const b = Buffer.alloc(8);
      b.writeUInt16BE(8, 0);
      // CRH 0, SIP_C, ATP_C, PTPL_C when there is somewhere to persist to.
      b[2] = 0x08 | 0x04 | (st.persistent ? 0x01 : 0);
      // TMV, ALLOW COMMANDS 001b, PTPL_A.
      b[3] = 0x80 | 0x10 | (st.aptpl ? 0x01 : 0);
      b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02; // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX
      b[5] = 0x01; // EX_AC_AR
      return cmd.respond(b);
    }
    case PrInAction.READ_FULL_STATUS: {
      const parts: Buffer[] = [];
      for (const r of st.registrations) {
        const tid = encodeTransportId(r);
        const d = Buffer.alloc(24 + tid.length);
        d.writeBigUInt64BE(r.key, 0);
        d[12] = (r.tport === undefined ? 0x02 : 0) | (st.isHolder(r) ? 0x01 : 0);
        if (st.isHolder(r)) d[13] = (st.reservation!.scope << 4) | st.reservation!.type;
        d.writeUInt16BE(r.tport === undefined ? 0 : r.relTgtPort, 18);
        d.writeUInt32BE(tid.length, 20);
        tid.copy(d, 24);
        parts.push(d);
      }
      const body = Buffer.concat(parts);
      const b = Buffer.alloc(8 + body.length);
      b.writeUInt32BE(st.generation, 0);
      b.writeUInt32BE(body.length, 4);
      body.copy(b, 8);
      return cmd.respond(b);
    }
  }
  throw invalidCdbField(1, 4);
}

// ---------------------------------------------------------------- PR OUT

interface OutParams {
  key: bigint;
  saKey: bigint;
  specIpt: boolean;
  allTgPt: boolean;
  aptpl: boolean;
  data: Buffer;
}

function outParams(cmd: ScsiCmd, sa: number): OutParams {
  const len = cmd.dataLength;
  if (len < 24) throw paramListLengthError();
  const data = sglFlatten(cmd.out(), 0, Math.min(len, cmd.transferLength));
  if (data.length < 24) throw paramListLengthError();
  if (sa === PrOutAction.REGISTER_AND_MOVE) {
    return { key: data.readBigUInt64BE(0), saKey: data.readBigUInt64BE(8), specIpt: false, allTgPt: false,
      aptpl: (data[17] & 0x01) !== 0, data };
  }
  const specIpt = (data[20] & 0x08) !== 0;
  if (!specIpt && len !== 24) throw paramListLengthError();
  if ((data[20] & ~0x0d) !== 0) throw invalidParamField(20);
  return { key: data.readBigUInt64BE(0), saKey: data.readBigUInt64BE(8), specIpt, allTgPt: (data[20] & 0x04) !== 0,
    aptpl: (data[20] & 0x01) !== 0, data };
}

function prOut(cmd: ScsiCmd): Promise<void> {
  if (!cmd.lu.so.attributes.emulate_pr) throw invalidOpcode();
  if (cmd.lu.reservation !== undefined) throw reservationConflict(); // SPC-2 reservation held (as LIO)
  const sa = cmd.cdb[1] & 0x1f;
  const scope = cmd.cdb[2] >> 4;
  const type = cmd.cdb[2] & 0x0f;
  const p = outParams(cmd, sa);
  const st = prState(cmd.lu);
  if (p.aptpl && !st.persistent) throw invalidParamField(sa === PrOutAction.REGISTER_AND_MOVE ? 17 : 20, 0);
  if (p.allTgPt && sa !== PrOutAction.REGISTER && sa !== PrOutAction.REGISTER_AND_IGNORE) throw invalidParamField(20, 2);
  if (p.specIpt && sa !== PrOutAction.REGISTER) throw invalidParamField(20, 3);
  if (sa === PrOutAction.RESERVE || sa === PrOutAction.RELEASE || sa === PrOutAction.PREEMPT ||
      sa === PrOutAction.PREEMPT_AND_ABORT) {
    if (scope !== 0) throw invalidCdbField(2, 4);
    if (!VALID_TYPES.has(type)) throw invalidCdbField(2, 0);
  }
  return st.serialize(() => change(st, nexusRef(cmd.session), cmd.session, (events) => service(cmd, st, sa, type, scope, p, events)));
}

/** Carries out a service action on the state; true when the state changed (and must be saved). */
function service(cmd: ScsiCmd, st: PrState, sa: number, type: number, scope: number, p: OutParams, events: PrEvent[]): boolean {
  const s = cmd.session;
  const reg = st.registrationOf(s);
  const bump = () => (st.generation = (st.generation + 1) >>> 0);
  switch (sa) {
    case PrOutAction.REGISTER:
    case PrOutAction.REGISTER_AND_IGNORE: {
      const ignore = sa === PrOutAction.REGISTER_AND_IGNORE;
      if (!reg) {
        if (!ignore && p.key !== 0n) throw reservationConflict();
        if (p.saKey === 0n) return false; // nothing to register, nothing to do
        const added: Registration[] = [newRegistration(s, s.initiator, p.saKey, p.allTgPt)];
        if (p.specIpt) added.push(...specifiedPorts(cmd, st, p));
        st.registrations.push(...added);
      } else {
        if (!ignore && p.key !== reg.key) throw reservationConflict();
        if (p.specIpt) throw invalidParamField(20, 3);
        if (p.saKey === 0n) st.unregister(reg, events);
        else reg.key = p.saKey;
      }
      st.aptpl = p.aptpl;
      bump();
      return true;
    }
    case PrOutAction.RESERVE: {
      if (!reg || reg.key !== p.key) throw reservationConflict();
      const res = st.reservation;
      if (res) {
        // A holder asking again for the same type and scope gets GOOD; anything else conflicts.
        if (!st.isHolder(reg) || res.type !== type || res.scope !== scope) throw reservationConflict();
        return false;
      }
      st.reservation = { holder: reg, type, scope };
      return true;
    }
    case PrOutAction.RELEASE: {
      if (!reg || reg.key !== p.key) throw reservationConflict();
      const res = st.reservation;
      if (!res || !st.isHolder(reg)) return false;
      if (res.type !== type || res.scope !== scope) throw new ScsiError(SenseKey.ILLEGAL_REQUEST, INVALID_RELEASE_OF_PR);
      st.reservation = undefined;
      if (res.type !== PrType.WRITE_EXCLUSIVE && res.type !== PrType.EXCLUSIVE_ACCESS) {
        events.push({ ua: Asc.RESERVATIONS_RELEASED, registrants: true });
      }
      return true;
    }
    case PrOutAction.CLEAR: {
      if (!reg || reg.key !== p.key) throw reservationConflict();
      const others = st.registrations.filter((r) => r !== reg);
      if (others.length !== 0) events.push({ ua: Asc.RESERVATIONS_PREEMPTED, to: others.map(portRef) });
      st.registrations = [];
      st.reservation = undefined;
      bump();
      return true;
    }
    case PrOutAction.PREEMPT:
    case PrOutAction.PREEMPT_AND_ABORT:
      if (!reg || reg.key !== p.key) throw reservationConflict();
      preempt(st, reg, type, scope, p.saKey, sa === PrOutAction.PREEMPT_AND_ABORT, events);
      bump();
      return true;
    case PrOutAction.REGISTER_AND_MOVE:
      registerAndMove(cmd, st, reg, p);
      bump();
      return true;
  }
  throw invalidCdbField(1, 4);
}

function newRegistration(s: ItNexus, port: PortName, key: bigint, allTgPt: boolean): Registration {
  return {
    key,
    name: port.name,
    isid: port.isid?.toLowerCase(),
    tport: allTgPt ? undefined : s.tpg.portName,
    relTgtPort: s.tpg.relativePortId,
  };
}

/**
 * SPEC_I_PT: the initiator ports the TransportIDs name, each registered with
 * the service action key on the issuer's target port (or on all of them with
 * ALL_TG_PT). A port is known when a session of it reaches this unit or an
 * ACL of the issuer's TPG names it.
 */
function specifiedPorts(cmd: ScsiCmd, st: PrState, p: OutParams): Registration[] {
  const d = p.data;
  if (d.length < 28) throw paramListLengthError();
  const tidLen = d.readUInt32BE(24);
  if (28 + tidLen !== cmd.dataLength || d.length < 28 + tidLen) throw paramListLengthError();
  const s = cmd.session;
  const out: Registration[] = [];
  for (let off = 28; off < 28 + tidLen;) {
    const t = decodeTransportId(d.subarray(0, 28 + tidLen), off);
    if (!t.ok) throw invalidParamField(t.byte);
    const port = t.port;
    const known = [...cmd.lu.nexuses].some((i) => (p.allTgPt || i.session.tpg === s.tpg) &&
      sameName(i.session.initiator.name, port.name) &&
      (port.isid === undefined || port.isid === i.session.initiator.isid?.toLowerCase())) ||
      (port.isid === undefined && [...s.tpg.aclNames()].some((n) => sameName(n, port.name)));
    if (!known) throw invalidParamField(off);
    const r = newRegistration(s, port, p.saKey, p.allTgPt);
    const clash = (x: Registration) => sameName(x.name, r.name) && (x.isid === r.isid || !x.isid || !r.isid) &&
      (x.tport === undefined || r.tport === undefined || x.tport === r.tport);
    // A port already registered (or named twice) is an error, and the command changes nothing.
    if (st.registrations.some(clash) || out.some(clash) || (sameName(r.name, s.initiator.name) && r.isid === s.initiator.isid)) {
      throw invalidParamField(off);
    }
    out.push(r);
    off += t.length;
  }
  return out;
}

function preempt(st: PrState, reg: Registration, type: number, scope: number, saKey: bigint, abort: boolean,
  events: PrEvent[]): void {
  const res = st.reservation;
  let victims: Registration[];
  let changedType = false;
  if (res && isAllRegistrants(res.type) && saKey === 0n) {
    // All-registrants reservation, key zero: every other registration goes, the issuer reserves anew.
    victims = st.registrations.filter((r) => r !== reg);
    st.reservation = { holder: reg, type, scope };
  } else if (res && !isAllRegistrants(res.type) && res.holder.key === saKey) {
    // The holder is preempted: its reservation goes to the issuer.
    victims = st.registrations.filter((r) => r.key === saKey && r !== reg);
    changedType = res.type !== type || res.scope !== scope;
    st.reservation = { holder: reg, type, scope };
  } else {
    // No reservation, or another key than the holder's: only registrations are removed.
    if (saKey === 0n) throw invalidParamField(8);
    victims = st.registrations.filter((r) => r.key === saKey && r !== reg);
    if (victims.length === 0 && !(reg.key === saKey)) throw reservationConflict();
  }
  const gone = new Set(victims);
  st.registrations = st.registrations.filter((r) => !gone.has(r));
  if (st.reservation && !st.registrations.includes(st.reservation.holder)) st.reservation = undefined;
  if (changedType) {
    const rest = st.registrations.filter((r) => r !== reg);
    if (rest.length !== 0) events.push({ ua: Asc.RESERVATIONS_RELEASED, to: rest.map(portRef) });
  }
  if (victims.length !== 0) events.push({ ua: Asc.REGISTRATIONS_PREEMPTED, to: victims.map(portRef) });
  // PREEMPT AND ABORT: the preempted nexuses' tasks on this unit end as if cleared by another initiator.
  if (abort && victims.length !== 0) events.push({ abort: victims.map(portRef) });
}

function registerAndMove(cmd: ScsiCmd, st: PrState, reg: Registration | undefined, p: OutParams): void {
  const s = cmd.session;
  const d = p.data;
  if (!reg || reg.key !== p.key) throw reservationConflict();
  const res = st.reservation;
  if (!res || !st.isHolder(reg) || isAllRegistrants(res.type)) throw reservationConflict();
  if (p.saKey === 0n) throw invalidParamField(8);
  const tidLen = d.readUInt32BE(20);
  if (24 + tidLen !== cmd.dataLength || d.length < 24 + tidLen || tidLen < 24) throw paramListLengthError();
  const t = decodeTransportId(d.subarray(0, 24 + tidLen), 24);
  if (!t.ok) throw invalidParamField(t.byte);
  const relPort = d.readUInt16BE(18);
  // The destination target port: a TPG that maps this unit.
  const tpgs = new Map([...st.lu.nexuses].map((i) => [i.session.tpg.relativePortId, i.session.tpg] as const));
  for (const t2 of s.tpg.targetPorts()) {
    if ([...t2.units()].includes(st.lu)) tpgs.set(t2.relativePortId, t2);
  }
  const tpg = tpgs.get(relPort);
  if (!tpg) throw invalidParamField(18);
  const dest: Registration = {
    key: p.saKey, name: t.port.name, isid: t.port.isid, tport: tpg.portName, relTgtPort: tpg.relativePortId,
  };
  if (sameName(dest.name, s.initiator.name) && tpg === s.tpg &&
      (dest.isid === undefined || dest.isid === s.initiator.isid?.toLowerCase())) {
    throw invalidParamField(24); // moving to itself
  }
  const existing = st.registrations.find((r) => sameName(r.name, dest.name) && r.isid === dest.isid &&
    (r.tport === undefined || r.tport === dest.tport));
  const holder = existing ?? dest;
  if (!existing) st.registrations.push(dest);
  st.reservation = { holder, type: res.type, scope: res.scope };
  if ((d[17] & 0x02) !== 0) st.registrations = st.registrations.filter((r) => r !== reg); // UNREG
  st.aptpl = p.aptpl;
}

// ---------------------------------------------------------------- table

const prInUsage = [0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0];
const prOutUsage = [0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0];

const PR_IN_NAMES = ['READ KEYS', 'READ RESERVATION', 'REPORT CAPABILITIES', 'READ FULL STATUS'];
const PR_OUT_NAMES = ['REGISTER', 'RESERVE', 'RELEASE', 'CLEAR', 'PREEMPT', 'PREEMPT AND ABORT',
  'REGISTER AND IGNORE EXISTING KEY', 'REGISTER AND MOVE'];

// PR IN and OUT are allowed from every nexus under every reservation type (SPC-5 table 66);
// keys decide what the service action may do. Under an SPC-2 reservation they conflict.
export const prCommands: CommandDef[] = [
  ...PR_IN_NAMES.map((n, sa): CommandDef => ({
    name: `PERSISTENT RESERVE IN(${n})`, opcode: 0x5e, serviceAction: sa, usage: prInUsage,
    dir: DataDir.IN, lengthField: [7, 2], flags: F.STANDBY_OK, pr: 'allowed', execute: prIn,
  })),
  ...PR_OUT_NAMES.map((n, sa): CommandDef => ({
    name: `PERSISTENT RESERVE OUT(${n})`, opcode: 0x5f, serviceAction: sa, usage: prOutUsage,
    dir: DataDir.OUT, lengthField: [5, 4], flags: F.STANDBY_OK, pr: 'allowed', execute: prOut,
  })),
];
