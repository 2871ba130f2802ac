// Vital product data pages (SPC-5 7.7, SBC-4 6.6), as INQUIRY with EVPD=1 returns them.

import type { ScsiCmd } from '../core/command';
import type { LogicalUnit, TargetPort } from '../core/logical-unit';
import { PERIPHERAL_NO_LUN, productId, putAscii, servesCompareAndWrite, transportOf } from './inquiry-fields';
import { provisioning } from './provisioning';
import { thresholdExponent } from './lbp-thresholds';
import { servesBlockErase } from './sbc-sanitize';
import { targetPortGroupId } from './alua';
import { ATOMIC_ALIGNMENT, ATOMIC_GRANULARITY, MAX_ATOMIC_BLOCKS, MAX_COMPARE_AND_WRITE_BLOCKS, WSNZ } from './sbc';

const WRITE_ATOMIC_16 = 0x9c;

/** Builds a whole page, header included (`page` helps). */
export type PageBuilder = (lu: LogicalUnit, tpg: TargetPort) => Buffer;

/** A page with its 4-byte header filled in; `body` bytes follow it. */
export function page(lu: LogicalUnit | undefined, code: number, body: Buffer | number[]): Buffer {
  const b = Buffer.alloc(4 + body.length);
  b[0] = lu === undefined ? PERIPHERAL_NO_LUN : lu.deviceType;
  b[1] = code;
  b.writeUInt16BE(body.length, 2);
  b.set(body, 4);
  return b;
}

/** A designation descriptor (SPC-5 7.7.6.1). */
function designator(codeSet: number, piv: boolean, association: number, type: number, protocolId: number, id: Buffer): Buffer {
  const b = Buffer.alloc(4 + id.length);
  b[0] = (piv ? protocolId << 4 : 0) | codeSet;
  b[1] = (piv ? 0x80 : 0) | (association << 4) | type;
  b[3] = id.length;
  id.copy(b, 4);
  return b;
}

/** A SCSI name string: UTF-8, NUL terminated, padded with NULs to a multiple of four, at most 256 bytes. */
function scsiName(s: string): Buffer {
  const raw = Buffer.from(s, 'utf8');
  const len = Math.min(256, (raw.length + 1 + 3) & ~3);
  const b = Buffer.alloc(len);
  raw.copy(b, 0, 0, Math.min(raw.length, len - 1));
  return b;
}

const CodeSet = { BINARY: 1, ASCII: 2, UTF8: 3 } as const;
const Assoc = { LU: 0, PORT: 1, DEVICE: 2 } as const;
const Designator = { T10: 1, NAA: 3, RTPI: 4, TPG: 5, LU_GROUP: 6, SCSI_NAME: 8 } as const;

function unitSerial(lu: LogicalUnit): Buffer {
  // NUL terminated, as LIO returns it.
  return page(lu, 0x80, Buffer.from(`${lu.so.serial}\0`, 'ascii'));
}

function deviceIdentification(lu: LogicalUnit, tpg: TargetPort): Buffer {
  const proto = transportOf(tpg).protocolId;
  const so = lu.so;
  const t10 = Buffer.from(`        ${productId(lu)}:${so.serial}\0`, 'ascii');
  putAscii(t10, 0, 8, so.vendor);
  const rtpi = Buffer.alloc(4);
  rtpi.writeUInt16BE(tpg.relativePortId, 2);
  const tpgId = Buffer.alloc(4);
  tpgId.writeUInt16BE(targetPortGroupId(lu), 2);
  const common = [
    designator(CodeSet.BINARY, false, Assoc.LU, Designator.NAA, proto, so.naa),
    designator(CodeSet.ASCII, false, Assoc.LU, Designator.T10, proto, t10),
    designator(CodeSet.BINARY, true, Assoc.PORT, Designator.RTPI, proto, rtpi),
    designator(CodeSet.BINARY, true, Assoc.PORT, Designator.TPG, proto, tpgId),
  ];
  if (so.compat === 'lio') {
    // LIO's list (target_core_spc.c, spc_emulate_evpd_83): then the LU group (default_lu_gp, id 0), the port's
    // and the target device's SCSI name strings.
    return page(lu, 0x83, Buffer.concat([
      ...common,
      designator(CodeSet.BINARY, false, Assoc.LU, Designator.LU_GROUP, proto, Buffer.alloc(4)),
      designator(CodeSet.UTF8, true, Assoc.PORT, Designator.SCSI_NAME, proto, scsiName(tpg.portName)),
      designator(CodeSet.UTF8, true, Assoc.DEVICE, Designator.SCSI_NAME, proto, scsiName(tpg.targetName)),
    ]));
  }
  return page(lu, 0x83, Buffer.concat([
    ...common,
    designator(CodeSet.UTF8, true, Assoc.PORT, Designator.SCSI_NAME, proto, scsiName(tpg.portName)),
    designator(CodeSet.UTF8, false, Assoc.LU, Designator.SCSI_NAME, proto, scsiName(`naa.${so.naa.toString('hex').toUpperCase()}`)),
  ]));
}

