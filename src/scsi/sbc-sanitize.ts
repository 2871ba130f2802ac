// SANITIZE (SBC-4 5.30): OVERWRITE, BLOCK ERASE, EXIT FAILURE MODE. While a
// sanitize runs, medium-access commands get NOT READY / SANITIZE IN PROGRESS
// with its progress; when one fails, they get MEDIUM ERROR / SANITIZE COMMAND
// FAILED until a sanitize succeeds or EXIT FAILURE MODE.

import type { ScsiCmd } from '../core/command';
import type { LogicalUnit } from '../core/logical-unit';
import {
  Asc, ScsiError, SenseKey, invalidCdbField, invalidParamField, mediumNotPresent, paramListLengthError,
} from '../core/sense';
import { sglFlatten, sglIsZero } from '../core/sgl';
import { log } from '../core/log';
import { chunkDone } from './sbc-rw';

export const SanitizeAction = { OVERWRITE: 0x01, BLOCK_ERASE: 0x02, EXIT_FAILURE_MODE: 0x1f } as const;

const IMMED = 0x80;
const OVERWRITE_HEADER = 4;
/** Bytes written per backstore call while overwriting: progress moves, other LUNs' I/O interleaves. */
const OVERWRITE_CHUNK = 1 << 20;

interface SanitizeState {
  /** Bytes done and to do, for the progress indication. */
  done: number;
  total: number;
  failed: boolean;
}

const states = new WeakMap<LogicalUnit, SanitizeState>();

function inProgress(s: SanitizeState): ScsiError {
  const progress = s.total === 0 ? 0 : Math.min(0xffff, Math.floor((s.done / s.total) * 0x10000));
  return new ScsiError(SenseKey.NOT_READY, Asc.LUN_NOT_READY_SANITIZE_IN_PROGRESS, { progress });
}

const failedMode = (): ScsiError => new ScsiError(SenseKey.MEDIUM_ERROR, Asc.SANITIZE_COMMAND_FAILED);

/** Only what the backstore can carry out is served; the rest is an invalid service action. */
export function decodeSanitize(cmd: ScsiCmd): number {
  // Not F.MEDIUM (that would lock a failed unit out of its way back), so the medium is checked here.
  if (cmd.lu.medium !== undefined && !cmd.lu.medium.present) throw mediumNotPresent();
  const s = states.get(cmd.lu);
  if (s !== undefined && !s.failed) throw inProgress(s);
  const caps = cmd.lu.backstore.caps;
  const len = cmd.cdb.readUInt16BE(7);
  switch (cmd.cdb[1] & 0x1f) {
    case SanitizeAction.OVERWRITE:
      if (!caps.sanitizeOverwrite) throw invalidCdbField(1, 4);
      // A header and a pattern of 1..block length bytes.
      if (len <= OVERWRITE_HEADER || len > cmd.lu.blockSize + OVERWRITE_HEADER) throw invalidCdbField(7);
      return len;
    case SanitizeAction.BLOCK_ERASE:
      if (!caps.sanitizeBlockErase) throw invalidCdbField(1, 4);
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

async function overwrite(lu: LogicalUnit, pattern: Buffer, s: SanitizeState): Promise<void> {
  const store = lu.backstore;
  if (sglIsZero([pattern], 0, pattern.length)) {
    await store.writeZeroes(0, s.total);
  } else {
    const bs = lu.blockSize;
    const chunk = Buffer.allocUnsafe(Math.min(s.total, OVERWRITE_CHUNK - (OVERWRITE_CHUNK % bs)));
    // The pattern repeats from the start of every logical block.
    for (let p = 0; p < chunk.length; p += bs) chunk.subarray(p, p + bs).fill(pattern);
    while (s.done < s.total) {
      const n = Math.min(chunk.length, s.total - s.done);
      await chunkDone(store.write(s.done, n, [chunk], false));
      s.done += n;
    }
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
  lu.notReady = () => inProgress(s);
  const held = await lu.rangeLock.acquire(0, Math.max(1, lu.blocks), true);
  try {
    if (action === SanitizeAction.OVERWRITE) await overwrite(lu, pattern!, s);
    else await blockErase(lu, s);
    states.delete(lu);
    lu.notReady = undefined;
  } catch (e) {
    s.failed = true;
    lu.notReady = failedMode;
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
  const s: SanitizeState = { done: 0, total: lu.blocks * lu.blockSize, failed: false };
  states.set(lu, s);
  const job = run(lu, action, pattern, s);
  if ((cmd.cdb[1] & IMMED) === 0) return job;
  job.catch((e) => log.warn('SANITIZE with IMMED failed', e));
}
