// SCSI TransportIDs (SPC-5 7.6.4): how persistent reservations name an
// initiator port in READ FULL STATUS, SPEC_I_PT and REGISTER AND MOVE.
// iSCSI names use protocol 5 (format 00b: name; 01b: name,i,0x<isid>);
// the loopback and vhost fabrics name their initiators "naa.<16 hex>",
// which we carry as SAS addresses (protocol 6), as LIO's tcm_loop does.

export const PROTOCOL_FC = 0x0;
export const PROTOCOL_ISCSI = 0x5;
export const PROTOCOL_SAS = 0x6;

/** An initiator port: its name, and the iSCSI ISID when it has one (12 hex digits). */
export interface PortName {
  name: string;
  isid?: string;
}

const NAA_NAME = /^naa\.([0-9a-f]{16})$/i;

/** Encodes the TransportID of an initiator port. */
export function encodeTransportId(p: PortName): Buffer {
  const naa = NAA_NAME.exec(p.name);
  if (naa) {
    const b = Buffer.alloc(24);
    b[0] = PROTOCOL_SAS;
    Buffer.from(naa[1], 'hex').copy(b, 4);
    return b;
  }
  const text = p.isid ? `${p.name},i,0x${p.isid}` : p.name;
  // NUL-terminated, padded to a multiple of 4, at least 20 bytes in all (SPC-5 7.6.4.6).
  const body = Math.max(16, (Buffer.byteLength(text) + 1 + 3) & ~3);
  const b = Buffer.alloc(4 + body);
  b[0] = ((p.isid ? 1 : 0) << 6) | PROTOCOL_ISCSI;
  b.writeUInt16BE(body, 2);
  b.write(text, 4, 'utf8');
  return b;
}

export type DecodedTransportId =
  | { ok: true; port: PortName; length: number }
  | { ok: false; length: number; byte: number };

/**
 * Decodes the TransportID at `off`. On error, `byte` is the offset in `buf`
 * of the field at fault (for the sense field pointer).
 */
export function decodeTransportId(buf: Buffer, off: number): DecodedTransportId {
  if (off + 24 > buf.length) return { ok: false, length: 0, byte: off };
  const proto = buf[off] & 0x0f;
  const format = buf[off] >> 6;
  if (proto === PROTOCOL_SAS && format === 0) {
    return { ok: true, port: { name: `naa.${buf.subarray(off + 4, off + 12).toString('hex')}` }, length: 24 };
  }
  if (proto !== PROTOCOL_ISCSI || format > 1) return { ok: false, length: 0, byte: off };
  const n = buf.readUInt16BE(off + 2);
  if (n < 4 || n % 4 !== 0 || off + 4 + n > buf.length) return { ok: false, length: 0, byte: off + 2 };
  let text = buf.subarray(off + 4, off + 4 + n).toString('utf8');
  const nul = text.indexOf('\0');
  if (nul < 0) return { ok: false, length: 0, byte: off + 4 };
  text = text.slice(0, nul);
  if (format === 0) return text ? { ok: true, port: { name: text }, length: 4 + n } : { ok: false, length: 0, byte: off + 4 };
  const m = /^(.+),i,0x([0-9a-f]{12})$/i.exec(text);
  if (!m) return { ok: false, length: 0, byte: off + 4 };
  return { ok: true, port: { name: m[1], isid: m[2].toLowerCase() }, length: 4 + n };
}
