// MODE SENSE and MODE SELECT (SPC-5 6.14-6.16, 7.5) for the device types
// other than disks (tape, media changer, CD/DVD): the parameter list frame
// (header, block descriptor, pages, page control, changeable masks, all or
// nothing on MODE SELECT) once, and each device type's pages and block
// descriptor in a ModeProfile beside its commands. The disk's own pages live
// in mode.ts.

import type { ScsiCmd } from '../core/command';
import type { LogicalUnit } from '../core/logical-unit';
import type { CommandDef, Handler } from '../core/opcodes';
import { sglFlatten } from '../core/sgl';
import { Asc, invalidCdbField, invalidParamField, paramListLengthError, savingNotSupported } from '../core/sense';

const PageControl = { CURRENT: 0, CHANGEABLE: 1, DEFAULT: 2, SAVED: 3 } as const;
const ALL_PAGES = 0x3f;

export interface ModePageDef<S> {
  code: number;
  /** Bytes including the two-byte header. */
  length: number;
  /** Bits MODE SELECT may change, one byte per page byte (missing bytes: none). */
  changeable: readonly number[];
  build(lu: LogicalUnit, s: S): Buffer;
  /** Reads the changeable fields of a page the initiator sent into s; returns [byte, bit] of a value refused. */
  parse?(p: Buffer, s: S): [number, number] | undefined;
}

export interface ModeProfile<S> {
  pages: readonly ModePageDef<S>[];
  /** The unit's current values and those it starts with. */
  current(lu: LogicalUnit): S;
  defaults(lu: LogicalUnit): S;
  /** Stores accepted values; returns true when something changed. */
  apply(lu: LogicalUnit, s: S): boolean;
  /** The header's DEVICE-SPECIFIC PARAMETER. */
  deviceSpecific(cmd: ScsiCmd, s: S): number;
  /** Reads the DEVICE-SPECIFIC PARAMETER a MODE SELECT sent; returns the bit refused. */
  selectDeviceSpecific?(v: number, s: S): number | undefined;
  /** The 8-byte block descriptor, when the device type has one. */
  blockDescriptor?(lu: LogicalUnit, s: S, changeable: boolean): Buffer;
  /** Reads a block descriptor a MODE SELECT sent; returns its byte refused. */
  selectBlockDescriptor?(lu: LogicalUnit, d: Buffer, s: S): number | undefined;
}

/** A page with its code and PAGE LENGTH filled in. */
export function blankPage(code: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  b[0] = code;
  b[1] = length - 2;
  return b;
}

function modeSense<S>(profile: ModeProfile<S>, cmd: ScsiCmd): void {
  const cdb = cmd.cdb;
  const lu = cmd.lu;
  const ten = cdb[0] === 0x5a;
  const dbd = (cdb[1] & 0x08) !== 0;
  const pc = cdb[2] >> 6;
  const code = cdb[2] & 0x3f;
  if (pc === PageControl.SAVED) throw savingNotSupported(2, 7);
  if (cdb[3] !== 0 && cdb[3] !== 0xff) throw invalidCdbField(3);
  const pages = code === ALL_PAGES ? profile.pages : profile.pages.filter((p) => p.code === code);
  if (pages.length === 0) throw invalidCdbField(2, 5);
  const s = pc === PageControl.DEFAULT ? profile.defaults(lu) : profile.current(lu);
  const changeable = pc === PageControl.CHANGEABLE;
  const page = (p: ModePageDef<S>): Buffer => {
    if (!changeable) return p.build(lu, s);
    const b = blankPage(p.code, p.length);
    p.changeable.forEach((v, i) => { if (i >= 2) b[i] = v; });
    return b;
  };
  const bd = !dbd && profile.blockDescriptor ? profile.blockDescriptor(lu, s, changeable) : Buffer.alloc(0);
  const hdrLen = ten ? 8 : 4;
  const body = Buffer.concat([bd, ...pages.map(page)]);
  const b = Buffer.alloc(hdrLen + body.length);
  body.copy(b, hdrLen);
  const dsp = profile.deviceSpecific(cmd, profile.current(lu));
  if (ten) {
    b.writeUInt16BE(b.length - 2, 0);
    b[3] = dsp;
    b.writeUInt16BE(bd.length, 6);
  } else {
    b[0] = b.length - 1;
    b[2] = dsp;
    b[3] = bd.length;
  }
  cmd.respond(b);
}

