// Logical block provisioning commands (SBC-4 4.7): WRITE SAME (10)/(16)
// with and without UNMAP, UNMAP, GET LBA STATUS. What is served and the
// limits come from provisioning.ts, the same place VPD B0/B2 read them.

import type { ScsiCmd } from '../core/command';
import {
  invalidCdbField, invalidParamField, lbaOutOfRange, paramListLengthError,
} from '../core/sense';
import { sglFlatten, sglIsZero } from '../core/sgl';
import { provisioning } from './provisioning';
import { checkRange, chunkDone, exactDataOut } from './sbc-rw';

const ANCHOR = 0x10;
const UNMAP = 0x08;
/** WRITE SAME(16) only: no data-out, the block is zeros. */
const NDOB = 0x01;
/** Bytes of pattern written per backstore call by WRITE SAME. */
const WRITE_SAME_CHUNK = 1 << 20;

/**
 * WRITE SAME: one block of data-out (none with NDOB). We report WSNZ=1 in
 * VPD B0, as LIO does, so NUMBER OF LOGICAL BLOCKS 0 is refused rather than
 * meaning "to the end of the medium". Limited by max_write_same_len, not by
 * the transfer limit: only one block moves.
 */
export function decodeWriteSame(cmd: ScsiCmd): number {
  const flags = cmd.cdb[1];
  const blocksByte = cmd.def.blocksField![0];
  // We have no anchored state (ANC_SUP 0).
  if (flags & ANCHOR) throw invalidCdbField(1, 4);
  // UNMAP only where LBPWS/LBPWS10 say it is served (as LIO): zeroing instead would succeed where an initiator
  // that checks the VPD page (libiscsi's UnmapVPD) expects a refusal.
  if ((flags & UNMAP) !== 0 && !provisioning(cmd.lu).writeSameUnmap) throw invalidCdbField(1, 3);
  if (cmd.blocks === 0) throw invalidCdbField(blocksByte);
  if (cmd.blocks > cmd.lu.so.attributes.max_write_same_len) throw invalidCdbField(blocksByte);
  checkRange(cmd);
  return exactDataOut(cmd, cmd.cdb[0] === 0x93 && (flags & NDOB) !== 0 ? 0 : cmd.lu.blockSize);
}

/**
 * A zero block (or NDOB) with UNMAP on a thin unit deallocates (deallocated
 * blocks read zeros: LBPRZ); a zero block otherwise is the backstore's
 * cheapest zeroing; anything else is written out, block by block.
 */
export async function writeSame(cmd: ScsiCmd): Promise<void> {
  const lu = cmd.lu;
  const bs = lu.blockSize;
  const offset = cmd.byteOffset;
  const length = cmd.blocks * bs;
  const block = cmd.dataLength === 0 ? undefined : sglFlatten(cmd.out(), 0, bs);
  if (block === undefined || sglIsZero([block], 0, bs)) {
    if ((cmd.cdb[1] & UNMAP) !== 0) return lu.backstore.unmap(offset, length);
    await lu.backstore.writeZeroes(offset, length);
    if (!lu.mode.wce) await lu.backstore.flush();
    return;
  }
  if (lu.backstore.writeSame !== undefined) return lu.backstore.writeSame(offset, length, block, !lu.mode.wce);
  const chunk = Buffer.allocUnsafe(Math.min(length, Math.max(bs, WRITE_SAME_CHUNK - (WRITE_SAME_CHUNK % bs))));
  for (let p = 0; p < chunk.length; p += bs) block.copy(chunk, p);
  const fua = !lu.mode.wce;
  for (let done = 0; done < length; done += chunk.length) {
    const n = Math.min(chunk.length, length - done);
    await chunkDone(lu.backstore.write(offset + done, n, [chunk], fua));
  }
}

export function decodeUnmap(cmd: ScsiCmd): number {
  if (cmd.cdb[1] & 0x01) throw invalidCdbField(1, 0); // ANCHOR
  return cmd.cdb.readUInt16BE(7);
}

const UNMAP_HEADER = 8;
const UNMAP_DESCRIPTOR = 16;

/**
 * UNMAP parameter list (SBC-4 5.32.2): an 8-byte header, then 16-byte block
 * descriptors. Every descriptor is checked before anything is deallocated,
 * so a refused command changes nothing.
 */
