// A small raw-socket iSCSI initiator for tests that need exact PDUs: login
// with chosen keys, SCSI commands with immediate, unsolicited and solicited
// data, NOP, TMF, text, logout, and raw bytes for hostile input.

import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { crc32c } from '../../native';

export interface Pdu {
  bhs: Buffer;
  data: Buffer;
  opcode: number;
  flags: number;
  itt: number;
}

export class RawInitiator {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  readonly pdus: Pdu[] = [];
  closed = false;
  cmdSN = 1;
  expStatSN = 0;
  itt = 1;
  headerDigest = false;
  dataDigest = false;
  tsih = 0;
  /** Connection ID (MC/S: each connection of a session has its own). */
  cid = 0;
  isid = Buffer.from([0x80, 0x12, 0x34, 0x56, 0x78, 0x9a]);

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.parse();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static async connect(port: number, host = '127.0.0.1'): Promise<RawInitiator> {
    const s = connect({ port, host });
    await once(s, 'connect');
    return new RawInitiator(s);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private parse(): void {
    for (;;) {
      if (this.buf.length < 48) break;
      const hd = this.headerDigest ? 4 : 0;
      const ahs = this.buf[4] * 4;
      const dlen = this.buf.readUIntBE(5, 3);
      const dd = this.dataDigest && dlen > 0 ? 4 : 0;
      const total = 48 + ahs + hd + dlen + ((4 - (dlen & 3)) & 3) + dd;
      if (this.buf.length < total) break;
      const bhs = this.buf.subarray(0, 48);
      if (hd && crc32c(this.buf.subarray(0, 48 + ahs)) !== this.buf.readUInt32LE(48 + ahs)) throw new Error('bad header digest from target');
      if (dd) {
        const end = 48 + ahs + hd + dlen + ((4 - (dlen & 3)) & 3);
        if (crc32c(this.buf.subarray(48 + ahs + hd, end)) !== this.buf.readUInt32LE(end)) throw new Error('bad data digest from target');
      }
      const data = Buffer.from(this.buf.subarray(48 + ahs + hd, 48 + ahs + hd + dlen));
      this.pdus.push({ bhs: Buffer.from(bhs), data, opcode: bhs[0] & 0x3f, flags: bhs[1], itt: bhs.readUInt32BE(16) });
      this.buf = this.buf.subarray(total);
    }
    this.wake();
  }

  /** Waits for the next PDU matching pred (removing it from the queue). */
  async next(pred: (p: Pdu) => boolean = () => true, ms = 5000): Promise<Pdu> {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.pdus.findIndex(pred);
      if (i >= 0) return this.pdus.splice(i, 1)[0];
      if (this.closed) throw new Error('connection closed by target');
      const left = deadline - Date.now();
      if (left <= 0) {
        // The timer may have fired before the socket was read (a spawnSync or a loaded machine held the loop):
        // let one poll phase deliver what arrived, then decide.
        await new Promise<void>((resolve) => setImmediate(resolve));
        const j = this.pdus.findIndex(pred);
        if (j >= 0) return this.pdus.splice(j, 1)[0];
        throw new Error('timed out waiting for a PDU');
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Resolves true when the target closes the connection within ms. */
  async waitClosed(ms = 5000): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.closed;
  }

  /** Sends a PDU: header (48 bytes), data; digests when negotiated. */
  send(bhs: Buffer, data: Buffer = Buffer.alloc(0)): void {
    bhs.writeUIntBE(data.length, 5, 3);
    const parts: Buffer[] = [bhs];
    if (this.headerDigest) {
      const d = Buffer.alloc(4);
      d.writeUInt32LE(crc32c(bhs));
      parts.push(d);
    }
    if (data.length) {
      const padded = Buffer.concat([data, Buffer.alloc((4 - (data.length & 3)) & 3)]);
      parts.push(padded);
      if (this.dataDigest) {
        const d = Buffer.alloc(4);
        d.writeUInt32LE(crc32c(padded));
        parts.push(d);
      }
    }
    this.socket.write(Buffer.concat(parts));
  }

  raw(b: Buffer): void {
    this.socket.write(b);
  }

  /** A login PDU (keys, or their text as it is); returns the response and its keys. */
  async loginPdu(flags: number, keys: Record<string, string> | Buffer): Promise<{ pdu: Pdu; keys: Map<string, string>; status: number }> {
    const h = Buffer.alloc(48);
    h[0] = 0x43;
    h[1] = flags;
    this.isid.copy(h, 8);
    h.writeUInt16BE(this.tsih, 14);
    h.writeUInt32BE(this.itt, 16);
    h.writeUInt16BE(this.cid, 20);
    h.writeUInt32BE(this.cmdSN, 24);
    h.writeUInt32BE(this.expStatSN, 28);
    this.send(h, Buffer.isBuffer(keys) ? keys : textOf(keys));
    const pdu = await this.next((p) => p.opcode === 0x23);
    this.expStatSN = (pdu.bhs.readUInt32BE(24) + 1) >>> 0;
    this.tsih = pdu.bhs.readUInt16BE(14);
    return { pdu, keys: parseKeys(pdu.data), status: pdu.bhs.readUInt16BE(36) };
  }

  /**
   * Logs in without authentication straight to full feature phase. split: the first request's text goes
   * in PDUs of at most that many bytes, all but the last with the C bit (each acknowledged by the target).
   */
  async login(target: string | undefined, extra: Record<string, string> = {}, initiator = 'iqn.2026-11.org.tsio:test-initiator', split = 0): Promise<Map<string, string>> {
    const keys: Record<string, string> = {
      InitiatorName: initiator,
      SessionType: target ? 'Normal' : 'Discovery',
      ...(target ? { TargetName: target } : {}),
      AuthMethod: 'None',
    };
    let text = textOf(keys);
    for (; split > 0 && text.length > split; text = text.subarray(split)) {
      const ack = await this.loginPdu(0x40, text.subarray(0, split)); // C, CSG 0, no T
      if (ack.status !== 0 || ack.pdu.data.length !== 0) throw new Error(`continued login PDU answered with status 0x${ack.status.toString(16)}, ${ack.pdu.data.length} bytes`);
    }
    let r = await this.loginPdu(0x81, text); // CSG 0 -> NSG 1, T
    if (r.status !== 0) throw Object.assign(new Error(`login status 0x${r.status.toString(16)}`), { status: r.status });
    const op: Record<string, string> = {
      HeaderDigest: 'None',
      DataDigest: 'None',
      MaxRecvDataSegmentLength: '65536',
      ...extra,
    };
    r = await this.loginPdu(0x87, op); // CSG 1 -> NSG 3, T
    const all = new Map([...r.keys]);
    while (r.status === 0 && (r.pdu.flags & 0x80) === 0) {
      // The target offered keys of its own: accept them.
      const answers: Record<string, string> = {};
      for (const [k, v] of r.keys) if (!(k in op)) answers[k] = v;
      r = await this.loginPdu(0x87, answers);
      for (const [k, v] of r.keys) all.set(k, v);
    }
    if (r.status !== 0) throw Object.assign(new Error(`login status 0x${r.status.toString(16)}`), { status: r.status });
    for (const [k, v] of r.keys) all.set(k, v);
    this.headerDigest = all.get('HeaderDigest') === 'CRC32C';
    this.dataDigest = all.get('DataDigest') === 'CRC32C';
    return all;
  }

  nextItt(): number {
    return this.itt++;
  }

  /**
   * A SCSI Command header (not sent): final, SIMPLE unless `attr`, READ/WRITE
   * flags from the lengths, a new ITT, CmdSN taken (kept for immediate ones),
   * an optional AHS after the BHS.
   */
  commandHeader(cdb: number[] | Buffer, opts: { read?: number; write?: number; ahs?: Buffer; immediate?: boolean; lun?: number; attr?: number; final?: boolean } = {}): { h: Buffer; itt: number; cmdSN: number } {
    const ahs = opts.ahs ?? Buffer.alloc(0);
    const h = Buffer.alloc(48 + ahs.length);
    const itt = this.nextItt();
    const cmdSN = this.cmdSN;
    h[0] = 0x01 | (opts.immediate ? 0x40 : 0);
    h[1] = (opts.final === false ? 0 : 0x80) | (opts.read !== undefined ? 0x40 : 0) | (opts.write !== undefined ? 0x20 : 0) | (opts.attr ?? 1);
    h[4] = ahs.length / 4;
    h[9] = opts.lun ?? 0;
    h.writeUInt32BE(itt, 16);
    h.writeUInt32BE(opts.read ?? opts.write ?? 0, 20);
    h.writeUInt32BE(cmdSN, 24);
    if (!opts.immediate) this.cmdSN++;
    h.writeUInt32BE(this.expStatSN, 28);
    Buffer.from(cdb).copy(h, 32, 0, Math.min(16, cdb.length));
    ahs.copy(h, 48);
    return { h, itt, cmdSN };
  }

  /**
   * Sends `data` as the Data-Out of one sequence: bytes [offset, offset +
   * length) of the command's data, in PDUs of at most `segment` bytes
   * (8192), DataSN from 0, F on the last one unless `final` is false.
   */
  sendDataOut(itt: number, ttt: number, data: Buffer, offset: number, length: number, opts: { segment?: number; lun?: number; final?: boolean } = {}): void {
    const seg = opts.segment ?? 8192;
    let sn = 0;
    for (let o = offset; o < offset + length; o += seg) {
      const n = Math.min(seg, offset + length - o);
      this.send(this.dataOutHeader(itt, ttt, sn++, o, o + n === offset + length && opts.final !== false, opts.lun), data.subarray(o, o + n));
    }
  }

  /** A Data-Out header (not sent). */
  dataOutHeader(itt: number, ttt: number, dataSN: number, offset: number, final: boolean, lun = 0): Buffer {
    const d = Buffer.alloc(48);
    d[0] = 0x05;
    d[1] = final ? 0x80 : 0;
    d[9] = lun;
    d.writeUInt32BE(itt, 16);
    d.writeUInt32BE(ttt, 20);
    d.writeUInt32BE(this.expStatSN, 28);
    d.writeUInt32BE(dataSN, 36);
    d.writeUInt32BE(offset, 40);
    return d;
  }

  /** Answers an R2T (its header) with its part of `data`. */
  answerR2t(r2t: Buffer, data: Buffer, opts: { segment?: number; lun?: number } = {}): void {
    this.sendDataOut(r2t.readUInt32BE(16), r2t.readUInt32BE(20), data, r2t.readUInt32BE(40), r2t.readUInt32BE(44), opts);
  }

  /**
   * Runs a SCSI command. Writes: immediate data up to `immediate` bytes, then
   * unsolicited Data-Out up to `unsolicited` bytes in all (InitialR2T=No: at
   * most FirstBurstLength), the rest answered to R2Ts; Data-Out PDUs carry at
   * most `segment` bytes (8192). Returns status, sense, data-in and residual.
   */
  /** opts.wait: ms to wait for each PDU of the answer (default 5 s; more for a command that may take long). */
  async command(cdb: number[] | Buffer, opts: { read?: number; write?: Buffer; immediate?: number; unsolicited?: number; segment?: number; lun?: number; attr?: number; wait?: number } = {}): Promise<{
    status: number; sense: Buffer; data: Buffer; residual: number; flags: number; r2ts: number;
  }> {
    const write = opts.write;
    const imm = write ? Math.min(opts.immediate ?? 0, write.length) : 0;
    const unsol = write ? Math.max(imm, Math.min(opts.unsolicited ?? 0, write.length)) : 0;
    const { h, itt } = this.commandHeader(cdb, {
      read: opts.read || undefined, write: write?.length, lun: opts.lun, attr: opts.attr, final: unsol <= imm,
    });
    this.send(h, write ? write.subarray(0, imm) : undefined);
    const dataOut = (ttt: number, off: number, len: number): void =>
      this.sendDataOut(itt, ttt, write!, off, len, { segment: opts.segment, lun: opts.lun });
    if (unsol > imm) dataOut(0xffffffff, imm, unsol - imm);
    const chunks: Buffer[] = [];
    let r2ts = 0;
    for (;;) {
      const p = await this.next((x) => x.itt === itt, opts.wait);
      if (p.opcode === 0x31) {
        r2ts++;
        dataOut(p.bhs.readUInt32BE(20), p.bhs.readUInt32BE(40), p.bhs.readUInt32BE(44));
        continue;
      }
      if (p.opcode === 0x25) {
        chunks.push(p.data);
        if (p.flags & 0x01) {
          this.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
          return { status: p.bhs[3], sense: Buffer.alloc(0), data: Buffer.concat(chunks), residual: p.bhs.readUInt32BE(44), flags: p.flags, r2ts };
        }
        continue;
      }
      if (p.opcode === 0x21) {
        this.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
        const sense = p.data.length >= 2 ? p.data.subarray(2, 2 + p.data.readUInt16BE(0)) : Buffer.alloc(0);
        return { status: p.bhs[3], sense, data: Buffer.concat(chunks), residual: p.bhs.readUInt32BE(44), flags: p.flags, r2ts };
      }
      throw new Error(`unexpected opcode 0x${p.opcode.toString(16)} for task ${itt}`);
    }
  }

  /** A NOP-Out ping (immediate) with data; resolves with the NOP-In. */
  async nop(data: Buffer, itt = this.nextItt()): Promise<Pdu> {
    this.send(finalRequest(0x40, itt, this.cmdSN), data);
    return this.next((p) => p.opcode === 0x20 && p.itt === itt);
  }

  /** A final Text request (a new CmdSN) carrying `text`; resolves with the Text Response. */
  async textRequest(text: string, itt = this.nextItt()): Promise<Pdu> {
    this.send(finalRequest(0x04, itt, this.cmdSN++), Buffer.from(text));
    return this.next((p) => p.opcode === 0x24 && p.itt === itt);
  }

  /** Logout; reason 0 closes the session, 1 the connection cid. */
  async logout(reason = 0, cid = this.cid): Promise<number> {
    const h = Buffer.alloc(48);
    h[0] = 0x46;
    h[1] = 0x80 | reason;
    h.writeUInt16BE(cid, 20);
    const itt = this.nextItt();
    h.writeUInt32BE(itt, 16);
    h.writeUInt32BE(this.cmdSN++, 24);
    h.writeUInt32BE(this.expStatSN, 28);
    this.send(h);
    const p = await this.next((x) => x.opcode === 0x26);
    return p.bhs[2];
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A final request header without a target transfer tag (NOP-Out, Text). */
function finalRequest(opcode: number, itt: number, cmdSN: number): Buffer {
  const h = Buffer.alloc(48);
  h[0] = opcode;
  h[1] = 0x80;
  h.writeUInt32BE(itt, 16);
  h.writeUInt32BE(0xffffffff, 20);
  h.writeUInt32BE(cmdSN, 24);
  return h;
}

export function textOf(keys: Record<string, string>): Buffer {
  return Buffer.from(Object.entries(keys).map(([k, v]) => `${k}=${v}\0`).join(''));
}

export function parseKeys(b: Buffer): Map<string, string> {
  const m = new Map<string, string>();
  for (const s of b.toString().split('\0')) {
    if (!s) continue;
    const i = s.indexOf('=');
    m.set(s.slice(0, i), s.slice(i + 1));
  }
  return m;
}

/**
 * A config with one demo-mode iSCSI target on 127.0.0.1 (and ::1) with one LUN: an rd_mcp store, or
 * `store` (its storage_objects entry and path; dir is tsiod's folder).
 */
export function simpleConfig(opts: { iqn?: string; size?: string; v6?: boolean; tpgExtra?: string; extra?: string; store?: (dir: string) => { entry: string; path: string } } = {}) {
  return (port: number, dir = ''): string => {
    const so = opts.store?.(dir) ?? { entry: `{ name: ram0, plugin: rd_mcp, size: ${opts.size ?? '64MiB'}, attributes: { emulate_tpu: true, emulate_tpws: true } }`, path: '/backstores/rd_mcp/ram0' };
    return `storage_objects:
  - ${so.entry}
${opts.extra ?? ''}targets:
  - fabric: iscsi
    wwn: ${opts.iqn ?? 'iqn.2026-11.org.tsio:test'}
    tpgs:
      - tag: 1
        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }
${opts.tpgExtra ?? ''}        portals:
          - { ip_address: 127.0.0.1, port: ${port} }
${opts.v6 ? `          - { ip_address: '::1', port: ${port} }\n` : ''}        luns:
          - { index: 0, storage_object: ${so.path} }
`;
  };
}
