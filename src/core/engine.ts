// The command pipeline (LIO's target_core_transport): from a fabric's request
// to its completion. Every check that applies to all commands lives here, in
// the order SAM and SPC give; what a command does lives in its table entry.

import { CommandRequest, CompletionCallback, ScsiCmd } from './command';
import type { CommandTable, TableEntry } from './command-table';
import { F, firstInvalidBit, readField } from './opcodes';
import {
  Asc, DeviceSense, ScsiError, SenseKey, Status, encodeSense, fromIoError, invalidCdbField, invalidOpcode,
  isMediumFailure, lbaOutOfRange, lunNotSupported, mediumNotPresent, paramListLengthError, reservationConflict, storageGone,
  taskSetFull, unitAttention, writeProtected,
} from './sense';
import type { ItNexus, LogicalUnit, TaskRunner } from './logical-unit';
import { sglLength, type Sgl } from './sgl';
import type { RangeHold } from './range-lock';
import { log } from './log';
import { recordCompletion } from './stats';
import { CmdState, DataDir, TaskAttr } from './types';

/**
 * Commands served on a LUN the nexus has no mapping for (INQUIRY, REPORT
 * LUNS, REQUEST SENSE), like LIO's virtual LUN 0. Set by the disk device type.
 */
export const unmappedLun: { table: CommandTable | undefined } = { table: undefined };

export function submit(session: ItNexus, req: CommandRequest, done: CompletionCallback): void {
  const cmd = new ScsiCmd(session, req, done);
  const itl = session.itls.get(req.lun);
  if (itl === undefined) return submitUnmapped(cmd);
  cmd.itl = itl;
  const lu = (cmd.lu = itl.lu);
  if (itl.tasks.size !== 0 && itl.tasks.has(cmd.tag)) {
    // SAM-5 5.9: a duplicate tag is an overlapped command; both are aborted by the
    // initiator's view, we refuse the newcomer.
    return finishEarly(cmd, new ScsiError(SenseKey.ABORTED_COMMAND, Asc.OVERLAPPED_COMMANDS_ATTEMPTED));
  }
  const def = lu.table.lookup(cmd.cdb);
  try {
    // Unit attentions come first for everything but the three commands that never report them.
    if (itl.uas.length !== 0 && (def == null || (def.flags & F.NO_UA) === 0)) {
      throw unitAttention(itl.takeUa()!);
    }
    if (def === undefined) throw invalidOpcode();
    if (def === null) throw invalidCdbField(1, 4);
    if (def.served !== undefined && !def.served(lu)) throw def.serviceAction === undefined ? invalidOpcode() : invalidCdbField(1, 4);
    cmd.def = def;
    cmd.dir = def.dir;
    if (cmd.taskAttr === TaskAttr.ACA) throw invalidCdbField(1); // no NormACA: ACA tasks are refused
    checkCdbBits(cmd.cdb, def);
    if ((def.flags & F.WRITE) !== 0 && (itl.writeProtect || lu.writeProtected)) throw writeProtected();
    // The path's ALUA access state before reservations (LIO: target_alua_state_check, then target_check_reservation):
    // through a standby or transitioning port a command is refused for the port, whoever holds the unit.
    if (lu.aluaAccess !== undefined) {
      const e = lu.aluaAccess(def);
      if (e !== undefined) throw e;
    }
    if (lu.reservation !== undefined && lu.reservation !== session && (def.flags & F.RESERVE_OK) === 0) {
      throw reservationConflict();
    }
    if (lu.pr !== undefined && !lu.pr.check(cmd)) throw reservationConflict();
    if ((def.flags & F.MEDIUM) !== 0 && lu.medium !== undefined && !lu.medium.present) throw mediumNotPresent();
    if (lu.notReady !== undefined) {
      const e = lu.notReady(def);
      if (e !== undefined) throw e;
    }
    decode(cmd);
  } catch (e) {
    return finishEarly(cmd, e);
  }
  // The storage object's queue_depth bounds the task set: a command beyond it is not entered (SAM-5 5.3.4).
  if (lu.active >= lu.so.attributes.queue_depth) return finishEarly(cmd, taskSetFull());
  if ((def.flags & F.HEAD) !== 0) cmd.taskAttr = TaskAttr.HEAD_OF_QUEUE;
  if (lu.admit(cmd, RUNNER)) start(cmd);
  else track(cmd);
}

