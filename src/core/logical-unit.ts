// The runtime of one logical unit (LIO's se_device): its task set with SAM
// task attribute ordering, the I_T_L nexuses that reach it (for unit
// attentions and task management), its mode parameters, and its SPC-2
// reservation.
//
// The core's imports go one way, bottom up: types, sgl, sense, log,
// attributes, range-lock -> backstore, stats, command-table -> logical-unit
// -> command, tmr -> opcodes -> engine -> session. This module names what
// sits above it by what it needs: the port and the I_T nexus a session is
// (TargetPort, ItNexus), a command as its task set holds it (Task) and the
// engine that runs them (TaskRunner).

import type { Backstore } from './backstore';
import type { StorageAttributes } from './attributes';
import type { CommandTable, TableEntry } from './command-table';
import { RangeLock } from './range-lock';
import { Asc, type ScsiError } from './sense';
import { IoStats } from './stats';
import { CmdState, TaskAttr } from './types';

/**
 * What a unit knows of the storage object that owns it (model/storage-object.ts):
 * its names, its identity and its attributes.
 */
export interface UnitIdentity {
  readonly name: string;
  /** The path LUNs name it by (/backstores/PLUGIN/NAME). */
  readonly path: string;
  /** The backstore plugin's name (INQUIRY's product id follows it, as LIO's does). */
  readonly plugin: string;
  /** VPD 80h unit serial number. */
  readonly serial: string;
  /** 16-byte NAA designator (VPD 83h). */
  readonly naa: Buffer;
  /** INQUIRY vendor identification and product revision level. */
  readonly vendor: string;
  readonly revision: string;
  /** lio: VPD 83h lists LIO's designators, as LIO would for this unit. */
  readonly compat: 'tsio' | 'lio';
  readonly attributes: StorageAttributes;
}

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
  /** Called by Session.close() with itself. */
  forget(session: ItNexus): void;
}

export interface InitiatorId {
  /** Initiator name (iSCSI name, or a NAA/WWN for vhost and loopback). */
  name: string;
  /** iSCSI ISID as 12 hex digits; with the name it identifies the initiator port. */
  isid?: string;
}

/**
 * An I_T nexus as its units and commands see it (a Session, session.ts): whose
 * it is, the LUNs it reaches, its tasks on LUNs it does not reach.
 */
export interface ItNexus {
  readonly tpg: TargetPort;
  readonly initiator: InitiatorId;
  /** The initiator port name as SPC TransportIDs and logs write it. */
  readonly initiatorPort: string;
  readonly itls: ReadonlyMap<number, ItlNexus>;
  /** Tasks addressed to LUNs this nexus has no mapping for (INQUIRY, REPORT LUNS...). */
  readonly unmappedTasks: Map<number, Task>;
  readonly stats: IoStats;
  /** LUN numbers this nexus sees, ascending. */
  lunNumbers(): number[];
}

/**
 * A command as its unit sees it (a ScsiCmd, command.ts): its place in the task
 * set, what task management marks on it, and what the PR check reads.
 */
export interface Task {
  readonly cdb: Buffer;
  readonly taskAttr: TaskAttr;
  state: number;
  readonly def: TableEntry;
  readonly session: ItNexus;
  /** Undefined (despite the type) for a command to a LUN the nexus has no mapping for; so is lu. */
  readonly itl: ItlNexus;
  readonly lu: LogicalUnit;
  /** Set by task management; the engine completes the command as aborted when it finishes. */
  abortedBy: 'self' | 'other' | undefined;
  /** Task management waiting for this command to leave the task set. */
  waiters: (() => void)[] | undefined;
  /** Set by a handler whose work outlives its command: task management calls it when it aborts the command. */
  onAbort: (() => void) | undefined;
}

/**
 * The engine, as a unit's task set hands back the commands it held. The
 * engine's functions take its ScsiCmd, the only Task there is; as methods here
 * their parameters are related both ways, so it passes them as they are.
 */
export interface TaskRunner {
  /** Runs a command the task set admits after it waited. */
  start(cmd: Task): void;
  /** Ends a waiting command that task management took out (it never ran). */
  finishUnqueued(cmd: Task): void;
}

