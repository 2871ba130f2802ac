// SBC-4 data transfer commands: READ and WRITE (6/10/12/16), VERIFY and
// WRITE AND VERIFY, and the read-modify-write family that runs under an
// exclusive range lock (COMPARE AND WRITE, ORWRITE, WRITE ATOMIC).
// Plain reads and writes hand the command's own buffers to the backstore.

import type { ScsiCmd } from '../core/command';
import {
  Asc, ScsiError, SenseKey, invalidCdbField, isMediumFailure, lbaOutOfRange, mediumError, miscompare,
} from '../core/sense';
import { sglCompare, sglFlatten, sglSlice } from '../core/sgl';
import type { MaybePromise } from '../core/types';

/** Most blocks COMPARE AND WRITE takes (VPD B0 MAXIMUM COMPARE AND WRITE LENGTH), as LIO. */
export const MAX_COMPARE_AND_WRITE_BLOCKS = 1;
/**
 * Most blocks WRITE ATOMIC(16) takes (VPD B0 MAXIMUM ATOMIC TRANSFER LENGTH).
 * The write holds its range exclusively against every other write; 256 is
 * what initiators' conformance tests expect to be able to write at once.
 */
export const MAX_ATOMIC_BLOCKS = 256;
/** VPD B0 ATOMIC ALIGNMENT and ATOMIC TRANSFER LENGTH GRANULARITY: no requirement. */
export const ATOMIC_ALIGNMENT = 0;
export const ATOMIC_GRANULARITY = 0;

/** Bytes verified per backstore read when nothing is compared (VERIFY BYTCHK 0). */
const VERIFY_CHUNK = 1 << 20;

const DPO = 0x10;
const FUA = 0x08;

/**
 * DPO and FUA are served when emulate_fua_write is on; MODE SENSE's DPOFUA
 * bit says the same (SBC-4 6.5.1), so initiators never send what we refuse.
 */
export function dpoFuaSupported(cmd: Pick<ScsiCmd, 'lu'>): boolean {
  return cmd.lu.so.attributes.emulate_fua_write;
}

function checkDpoFua(cmd: ScsiCmd): void {
  const b = cmd.cdb[1] & (DPO | FUA);
  if (b !== 0 && !dpoFuaSupported(cmd)) throw invalidCdbField(1, b & DPO ? 4 : 3);
}

/** The write goes through to stable storage: FUA asked, or the write cache is off (MODE page 08h WCE=0). */
function writeThrough(cmd: ScsiCmd): boolean {
  return (cmd.cdb[1] & FUA) !== 0 || !cmd.lu.mode.wce;
}

/** Checks LBA + blocks against capacity (for commands the engine's LBA_CHECK cannot cover). */
export function checkRange(cmd: ScsiCmd): void {
  if (cmd.lba + cmd.blocks > cmd.lu.blocks) throw lbaOutOfRange();
}

/**
 * For commands whose data-out is not "the blocks" (WRITE SAME's one block,
 * COMPARE AND WRITE's two halves): a data-out of another size than the CDB
 * implies cannot be meant as it says, so it is refused rather than clipped (as LIO).
 */
export function exactDataOut(cmd: ScsiCmd, length: number): number {
  if (cmd.expectedLength !== undefined && cmd.expectedLength !== length) {
    throw new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_COMMAND_IU);
  }
  return length;
}

// ---- decoders: run before data-out is fetched; return the data length in bytes

/** READ(6)/WRITE(6): a transfer length of 0 means 256 blocks (SBC-4 5.15). */
export function decode6(cmd: ScsiCmd): number {
  if (cmd.blocks === 0) cmd.blocks = 256;
  return cmd.blocks * cmd.lu.blockSize;
}

export function decodeRw(cmd: ScsiCmd): number {
  checkDpoFua(cmd);
  return cmd.blocks * cmd.lu.blockSize;
}

function bytchk(cmd: ScsiCmd): number {
  return (cmd.cdb[1] >> 1) & 3;
}

/**
 * VERIFY: BYTCHK 0 compares nothing (no data-out), 1 the whole range, 3 one
 * block against every block of the range; 2 is reserved. Nothing moves with
 * BYTCHK 0, so the transfer limit does not apply to it.
 */
export function decodeVerify(cmd: ScsiCmd): number {
  checkDpoFua(cmd);
  const b = bytchk(cmd);
  if (b === 2) throw invalidCdbField(1, 2);
  checkRange(cmd);
  if (b === 0 || cmd.blocks === 0) return 0;
  if (b === 3) return cmd.lu.blockSize;
  if (cmd.blocks > cmd.lu.so.attributes.hw_max_sectors) throw invalidCdbField(cmd.def.blocksField![0]);
  return cmd.blocks * cmd.lu.blockSize;
}

