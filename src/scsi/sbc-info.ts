// SBC-4 commands about the medium rather than its data: READ CAPACITY (10)
// and (16), SYNCHRONIZE CACHE, PRE-FETCH, READ DEFECT DATA.

import type { ScsiCmd } from '../core/command';
import { Asc, ScsiError, SenseKey, invalidCdbField } from '../core/sense';
import { log } from '../core/log';
import { provisioning } from './provisioning';

const IMMED = 0x02;

/** READ CAPACITY(10) parameter data is always 8 bytes; it has no allocation length. */
export function decodeReadCapacity10(cmd: ScsiCmd): number {
  // SBC-3: with PMI zero the LOGICAL BLOCK ADDRESS field must be zero (both obsolete in SBC-4).
  if ((cmd.cdb[8] & 1) === 0 && cmd.cdb.readUInt32BE(2) !== 0) throw invalidCdbField(2);
  return 8;
}

/**
 * READ CAPACITY(10). Past 2^32 - 1 blocks the field says FFFFFFFFh and the
 * initiator must use READ CAPACITY(16). With PMI set we report the same last
 * LBA: no block here is slower to reach than another.
 */
export function readCapacity10(cmd: ScsiCmd): void {
  const b = Buffer.alloc(8);
  const last = cmd.lu.blocks - 1;
  b.writeUInt32BE(last > 0xffffffff ? 0xffffffff : last, 0);
  b.writeUInt32BE(cmd.lu.blockSize, 4);
  cmd.respond(b);
}

export function decodeReadCapacity16(cmd: ScsiCmd): number {
  if ((cmd.cdb[14] & 1) === 0 && cmd.cdb.readBigUInt64BE(2) !== 0n) throw invalidCdbField(2);
  return cmd.cdb.readUInt32BE(10);
}

/** READ CAPACITY(16) parameter data (SBC-4 5.21.2). */
export function readCapacity16(cmd: ScsiCmd): void {
  const lu = cmd.lu;
  const b = Buffer.alloc(32);
  b.writeBigUInt64BE(BigInt(lu.blocks - 1), 0);
  b.writeUInt32BE(lu.blockSize, 8);
  // RC BASIS 01b: the returned LBA is the last block of the logical unit. No protection information.
  b[12] = 0x10;
  const perPhysical = Math.max(1, Math.floor(lu.backstore.physicalBlockSize / lu.blockSize));
  b[13] = 31 - Math.clz32(perPhysical);
  const p = provisioning(lu);
  // LOWEST ALIGNED LOGICAL BLOCK ADDRESS stays 0: LBA 0 starts a physical block.
  b[14] = (p.thin ? 0x80 : 0) | (p.thin && p.readsZeros ? 0x40 : 0);
  cmd.respond(b);
}

/**
 * SYNCHRONIZE CACHE (10)/(16). The whole store is flushed whatever the range
 * (backstores flush per descriptor). With IMMED the status goes back once the
 * CDB is checked and the flush continues; a failure then is only logged.
 */
export function synchronizeCache(cmd: ScsiCmd): void | Promise<void> {
  const r = cmd.lu.backstore.flush();
  if ((cmd.cdb[1] & IMMED) === 0 || r === undefined) return r;
  r.catch((e) => log.warn('SYNCHRONIZE CACHE with IMMED: flush failed', e));
}

/**
 * PRE-FETCH (10)/(16). We never pin blocks in a cache we control (RAM has
 * none; files and devices get a readahead hint), so SBC-4 5.9's GOOD applies,
 * never CONDITION MET. A PRE-FETCH LENGTH of 0 means to the end of the medium.
 */
export function preFetch(cmd: ScsiCmd): void | Promise<void> {
  const bs = cmd.lu.backstore;
  if (bs.prefetch === undefined) return;
  const blocks = cmd.blocks === 0 ? cmd.lu.blocks - cmd.lba : cmd.blocks;
  const r = bs.prefetch(cmd.byteOffset, blocks * cmd.lu.blockSize);
  if ((cmd.cdb[1] & IMMED) === 0 || r === undefined) return r;
  r.catch(() => undefined);
}

// READ DEFECT DATA (SBC-4 5.12, 5.13). There are no defects; the lists are empty.
const REQ_PLIST = 0x10;
const REQ_GLIST = 0x08;
/** Defect list formats SBC-4 defines for addresses: short block, long block, bytes from index, physical sector. */
const DEFECT_FORMATS = new Set([0, 3, 4, 5]);

function defectFlags(b: number): number {
  const format = b & 7;
  if (!DEFECT_FORMATS.has(format)) throw new ScsiError(SenseKey.RECOVERED_ERROR, Asc.DEFECT_LIST_NOT_FOUND);
  // PLISTV/GLISTV: the (empty) lists asked for are the ones returned.
  return (b & (REQ_PLIST | REQ_GLIST)) | format;
}

export function readDefectData10(cmd: ScsiCmd): void {
  const b = Buffer.alloc(4);
  b[1] = defectFlags(cmd.cdb[2]);
  cmd.respond(b);
}

export function readDefectData12(cmd: ScsiCmd): void {
  const b = Buffer.alloc(8);
  b[1] = defectFlags(cmd.cdb[1]);
  cmd.respond(b);
}
