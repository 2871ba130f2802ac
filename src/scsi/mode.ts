// MODE SENSE and MODE SELECT (SPC-5 6.14-6.16, 7.5; SBC-4 6.5): the mode
// pages of a disk, their changeable masks, and the block descriptors. The
// values initiators may change live in lu.mode, which the rest of the core
// reads (WCE for writes, D_SENSE for sense format, TAS for aborts, SWP).

import type { ScsiCmd } from '../core/command';
import { initialModeState, type ItlNexus, type LogicalUnit, type ModeState } from '../core/logical-unit';
import { sglFlatten } from '../core/sgl';
import { dpoFuaSupported } from './sbc';
import {
  Asc, invalidCdbField, invalidParamField, paramListLengthError, savingNotSupported,
} from '../core/sense';

const PageControl = { CURRENT: 0, CHANGEABLE: 1, DEFAULT: 2, SAVED: 3 } as const;

interface ModePage {
  code: number;
  /** Bytes including the two-byte header. */
  length: number;
  /** Bits MODE SELECT may change, one byte per page byte. */
  changeable: readonly number[];
  /** The page as `m` describes it (current values from lu.mode, defaults from the attributes). */
  build(lu: LogicalUnit, m: ModeState): Buffer;
  /** Reads the changeable fields of an accepted page into `m`; returns [byte, bit] of an invalid value. */
  parse?(p: Buffer, m: ModeState): [number, number] | undefined;
}

function blank(code: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  b[0] = code;
  b[1] = length - 2;
  return b;
}

const PAGES: readonly ModePage[] = [
  {
    // Read-write error recovery: nothing to recover, nothing to change.
    code: 0x01, length: 12, changeable: [],
    build: () => blank(0x01, 12),
  },
  {
    code: 0x08, length: 20, changeable: [0, 0, 0x05],
    build(_lu, m) {
      const p = blank(0x08, 20);
      if (m.wce) p[2] |= 0x04;
      if (m.rcd) p[2] |= 0x01;
      p[12] = 0x20; // DRA: no read-ahead
      return p;
    },
    parse(p, m) {
      m.wce = (p[2] & 0x04) !== 0;
      m.rcd = (p[2] & 0x01) !== 0;
      return undefined;
    },
  },
  {
    code: 0x0a, length: 12, changeable: [0, 0, 0x04, 0xf0, 0x08, 0x40],
    build(_lu, m) {
      const p = blank(0x0a, 12);
      p[2] = 0x02; // GLTSD: no log parameters are saved implicitly
      if (m.dsense) p[2] |= 0x04;
      p[3] = m.qam << 4;
      p[4] = (m.uaIntlckCtrl << 4) | (m.swp ? 0x08 : 0);
      if (m.tas) p[5] = 0x40;
      p.writeUInt16BE(0xffff, 8); // BUSY TIMEOUT PERIOD: unlimited
      p[11] = 30; // EXTENDED SELF-TEST COMPLETION TIME (seconds), as LIO
      return p;
    },
    parse(p, m) {
      const qam = p[3] >> 4;
      if (qam > 1) return [3, 7]; // 2h..7h reserved; vendor values unsupported
      m.dsense = (p[2] & 0x04) !== 0;
      m.qam = qam;
      m.swp = (p[4] & 0x08) !== 0;
      m.tas = (p[5] & 0x40) !== 0;
      return undefined;
    },
  },
  {
    code: 0x1c, length: 12, changeable: [0, 0, 0x08, 0x0f],
    build(_lu, m) {
      const p = blank(0x1c, 12);
      if (m.dexcpt) p[2] = 0x08;
      p[3] = m.mrie;
      return p;
    },
    parse(p, m) {
      const mrie = p[3] & 0x0f;
      if (mrie > 6) return [3, 3];
      m.dexcpt = (p[2] & 0x08) !== 0;
      m.mrie = mrie;
      return undefined;
    },
  },
];

const ALL_PAGES = 0x3f;
const ALL_SUBPAGES = 0xff;

function pageFor(lu: LogicalUnit, pg: ModePage, pc: number): Buffer {
  if (pc === PageControl.CHANGEABLE) {
    const p = blank(pg.code, pg.length);
    pg.changeable.forEach((v, i) => { if (i >= 2) p[i] = v; });
    return p;
  }
  return pg.build(lu, pc === PageControl.DEFAULT ? initialModeState(lu.so) : lu.mode);
}

function writeProtectedFor(cmd: ScsiCmd): boolean {
  const itl: ItlNexus | undefined = cmd.itl;
  return (itl?.writeProtect ?? false) || cmd.lu.writeProtected;
}