export async function unmap(cmd: ScsiCmd): Promise<void> {
  const len = cmd.dataLength;
  if (len === 0) return;
  if (len < UNMAP_HEADER) throw paramListLengthError();
  const list = sglFlatten(cmd.out(), 0, len);
  const bdl = list.readUInt16BE(2);
  if (list.readUInt16BE(0) + 2 > len || bdl + UNMAP_HEADER > len) throw paramListLengthError();
  // A trailing partial descriptor is ignored (SBC-4 5.32.2).
  const count = Math.floor(bdl / UNMAP_DESCRIPTOR);
  const p = provisioning(cmd.lu);
  if (count > p.maxUnmapDescriptors) throw invalidParamField(2);
  const ranges: [number, number][] = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    const at = UNMAP_HEADER + i * UNMAP_DESCRIPTOR;
    const lba = Number(list.readBigUInt64BE(at));
    const n = list.readUInt32BE(at + 8);
    total += n;
    if (total > p.maxUnmapBlocks) throw invalidParamField(at + 8);
    if (lba + n > cmd.lu.blocks) throw lbaOutOfRange();
    if (n !== 0) ranges.push([lba, n]);
  }
  if (ranges.length === 0) return;
  // Held shared like any write, so a COMPARE AND WRITE in the span stays atomic. One
  // span for all descriptors: taking several ranges one by one could deadlock against a waiter.
  const lo = Math.min(...ranges.map(([lba]) => lba));
  const hi = Math.max(...ranges.map(([lba, n]) => lba + n));
  const lock = cmd.lu.rangeLock;
  const held = await lock.acquire(lo, hi - lo, false);
  try {
    const bs = cmd.lu.blockSize;
    for (const [lba, n] of ranges) await cmd.lu.backstore.unmap(lba * bs, n * bs);
  } finally {
    lock.release(held);
  }
}

const LBA_STATUS_HEADER = 8;
const LBA_STATUS_DESCRIPTOR = 16;
/** A descriptor's NUMBER OF LOGICAL BLOCKS field is 32 bits. */
const MAX_EXTENT_BLOCKS = 0xffffffff;
/** Most descriptors one GET LBA STATUS returns. */
const MAX_LBA_STATUS_DESCRIPTORS = 1024;
const PROVISIONING_MAPPED = 0;
const PROVISIONING_DEALLOCATED = 1;

export function decodeGetLbaStatus(cmd: ScsiCmd): number {
  // The starting LBA must name a block (cmd.blocks is 0, so LBA_CHECK would let the end through).
  if (cmd.lba >= cmd.lu.blocks) throw lbaOutOfRange();
  return cmd.cdb.readUInt32BE(10);
}

/**
 * GET LBA STATUS (SBC-4 5.8): extents from the starting LBA, as many as the
 * allocation length holds (at least one, so a short buffer still gets the
 * header's PARAMETER DATA LENGTH right for the first).
 */
export async function getLbaStatus(cmd: ScsiCmd): Promise<void> {
  const lu = cmd.lu;
  const bs = lu.blockSize;
  // SBC-4 lets us return fewer descriptors than fit; a bound keeps a fragmented unit's answer small.
  const fit = Math.floor((cmd.dataLength - LBA_STATUS_HEADER) / LBA_STATUS_DESCRIPTOR);
  const room = Math.min(MAX_LBA_STATUS_DESCRIPTORS, Math.max(1, fit));
  // A fully provisioned unit (LBPME 0) has every block mapped, whatever the store keeps sparse.
  const thin = provisioning(lu).thin;
  const descs: Buffer[] = [];
  let lba = cmd.lba;
  while (lba < lu.blocks && descs.length < room) {
    const max = Math.min(lu.blocks - lba, MAX_EXTENT_BLOCKS) * bs;
    const ext = thin ? await lu.backstore.lbaStatus(lba * bs, max) : { deallocated: false, length: max };
    const n = Math.max(1, Math.min(Math.floor(ext.length / bs), MAX_EXTENT_BLOCKS));
    const d = Buffer.alloc(LBA_STATUS_DESCRIPTOR);
    d.writeBigUInt64BE(BigInt(lba), 0);
    d.writeUInt32BE(n, 8);
    d[12] = ext.deallocated ? PROVISIONING_DEALLOCATED : PROVISIONING_MAPPED;
    descs.push(d);
    lba += n;
  }
  const header = Buffer.alloc(LBA_STATUS_HEADER);
  header.writeUInt32BE(LBA_STATUS_HEADER - 4 + descs.length * LBA_STATUS_DESCRIPTOR, 0);
  cmd.respond(Buffer.concat([header, ...descs]));
}