/**
 * The CDB against its entry, on mapped and unmapped LUNs alike: long enough for the command (a shorter one is
 * INVALID FIELD IN CDB at the OPERATION CODE, whose group says the length), no bit set outside the usage mask.
 */
function checkCdbBits(cdb: Buffer, def: TableEntry): void {
  if (cdb.length < def.usage.length) throw invalidCdbField(0);
  const bad = firstInvalidBit(cdb, def.usage, def.restricted);
  if (bad) throw invalidCdbField(bad[0], bad[1]);
}

/**
 * Makes a command visible to task management. Only commands that outlive the
 * current tick need it: one that completes synchronously can never be the
 * target of a TMF, so the hot path skips the map.
 */
function track(cmd: ScsiCmd): void {
  if (cmd.tracked) return;
  cmd.tracked = true;
  (cmd.itl !== undefined ? cmd.itl.tasks : cmd.session.unmappedTasks).set(cmd.tag, cmd);
}

function untrack(cmd: ScsiCmd): void {
  if (!cmd.tracked) return;
  cmd.tracked = false;
  (cmd.itl !== undefined ? cmd.itl.tasks : cmd.session.unmappedTasks).delete(cmd.tag);
}

/** Reads the declared CDB fields: LBA, block count, data length; checks the range. */
function decode(cmd: ScsiCmd): void {
  const def = cmd.def;
  const cdb = cmd.cdb;
  if (def.lbaField !== undefined) cmd.lba = readField(cdb, def.lbaField);
  if (def.blocksField !== undefined) cmd.blocks = readField(cdb, def.blocksField);
  if (def.decode !== undefined) {
    cmd.dataLength = def.decode(cmd);
  } else if (def.lengthField !== undefined) {
    cmd.dataLength = readField(cdb, def.lengthField);
  } else if (def.blocksField !== undefined && def.dir !== DataDir.NONE) {
    cmd.dataLength = cmd.blocks * cmd.lu.blockSize;
  }
  if ((def.flags & F.LBA_CHECK) !== 0) {
    if (cmd.lba + cmd.blocks > cmd.lu.blocks) throw lbaOutOfRange();
    if (def.dir !== DataDir.NONE && def.blocksField && cmd.blocks > cmd.lu.so.attributes.hw_max_sectors) {
      throw invalidCdbField(def.blocksField[0]);
    }
  }
  // The initiator offers less data-out than the CDB asks for: refused here for every command, so that no
  // handler ever reads past the data it was sent.
  if (cmd.dir === DataDir.OUT && cmd.expectedLength !== undefined && cmd.expectedLength < cmd.dataLength) {
    // A parameter list shorter than its PARAMETER LIST LENGTH.
    if (def.lengthField !== undefined && def.blocksField === undefined) throw paramListLengthError();
    // Fewer bytes than blocks to write: plain writes write the whole blocks offered (the residual reports the
    // overflow); anything else has nothing sensible to write (as LIO).
    if ((def.flags & F.CLIP_TO_EXPECTED) === 0 || def.blocksField === undefined) {
      throw new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_COMMAND_IU);
    }
    cmd.blocks = Math.floor(cmd.expectedLength / cmd.lu.blockSize);
  }
}

/** Runs a command admitted to the task set: fetches its data-out, then its handler. */
function start(cmd: ScsiCmd): void {
  if (cmd.abortedBy !== undefined) return complete(cmd);
  cmd.state = CmdState.RUNNING;
  const need = cmd.dir === DataDir.OUT ? cmd.transferLength : 0;
  if (need > 0 && (cmd.dataOut === undefined || sglLength(cmd.dataOut) < need)) {
    if (cmd.fetchDataOut === undefined) {
      return fail(cmd, new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_COMMAND_IU));
    }
    track(cmd);
    cmd.fetchDataOut(need).then(
      (sgl: Sgl) => {
        cmd.dataOut = sgl;
        if (cmd.abortedBy !== undefined) return complete(cmd);
        execute(cmd);
      },
      (e) => fail(cmd, e),
    );
    return;
  }
  execute(cmd);
}

