// Targets, target portal groups, LUNs and node ACLs, as LIO models them:
// Target(fabric, wwn) -> Tpg(tag) -> { Lun(index -> storage object),
// NodeAcl(initiator -> mapped LUNs), portals }. Sessions (I_T nexuses) are
// opened on a TPG by a fabric and see the LUNs their ACL maps.

import type { StorageObject } from './storage-object';
import type { InitiatorId, LogicalUnit, TargetPort } from '../core/logical-unit';
import { Session, type LunMap } from '../core/session';
import { Asc } from '../core/sense';
import { IoStats } from '../core/stats';

export type AttributeValue = boolean | number | string;

export class Lun {
  constructor(
    readonly tpg: Tpg,
    readonly index: number,
    readonly so: StorageObject,
    public alias?: string,
  ) {}
}

export interface MappedLun {
  /** The LUN number the initiator sees. */
  index: number;
  /** The TPG LUN it reaches. */
  tpgLun: number;
  writeProtect: boolean;
}

export interface Auth {
  userid?: string;
  password?: string;
  mutual_userid?: string;
  mutual_password?: string;
}

export class NodeAcl {
  readonly mapped = new Map<number, MappedLun>();
  constructor(
    readonly tpg: Tpg,
    readonly name: string,
    public attributes: Record<string, AttributeValue> = {},
    public auth: Auth = {},
  ) {}
}


export class AccessDenied extends Error {}

/** A network portal of an iSCSI TPG. */
export interface Portal {
  ip_address: string;
  port: number;
}

export class Tpg implements TargetPort {
  readonly luns = new Map<number, Lun>();
  readonly acls = new Map<string, NodeAcl>();
  readonly sessions = new Set<Session<Tpg>>();
  /** Counts of closed sessions, per initiator name: an initiator's metrics go on across reconnects. */
  readonly closedStats = new Map<string, IoStats>();
  readonly portals: Portal[] = [];
  enabled = true;

  constructor(
    readonly target: Target,
    readonly tag: number,
    public attributes: Record<string, AttributeValue> = {},
    public parameters: Record<string, AttributeValue> = {},
    public auth: Auth = {},
  ) {}

  /** Relative target port identifier (VPD 83h); one port per TPG. */
  get relativePortId(): number {
    return this.tag;
  }

  /** SCSI name string of this target port (SPC-5 7.7.6.10, iSCSI form). */
  get portName(): string {
    return `${this.target.wwn},t,0x${this.tag.toString(16).padStart(4, '0')}`;
  }

  get targetName(): string {
    return this.target.wwn;
  }

  get fabric(): string {
    return this.target.fabric;
  }

  targetPorts(): Iterable<Tpg> {
    return this.target.tpgs.values();
  }

  *units(): Iterable<LogicalUnit> {
    for (const lun of this.luns.values()) yield lun.so.lu;
  }

  aclNames(): Iterable<string> {
    return this.acls.keys();
  }

  get demoMode(): boolean {
    return this.attributes.generate_node_acls === true;
  }

  /** The LUNs an initiator sees, or undefined when it may not log in. */
  lunMapFor(initiatorName: string): LunMap | undefined {
    const acl = this.acls.get(initiatorName);
    const map: LunMap = new Map();
    if (acl) {
      const prodWp = this.attributes.prod_mode_write_protect === true;
      for (const m of acl.mapped.values()) {
        const lun = this.luns.get(m.tpgLun);
        if (lun) map.set(m.index, { lu: lun.so.lu, writeProtect: m.writeProtect || prodWp });
      }
      return map;
    }
    if (!this.demoMode) return undefined;
    const wp = this.attributes.demo_mode_write_protect === true;
    for (const lun of this.luns.values()) map.set(lun.index, { lu: lun.so.lu, writeProtect: wp });
    return map;
  }

  /** Opens an I_T nexus for an initiator port; throws AccessDenied when no ACL admits it. */
  openSession(initiator: InitiatorId): Session<Tpg> {
    const map = this.lunMapFor(initiator.name);
    if (!map) throw new AccessDenied(`initiator ${initiator.name} is not allowed on ${this.portName}`);
    const s = new Session(this, initiator, map);
    this.sessions.add(s);
    return s;
  }

  /** Called by Session.close(). */
  forget(s: Session<Tpg>): void {
    if (!this.sessions.delete(s)) return;
    let t = this.closedStats.get(s.initiator.name);
    if (!t) this.closedStats.set(s.initiator.name, (t = new IoStats()));
    t.addAll(s.stats);
  }

  addLun(index: number, so: StorageObject, alias?: string): Lun {
    if (this.luns.has(index)) throw new Error(`LUN ${index} already exists in ${this.portName}`);
    const lun = new Lun(this, index, so, alias);
    this.luns.set(index, lun);
    this.refreshSessions();
    return lun;
  }

  removeLun(index: number): void {
    if (!this.luns.delete(index)) throw new Error(`no LUN ${index} in ${this.portName}`);
    for (const acl of this.acls.values()) {
      for (const [k, m] of acl.mapped) if (m.tpgLun === index) acl.mapped.delete(k);
    }
    this.refreshSessions();
  }

  /** Re-derives every session's LUN map after a LUN or ACL change (REPORTED LUNS DATA HAS CHANGED). */
  refreshSessions(): void {
    for (const s of this.sessions) {
      const map = this.lunMapFor(s.initiator.name) ?? new Map();
      if (s.remap(map)) s.addUaAll(Asc.REPORTED_LUNS_DATA_CHANGED);
    }
  }
}

export class Target {
  readonly tpgs = new Map<number, Tpg>();
  constructor(
    readonly fabric: string,
    readonly wwn: string,
  ) {}

  addTpg(tag: number, attributes?: Record<string, AttributeValue>, parameters?: Record<string, AttributeValue>): Tpg {
    if (this.tpgs.has(tag)) throw new Error(`TPG ${tag} already exists in ${this.wwn}`);
    const tpg = new Tpg(this, tag, attributes, parameters);
    this.tpgs.set(tag, tpg);
    return tpg;
  }
}
