// Asymmetric logical unit access (SPC-5 5.16): REPORT TARGET PORT GROUPS
// (MAINTENANCE IN, 6.36), SET TARGET PORT GROUPS (MAINTENANCE OUT, 6.50) and
// INQUIRY's TPGS.
//
// A unit on one server is one target port group, always active/optimized,
// implicit ALUA only (TPGS 01b).
// A unit on shared storage that several gateways export (the backstore's
// gatewayGroup and its SharedRecord 'alua') has one group per gateway, kept
// in the cluster so that every path answers the same: each gateway's group,
// its relative port ids, whether it is alive, and which group owns the unit
// (active/optimized; the others active/non-optimized, or standby where the
// gateway was configured so (non_owner_state), a dead one unavailable). Both
// implicit and explicit ALUA (TPGS 11b). Through a standby port only the
// commands flagged F.STANDBY_OK in the command tables are served; the rest get
// NOT READY, TARGET PORT IN STANDBY STATE. A standby gateway takes ownership
// like any other when the owner dies, and SET TARGET PORT GROUPS moves a group
// that supports it between standby and active/non-optimized.
// Every gateway pings the others through the record each second; a gateway
// that stops answering is fenced and marked unavailable, and if it owned the
// unit a surviving gateway takes ownership with compare-and-swaps: first the
// move (its group transitioning, while it fences the old owner), then the
// ownership. SET TARGET PORT GROUPS moves ownership the same way, without
// fencing: the old owner's group and the new one are transitioning while
// the old owner lets its commands in flight finish, then the new one owns.
// A group in transition refuses medium commands with NOT READY, ASYMMETRIC
// ACCESS STATE TRANSITION, so initiators retry. A gateway that learns it was
// fenced (its client blocklisted while it was stopped or cut off) shows its
// group transitioning and refuses likewise until its backstore has a new
// client and it has joined again as non-optimized.
// Any change of states raises ASYMMETRIC ACCESS STATE CHANGED on every nexus
// of the unit, on every gateway. Ownership moves only when its owner is gone
// or an initiator asks (STPG): I/O on a non-optimized path never moves it.
// The same record carries LOGICAL UNIT RESET to the other gateways: the unit
// is one, whichever path the reset came through.

import type { SharedRecord } from '../core/backstore';
import type { ScsiCmd } from '../core/command';
import type { LogicalUnit } from '../core/logical-unit';
import { F, type TableEntry } from '../core/opcodes';
import { log } from '../core/log';
import {
  Asc, ScsiError, aluaStandby, aluaTransitioning, invalidCdbField, invalidParamField, paramListLengthError, setTargetPortGroupsFailed,
} from '../core/sense';
import { sglFlatten } from '../core/sgl';
import { resetUnit } from '../core/tmr';

/** The one target port group of a unit on one server, numbered as LIO's default_tg_pt_gp. */
export const TARGET_PORT_GROUP_ID = 0;

const AAS = { ACTIVE_OPTIMIZED: 0x0, ACTIVE_NON_OPTIMIZED: 0x1, STANDBY: 0x2, UNAVAILABLE: 0x3, TRANSITIONING: 0xf } as const;
/** Supported states: T_SUP, U_SUP, AN_SUP, AO_SUP; S_SUP for a group whose gateway is configured for standby. */
const SUPPORTED = 0x80 | 0x08 | 0x02 | 0x01;
const S_SUP = 0x04;
/** STATUS CODE: the state was changed by SET TARGET PORT GROUPS / by an implicit transition. */
const EXPLICIT_CHANGE = 0x01;
const IMPLICIT_CHANGE = 0x02;
/** Seconds an implicit transition takes at most (a missed ping, the notify timeout, the fence). */
const IMPLICIT_TRANSITION_TIME = 10;
/** How often each gateway pings the others. */
const PING_MS = 1000;
/** How long the old owner of a planned move waits for its commands in flight (below the notify timeout). */
const DRAIN_MS = 3000;
/** How long an STPG waits for a move already under way before it answers transitioning. */
const BUSY_MS = 10_000;