function execute(cmd: ScsiCmd): void {
  const def = cmd.def;
  // Writes hold their LBA range shared; COMPARE AND WRITE holds it exclusively.
  if ((def.flags & (F.WRITE | F.ATOMIC)) !== 0 && def.lbaField !== undefined && cmd.blocks !== 0) {
    const lock = cmd.lu.rangeLock;
    // Shared and uncontended: the hold is only taken if the handler goes asynchronous.
    if ((def.flags & F.ATOMIC) === 0 && lock.sharedFree) return runLocked(cmd, undefined);
    const held = lock.acquire(cmd.lba, cmd.blocks, (def.flags & F.ATOMIC) !== 0);
    if (held instanceof Promise) {
      track(cmd);
      held.then((h) => runLocked(cmd, h));
      return;
    }
    return runLocked(cmd, held);
  }
  runHandler(cmd);
}

/** Runs the handler: a command it finishes at once completes now, one it hands a promise for when that settles. */
function runHandler(cmd: ScsiCmd): void {
  let r;
  try {
    r = cmd.def.execute(cmd);
  } catch (e) {
    return fail(cmd, e);
  }
  if (r === undefined) return complete(cmd);
  track(cmd);
  r.then(() => complete(cmd), (e) => failLocated(cmd, e, undefined));
}

/** Fails a command whose handler rejected; a medium failure is first located (def.locate), lock still held. */
function failLocated(cmd: ScsiCmd, e: unknown, h: RangeHold | undefined): void {
  const lu = cmd.lu; // undefined for a command to a LUN the nexus has no mapping for
  const done = (err: unknown): void => {
    if (h !== undefined) lu.rangeLock.release(h);
    fail(cmd, err);
  };
  if (lu === undefined || e instanceof ScsiError) return done(e);
  // A removed device fails as EIO, ENOSPC (a write past its new end) or ENXIO: the store tells which it is.
  const gone = lu.backstore.lost?.();
  if (gone !== undefined) {
    storageLost(lu, gone);
    return done(storageGone());
  }
  const locate = cmd.def.locate;
  if (locate === undefined || cmd.blocks <= 1 || !isMediumFailure(e)) return done(e);
  locate(cmd, e).then(done, done);
}

/** Runs a command under its range lock; held undefined: not taken yet, and free for a shared hold. */
function runLocked(cmd: ScsiCmd, held: RangeHold | undefined): void {
  const lock = cmd.lu.rangeLock;
  let r;
  try {
    r = cmd.def.execute(cmd);
  } catch (e) {
    if (held !== undefined) lock.release(held);
    return fail(cmd, e);
  }
  if (r === undefined) {
    if (held !== undefined) lock.release(held);
    return complete(cmd);
  }
  // Still the same tick as the sharedFree check: the shared hold is granted at once.
  const h = held ?? (lock.acquire(cmd.lba, cmd.blocks, false) as RangeHold);
  track(cmd);
  r.then(
    () => {
      lock.release(h);
      complete(cmd);
    },
    (e) => failLocated(cmd, e, h),
  );
}

function senseFormatDescriptor(cmd: ScsiCmd): boolean {
  return cmd.lu !== undefined && cmd.lu.mode.dsense;
}

