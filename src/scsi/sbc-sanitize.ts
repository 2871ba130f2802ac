// SANITIZE (SBC-4 5.30): OVERWRITE, BLOCK ERASE, EXIT FAILURE MODE. While a
// sanitize runs, every command but those flagged F.SANITIZE_OK gets NOT READY / SANITIZE IN PROGRESS
// with its progress; when one fails, medium-access commands get MEDIUM ERROR / SANITIZE COMMAND
// FAILED until a sanitize succeeds or EXIT FAILURE MODE. A sanitize operation
// outlives the command that started it (SBC-4 4.11: it continues through
// aborts, resets and I_T nexus loss): task management ends the command, the
// operation goes on and the unit stays NOT READY until it is done.

import type { ScsiCmd } from '../core/command';
import type { LogicalUnit } from '../core/logical-unit';
import {
  Asc, ScsiError, SenseKey, invalidCdbField, invalidParamField, mediumNotPresent, paramListLengthError,
} from '../core/sense';
import { sglFlatten, sglIsZero } from '../core/sgl';
import { log } from '../core/log';
import { F } from '../core/opcodes';
import { chunkDone } from './sbc-rw';
import { provisioning } from './provisioning';

export const SanitizeAction = { OVERWRITE: 0x01, BLOCK_ERASE: 0x02, EXIT_FAILURE_MODE: 0x1f } as const;

/** OVERWRITE: wherever the backstore can write a pattern over everything. */
export function servesOverwrite(lu: LogicalUnit): boolean {
  return lu.backstore.caps.sanitizeOverwrite;
}

/**
 * BLOCK ERASE deallocates every block, so it is served on a thin unit (LBPME) whose backstore deallocates
 * and reports it: afterwards GET LBA STATUS shows nothing mapped. A block device cannot tell what its
 * discard deallocated (it would still report every block mapped), so it is not offered there.
 */
export function servesBlockErase(lu: LogicalUnit): boolean {
  const caps = lu.backstore.caps;
  return caps.sanitizeBlockErase && caps.lbaStatus && provisioning(lu).thin;
}

const IMMED = 0x80;
const OVERWRITE_HEADER = 4;
/** Bytes written per backstore call while overwriting: progress moves, other LUNs' I/O interleaves. */
const OVERWRITE_CHUNK = 1 << 20;
const MIB = 1 << 20;
/** Under a rate bound, chunks of about this fraction of a second's worth, so the rate is even. */
const PACE_STEPS_PER_S = 8;

interface SanitizeState {
  /** Bytes done and to do, for the progress indication. */
  done: number;
  total: number;
  failed: boolean;
  /** performance.now() before which the next chunk may not start (max_sanitize_rate). */
  nextAt: number;
}

const states = new WeakMap<LogicalUnit, SanitizeState>();

function inProgress(s: SanitizeState): ScsiError {
  const progress = s.total === 0 ? 0 : Math.min(0xffff, Math.floor((s.done / s.total) * 0x10000));
  return new ScsiError(SenseKey.NOT_READY, Asc.LUN_NOT_READY_SANITIZE_IN_PROGRESS, { progress });
}

const failedMode = (): ScsiError => new ScsiError(SenseKey.MEDIUM_ERROR, Asc.SANITIZE_COMMAND_FAILED);

/** Only what the unit can carry out is served (the table's served, checked before this); the rest is an invalid service action. */
export function decodeSanitize(cmd: ScsiCmd): number {
  // Not F.MEDIUM (that would lock a failed unit out of its way back), so the medium is checked here.
  if (cmd.lu.medium !== undefined && !cmd.lu.medium.present) throw mediumNotPresent();
  const s = states.get(cmd.lu);
  if (s !== undefined && !s.failed) throw inProgress(s);
  const len = cmd.cdb.readUInt16BE(7);
  switch (cmd.cdb[1] & 0x1f) {
    case SanitizeAction.OVERWRITE:
      // A header and a pattern of 1..block length bytes.
      if (len <= OVERWRITE_HEADER || len > cmd.lu.blockSize + OVERWRITE_HEADER) throw invalidCdbField(7);
      return len;
    case SanitizeAction.BLOCK_ERASE:
      if (len !== 0) throw invalidCdbField(7);
      return 0;
    default: // EXIT FAILURE MODE
      if (len !== 0) throw invalidCdbField(7);
      return 0;
  }
}

/** The pattern each block starts with after an OVERWRITE (the last pass's, inverted on even passes with INVERT). */
function overwritePattern(cmd: ScsiCmd): Buffer {
  const list = sglFlatten(cmd.out(), 0, cmd.dataLength);
  const count = list[0] & 0x1f;
  const test = (list[0] >> 5) & 3;
  const invert = (list[0] & 0x80) !== 0;
  const plen = list.readUInt16BE(2);
  if (test !== 0) throw invalidParamField(0, 5);
  if (count === 0) throw invalidParamField(0, 4);
  if (plen === 0 || plen > cmd.lu.blockSize) throw invalidParamField(2);
  if (plen + OVERWRITE_HEADER > cmd.dataLength) throw paramListLengthError();
  const pattern = Buffer.from(list.subarray(OVERWRITE_HEADER, OVERWRITE_HEADER + plen));
  // Earlier passes are overwritten by the last; only its pattern remains on the medium.
  if (invert && count % 2 === 0) for (let i = 0; i < pattern.length; i++) pattern[i] ^= 0xff;
  return pattern;
}