interface Group {
  id: number;
  /** Relative target port ids of the gateway's ports that export the unit. */
  ports: number[];
  /** The gateway (SharedRecord.self) serving the group now. */
  gateway: string;
  alive: boolean;
  /** Its gateway supports standby (configured non_owner_state: standby). */
  canStandby?: boolean;
  /** Standby rather than active/non-optimized while another group owns the unit (configured; STPG changes it). */
  standby?: boolean;
}

interface AluaState {
  /** The owning group: active/optimized. */
  owner: number;
  groups: Group[];
  /** Set once a group's state changed by a failover (STATUS CODE). */
  implicit?: boolean;
  /** Set once a group's state changed by SET TARGET PORT GROUPS (STATUS CODE). */
  explicit?: boolean;
  /** Ownership moving from one group to another, driven by gateway `by`: both groups are transitioning. */
  moving?: { from: number; to: number; by: string };
}

function stateOf(s: AluaState, g: Group): number {
  if (!g.alive) return AAS.UNAVAILABLE;
  if (s.moving !== undefined && (g.id === s.moving.from || g.id === s.moving.to)) return AAS.TRANSITIONING;
  if (g.id === s.owner) return AAS.ACTIVE_OPTIMIZED;
  return g.standby === true ? AAS.STANDBY : AAS.ACTIVE_NON_OPTIMIZED;
}
const clone = (s: AluaState): AluaState => JSON.parse(JSON.stringify(s)) as AluaState;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The unit's ALUA state shared by its gateways. */
class SharedAlua {
  state: AluaState = { owner: 0, groups: [] };
  version = 0;
  /** This gateway learned it was fenced and has not joined again yet: it serves no medium command. */
  fenced = false;
  /** SET TARGET PORT GROUPS commands running on this unit here (a drain does not wait for them). */
  private stpgs = 0;
  private readonly refuse = (def?: TableEntry): ScsiError | undefined =>
    def === undefined || (def.flags & F.MEDIUM) !== 0 ? aluaTransitioning() : undefined;
  private readonly refuseStandby = (def?: TableEntry): ScsiError | undefined =>
    def === undefined || (def.flags & F.STANDBY_OK) === 0 ? aluaStandby() : undefined;

  constructor(
    readonly lu: LogicalUnit,
    readonly record: SharedRecord,
    readonly group: number,
    /** Configured: this gateway's group is standby while another owns the unit. */
    readonly standby: boolean,
  ) {}

  async start(): Promise<void> {
    await this.record.listen(async (msg) => {
      const m = JSON.parse(msg.toString()) as { version?: number; state?: AluaState; reset?: boolean };
      if (m.reset) await resetUnit(this.lu, undefined);
      if (m.state !== undefined && m.version !== undefined && m.version > this.version) {
        this.take(m.state, m.version);
        // A planned move away from this gateway: its commands in flight end before it acknowledges.
        if (m.state.moving?.from === this.group && m.state.moving.by !== this.record.self) await this.drain();
      }
    }, () => {
      this.rejoin().catch((e) => log.warn(`ALUA state of ${this.lu.so.path}: reading it again failed`, e));
    }, () => this.fence());
    this.lu.onReset = () => this.record.notify(Buffer.from(JSON.stringify({ reset: true })));
    await this.reload();
    // Who answers now is alive; the first gateway of the unit owns it.
    await this.tick(await this.record.notify(Buffer.from('{}')));
    this.schedule();
  }

  /** The state of group g as this gateway reports it: its own group transitioning while it is fenced. */
  stateOf(g: Group): number {
    return this.fenced && g.id === this.group ? AAS.TRANSITIONING : stateOf(this.state, g);
  }

  private statesKey(): string {
    return `${this.state.groups.map((g) => `${g.id}:${this.stateOf(g)}`).sort().join(',')}`;
  }

  /** The gateway's ports that export the unit, as its nexuses show them. */
  private localPorts(): number[] {
    const ports = new Set<number>(this.state.groups.find((g) => g.id === this.group && g.gateway === this.record.self)?.ports ?? []);
    for (const itl of this.lu.nexuses) {
      for (const p of itl.session.tpg.targetPorts()) if ([...p.units()].includes(this.lu)) ports.add(p.relativePortId);
    }
    return [...ports].sort((a, b) => a - b);
  }