/** Current values of the mode parameters we let initiators change (SPC-5 7.5, SBC-4 6.5). */
export interface ModeState {
  /** Caching page 08h: write cache enable. */
  wce: boolean;
  /** Caching page 08h: read cache disable. */
  rcd: boolean;
  /** Control page 0Ah: descriptor format sense data. */
  dsense: boolean;
  /** Control page 0Ah: task aborted status. */
  tas: boolean;
  /** Control page 0Ah: queue algorithm modifier (0 restricted, 1 unrestricted). */
  qam: number;
  /** Control page 0Ah: UA interlock control. */
  uaIntlckCtrl: number;
  /** Control page 0Ah: software write protect. */
  swp: boolean;
  /** Informational exceptions page 1Ch: disable exception control. */
  dexcpt: boolean;
  /** Informational exceptions page 1Ch: method of reporting. */
  mrie: number;
}

/** Mode parameters at start (MODE SENSE's default values: nothing is ever saved). */
export function initialModeState(so: UnitIdentity): ModeState {
  const a = so.attributes;
  return {
    wce: a.emulate_write_cache,
    rcd: false,
    dsense: false,
    tas: a.emulate_tas,
    qam: 1,
    uaIntlckCtrl: a.emulate_ua_intlck_ctrl,
    swp: false,
    dexcpt: true,
    mrie: 0,
  };
}

/** Fixed identification of the product, as INQUIRY reports it. */
export const VENDOR_ID = 'TSIO';
export const PRODUCT_REVISION = '0001';

export class LogicalUnit {
  readonly mode: ModeState;
  /** Every I_T_L nexus that reaches this unit, for unit attentions and task management. */
  readonly nexuses = new Set<ItlNexus>();
  /** SPC-2 RESERVE holder. */
  reservation: ItNexus | undefined = undefined;
  readonly rangeLock = new RangeLock();
  /**
   * Medium state of a removable unit (src/scsi/medium.ts); undefined for fixed
   * media. preventers: the I_T_L nexuses holding PREVENT MEDIUM REMOVAL.
   */
  medium: { present: boolean; preventers: Set<ItlNexus> } | undefined = undefined;
  /**
   * While set, the unit is not ready (SANITIZE in progress or failed): given a
   * command, the error it fails with, or undefined when it is still served;
   * given none, the condition itself (what REQUEST SENSE reports).
   */
  notReady: ((def?: TableEntry) => ScsiError | undefined) | undefined = undefined;
  /**
   * While set, the access state of this server's target port group refuses commands (standby, transitioning:
   * src/scsi/alua.ts): given a command, the error it fails with, or undefined when that state serves it; given
   * none, the state itself (what REQUEST SENSE reports). Checked before reservations, as LIO does.
   */
  aluaAccess: ((def?: TableEntry) => ScsiError | undefined) | undefined = undefined;
  /**
   * Why the storage under the unit is gone (a removed device, a deleted backing file), once it is: every
   * medium command then fails NOT READY until the storage object is made again (engine.ts storageLost).
   * Shown as the unit's health.
   */
  fault: string | undefined = undefined;
  /** Its storage object is deleted or the daemon stops: work that outlives commands (a sanitize) ends. */
  closed = false;
  /** Called after a LOGICAL UNIT RESET through this unit's nexuses (a unit shared by gateways resets on the others). */
  onReset: (() => Promise<unknown>) | undefined = undefined;
  /** Persistent reservations (src/scsi/pr.ts); set only while registrations exist. */
  pr: { check(cmd: Task): boolean } | undefined = undefined;

  // Task set state (SAM-5 8.6): running SIMPLE count, a running ORDERED task, and those waiting.
  /** Per-unit I/O statistics (recorded by the engine). */
  readonly stats = new IoStats();
  private running = 0;
  private orderedRunning = false;
  private readonly delayed: Task[] = [];
  private draining = false;
  /** What starts or ends the waiting commands: set by the first that waits (always the engine). */
  private runner: TaskRunner | undefined = undefined;