/** WRITE AND VERIFY: BYTCHK 0 (verify the medium) and 1 (compare with the data); 1xb reserved. */
export function decodeWriteVerify(cmd: ScsiCmd): number {
  checkDpoFua(cmd);
  if (bytchk(cmd) > 1) throw invalidCdbField(1, 2);
  return cmd.blocks * cmd.lu.blockSize;
}

/** COMPARE AND WRITE: verify data then write data, each NUMBER OF LOGICAL BLOCKS long. */
export function decodeCompareAndWrite(cmd: ScsiCmd): number {
  checkDpoFua(cmd);
  if (cmd.blocks > MAX_COMPARE_AND_WRITE_BLOCKS) throw invalidCdbField(13);
  // A data-out that is not two halves of NUMBER OF LOGICAL BLOCKS: the field disagrees with what was sent.
  const length = 2 * cmd.blocks * cmd.lu.blockSize;
  if (cmd.expectedLength !== undefined && cmd.expectedLength !== length) throw invalidCdbField(13);
  return length;
}

export function decodeAtomic(cmd: ScsiCmd): number {
  checkDpoFua(cmd);
  // Out of range before too long: initiators probe the end of the medium with long atomic writes.
  checkRange(cmd);
  if (cmd.blocks > MAX_ATOMIC_BLOCKS) throw invalidCdbField(12);
  return cmd.blocks * cmd.lu.blockSize;
}

// ---- handlers

export function read(cmd: ScsiCmd): void | Promise<void> {
  if (cmd.blocks === 0) return;
  const bs = cmd.lu.backstore;
  if (cmd.lendDataIn && bs.lend !== undefined) {
    const lent = bs.lend(cmd.byteOffset, cmd.transferLength);
    return cmd.useLent(lent.sgl, lent.release);
  }
  return bs.read(cmd.byteOffset, cmd.transferLength, cmd.inBuffers());
}

export function write(cmd: ScsiCmd): void | Promise<void> {
  if (cmd.blocks === 0) return;
  return cmd.lu.backstore.write(cmd.byteOffset, cmd.blocks * cmd.lu.blockSize, cmd.out(), writeThrough(cmd));
}

/** READ(6) and WRITE(6) have no FUA bit: only the write cache setting decides. */
export function write6(cmd: ScsiCmd): void | Promise<void> {
  if (cmd.blocks === 0) return;
  return cmd.lu.backstore.write(cmd.byteOffset, cmd.blocks * cmd.lu.blockSize, cmd.out(), !cmd.lu.mode.wce);
}

// ---- locating a medium failure (the table entries' locate: only after the store failed with EIO)

/**
 * The first of `blocks` blocks whose I/O fails, by halving: io(first, n) redoes n blocks from block first of
 * the command. log2(blocks) I/Os. A range whose halves both pass (a fault that came and went) ends at its
 * last block; an error other than a medium failure (the device went away meanwhile) is thrown as it is.
 */
async function firstFailing(blocks: number, io: (first: number, n: number) => MaybePromise<void>): Promise<number> {
  let lo = 0;
  let n = blocks;
  while (n > 1) {
    const half = n >>> 1;
    try {
      await io(lo, half);
      lo += half;
      n -= half;
    } catch (e) {
      if (!isMediumFailure(e)) throw e;
      n = half;
    }
  }
  return lo;
}

/** READ: UNRECOVERED READ ERROR at the first block that does not read. */
export async function locateRead(cmd: ScsiCmd): Promise<unknown> {
  const bs = cmd.lu.blockSize;
  const scratch = Buffer.allocUnsafe(Math.ceil(cmd.blocks / 2) * bs);
  const at = await firstFailing(cmd.blocks, (b, n) =>
    cmd.lu.backstore.read(cmd.byteOffset + b * bs, n * bs, [scratch.subarray(0, n * bs)]));
  return mediumError(false, cmd.lba + at);
}

/** WRITE: WRITE ERROR at the first block that does not write (rewriting the command's own data is harmless). */
export async function locateWrite(cmd: ScsiCmd): Promise<unknown> {
  const bs = cmd.lu.blockSize;
  const out = cmd.out();
  const fua = cmd.def.opcode === 0x0a ? !cmd.lu.mode.wce : writeThrough(cmd);
  const at = await firstFailing(cmd.blocks, (b, n) =>
    cmd.lu.backstore.write(cmd.byteOffset + b * bs, n * bs, sglSlice(out, b * bs, n * bs), fua));
  return mediumError(true, cmd.lba + at);
}