  /**
   * Applies a state (and this gateway's fenced flag): refuses medium commands while its group is in transition,
   * all but those standby allows while it is standby.
   */
  private take(s: AluaState, version: number, fenced = this.fenced): void {
    const before = this.statesKey();
    this.state = s;
    this.version = version;
    this.fenced = fenced;
    const mine = s.groups.find((g) => g.id === this.group);
    const state = mine === undefined ? undefined : this.stateOf(mine);
    const hook = state === AAS.TRANSITIONING ? this.refuse : state === AAS.STANDBY ? this.refuseStandby : undefined;
    this.lu.aluaAccess = hook;
    if (before !== this.statesKey() && before !== '') this.lu.raiseUa(Asc.ASYMMETRIC_ACCESS_STATE_CHANGED);
  }

  private async reload(): Promise<void> {
    const r = await this.record.read();
    const s = r.data !== undefined && r.data.length !== 0 ? (JSON.parse(r.data.toString()) as AluaState) : { owner: 0, groups: [] };
    if (r.version >= this.version) this.take(s, r.version);
  }

  /** This gateway's client was fenced: nothing is served until its backstore has a new one (rejoin). */
  private fence(): void {
    if (this.fenced) return;
    log.warn(`ALUA of ${this.lu.so.path}: this gateway (group ${this.group}) was fenced; serving no I/O until it has joined again`);
    this.take(this.state, this.version, true);
  }

  /** Messages may have been missed (a new watch, or a new client after a fence): reads the state and joins again. */
  private async rejoin(): Promise<void> {
    const was = this.fenced;
    // Any version counts: a new client starts over from what the record says.
    if (was) this.version = 0;
    await this.reload();
    if (!was) return;
    await this.tick(await this.record.notify(Buffer.from('{}')), true);
    const mine = this.state.groups.find((g) => g.id === this.group);
    log.info(`ALUA of ${this.lu.so.path}: group ${this.group} joined again after its fence as ${mine === undefined ? '?' : stateName(this.stateOf(mine))}`);
  }

  private schedule(): void {
    const timer = setTimeout(() => {
      if (this.lu.closed) return;
      (this.fenced ? Promise.resolve() : this.record.notify(Buffer.from('{}')).then((acked) => this.tick(acked)))
        .catch((e) => log.warn(`ALUA state of ${this.lu.so.path}: ping failed`, e))
        .finally(() => {
          if (!this.lu.closed) this.schedule();
        });
    }, PING_MS);
    timer.unref();
  }

  /** Writes s if the record is still at the version this gateway has, applies it and tells the others; false: another came first. */
  private async publish(s: AluaState, fenced = this.fenced): Promise<boolean> {
    const version = await this.record.swap(this.version, Buffer.from(JSON.stringify(s)));
    if (version === undefined) {
      await this.reload();
      return false;
    }
    this.take(s, version, fenced);
    await this.record.notify(Buffer.from(JSON.stringify({ version, state: s })));
    return true;
  }

