// A SCSI command as the core sees it, and the contract with fabrics: a fabric
// hands in a CommandRequest (CDB, LUN, task attribute, tag, its data buffers)
// and gets the same command back as a Completion.

import { Sgl, sglCopyIn, sglLength } from './sgl';
import { Status } from './sense';
import { sampleClock } from './stats';
import type { TableEntry } from './command-table';
import * as types from './types';
import type { ItlNexus, ItNexus, LogicalUnit, Task } from './logical-unit';

// Also exported from here, where fabrics take them. As constants: TypeScript
// compiles `export { } from` into a getter, and one getter turns a module's
// exports into a slow dictionary that the engine would read on every command.
export const TaskAttr = types.TaskAttr;
export type TaskAttr = types.TaskAttr;
export const CmdState = types.CmdState;

export interface CommandRequest {
  cdb: Buffer;
  /** LUN number (0..16383, flat; fabrics decode their own addressing). */
  lun: number;
  /** Initiator task tag, unique among the nexus's tasks in flight. */
  tag: number;
  taskAttr?: TaskAttr;
  /** Bytes the initiator expects to move (iSCSI EDTL, virtio buffer sizes); default: what the CDB says. */
  expectedLength?: number;
  /** Data-out already received (loopback, vhost, iSCSI immediate data). */
  dataOut?: Sgl;
  /** Asks the fabric for data-out it has not received yet (iSCSI R2T); resolves with length bytes. */
  fetchDataOut?: (length: number) => Promise<Sgl>;
  /** Fabric-owned buffers for data-in (guest memory); default: the core allocates. */
  dataIn?: Sgl;
  /**
   * The fabric sends data-in as it is and calls the completion's release()
   * once it no longer reads it: a backstore may then lend its own memory
   * instead of copying into the data-in buffers (see Backstore.lend).
   */
  lendDataIn?: boolean;
}

export interface Completion {
  readonly tag: number;
  /** SCSI status byte (GOOD, CHECK CONDITION, RESERVATION CONFLICT, TASK ABORTED...). */
  readonly status: number;
  /** Sense data when status is CHECK CONDITION. */
  readonly sense: Buffer | undefined;
  /** Data-in buffers holding dataInLength valid bytes from their start. */
  readonly dataIn: Sgl | undefined;
  readonly dataInLength: number;
  /** > 0: underflow by that many bytes; < 0: overflow (the command wanted more than expected). */
  readonly residual: number;
  /** The task was aborted on request of its own nexus: the fabric sends no response. */
  readonly quiet: boolean;
  /** Set when dataIn is lent by the backstore (lendDataIn): the fabric calls it once, when done with dataIn. */
  readonly release?: () => void;
}

export type CompletionCallback = (c: Completion) => void;

export class ScsiCmd implements Completion, Task {
  readonly cdb: Buffer;
  readonly lun: number;
  readonly tag: number;
  taskAttr: TaskAttr;
  readonly expectedLength: number | undefined;
  dataOut: Sgl | undefined;
  readonly fetchDataOut: CommandRequest['fetchDataOut'];
  dataIn: Sgl | undefined;
  readonly lendDataIn: boolean;
  release: (() => void) | undefined = undefined;

  /** Set once the engine has resolved the LUN and the opcode. */
  itl!: ItlNexus;
  lu!: LogicalUnit;
  def!: TableEntry;
  dir: types.DataDir = 0;

  /** Decoded from the CDB by the table's declared fields. */
  lba = 0;
  blocks = 0;
  /** Bytes the command itself transfers (from the CDB). */
  dataLength = 0;

  status: number = Status.GOOD;
  sense: Buffer | undefined = undefined;
  dataInLength = 0;
  residual = 0;
  quiet = false;

  state: number = CmdState.NEW;
  /** performance.now() at submission for latency-sampled commands, else 0 (see stats.ts). */
  readonly startedAt = sampleClock();
  /** Set by task management; the engine completes the command as aborted when it finishes. */
  abortedBy: 'self' | 'other' | undefined = undefined;
  /** Listed in its nexus's task map (only while it outlives a tick). */
  tracked = false;
  /** Task management waiting for this command to leave the task set. */
  waiters: (() => void)[] | undefined = undefined;
  /**
   * Set by a handler whose work outlives its command (SANITIZE): task management
   * calls it when it aborts the running command, so the command can end at once.
   */
  onAbort: (() => void) | undefined = undefined;

  constructor(
    readonly session: ItNexus,
    req: CommandRequest,
    readonly done: CompletionCallback,
  ) {
    this.cdb = req.cdb;
    this.lun = req.lun;
    this.tag = req.tag;
    this.taskAttr = req.taskAttr ?? TaskAttr.SIMPLE;
    this.expectedLength = req.expectedLength;
    this.dataOut = req.dataOut;
    this.fetchDataOut = req.fetchDataOut;
    this.dataIn = req.dataIn;
    this.lendDataIn = req.lendDataIn === true;
  }

  /** Bytes that actually move: the command's length, clipped by what the initiator expects. */
  get transferLength(): number {
    const e = this.expectedLength;
    return e === undefined || e > this.dataLength ? this.dataLength : e;
  }

  /**
   * Data-in buffers for transferLength bytes: the fabric's own when it gave
   * some, otherwise one allocated here. Handlers write the data through them.
   */
  inBuffers(): Sgl {
    const n = this.transferLength;
    if (this.dataIn === undefined) this.dataIn = [Buffer.allocUnsafe(n)];
    else if (sglLength(this.dataIn) < n) throw new RangeError('fabric data-in buffers shorter than the transfer');
    this.dataInLength = n;
    return this.dataIn;
  }

  /** Data-in lent by the backstore (only when lendDataIn): it replaces the data-in buffers. */
  useLent(sgl: Sgl, release: () => void): void {
    this.dataIn = sgl;
    this.dataInLength = this.transferLength;
    this.release = release;
  }

  /**
   * Returns a response built by a handler (INQUIRY data, mode pages...):
   * copies as much as the allocation length and the initiator allow.
   */
  respond(data: Uint8Array): void {
    const n = Math.min(data.length, this.transferLength);
    if (this.dataIn === undefined) {
      this.dataIn = [Buffer.from(data.buffer, data.byteOffset, n)];
    } else {
      sglCopyIn(this.dataIn, 0, n === data.length ? data : data.subarray(0, n));
    }
    this.dataInLength = n;
  }

  /** The data-out parameter list or blocks (engine guarantees transferLength bytes). */
  out(): Sgl {
    return this.dataOut ?? [];
  }

  /** Byte offset on the backstore of the command's LBA. */
  get byteOffset(): number {
    return this.lba * this.lu.blockSize;
  }
}