/**
 * Waits for one chunk of a long command; when the store finished it
 * synchronously (RAM), yields a turn of the event loop instead, so a long
 * command does not hold every other command up.
 */
export function chunkDone(r: void | Promise<void>): Promise<void> {
  return r ?? new Promise((resolve) => setImmediate(resolve));
}

/** Reads length bytes at offset into a new buffer. */
async function readBuffer(cmd: ScsiCmd, offset: number, length: number): Promise<Buffer> {
  const b = Buffer.allocUnsafe(length);
  await cmd.lu.backstore.read(offset, length, [b]);
  return b;
}

/** Compares the medium at the command's range with ref (same length); throws MISCOMPARE at the first difference. */
async function compareMedium(cmd: ScsiCmd, ref: Buffer, base = 0): Promise<void> {
  const medium = await readBuffer(cmd, cmd.byteOffset + base, ref.length);
  const at = sglCompare([medium], 0, ref);
  if (at >= 0) throw miscompare(base + at);
}

export async function verify(cmd: ScsiCmd): Promise<void> {
  if (cmd.blocks === 0) return;
  const bs = cmd.lu.blockSize;
  const length = cmd.blocks * bs;
  const mode = bytchk(cmd);
  if (mode === 1) return compareMedium(cmd, sglFlatten(cmd.out(), 0, length));
  // BYTCHK 0 reads the range to prove it readable; BYTCHK 3 compares each block with the one sent.
  const one = mode === 3 ? sglFlatten(cmd.out(), 0, bs) : undefined;
  const chunk = Math.min(length, Math.max(bs, VERIFY_CHUNK - (VERIFY_CHUNK % bs)));
  const buf = Buffer.allocUnsafe(chunk);
  for (let done = 0; done < length; done += chunk) {
    const n = Math.min(chunk, length - done);
    await chunkDone(cmd.lu.backstore.read(cmd.byteOffset + done, n, [buf]));
    if (one === undefined) continue;
    for (let p = 0; p < n; p += bs) {
      const at = sglCompare([buf], p, one);
      if (at >= 0) throw miscompare(done + p + at);
    }
  }
}

/** WRITE AND VERIFY: the data goes to the medium (write-through), then is read back and checked. */
export async function writeVerify(cmd: ScsiCmd): Promise<void> {
  if (cmd.blocks === 0) return;
  const length = cmd.blocks * cmd.lu.blockSize;
  await cmd.lu.backstore.write(cmd.byteOffset, length, cmd.out(), true);
  const back = await readBuffer(cmd, cmd.byteOffset, length);
  if (bytchk(cmd) === 1) {
    const at = sglCompare(cmd.out(), 0, back);
    if (at >= 0) throw miscompare(at);
  }
}

/**
 * COMPARE AND WRITE (SBC-4 5.3). The engine holds the range exclusively
 * (F.ATOMIC), so no other write lands between the compare and the write.
 */
export async function compareAndWrite(cmd: ScsiCmd): Promise<void> {
  if (cmd.blocks === 0) return;
  const n = cmd.blocks * cmd.lu.blockSize;
  const out = cmd.out();
  const store = cmd.lu.backstore;
  // A store that compares and writes atomically itself (shared storage) is the only place that can.
  if (store.compareAndWrite !== undefined) {
    const at = await store.compareAndWrite(cmd.byteOffset, sglFlatten(out, 0, n), sglFlatten(out, n, n), writeThrough(cmd));
    if (at >= 0) throw miscompare(at);
    return;
  }
  const medium = await readBuffer(cmd, cmd.byteOffset, n);
  const at = sglCompare(out, 0, medium);
  if (at >= 0) throw miscompare(at);
  await cmd.lu.backstore.write(cmd.byteOffset, n, sglSlice(out, n, n), writeThrough(cmd));
}

/** ORWRITE(16): each block becomes its old contents OR the data sent, under the exclusive range lock. */
export async function orWrite(cmd: ScsiCmd): Promise<void> {
  if (cmd.blocks === 0) return;
  const n = cmd.blocks * cmd.lu.blockSize;
  const medium = await readBuffer(cmd, cmd.byteOffset, n);
  let p = 0;
  for (const seg of sglSlice(cmd.out(), 0, n)) {
    for (let i = 0; i < seg.length; i++) medium[p + i] |= seg[i];
    p += seg.length;
  }
  await cmd.lu.backstore.write(cmd.byteOffset, n, [medium], writeThrough(cmd));
}

/** WRITE ATOMIC(16): one backstore write, under the exclusive range lock the engine took. */
export const writeAtomic = write;