  /**
   * Brings the shared state in line with what this gateway knows: its own group alive with its
   * ports, the gateways that did not answer the ping (acked: those that did) fenced and
   * unavailable, a move whose driver or target is gone dropped, an owner that is alive (taken
   * over: first the move, transitioning while the old owner is fenced, then the ownership).
   * Writes only when something differs. rejoining: this gateway's first write with a new client.
   */
  private async tick(acked: string[], rejoining = false): Promise<void> {
    if (this.fenced && !rejoining) return;
    const self = this.record.self;
    // A rejoining gateway serves again once its first write with a new client made its group alive.
    const fenced = rejoining ? false : this.fenced;
    for (;;) {
      const s = clone(this.state);
      const ports = this.localPorts();
      let changed = false;
      const gone: string[] = [];
      let mine = s.groups.find((g) => g.id === this.group);
      // A gateway (a new process or client) joins with its configured non-owner state; STPG may change it after.
      const joined = { canStandby: this.standby, standby: this.standby };
      if (mine === undefined) {
        mine = { id: this.group, ports, gateway: self, alive: true, ...joined };
        s.groups.push(mine);
        s.groups.sort((a, b) => a.id - b.id);
        changed = true;
      } else if (mine.gateway !== self || (mine.canStandby ?? false) !== this.standby) {
        Object.assign(mine, { ports, gateway: self, alive: true, ...joined });
        changed = true;
      } else if (!mine.alive || mine.ports.join() !== ports.join()) {
        Object.assign(mine, { ports, gateway: self, alive: true });
        changed = true;
      }
      for (const g of s.groups) {
        if (g.alive && g.gateway !== self && !acked.includes(g.gateway)) {
          g.alive = false;
          gone.push(g.gateway);
          s.implicit = true;
          delete s.explicit;
          changed = true;
        }
      }
      const m = s.moving;
      const driving = m?.by === self && (this.stpgs !== 0 || !s.groups.some((g) => g.id === s.owner && g.alive));
      if (m !== undefined && ((m.by !== self && !acked.includes(m.by)) || (m.by === self && !driving) || !s.groups.some((g) => g.id === m.to && g.alive))) {
        delete s.moving;
        changed = true;
      }
      const ownerAlive = s.groups.some((g) => g.id === s.owner && g.alive);
      let takeover = false;
      if (!ownerAlive && s.moving === undefined) {
        const ownerGateway = s.groups.find((g) => g.id === s.owner)?.gateway;
        if (ownerGateway !== undefined && gone.includes(ownerGateway)) {
          // The owner just stopped answering: transitioning while it is fenced, then owning.
          s.moving = { from: s.owner, to: this.group, by: self };
          takeover = true;
        } else {
          s.owner = this.group; // no owner yet, or one already fenced
        }
        changed = true;
      } else if (!ownerAlive && s.moving?.by === self && s.moving.to === this.group && gone.length === 0) {
        // Our own takeover, the old owner fenced: own it.
        s.owner = this.group;
        delete s.moving;
        changed = true;
      }
      if (!changed) {
        if (rejoining) this.take(this.state, this.version, false);
        return;
      }
      if (gone.length !== 0 || takeover) {
        // Transitioning here at once, while the silent gateways are fenced; the others hear of it after
        // (a notify would wait for the silent ones' acknowledgements).
        const version = await this.record.swap(this.version, Buffer.from(JSON.stringify(s)));
        if (version === undefined) {
          await this.reload();
          continue;
        }
        this.take(s, version, fenced);
        // A gateway that stopped answering is cut off before anyone else owns what it served.
        for (const gw of gone) {
          log.warn(`ALUA of ${this.lu.so.path}: gateway ${gw} stopped answering; fencing it`);
          await this.record.fence(gw);
        }
        await this.record.notify(Buffer.from(JSON.stringify({ version, state: s })));
        if (takeover || s.moving?.by === self) continue;
        return;
      }
      if (await this.publish(s, fenced)) return;
    }
  }

  /** Waits (bounded) until the unit has no commands in flight here but running STPGs. */
  private async drain(): Promise<void> {
    const until = Date.now() + DRAIN_MS;
    while (this.lu.active > this.stpgs && Date.now() < until) await sleep(5);
  }

  /**
   * SET TARGET PORT GROUPS making group `to` active/optimized: a planned move, no fence. The move
   * first (both groups transitioning, the old owner's commands in flight finished, since every
   * gateway acknowledges only once it applied it), then the ownership.
   */
  async moveTo(to: number): Promise<void> {
    const self = this.record.self;
    const until = Date.now() + BUSY_MS;
    this.stpgs++;
    try {
      for (;;) {
        if (this.fenced) throw aluaTransitioning();
        const s = clone(this.state);
        const target = s.groups.find((g) => g.id === to);
        if (target === undefined || !target.alive) throw setTargetPortGroupsFailed();
        if (s.moving === undefined && s.owner === to) return;
        if (s.moving !== undefined && s.moving.by !== self) {
          if (Date.now() > until) throw aluaTransitioning();
          await sleep(100);
          await this.reload();
          continue;
        }
        const t = Date.now();
        if (s.moving === undefined) {
          s.moving = { from: s.owner, to, by: self };
          if (!(await this.publish(s))) continue;
          if (s.moving.from === this.group) await this.drain();
        }
        const done = clone(this.state);
        done.owner = to;
        delete done.moving;
        done.explicit = true;
        delete done.implicit;
        if (!(await this.publish(done))) continue;
        log.info(`ALUA of ${this.lu.so.path}: group ${to} owns the unit (SET TARGET PORT GROUPS, ${Date.now() - t} ms)`);
        return;
      }
    } finally {
      this.stpgs--;
    }
  }

