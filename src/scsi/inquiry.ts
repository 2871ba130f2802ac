// INQUIRY (SPC-5 6.7): standard data here, vital product data pages in vpd.ts,
// what both report of the unit and its port in inquiry-fields.ts.

import type { ScsiCmd } from '../core/command';
import { PRODUCT_REVISION, VENDOR_ID, type LogicalUnit, type TargetPort } from '../core/logical-unit';
import { invalidCdbField } from '../core/sense';
import { PERIPHERAL_NO_LUN, productId, putAscii, servesExtendedCopy, transportOf } from './inquiry-fields';
import { vpdPage } from './vpd';
import { tpgsOf } from './alua';

export {
  PERIPHERAL_NO_LUN, ProtocolId, productId, putAscii, servesCompareAndWrite, servesExtendedCopy, transportOf,
} from './inquiry-fields';

/** Standard INQUIRY data length: 36 bytes plus the vendor area and eight version descriptors. */
export const STD_INQUIRY_LEN = 96;

// We claim SPC-4 (VERSION 6) and SBC-3, as LIO does, though we follow SPC-5
// and SBC-4 where they differ: libiscsi's conformance suite fails VERSION 7
// and wants an SBC-3 descriptor before it accepts a 3Ch-long Block Limits page.
const VERSION_SPC4 = 0x06;
/** Version descriptors (SPC-5 table 146), "no version claimed" variants. */
const VD_SAM5 = 0x00a0;
const VD_SPC4 = 0x0460;
const VD_SBC3 = 0x04c0;

/** Standard INQUIRY data; lu undefined for a LUN the nexus has no mapping for. */
export function standardInquiry(lu: LogicalUnit | undefined, tpg: TargetPort): Buffer {
  const b = Buffer.alloc(STD_INQUIRY_LEN);
  const t = transportOf(tpg);
  b[2] = VERSION_SPC4;
  b[3] = 0x10 | 0x02; // HISUP, RESPONSE DATA FORMAT 2 (NORMACA 0: ACA is not supported)
  b[4] = STD_INQUIRY_LEN - 5;
  b[7] = 0x02; // CMDQUE
  putAscii(b, 8, 8, lu?.so.vendor ?? VENDOR_ID);
  putAscii(b, 32, 4, lu?.so.revision ?? PRODUCT_REVISION);
  if (lu === undefined) {
    b[0] = PERIPHERAL_NO_LUN;
    putAscii(b, 16, 16, 'NO LUN');
  } else {
    const a = lu.so.attributes;
    b[0] = lu.deviceType;
    if (a.removable) b[1] = 0x80; // RMB
    b[5] = tpgsOf(lu) << 4; // TPGS: 01b implicit ALUA only; 11b implicit and explicit (a gateway group)
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
