// INQUIRY (SPC-5 6.7): standard data here, vital product data pages in vpd.ts.

import type { ScsiCmd } from '../core/command';
import type { LogicalUnit } from '../core/logical-unit';
import { PRODUCT_REVISION, VENDOR_ID } from '../core/logical-unit';
import { invalidCdbField } from '../core/sense';
import type { TargetPort } from '../core/session';
import { vpdPage } from './vpd';

/** Standard INQUIRY data length: 36 bytes plus the vendor area and eight version descriptors. */
export const STD_INQUIRY_LEN = 96;

/** Peripheral qualifier 011b, device type 1Fh: no logical unit behind this LUN (SPC-5 6.7.2). */
export const PERIPHERAL_NO_LUN = 0x7f;

// We claim SPC-4 (VERSION 6) and SBC-3, as LIO does, though we follow SPC-5
// and SBC-4 where they differ: libiscsi's conformance suite fails VERSION 7
// and wants an SBC-3 descriptor before it accepts a 3Ch-long Block Limits page.
const VERSION_SPC4 = 0x06;
/** Version descriptors (SPC-5 table 146), "no version claimed" variants. */
const VD_SAM5 = 0x00a0;
const VD_SPC4 = 0x0460;
const VD_SBC3 = 0x04c0;
const VD_ISCSI = 0x0960;

/** SPC-5 7.6.1 protocol identifiers. */
export const ProtocolId = { FCP: 0x0, SRP: 0x4, ISCSI: 0x5, SAS: 0x6 } as const;

/** How a target port's transport shows in INQUIRY and VPD 83h. */
export function transportOf(tpg: TargetPort): { protocolId: number; versionDescriptor: number | undefined } {
  if (tpg.fabric === 'iscsi') return { protocolId: ProtocolId.ISCSI, versionDescriptor: VD_ISCSI };
  // Loopback and vhost present themselves as SAS, as LIO's tcm_loop and vhost-scsi do.
  return { protocolId: ProtocolId.SAS, versionDescriptor: undefined };
}

// LIO names the product after the backstore type unless the model alias is asked for.
const PRODUCT_BY_PLUGIN: Record<string, string> = { rd_mcp: 'RAMDISK-MCP', fileio: 'FILEIO', block: 'IBLOCK' };

export function productId(lu: LogicalUnit): string {
  const so = lu.so;
  if (so.attributes.emulate_model_alias) return so.name;
  return PRODUCT_BY_PLUGIN[so.plugin] ?? so.plugin.toUpperCase();
}

// Attributes enable what a module serves; the bits promise nothing the table lacks.
const EXTENDED_COPY = 0x83;
const COMPARE_AND_WRITE = 0x89;

export function servesExtendedCopy(lu: LogicalUnit): boolean {
  return lu.table.find(EXTENDED_COPY) !== undefined || lu.table.find(EXTENDED_COPY, 0) !== undefined;
}

export function servesCompareAndWrite(lu: LogicalUnit): boolean {
  return lu.table.find(COMPARE_AND_WRITE) !== undefined;
}

/** Writes an ASCII field left-aligned and padded with spaces (SPC-5 4.3.1). */
export function putAscii(b: Buffer, offset: number, length: number, s: string): void {
  b.fill(0x20, offset, offset + length);
  b.write(s.slice(0, length), offset, 'ascii');
}

/** Standard INQUIRY data; lu undefined for a LUN the nexus has no mapping for. */
export function standardInquiry(lu: LogicalUnit | undefined, tpg: TargetPort): Buffer {
  const b = Buffer.alloc(STD_INQUIRY_LEN);
  const t = transportOf(tpg);
  b[2] = VERSION_SPC4;
  b[3] = 0x10 | 0x02; // HISUP, RESPONSE DATA FORMAT 2 (NORMACA 0: ACA is not supported)
  b[4] = STD_INQUIRY_LEN - 5;
  b[7] = 0x02; // CMDQUE
  putAscii(b, 8, 8, VENDOR_ID);
  putAscii(b, 32, 4, PRODUCT_REVISION);
  if (lu === undefined) {
    b[0] = PERIPHERAL_NO_LUN;
    putAscii(b, 16, 16, 'NO LUN');
  } else {
    const a = lu.so.attributes;
    b[0] = lu.deviceType;
    if (a.removable) b[1] = 0x80; // RMB
    b[5] = 0x10; // TPGS 01b: implicit ALUA only (REPORT TARGET PORT GROUPS)
    if (a.emulate_3pc && servesExtendedCopy(lu)) b[5] |= 0x08; // 3PC
    putAscii(b, 16, 16, productId(lu));
  }
  const vds = [VD_SAM5, VD_SPC4];
  if (lu !== undefined && lu.deviceType === 0x00) vds.push(VD_SBC3); // other device types claim no command set version
  if (t.versionDescriptor !== undefined) vds.push(t.versionDescriptor);
  vds.forEach((v, i) => b.writeUInt16BE(v, 58 + 2 * i));
  return b;
}

export function inquiry(cmd: ScsiCmd): void {
  const cdb = cmd.cdb;
  const lu: LogicalUnit | undefined = cmd.lu;
  if ((cdb[1] & 0x01) === 0) {
    if (cdb[2] !== 0) throw invalidCdbField(2); // a page code needs EVPD
    return cmd.respond(standardInquiry(lu, cmd.session.tpg));
  }
  const page = vpdPage(cmd, cdb[2]);
  if (page === undefined) throw invalidCdbField(2);
  cmd.respond(page);
}