  /**
   * SET TARGET PORT GROUPS naming groups standby (true) or active/non-optimized (false): their state while
   * another group owns the unit, written with a compare-and-swap like any change and announced to every gateway.
   */
  async setStandby(flags: Map<number, boolean>): Promise<void> {
    this.stpgs++;
    try {
      for (;;) {
        if (this.fenced) throw aluaTransitioning();
        const s = clone(this.state);
        let changed = false;
        for (const [id, standby] of flags) {
          const g = s.groups.find((x) => x.id === id);
          if (g === undefined || !g.alive) throw setTargetPortGroupsFailed();
          if ((g.standby ?? false) !== standby) {
            g.standby = standby;
            changed = true;
          }
        }
        if (!changed) return;
        s.explicit = true;
        delete s.implicit;
        if (await this.publish(s)) return;
      }
    } finally {
      this.stpgs--;
    }
  }
}

function stateName(s: number): string {
  return ({ 0: 'active/optimized', 1: 'active/non-optimized', 2: 'standby', 3: 'unavailable', 15: 'transitioning' } as Record<number, string>)[s] ?? String(s);
}

const shared = new WeakMap<LogicalUnit, SharedAlua>();

/**
 * A unit on shared storage whose gateway has an ALUA group joins the groups kept in the cluster
 * (at creation of the storage object); others keep the one always-active group.
 */
export async function attachAlua(lu: LogicalUnit): Promise<void> {
  const group = lu.backstore.gatewayGroup;
  const record = group === undefined ? undefined : lu.backstore.shared?.('alua');
  if (group === undefined || record === undefined) return;
  const a = new SharedAlua(lu, record, group, lu.backstore.nonOwnerStandby === true);
  shared.set(lu, a);
  await a.start();
}

/** The target port group the unit's ports on this gateway belong to (VPD 83h). */
export function targetPortGroupId(lu: LogicalUnit): number {
  return shared.get(lu)?.group ?? TARGET_PORT_GROUP_ID;
}

/** INQUIRY TPGS: 11b (implicit and explicit) for a unit of a gateway group, 01b (implicit) otherwise. */
export function tpgsOf(lu: LogicalUnit): number {
  return shared.has(lu) ? 0x3 : 0x1;
}

/** SET TARGET PORT GROUPS is served by units whose states it can change: those of a gateway group. */
export const explicitAlua = (lu: LogicalUnit): boolean => shared.has(lu);

/** What a unit's ALUA looks like from this gateway, for management (info). */
export function aluaStatus(lu: LogicalUnit): { group: number; state: string; owner: number; fenced: boolean; moving?: string } | undefined {
  const a = shared.get(lu);
  if (a === undefined) return undefined;
  const mine = a.state.groups.find((g) => g.id === a.group);
  const m = a.state.moving;
  return {
    group: a.group,
    state: mine === undefined ? 'joining' : stateName(a.stateOf(mine)),
    owner: a.state.owner,
    fenced: a.fenced,
    ...(m === undefined ? {} : { moving: `group ${m.from} to group ${m.to}` }),
  };
}

/**
 * SET TARGET PORT GROUPS (SPC-5 6.50): descriptors of 4 bytes after a 4-byte header, each an
 * asymmetric access state for a target port group. A group asked to be active/optimized becomes
 * the owner (at most one per list); a group asked to be active/non-optimized or standby (the
 * latter only where its gateway supports standby) takes that state while another group owns the
 * unit, and the owner may be named so only when another group is named to take over: the unit
 * never ends with no active/optimized group. Unavailable is not a state an initiator can set here.
 */
