// Loopback: an in-process initiator port (LIO's tcm_loop). Open a nexus with
// an initiator name, submit CDBs with data to a LUN, get status, sense, data
// and residual back. The tests drive the core through it, and it is the API
// for embedding tsio in another program.

import type { Tpg } from '../../src/model/target';
import type { Session } from '../../src/core/session';
import type { Completion } from '../../src/core/command';
import { TaskAttr } from '../../src/core/command';
import { decodeSense } from '../../src/core/sense';
import type { TmfFunction, TmfResult } from '../../src/core/tmr';
import type { Sgl } from '../../src/core/sgl';

export interface LoopbackOptions {
  /** Data-out for writes and parameter lists. */
  dataOut?: Buffer | Sgl;
  /** Bytes the initiator expects to move; default: the data-out length, or the CDB's own length. */
  expectedLength?: number;
  /** Caller's buffers for data-in (the core writes straight into them). */
  dataIn?: Sgl;
  taskAttr?: TaskAttr;
  /** Explicit tag; default: the next free one. */
  tag?: number;
}

export interface LoopbackResult {
  status: number;
  /** Raw sense data, when status is CHECK CONDITION. */
  sense?: Buffer;
  /** Decoded sense key, ASC and ASCQ (and information and field pointer). */
  senseKey?: number;
  asc?: number;
  ascq?: number;
  info?: bigint;
  field?: { inCdb: boolean; byte: number; bit?: number };
  /** The data-in bytes. */
  data: Buffer;
  residual: number;
  /** Aborted by its own nexus's task management: a real fabric would send nothing. */
  quiet: boolean;
  tag: number;
}

export class LoopbackNexus {
  private nextTag = 1;

  constructor(readonly session: Session<Tpg>) {}

  /** Opens an I_T nexus on a TPG as the named initiator. */
  static open(tpg: Tpg, initiatorName: string): LoopbackNexus {
    return new LoopbackNexus(tpg.openSession({ name: initiatorName }));
  }

  /** Hot-path form: no promise, the raw completion. */
  submit(lun: number, cdb: Buffer, opts: LoopbackOptions, done: (c: Completion) => void): number {
    const tag = opts.tag ?? this.nextTag++;
    const out = opts.dataOut;
    const one = out !== undefined && Buffer.isBuffer(out);
    const dataOut = one ? [out] : out;
    this.session.submit(
      {
        cdb,
        lun,
        tag,
        taskAttr: opts.taskAttr,
        expectedLength: opts.expectedLength ?? (one ? out.length : undefined),
        dataOut,
        dataIn: opts.dataIn,
      },
      done,
    );
    return tag;
  }

  /** Runs one command and decodes its outcome. */
  command(lun: number, cdb: Buffer | number[], opts: LoopbackOptions = {}): Promise<LoopbackResult> {
    const c = Buffer.isBuffer(cdb) ? cdb : Buffer.from(cdb);
    return new Promise((resolve) => {
      this.submit(lun, c, opts, (r) => resolve(toResult(r)));
    });
  }

  taskManagement(fn: TmfFunction, lun: number, tag?: number): Promise<TmfResult> {
    return this.session.taskManagement(fn, lun, tag);
  }

  close(): Promise<void> {
    return this.session.close();
  }
}

export function toResult(c: Completion): LoopbackResult {
  const r: LoopbackResult = {
    status: c.status,
    data: gather(c),
    residual: c.residual,
    quiet: c.quiet,
    tag: c.tag,
  };
  if (c.sense) {
    const d = decodeSense(c.sense);
    r.sense = c.sense;
    r.senseKey = d.key;
    r.asc = d.asc;
    r.ascq = d.ascq;
    r.info = d.info;
    r.field = d.field;
  }
  return r;
}

function gather(c: Completion): Buffer {
  if (!c.dataIn || c.dataInLength === 0) return Buffer.alloc(0);
  if (c.dataIn.length === 1) return c.dataIn[0].subarray(0, c.dataInLength);
  return Buffer.concat(c.dataIn as Buffer[]).subarray(0, c.dataInLength);
}
