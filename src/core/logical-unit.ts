// The runtime of one logical unit (LIO's se_device): its task set with SAM
// task attribute ordering, the I_T nexuses that reach it (for unit
// attentions), its mode parameters, and its SPC-2 reservation.

import type { Backstore } from './backstore';
import type { StorageAttributes } from './attributes';
import type { CommandDef, CommandTable } from './opcodes';
import { CmdState, ScsiCmd, TaskAttr } from './command';
import { RangeLock } from './range-lock';
import type { ItlNexus, Session } from './session';
import { Asc, type ScsiError } from './sense';
import { IoStats } from './stats';

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
  reservation: Session | undefined = undefined;
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
  notReady: ((def?: CommandDef) => ScsiError | undefined) | undefined = undefined;
  /** Its storage object is deleted or the daemon stops: work that outlives commands (a sanitize) ends. */
  closed = false;
  /** Persistent reservations (src/scsi/pr.ts); set only while registrations exist. */
  pr: { check(cmd: ScsiCmd): boolean } | undefined = undefined;

  // Task set state (SAM-5 8.6): running SIMPLE count, a running ORDERED task, and those waiting.
  /** Per-unit I/O statistics (recorded by the engine). */
  readonly stats = new IoStats();
  private running = 0;
  private orderedRunning = false;
  private readonly delayed: ScsiCmd[] = [];
  private draining = false;

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
  raiseUa(asc: number, except?: Session): void {
    for (const itl of this.nexuses) if (itl.session !== except) itl.addUa(asc);
  }

  /** Number of commands in the task set, for queue depth limits and statistics. */
  get active(): number {
    return this.running + this.delayed.length + (this.orderedRunning ? 1 : 0);
  }

  /**
   * Admits a command into the task set: returns true when it may run now,
   * false when it waits behind an ORDERED task (run() is then called later).
   */
  admit(cmd: ScsiCmd, run: (cmd: ScsiCmd) => void): boolean {
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
    this.runDelayed = run;
    return false;
  }

  private runDelayed: (cmd: ScsiCmd) => void = () => {};

  /** Leaves the task set; starts whatever the departure unblocks. */
  release(cmd: ScsiCmd): void {
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
        this.runDelayed(next);
      }
    } finally {
      this.draining = false;
    }
  }

  /** Removes a waiting command (task management); true when it was waiting. */
  unqueue(cmd: ScsiCmd): boolean {
    const i = this.delayed.indexOf(cmd);
    if (i < 0) return false;
    this.delayed.splice(i, 1);
    this.drain();
    return true;
  }

  /** Capacity changed under the initiators (resize). */
  capacityChanged(): void {
    this.raiseUa(Asc.CAPACITY_DATA_CHANGED);
    for (const l of [...this.capacityListeners]) l(); // a listener may re-register itself
  }

  /** Told after capacityChanged(): fabrics that announce it themselves (vhost's PARAM_CHANGE event). */
  readonly capacityListeners = new Set<() => void>();
}