export async function setTargetPortGroups(cmd: ScsiCmd): Promise<void> {
  const a = shared.get(cmd.lu);
  if (a === undefined) throw invalidCdbField(1, 4);
  const len = cmd.dataLength;
  if (len === 0) return;
  if (len < 4 || (len - 4) % 4 !== 0) throw paramListLengthError();
  const data = sglFlatten(cmd.out(), 0, Math.min(len, cmd.transferLength));
  if (data.length < len) throw paramListLengthError();
  let optimize: number | undefined;
  const demote: { id: number; at: number; standby: boolean }[] = [];
  for (let d = 4; d < len; d += 4) {
    const state = data[d] & 0x0f;
    const id = data.readUInt16BE(d + 2);
    const group = a.state.groups.find((g) => g.id === id);
    if (group === undefined) throw invalidParamField(d + 2);
    if (state === AAS.ACTIVE_OPTIMIZED) {
      if (optimize !== undefined && optimize !== id) throw invalidParamField(d, 3);
      optimize = id;
    } else if (state === AAS.ACTIVE_NON_OPTIMIZED || (state === AAS.STANDBY && group.canStandby === true)) {
      demote.push({ id, at: d, standby: state === AAS.STANDBY });
    } else {
      throw invalidParamField(d, 3); // standby (not supported there), unavailable, transitioning, offline, reserved
    }
  }
  for (const g of demote) {
    if (g.id === optimize) throw invalidParamField(g.at, 3);
    if (g.id === a.state.owner && optimize === undefined) throw invalidParamField(g.at, 3);
  }
  if (optimize !== undefined) await a.moveTo(optimize);
  // Groups that can be standby take the state asked (a demoted owner once the move is done); the others are non-optimized already.
  const flags = new Map(demote.filter((g) => a.state.groups.find((x) => x.id === g.id)?.canStandby === true).map((g) => [g.id, g.standby]));
  if (flags.size !== 0) await a.setStandby(flags);
}

export function reportTargetPortGroups(cmd: ScsiCmd): void {
  const format = cmd.cdb[1] >> 5;
  if (format > 1) throw invalidCdbField(1, 7);
  const a = cmd.lu === undefined ? undefined : shared.get(cmd.lu);
  const here = cmd.session.tpg.relativePortId;
  const status = a?.state.explicit ? EXPLICIT_CHANGE : a?.state.implicit ? IMPLICIT_CHANGE : 0;
  const groups = a === undefined
    ? [{ id: TARGET_PORT_GROUP_ID, state: AAS.ACTIVE_OPTIMIZED, canStandby: false, ports: [here] }]
    : a.state.groups.map((g) => ({
      id: g.id,
      state: a.stateOf(g),
      canStandby: g.canStandby === true,
      // This gateway's own ports as it knows them now, the others' as they wrote them.
      ports: g.id === a.group ? [...new Set([...g.ports, here])].sort((x, y) => x - y) : g.ports,
    }));
  const hdr = format === 1 ? 8 : 4;
  const b = Buffer.alloc(hdr + groups.reduce((n, g) => n + 8 + 4 * g.ports.length, 0));
  b.writeUInt32BE(b.length - 4, 0);
  if (format === 1) {
    b[4] = 0x10; // FORMAT TYPE 001b
    b[5] = a === undefined ? 0 : IMPLICIT_TRANSITION_TIME;
  }
  let d = hdr;
  for (const g of groups) {
    b[d] = g.state; // PREF 0
    b[d + 1] = a === undefined ? 0x01 : SUPPORTED | (g.canStandby ? S_SUP : 0);
    b.writeUInt16BE(g.id, d + 2);
    b[d + 5] = status;
    b[d + 7] = g.ports.length;
    d += 8;
    for (const p of g.ports) {
      b.writeUInt16BE(p, d + 2);
      d += 4;
    }
  }
  cmd.respond(b);
}
