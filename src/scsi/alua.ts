// Asymmetric logical unit access (SPC-5 5.16): implicit ALUA, reported by
// REPORT TARGET PORT GROUPS (MAINTENANCE IN, 6.36) and INQUIRY's TPGS=01b.
//
// A unit on one server is one target port group, always active/optimized.
// A unit on shared storage that several gateways export (the backstore's
// gatewayGroup and its SharedRecord 'alua') has one group per gateway, kept
// in the cluster so that every path answers the same: each gateway's group,
// its relative port ids, whether it is alive, and which group owns the unit
// (active/optimized; the others active/non-optimized, a dead one
// unavailable). Every gateway pings the others through the record each
// second; a gateway that stops answering is fenced and marked unavailable,
// and if it owned the unit a surviving gateway takes ownership with a
// compare-and-swap. Any change of states raises ASYMMETRIC ACCESS STATE
// CHANGED on every nexus of the unit, on every gateway. Ownership moves only
// when its owner is gone: I/O on a non-optimized path never moves it.
// The same record carries LOGICAL UNIT RESET to the other gateways: the unit
// is one, whichever path the reset came through.

import type { SharedRecord } from '../core/backstore';
import type { ScsiCmd } from '../core/command';
import type { LogicalUnit } from '../core/logical-unit';
import { log } from '../core/log';
import { Asc, invalidCdbField } from '../core/sense';
import { resetUnit } from '../core/tmr';

/** The one target port group of a unit on one server, numbered as LIO's default_tg_pt_gp. */
export const TARGET_PORT_GROUP_ID = 0;

const AAS = { ACTIVE_OPTIMIZED: 0x0, ACTIVE_NON_OPTIMIZED: 0x1, UNAVAILABLE: 0x3 } as const;
/** Supported states: U_SUP, AN_SUP, AO_SUP. */
const SUPPORTED = 0x08 | 0x02 | 0x01;
/** STATUS CODE: the state was changed by an implicit transition. */
const IMPLICIT_CHANGE = 0x02;
/** Seconds an implicit transition takes at most (a missed ping, the notify timeout, the fence). */
const IMPLICIT_TRANSITION_TIME = 10;
/** How often each gateway pings the others. */
const PING_MS = 1000;

interface Group {
  id: number;
  /** Relative target port ids of the gateway's ports that export the unit. */
  ports: number[];
  /** The gateway (SharedRecord.self) serving the group now. */
  gateway: string;
  alive: boolean;
}

interface AluaState {
  /** The owning group: active/optimized. */
  owner: number;
  groups: Group[];
  /** Set once a group's state changed by a failover (STATUS CODE). */
  implicit?: boolean;
}

const stateOf = (s: AluaState, g: Group): number =>
  !g.alive ? AAS.UNAVAILABLE : g.id === s.owner ? AAS.ACTIVE_OPTIMIZED : AAS.ACTIVE_NON_OPTIMIZED;
const statesKey = (s: AluaState): string => s.groups.map((g) => `${g.id}:${stateOf(s, g)}`).sort().join(',');

/** The unit's ALUA state shared by its gateways. */
class SharedAlua {
  state: AluaState = { owner: 0, groups: [] };
  version = 0;

  constructor(
    readonly lu: LogicalUnit,
    readonly record: SharedRecord,
    readonly group: number,
  ) {}

  async start(): Promise<void> {
    await this.record.listen(async (msg) => {
      const m = JSON.parse(msg.toString()) as { version?: number; state?: AluaState; reset?: boolean };
      if (m.reset) await resetUnit(this.lu, undefined);
      if (m.state !== undefined && m.version !== undefined && m.version > this.version) this.take(m.state, m.version);
    }, () => {
      this.reload().catch((e) => log.warn(`ALUA state of ${this.lu.so.path}: reading it again failed`, e));
    });
    this.lu.onReset = () => this.record.notify(Buffer.from(JSON.stringify({ reset: true })));
    await this.reload();
    // Who answers now is alive; the first gateway of the unit owns it.
    await this.tick(await this.record.notify(Buffer.from('{}')));
    this.schedule();
  }

  /** The gateway's ports that export the unit, as its nexuses show them. */
  private localPorts(): number[] {
    const ports = new Set<number>(this.state.groups.find((g) => g.id === this.group && g.gateway === this.record.self)?.ports ?? []);
    for (const itl of this.lu.nexuses) {
      for (const p of itl.session.tpg.targetPorts()) if ([...p.units()].includes(this.lu)) ports.add(p.relativePortId);
    }
    return [...ports].sort((a, b) => a - b);
  }