function modeSelect<S>(profile: ModeProfile<S>, cmd: ScsiCmd): void {
  const cdb = cmd.cdb;
  const lu = cmd.lu;
  const ten = cdb[0] === 0x55;
  const len = cmd.transferLength;
  if (len === 0) return;
  if ((cdb[1] & 0x10) === 0) throw invalidCdbField(1, 4); // PF=0: vendor page format, none here
  if ((cdb[1] & 0x01) !== 0) throw savingNotSupported(1, 0);
  const hdrLen = ten ? 8 : 4;
  if (len < hdrLen) throw paramListLengthError();
  const data = sglFlatten(cmd.out(), 0, len);
  const bdLen = ten ? data.readUInt16BE(6) : data[3];
  if (bdLen !== 0 && (bdLen !== 8 || !profile.selectBlockDescriptor)) throw invalidParamField(ten ? 6 : 3);
  if (hdrLen + bdLen > len) throw paramListLengthError();
  const next = { ...profile.current(lu) };
  const dspAt = ten ? 3 : 2;
  const badBit = profile.selectDeviceSpecific?.(data[dspAt], next);
  if (badBit !== undefined) throw invalidParamField(dspAt, badBit);
  if (bdLen !== 0) {
    const bad = profile.selectBlockDescriptor!(lu, data.subarray(hdrLen, hdrLen + 8), next);
    if (bad !== undefined) throw invalidParamField(hdrLen + bad);
  }
  // Every page is checked before any is applied: a bad list changes nothing.
  for (let off = hdrLen + bdLen; off < len;) {
    if (off + 2 > len) throw paramListLengthError();
    if ((data[off] & 0x40) !== 0) throw invalidParamField(off, 6); // SPF: no subpages here
    const pg = profile.pages.find((p) => p.code === (data[off] & 0x3f));
    if (pg === undefined) throw invalidParamField(off, 5);
    if (data[off + 1] !== pg.length - 2) throw invalidParamField(off + 1);
    if (off + pg.length > len) throw paramListLengthError();
    const sent = data.subarray(off, off + pg.length);
    const cur = pg.build(lu, profile.current(lu));
    for (let i = 2; i < pg.length; i++) {
      const fixed = (sent[i] ^ cur[i]) & ~(pg.changeable[i] ?? 0);
      if (fixed !== 0) throw invalidParamField(off + i, 31 - Math.clz32(fixed));
    }
    const bad = pg.parse?.(sent, next);
    if (bad !== undefined) throw invalidParamField(off + bad[0], bad[1]);
    off += pg.length;
  }
  // SPC-5 7.5.1: the other I_T nexuses learn of a change from a unit attention.
  if (profile.apply(lu, next)) lu.raiseUa(Asc.MODE_PARAMETERS_CHANGED, cmd.session);
}

/** The SPC table with its MODE SENSE and MODE SELECT entries served from the profile. */
export function withModeProfile<S>(defs: readonly CommandDef[], profile: ModeProfile<S>): CommandDef[] {
  const sense: Handler = (cmd) => modeSense(profile, cmd);
  const select: Handler = (cmd) => modeSelect(profile, cmd);
  return defs.map((d) => {
    if (d.opcode === 0x1a || d.opcode === 0x5a) return { ...d, execute: sense };
    if (d.opcode === 0x15 || d.opcode === 0x55) return { ...d, execute: select };
    return d;
  });
}

/** The control page's values the other device types let initiators change (lu.mode keeps them). */
export interface ControlState {
  dsense: boolean;
  tas: boolean;
}

export function controlState(lu: LogicalUnit, defaults = false): ControlState {
  return defaults ? { dsense: false, tas: lu.so.attributes.emulate_tas } : { dsense: lu.mode.dsense, tas: lu.mode.tas };
}

/** Stores the control page's values; true when one changed. */
export function applyControl(lu: LogicalUnit, s: ControlState): boolean {
  const changed = s.dsense !== lu.mode.dsense || s.tas !== lu.mode.tas;
  lu.mode.dsense = s.dsense;
  lu.mode.tas = s.tas;
  return changed;
}

/** Control mode page 0Ah (SPC-5 7.5.8): D_SENSE and TAS changeable. */
export function controlPage<S extends ControlState>(): ModePageDef<S> {
  return {
    code: 0x0a, length: 12, changeable: [0, 0, 0x04, 0, 0, 0x40],
    build(lu, s) {
      const p = blankPage(0x0a, 12);
      p[2] = 0x02 | (s.dsense ? 0x04 : 0); // GLTSD
      p[3] = lu.mode.qam << 4;
      if (s.tas) p[5] = 0x40;
      p.writeUInt16BE(0xffff, 8); // BUSY TIMEOUT PERIOD: unlimited
      return p;
    },
    parse(p, s) {
      s.dsense = (p[2] & 0x04) !== 0;
      s.tas = (p[5] & 0x40) !== 0;
      return undefined;
    },
  };
}