/** Bytes to write next: a whole number of blocks, smaller under a low rate bound. */
function chunkLength(lu: LogicalUnit, rate: number, left: number): number {
  const bs = lu.blockSize;
  const want = rate === 0 ? OVERWRITE_CHUNK : Math.min(OVERWRITE_CHUNK, (rate * MIB) / PACE_STEPS_PER_S);
  return Math.min(left, Math.max(bs, want - (want % bs)));
}

/**
 * Waits as long as max_sanitize_rate asks after n bytes were written (read
 * each time, so a change applies to a running sanitize); unbounded, it still
 * yields a turn of the event loop so a RAM overwrite does not starve the rest.
 */
async function pace(lu: LogicalUnit, s: SanitizeState, n: number): Promise<void> {
  const rate = lu.so.attributes.max_sanitize_rate;
  if (rate === 0) return new Promise((resolve) => setImmediate(resolve));
  const now = performance.now();
  s.nextAt = Math.max(s.nextAt, now) + (n / (rate * MIB)) * 1000;
  if (s.nextAt > now) await new Promise((resolve) => setTimeout(resolve, s.nextAt - now));
}

/**
 * Writes the pattern over the whole medium in chunks. An all-zero pattern is
 * written with writeZeroes, which deallocates in a thin unit: SBC-4 4.11.3
 * wants every LBA of a thin unit deallocated after a sanitize (anchored in a
 * resource-provisioned one), reading back as the zeros it was given; any other
 * pattern leaves every LBA mapped, since each must read back the pattern.
 */
async function overwrite(lu: LogicalUnit, pattern: Buffer, s: SanitizeState): Promise<void> {
  const store = lu.backstore;
  const bs = lu.blockSize;
  let chunk: Buffer | undefined;
  if (!sglIsZero([pattern], 0, pattern.length)) {
    chunk = Buffer.allocUnsafe(Math.min(s.total, OVERWRITE_CHUNK));
    // The pattern repeats from the start of every logical block.
    for (let p = 0; p < chunk.length; p += bs) chunk.subarray(p, p + bs).fill(pattern);
  }
  while (s.done < s.total) {
    if (lu.closed) throw new Error('its storage object was closed');
    const n = chunkLength(lu, lu.so.attributes.max_sanitize_rate, s.total - s.done);
    await chunkDone(chunk === undefined ? store.writeZeroes(s.done, n) : store.write(s.done, n, [chunk], false));
    s.done += n;
    if (s.done < s.total) await pace(lu, s, n);
  }
  await store.flush();
}

async function blockErase(lu: LogicalUnit, s: SanitizeState): Promise<void> {
  const store = lu.backstore;
  if (store.sanitize !== undefined) await store.sanitize('block-erase');
  else await store.unmap(0, s.total);
  await store.flush();
}

/**
 * Runs a sanitize on the whole medium: new medium commands are refused from
 * here on, writes in flight drain first (the whole range is taken exclusively).
 */
async function run(lu: LogicalUnit, action: number, pattern: Buffer | undefined, s: SanitizeState): Promise<void> {
  lu.notReady = (def) => (def !== undefined && (def.flags & F.SANITIZE_OK) !== 0 ? undefined : inProgress(s));
  const held = await lu.rangeLock.acquire(0, Math.max(1, lu.blocks), true);
  try {
    if (action === SanitizeAction.OVERWRITE) await overwrite(lu, pattern!, s);
    else await blockErase(lu, s);
    states.delete(lu);
    lu.notReady = undefined;
  } catch (e) {
    s.failed = true;
    // A failed sanitize leaves the medium unusable; other commands (a new SANITIZE) are served.
    lu.notReady = (def) => (def === undefined || (def.flags & F.MEDIUM) !== 0 ? failedMode() : undefined);
    throw e;
  } finally {
    lu.rangeLock.release(held);
  }
}

export function sanitize(cmd: ScsiCmd): void | Promise<void> {
  const lu = cmd.lu;
  const action = cmd.cdb[1] & 0x1f;
  if (action === SanitizeAction.EXIT_FAILURE_MODE) {
    // Leaves the failure mode; the medium keeps whatever the failed sanitize left.
    if (states.get(lu)?.failed) {
      states.delete(lu);
      lu.notReady = undefined;
    }
    return;
  }
  const pattern = action === SanitizeAction.OVERWRITE ? overwritePattern(cmd) : undefined;
  const s: SanitizeState = { done: 0, total: lu.blocks * lu.blockSize, failed: false, nextAt: 0 };
  states.set(lu, s);
  const job = run(lu, action, pattern, s);
  if ((cmd.cdb[1] & IMMED) !== 0) {
    job.catch((e) => log.warn('SANITIZE with IMMED failed', e));
    return;
  }
  // Without IMMED the command waits for the operation, unless task management aborts it first.
  return new Promise<void>((resolve, reject) => {
    cmd.onAbort = resolve;
    job.then(resolve, (e) => {
      if (cmd.abortedBy !== undefined) log.warn('SANITIZE (its command aborted) failed', e);
      reject(e);
    });
  });
}