function extendedInquiry(lu: LogicalUnit): Buffer {
  const body = Buffer.alloc(0x3c);
  body[1] = 0x07; // HEADSUP, ORDSUP, SIMPSUP
  if (lu.mode.wce) body[2] = 0x01; // V_SUP: the volatile cache can be synchronised
  return page(lu, 0x86, body);
}

function blockLimits(lu: LogicalUnit): Buffer {
  const a = lu.so.attributes;
  const p = provisioning(lu);
  const body = Buffer.alloc(0x3c);
  if (WSNZ) body[0] = 0x01; // WRITE SAME with zero blocks is refused
  if (a.emulate_caw && servesCompareAndWrite(lu)) body[1] = MAX_COMPARE_AND_WRITE_BLOCKS;
  body.writeUInt16BE(Math.max(1, lu.backstore.physicalBlockSize / lu.blockSize), 2);
  body.writeUInt32BE(a.hw_max_sectors, 4);
  body.writeUInt32BE(Math.min(a.optimal_sectors, a.hw_max_sectors), 8);
  body.writeUInt32BE(p.maxUnmapBlocks, 16);
  body.writeUInt32BE(p.maxUnmapDescriptors, 20);
  if (p.thin) {
    body.writeUInt32BE(p.granularity, 24);
    body.writeUInt32BE(p.granularityAlignment & 0x7fffffff, 28);
    if (p.granularityAlignment !== 0) body[28] |= 0x80; // UGAVALID
  }
  body.writeBigUInt64BE(BigInt(a.max_write_same_len), 32);
  if (lu.table.find(WRITE_ATOMIC_16) !== undefined) {
    body.writeUInt32BE(Math.min(MAX_ATOMIC_BLOCKS, a.hw_max_sectors), 40);
    body.writeUInt32BE(ATOMIC_ALIGNMENT, 44);
    body.writeUInt32BE(ATOMIC_GRANULARITY, 48);
    // Bytes 52..59: no atomic boundaries (WRITE ATOMIC's ATOMIC BOUNDARY field is not served).
  }
  return page(lu, 0xb0, body);
}

function blockCharacteristics(lu: LogicalUnit): Buffer {
  const body = Buffer.alloc(0x3c);
  // MEDIUM ROTATION RATE 1: non-rotating medium.
  if (lu.so.attributes.is_nonrot || lu.backstore.caps.nonRotational) body.writeUInt16BE(1, 0);
  // WABEREQ 01b: after SANITIZE BLOCK ERASE, reads succeed (our stores deallocate, so they read zeros).
  if (servesBlockErase(lu)) body[3] |= 0x40;
  return page(lu, 0xb1, body);
}

function logicalBlockProvisioning(lu: LogicalUnit): Buffer {
  const p = provisioning(lu);
  const body = Buffer.alloc(4);
  body[0] = thresholdExponent(lu); // 0: no thresholds (a store that cannot tell its space)
  if (p.unmap) body[1] |= 0x80; // LBPU
  if (p.writeSameUnmap) body[1] |= 0x60; // LBPWS, LBPWS10
  if (p.readsZeros) body[1] |= 0x04; // LBPRZ 001b
  body[2] = p.thin ? 0x02 : 0x00; // PROVISIONING TYPE: thin or full
  return page(lu, 0xb2, body);
}

const PAGES = new Map<number, PageBuilder>([
  [0x80, unitSerial],
  [0x83, deviceIdentification],
  [0x86, extendedInquiry],
  [0xb0, blockLimits],
  [0xb1, blockCharacteristics],
  [0xb2, logicalBlockProvisioning],
]);

/**
 * Adds a page another module owns (e.g. third-party copy, 8Fh); page 00h
 * lists it from then on, in ascending order as SPC-5 7.7.14 wants.
 */
export function addVpdPage(code: number, build: PageBuilder): void {
  if (code === 0x00 || PAGES.has(code)) throw new Error(`VPD page ${code.toString(16)} declared twice`);
  const all = [...PAGES, [code, build] as const].sort((x, y) => x[0] - y[0]);
  PAGES.clear();
  for (const [c, b] of all) PAGES.set(c, b);
}

/** The VPD page the INQUIRY asks for, or undefined when it does not exist here. */
export function vpdPage(cmd: ScsiCmd, code: number): Buffer | undefined {
  const lu: LogicalUnit | undefined = cmd.lu;
  // Beyond identification, the pages are a disk's (block limits, third-party copy...): other device types have none.
  const served = (c: number) => lu !== undefined && (lu.deviceType === 0x00 || c === 0x80 || c === 0x83 || c === 0x86);
  if (code === 0x00) return page(lu, 0x00, lu === undefined ? [0x00] : [0x00, ...[...PAGES.keys()].filter(served)]);
  if (lu === undefined || !served(code)) return undefined;
  return PAGES.get(code)?.(lu, cmd.session.tpg);
}