  constructor(
    readonly so: UnitIdentity,
    public backstore: Backstore,
    readonly table: CommandTable,
  ) {
    this.mode = initialModeState(so);
  }

  get deviceType(): number {
    return this.table.deviceType;
  }
  get blockSize(): number {
    return this.backstore.blockSize;
  }
  /** Capacity in logical blocks. */
  get blocks(): number {
    return Math.floor(this.backstore.size / this.backstore.blockSize);
  }
  /** Writes are refused: read-only storage or software write protect. */
  get writeProtected(): boolean {
    return this.so.attributes.readonly || this.mode.swp;
  }

  /** Establishes a unit attention on every nexus to this unit (but `except`). */
  raiseUa(asc: number, except?: ItNexus): void {
    for (const itl of this.nexuses) if (itl.session !== except) itl.addUa(asc);
  }

  /** Number of commands in the task set, for queue depth limits and statistics. */
  get active(): number {
    return this.running + this.delayed.length + (this.orderedRunning ? 1 : 0);
  }

  /**
   * Admits a command into the task set: returns true when it may run now,
   * false when it waits behind an ORDERED task (the runner then starts it later).
   */
  admit(cmd: Task, runner: TaskRunner): boolean {
    switch (cmd.taskAttr) {
      case TaskAttr.HEAD_OF_QUEUE:
        this.running++;
        return true;
      case TaskAttr.ORDERED:
        if (this.running === 0 && !this.orderedRunning && this.delayed.length === 0) {
          this.orderedRunning = true;
          return true;
        }
        break;
      default:
        if (!this.orderedRunning && this.delayed.length === 0) {
          this.running++;
          return true;
        }
    }
    cmd.state = CmdState.DELAYED;
    this.delayed.push(cmd);
    this.runner = runner;
    return false;
  }

  /** Leaves the task set; starts whatever the departure unblocks. */
  release(cmd: Task): void {
    if (cmd.taskAttr === TaskAttr.ORDERED) this.orderedRunning = false;
    else this.running--;
    this.drain();
  }

  private drain(): void {
    if (this.delayed.length === 0 || this.draining) return;
    this.draining = true;
    try {
      while (this.delayed.length) {
        const next = this.delayed[0];
        if (next.taskAttr === TaskAttr.ORDERED) {
          if (this.running !== 0 || this.orderedRunning) break;
          this.orderedRunning = true;
        } else {
          if (this.orderedRunning) break;
          this.running++;
        }
        this.delayed.shift();
        this.runner!.start(next);
      }
    } finally {
      this.draining = false;
    }
  }

  /** Takes a waiting command out and ends it (task management); true when it was waiting. */
  unqueue(cmd: Task): boolean {
    const i = this.delayed.indexOf(cmd);
    if (i < 0) return false;
    this.delayed.splice(i, 1);
    this.drain();
    this.runner!.finishUnqueued(cmd);
    return true;
  }

  /** Capacity changed under the initiators (resize). */
  capacityChanged(): void {
    this.raiseUa(Asc.CAPACITY_DATA_CHANGED);
    for (const l of [...this.capacityListeners]) l(); // a listener may re-register itself
  }

  /** Told after capacityChanged(): fabrics that announce it themselves (vhost's PARAM_CHANGE event). */
  readonly capacityListeners = new Set<() => void>();

  /** A removable unit's medium came or went (a disc, a cartridge, the changer's import/export slots). */
  mediumChanged(): void {
    for (const l of [...this.mediumListeners]) l();
  }

  /** Told by mediumChanged(): fabrics that announce it themselves (virtio-scsi's asynchronous notification). */
  readonly mediumListeners = new Set<() => void>();
}

// The reset-class unit attentions are reported before any other (SAM-5 5.14).
const isResetClass = (asc: number): boolean => asc >> 8 === 0x29;

/** An I_T_L nexus: one session's path to one unit, with its pending unit attentions and its tasks. */
export class ItlNexus {
  readonly tasks = new Map<number, Task>();
  /** Pending unit attentions, in the order they will be reported. */
  readonly uas: number[] = [];

  constructor(
    readonly session: ItNexus,
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