  private take(s: AluaState, version: number): void {
    const before = statesKey(this.state);
    this.state = s;
    this.version = version;
    if (before !== statesKey(s) && before !== '') this.lu.raiseUa(Asc.ASYMMETRIC_ACCESS_STATE_CHANGED);
  }

  private async reload(): Promise<void> {
    const r = await this.record.read();
    const s = r.data !== undefined && r.data.length !== 0 ? (JSON.parse(r.data.toString()) as AluaState) : { owner: 0, groups: [] };
    if (r.version >= this.version) this.take(s, r.version);
  }

  private schedule(): void {
    const timer = setTimeout(() => {
      if (this.lu.closed) return;
      this.record.notify(Buffer.from('{}'))
        .then((acked) => this.tick(acked))
        .catch((e) => log.warn(`ALUA state of ${this.lu.so.path}: ping failed`, e))
        .finally(() => {
          if (!this.lu.closed) this.schedule();
        });
    }, PING_MS);
    timer.unref();
  }

  /**
   * Brings the shared state in line with what this gateway knows: its own group alive with its
   * ports, the gateways that did not answer the ping (acked: those that did) fenced and
   * unavailable, an owner that is alive. Writes only when something differs.
   */
  private async tick(acked: string[]): Promise<void> {
    for (;;) {
      const s: AluaState = JSON.parse(JSON.stringify(this.state)) as AluaState;
      const ports = this.localPorts();
      let changed = false;
      const gone: string[] = [];
      let mine = s.groups.find((g) => g.id === this.group);
      if (mine === undefined) {
        mine = { id: this.group, ports, gateway: this.record.self, alive: true };
        s.groups.push(mine);
        s.groups.sort((a, b) => a.id - b.id);
        changed = true;
      } else if (mine.gateway !== this.record.self || !mine.alive || mine.ports.join() !== ports.join()) {
        Object.assign(mine, { ports, gateway: this.record.self, alive: true });
        changed = true;
      }
      for (const g of s.groups) {
        if (g.alive && g.gateway !== this.record.self && !acked.includes(g.gateway)) {
          g.alive = false;
          gone.push(g.gateway);
          s.implicit = true;
          changed = true;
        }
      }
      if (!s.groups.some((g) => g.id === s.owner && g.alive)) {
        s.owner = this.group;
        changed = true;
      }
      if (!changed) return;
      // A gateway that stopped answering is cut off before anyone else owns what it served.
      for (const gw of gone) {
        log.warn(`ALUA of ${this.lu.so.path}: gateway ${gw} stopped answering; fencing it`);
        await this.record.fence(gw);
      }
      const data = Buffer.from(JSON.stringify(s));
      const version = await this.record.swap(this.version, data);
      if (version === undefined) {
        await this.reload();
        continue;
      }
      this.take(s, version);
      await this.record.notify(Buffer.from(JSON.stringify({ version, state: s })));
      return;
    }
  }
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
  const a = new SharedAlua(lu, record, group);
  shared.set(lu, a);
  await a.start();
}

/** The target port group the unit's ports on this gateway belong to (VPD 83h). */
export function targetPortGroupId(lu: LogicalUnit): number {
  return shared.get(lu)?.group ?? TARGET_PORT_GROUP_ID;
}

export function reportTargetPortGroups(cmd: ScsiCmd): void {
  const format = cmd.cdb[1] >> 5;
  if (format > 1) throw invalidCdbField(1, 7);
  const a = cmd.lu === undefined ? undefined : shared.get(cmd.lu);
  const here = cmd.session.tpg.relativePortId;
  const groups = a === undefined
    ? [{ id: TARGET_PORT_GROUP_ID, state: AAS.ACTIVE_OPTIMIZED, ports: [here], status: 0 }]
    : a.state.groups.map((g) => ({
      id: g.id,
      state: stateOf(a.state, g),
      // This gateway's own ports as it knows them now, the others' as they wrote them.
      ports: g.id === a.group ? [...new Set([...g.ports, here])].sort((x, y) => x - y) : g.ports,
      status: a.state.implicit ? IMPLICIT_CHANGE : 0,
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
    b[d + 1] = a === undefined ? 0x01 : SUPPORTED;
    b.writeUInt16BE(g.id, d + 2);
    b[d + 5] = g.status;
    b[d + 7] = g.ports.length;
    d += 8;
    for (const p of g.ports) {
      b.writeUInt16BE(p, d + 2);
      d += 4;
    }
  }
  cmd.respond(b);
}
