// What standard INQUIRY data (inquiry.ts) and the vital product data pages
// (vpd.ts) both report of a unit and its port: the peripheral byte of a LUN
// without a unit, the product, the transport protocol, and the features its
// table serves; and how an ASCII field is written.

import type { LogicalUnit, TargetPort } from '../core/logical-unit';

/** Peripheral qualifier 011b, device type 1Fh: no logical unit behind this LUN (SPC-5 6.7.2). */
export const PERIPHERAL_NO_LUN = 0x7f;

/** Version descriptor of iSCSI (SPC-5 table 146), "no version claimed". */
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
  // LIO cuts the alias to 15 characters (snprintf into its 16-byte model field).
  if (so.attributes.emulate_model_alias) return so.compat === 'lio' ? so.name.slice(0, 15) : so.name;
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
