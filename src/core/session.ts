// Sessions: I_T nexuses opened by fabrics on a TPG, and their per-LUN state
// (I_T_L nexus): pending unit attentions and tasks in flight.

import type { LogicalUnit } from './logical-unit';
import { CommandRequest, CompletionCallback, ScsiCmd } from './command';
import { submit } from './engine';
import { Asc } from './sense';
import { IoStats } from './stats';
import { TmfFunction, TmfResult, taskManagement } from './tmr';

/**
 * What the core needs of the target port a session is opened on (a TPG of
 * model/target.ts): its identity, its target's other ports and the units they
 * export, and its ACLs.
 */
export interface TargetPort {
  /** Relative target port identifier (VPD 83h, REPORT TARGET PORT GROUPS). */
  readonly relativePortId: number;
  /** SCSI name string of the port (SPC-5 7.7.6.10). */
  readonly portName: string;
  /** SCSI name string of the target device the port belongs to (its WWN). */
  readonly targetName: string;
  /** The fabric's name as configs give it (iscsi, vhost, loopback): the protocol INQUIRY reports. */
  readonly fabric: string;
  /** Every port of this port's target, itself included (ALL_TG_PT registrations, EXTENDED COPY). */
  targetPorts(): Iterable<TargetPort>;
  /** The units this port exports. */
  units(): Iterable<LogicalUnit>;
  /** Initiator names its ACLs admit. */
  aclNames(): Iterable<string>;
  /** Called by Session.close(). */
  forget(session: Session): void;
}

/** What a nexus may reach: LUN number -> unit and write protection. */
export type LunMap = Map<number, { lu: LogicalUnit; writeProtect: boolean }>;

export interface InitiatorId {
  /** Initiator name (iSCSI name, or a NAA/WWN for vhost and loopback). */
  name: string;
  /** iSCSI ISID as 12 hex digits; with the name it identifies the initiator port. */
  isid?: string;
}

// The reset-class unit attentions are reported before any other (SAM-5 5.14).
const isResetClass = (asc: number): boolean => asc >> 8 === 0x29;

export class ItlNexus {
  readonly tasks = new Map<number, ScsiCmd>();
  /** Pending unit attentions, in the order they will be reported. */
  readonly uas: number[] = [];

  constructor(
    readonly session: Session,
    readonly lun: number,
    readonly lu: LogicalUnit,
    public writeProtect: boolean,
  ) {}

  addUa(asc: number): void {
    if (this.uas.includes(asc)) return;
    if (isResetClass(asc)) {
      // A reset supersedes what was pending from before it (SAM-5 5.14: may clear).
      this.uas.length = 0;
      this.uas.push(asc);
    } else {
      this.uas.push(asc);
    }
  }

  /** Takes the next unit attention to report. */
  takeUa(): number | undefined {
    return this.uas.shift();
  }

  clearUa(asc: number): void {
    const i = this.uas.indexOf(asc);
    if (i >= 0) this.uas.splice(i, 1);
  }
}

let nextSessionId = 1;

/** An I_T nexus; P is the kind of port it is opened on (the model's Tpg for sessions fabrics open). */
export class Session<P extends TargetPort = TargetPort> {
  readonly id = nextSessionId++;
  readonly itls = new Map<number, ItlNexus>();
  /** Tasks addressed to LUNs this nexus has no mapping for (INQUIRY, REPORT LUNS...). */
  readonly unmappedTasks = new Map<number, ScsiCmd>();
  closed = false;
  /** Set by the fabric that opened the nexus: told when anyone else closes it (an ACL or TPG removed live). */
  onClosed: (() => void) | undefined;
  readonly createdAt = Date.now();
  readonly stats = new IoStats();

  constructor(
    readonly tpg: P,
    readonly initiator: InitiatorId,
    map: LunMap,
  ) {
    this.remap(map);
    // A new nexus starts with POWER ON, RESET, OR BUS DEVICE RESET OCCURRED on each LU.
    this.addUaAll(Asc.POWER_ON_RESET);
  }

  /** The initiator port name as SPC TransportIDs and logs write it. */
  get initiatorPort(): string {
    return this.initiator.isid ? `${this.initiator.name},i,0x${this.initiator.isid}` : this.initiator.name;
  }

  /** Applies a new LUN map; returns true when the set of LUNs changed. */
  remap(map: LunMap): boolean {
    let changed = false;
    for (const [n, itl] of this.itls) {
      const m = map.get(n);
      if (!m || m.lu !== itl.lu) {
        this.dropItl(itl);
        changed = true;
      } else {
        itl.writeProtect = m.writeProtect;
      }
    }
    for (const [n, m] of map) {
      if (this.itls.has(n)) continue;
      const itl = new ItlNexus(this, n, m.lu, m.writeProtect);
      this.itls.set(n, itl);
      m.lu.nexuses.add(itl);
      changed = true;
    }
    return changed;
  }

  private dropItl(itl: ItlNexus): void {
    this.itls.delete(itl.lun);
    itl.lu.nexuses.delete(itl);
    itl.lu.medium?.preventers.delete(itl);
    if (itl.lu.reservation === this && ![...this.itls.values()].some((i) => i.lu === itl.lu)) {
      itl.lu.reservation = undefined;
    }
  }

  addUaAll(asc: number): void {
    for (const itl of this.itls.values()) itl.addUa(asc);
  }

  /** LUN numbers this nexus sees, ascending. */
  lunNumbers(): number[] {
    return [...this.itls.keys()].sort((a, b) => a - b);
  }

  /** Hands a command to the core; `done` is called exactly once with its completion. */
  submit(req: CommandRequest, done: CompletionCallback): void {
    submit(this, req, done);
  }

  /** Promise form of submit, for code that is not on the hot path. */
  run(req: CommandRequest): Promise<ScsiCmd> {
    return new Promise((resolve) => submit(this, req, (c) => resolve(c as ScsiCmd)));
  }

  /** A task management function on this nexus. */
  taskManagement(fn: TmfFunction, lun: number, tag?: number): Promise<TmfResult> {
    return taskManagement(this, fn, lun, tag);
  }

  /** Ends the nexus: aborts its tasks, drops its reservations and mappings. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.onClosed?.();
    await taskManagement(this, 'it-nexus-loss', 0);
    for (const itl of [...this.itls.values()]) this.dropItl(itl);
    this.tpg.forget(this);
  }
}