/** MODE SENSE(6) and (10). */
export function modeSense(cmd: ScsiCmd): void {
  const cdb = cmd.cdb;
  const lu = cmd.lu;
  const ten = cdb[0] === 0x5a;
  const dbd = (cdb[1] & 0x08) !== 0;
  const llbaa = ten && (cdb[1] & 0x10) !== 0;
  const pc = cdb[2] >> 6;
  const code = cdb[2] & 0x3f;
  const subpage = cdb[3];
  if (pc === PageControl.SAVED) throw savingNotSupported(2, 7);
  if (subpage !== 0 && subpage !== ALL_SUBPAGES) throw invalidCdbField(3);
  const pages = code === ALL_PAGES ? PAGES : PAGES.filter((p) => p.code === code);
  if (pages.length === 0) throw invalidCdbField(2, 5);

  const hdrLen = ten ? 8 : 4;
  let bd: Buffer = Buffer.alloc(0);
  if (!dbd) bd = blockDescriptor(lu, llbaa, pc === PageControl.CHANGEABLE);
  const body = Buffer.concat([bd, ...pages.map((p) => pageFor(lu, p, pc))]);
  const b = Buffer.alloc(hdrLen + body.length);
  body.copy(b, hdrLen);
  let dsp = 0;
  if (writeProtectedFor(cmd)) dsp |= 0x80; // WP
  if (dpoFuaSupported(cmd)) dsp |= 0x10; // DPOFUA: what the read/write commands accept
  if (ten) {
    b.writeUInt16BE(b.length - 2, 0);
    b[3] = dsp;
    if (bd.length === 16) b[4] = 0x01; // LONGLBA
    b.writeUInt16BE(bd.length, 6);
  } else {
    b[0] = b.length - 1;
    b[2] = dsp;
    b[3] = bd.length;
  }
  cmd.respond(b);
}

/** Short (8-byte) or, when asked for with LLBAA, long (16-byte) LBA block descriptor (SBC-4 6.5.2). */
function blockDescriptor(lu: LogicalUnit, long: boolean, changeable: boolean): Buffer {
  if (long) {
    const d = Buffer.alloc(16);
    if (!changeable) {
      d.writeBigUInt64BE(BigInt(lu.blocks), 0);
      d.writeUInt32BE(lu.blockSize, 12);
    }
    return d;
  }
  const d = Buffer.alloc(8);
  if (!changeable) {
    d.writeUInt32BE(Math.min(lu.blocks, 0xffffffff), 0);
    d.writeUIntBE(lu.blockSize, 5, 3);
  }
  return d;
}

/** Checks a block descriptor sent with MODE SELECT: nothing in it may change. */
function checkBlockDescriptor(lu: LogicalUnit, d: Buffer, at: number): void {
  const long = d.length === 16;
  const blocks = long ? Number(d.readBigUInt64BE(0)) : d.readUInt32BE(0);
  const same = long ? lu.blocks : Math.min(lu.blocks, 0xffffffff);
  // Zero blocks means "keep the capacity" (SBC-4 6.5.2).
  if (blocks !== 0 && blocks !== same) throw invalidParamField(at);
  if (!long && d[4] !== 0) throw invalidParamField(at + 4);
  const sizeAt = long ? 12 : 5;
  const size = long ? d.readUInt32BE(12) : d.readUIntBE(5, 3);
  if (size !== lu.blockSize) throw invalidParamField(at + sizeAt);
}

/** MODE SELECT(6) and (10). */
export function modeSelect(cmd: ScsiCmd): void {
  const cdb = cmd.cdb;
  const lu = cmd.lu;
  const ten = cdb[0] === 0x55;
  const len = cmd.transferLength;
  if (len === 0) return; // an empty parameter list changes nothing (SPC-5 6.13)
  if ((cdb[1] & 0x10) === 0) throw invalidCdbField(1, 4); // PF=0: vendor page format, none here
  if ((cdb[1] & 0x01) !== 0) throw savingNotSupported(1, 0);
  const hdrLen = ten ? 8 : 4;
  if (len < hdrLen) throw paramListLengthError();
  const data = sglFlatten(cmd.out(), 0, len);
  const bdLen = ten ? data.readUInt16BE(6) : data[3];
  const longLba = ten && (data[4] & 0x01) !== 0;
  if (bdLen !== 0 && bdLen !== (longLba ? 16 : 8)) throw invalidParamField(ten ? 6 : 3);
  if (hdrLen + bdLen > len) throw paramListLengthError();
  if (bdLen !== 0) checkBlockDescriptor(lu, data.subarray(hdrLen, hdrLen + bdLen), hdrLen);

  // Validate every page before applying any of them, so a bad list changes nothing.
  const next: ModeState = { ...lu.mode };
  for (let off = hdrLen + bdLen; off < len;) {
    if (off + 2 > len) throw paramListLengthError();
    if ((data[off] & 0x40) !== 0) throw invalidParamField(off, 6); // SPF: we have no subpages
    const pg = PAGES.find((p) => p.code === (data[off] & 0x3f));
    if (pg === undefined) throw invalidParamField(off, 5);
    if (data[off + 1] !== pg.length - 2) throw invalidParamField(off + 1);
    if (off + pg.length > len) throw paramListLengthError();
    const sent = data.subarray(off, off + pg.length);
    const cur = pg.build(lu, lu.mode);
    for (let i = 2; i < pg.length; i++) {
      const fixed = (sent[i] ^ cur[i]) & ~(pg.changeable[i] ?? 0);
      if (fixed !== 0) throw invalidParamField(off + i, 31 - Math.clz32(fixed));
    }
    const bad = pg.parse?.(sent, next);
    if (bad !== undefined) throw invalidParamField(off + bad[0], bad[1]);
    off += pg.length;
  }
  const changed = (Object.keys(next) as (keyof ModeState)[]).some((k) => next[k] !== lu.mode[k]);
  if (!changed) return;
  Object.assign(lu.mode, next);
  // SPC-5 7.5.1: the other I_T nexuses learn of it from a unit attention.
  lu.raiseUa(Asc.MODE_PARAMETERS_CHANGED, cmd.session);
}