/** Records an error on the command (sense built here, once). */
function setError(cmd: ScsiCmd, e: unknown): void {
  let err: ScsiError;
  if (e instanceof ScsiError) {
    err = e;
  } else {
    const write = cmd.def !== undefined && (cmd.def.flags & F.WRITE) !== 0;
    // A one-block command failed at its block; a longer one's block is known only once located (def.locate).
    err = fromIoError(e, write, cmd.blocks === 1 && cmd.dir !== DataDir.NONE ? cmd.lba : undefined);
    if (err.asc === Asc.INTERNAL_TARGET_FAILURE) log.warn(`command ${cmd.def?.name ?? cmd.cdb[0]} failed`, e);
    else if (err.asc === Asc.LUN_NOT_READY_MANUAL_INTERVENTION && cmd.lu !== undefined) storageLost(cmd.lu, e);
  }
  cmd.status = err.status;
  cmd.sense = err.status === Status.CHECK_CONDITION ? encodeSense(err, senseFormatDescriptor(cmd)) : undefined;
  // A pass-through device, or an emulated tape, may return data along with its sense (ILI, filemark).
  const moved = err instanceof DeviceSense ? err.dataInLength : (err.opts.dataIn ?? 0);
  cmd.dataInLength = Math.min(moved, cmd.dataInLength);
}

/**
 * The storage under lu is gone (its store said so, or a command's errno did: ENXIO, ENODEV...): from now on
 * medium commands fail with LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED without reaching the store,
 * and REQUEST SENSE reports it; INQUIRY, REPORT LUNS and every other unit go on as before.
 */
export function storageLost(lu: LogicalUnit, why: unknown): void {
  if (lu.fault !== undefined) return;
  lu.fault = why instanceof Error ? why.message : String(why);
  log.warn(`${lu.so.path}: storage lost: ${lu.fault}`);
  lu.notReady = (def) => (def === undefined || (def.flags & F.MEDIUM) !== 0 ? storageGone() : undefined);
}

function fail(cmd: ScsiCmd, e: unknown): void {
  setError(cmd, e);
  complete(cmd);
}

/** Ends a command that never entered the task set. */
function finishEarly(cmd: ScsiCmd, e: unknown): void {
  setError(cmd, e);
  cmd.state = CmdState.DONE;
  finalize(cmd);
}

/** Ends a command in the task set: residuals, task set release, the fabric's callback. */
export function complete(cmd: ScsiCmd): void {
  if (cmd.state === CmdState.DONE) return;
  cmd.state = CmdState.DONE;
  untrack(cmd);
  finalize(cmd);
  // After the fabric has the completion, so that what it unblocks is reported after it.
  if (cmd.lu !== undefined) cmd.lu.release(cmd);
}

/** Ends a command that task management took out of the task set before it ran. */
function finishUnqueued(cmd: ScsiCmd): void {
  cmd.state = CmdState.DONE;
  untrack(cmd);
  finalize(cmd);
}

/** What a unit's task set calls with the commands it held back. */
const RUNNER: TaskRunner = { start, finishUnqueued };

function finalize(cmd: ScsiCmd): void {
  if (cmd.abortedBy !== undefined) {
    cmd.status = Status.TASK_ABORTED;
    cmd.sense = undefined;
    cmd.dataInLength = 0;
    cmd.quiet = cmd.abortedBy === 'self' || cmd.lu === undefined || !cmd.lu.mode.tas;
  }
  const expected = cmd.expectedLength ?? cmd.dataLength;
  if (cmd.dataLength > expected) {
    cmd.residual = expected - cmd.dataLength; // overflow
  } else {
    const moved = cmd.dir === DataDir.OUT && cmd.status === Status.GOOD ? cmd.dataLength : cmd.dataInLength;
    cmd.residual = expected - moved;
  }
  recordCompletion(cmd);
  const w = cmd.waiters;
  cmd.done(cmd);
  if (w !== undefined) for (const f of w) f();
}

/** Commands to a LUN this nexus has no mapping for. */
function submitUnmapped(cmd: ScsiCmd): void {
  const table = unmappedLun.table;
  const def = table?.lookup(cmd.cdb);
  if (!def || (def.flags & F.NO_LUN_OK) === 0) return finishEarly(cmd, lunNotSupported());
  cmd.def = def;
  cmd.dir = def.dir;
  try {
    checkCdbBits(cmd.cdb, def);
    if (def.lengthField !== undefined) cmd.dataLength = readField(cmd.cdb, def.lengthField);
  } catch (e) {
    return finishEarly(cmd, e);
  }
  cmd.state = CmdState.RUNNING;
  runHandler(cmd);
}
