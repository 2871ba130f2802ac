// EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.3, 6.18): the copy
// manager of a logical unit copies blocks between LUs of the same target,
// named by identification descriptors (0xE4) holding their NAA designator,
// with block-to-block segment descriptors (0x02). It copies in chunks and
// yields between them, so other commands keep going during a long copy.

import type { ScsiCmd } from '../core/command';
import type { LogicalUnit } from '../core/logical-unit';
import { CommandDef, DataDir } from '../core/opcodes';
import {
  Asc, ScsiError, SenseKey, invalidCdbField, invalidOpcode, invalidParamField, mediumNotPresent, paramListLengthError,
  writeProtected,
} from '../core/sense';
import { sglFlatten } from '../core/sgl';
import { addVpdPage, page } from './vpd';

/** Limits, as RECEIVE COPY RESULTS (OPERATING PARAMETERS) reports them. */
export const XCOPY_LIMITS = {
  maxTargetDescriptors: 16,
  maxSegmentDescriptors: 64,
  maxDescriptorListLength: 4096,
  /** Bytes one segment may copy (65535 blocks of 4 KiB). */
  maxSegmentLength: 0xffff * 4096,
  maxInlineData: 0,
  heldDataLimit: 0,
  totalConcurrentCopies: 64,
  /** log2 of the data segment granularity (one 512-byte block). */
  dataSegmentGranularity: 9,
} as const;

const TARGET_DESC_LEN = 32;
const TD_IDENTIFICATION = 0xe4;
const SD_BLOCK_TO_BLOCK = 0x02;
const SD_BLOCK_TO_BLOCK_LEN = 0x18;
/** Bytes moved per step: one step reads then writes, then other commands get their turn. */
const CHUNK = 1 << 20;

const OPERATION_IN_PROGRESS = 0x0016;

const copyAborted = (asc: number = Asc.COPY_TARGET_DEVICE_NOT_REACHABLE): ScsiError =>
  new ScsiError(SenseKey.COPY_ABORTED, asc);

interface Segment {
  src: number;
  dst: number;
  blocks: number;
  srcLba: number;
  dstLba: number;
}

/** What RECEIVE COPY RESULTS (COPY STATUS) reports of a copy held for its list identifier. */
interface CopyStatus {
  state: 'running' | 'done' | 'failed';
  segments: number;
  bytes: number;
}

const held = new WeakMap<LogicalUnit, Map<string, CopyStatus>>();

function heldOf(lu: LogicalUnit): Map<string, CopyStatus> {
  let m = held.get(lu);
  if (!m) held.set(lu, (m = new Map()));
  return m;
}

/** List identifiers are per I_T nexus (SPC-4 6.3.1). */
const listKey = (cmd: ScsiCmd, listId: number): string => `${cmd.session.initiatorPort}|${cmd.session.tpg.portName}|${listId}`;

/** The LU of this target whose NAA designator the descriptor names, if any. */
function findTarget(cmd: ScsiCmd, designator: Buffer): LogicalUnit | undefined {
  if (cmd.lu.so.naa.equals(designator)) return cmd.lu;
  for (const port of cmd.session.tpg.targetPorts()) {
    for (const lu of port.units()) if (lu.so.naa.equals(designator)) return lu;
  }
  return undefined;
}

/** An identification target descriptor: the NAA designator it names and the block length it expects. */
interface TargetDesc {
  designator: Buffer;
  blockLen: number;
}

function parse(d: Buffer): { listId: number; usage: number; targets: TargetDesc[]; segments: Segment[] } {
  if (d.length < 16) throw paramListLengthError();
  const listId = d[0];
  const usage = (d[1] >> 3) & 3;
  if (usage === 1) throw invalidParamField(1, 3);
  const tdl = d.readUInt16BE(2);
  const sdl = d.readUInt32BE(8);
  const inl = d.readUInt32BE(12);
  if (tdl + sdl > XCOPY_LIMITS.maxDescriptorListLength) throw paramListLengthError();
  if (16 + tdl + sdl + inl > d.length) throw paramListLengthError();
  if (inl > XCOPY_LIMITS.maxInlineData) throw invalidParamField(12);
  if (tdl % TARGET_DESC_LEN !== 0) throw invalidParamField(2);
  if (tdl / TARGET_DESC_LEN > XCOPY_LIMITS.maxTargetDescriptors) {
    throw new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.TOO_MANY_TARGET_DESCRIPTORS);
  }
  // Segment descriptors first counted (their own lengths say where the next starts).
  const segOffsets: number[] = [];
  for (let o = 16 + tdl; o < 16 + tdl + sdl;) {
    if (o + 4 > 16 + tdl + sdl) throw paramListLengthError();
    segOffsets.push(o);
    o += 4 + d.readUInt16BE(o + 2);
  }
  if (segOffsets.length > XCOPY_LIMITS.maxSegmentDescriptors) {
    throw new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.TOO_MANY_SEGMENT_DESCRIPTORS);
  }
  // Target descriptors: the designators they name (resolved when a segment uses them).
  const targets: TargetDesc[] = [];
  for (let o = 16; o < 16 + tdl; o += TARGET_DESC_LEN) {
    if (d[o] !== TD_IDENTIFICATION) {
      throw new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.UNSUPPORTED_TARGET_DESCRIPTOR_TYPE, { field: { inCdb: false, byte: o } });
    }
    // LU ID TYPE is ignored (SPC-4); the NUL bit is obsolete. Only block devices are copy targets.
    if ((d[o + 1] & 0x1f) !== 0) throw invalidParamField(o + 1);
    const codeSet = d[o + 4] & 0x0f;
    const assoc = (d[o + 5] >> 4) & 3;
    const type = d[o + 5] & 0x0f;
    const len = d[o + 7];
    if (codeSet !== 1 || assoc !== 0 || type !== 3 || (len !== 8 && len !== 16)) {
      throw invalidParamField(o + 5);
    }
    targets.push({ designator: Buffer.from(d.subarray(o + 8, o + 8 + len)), blockLen: d.readUIntBE(o + 29, 3) });
  }
  const segments: Segment[] = [];
  for (const o of segOffsets) {
    if (d[o] !== SD_BLOCK_TO_BLOCK) {
      throw new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE, { field: { inCdb: false, byte: o } });
    }
    if (d.readUInt16BE(o + 2) !== SD_BLOCK_TO_BLOCK_LEN || o + 28 > 16 + tdl + sdl) throw invalidParamField(o + 2);
    const lba = (p: number) => Number(d.readBigUInt64BE(p) > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : d.readBigUInt64BE(p));
    segments.push({
      src: d.readUInt16BE(o + 4), dst: d.readUInt16BE(o + 6), blocks: d.readUInt16BE(o + 10),
      srcLba: lba(o + 12), dstLba: lba(o + 20),
    });
  }
  return { listId, usage, targets, segments };
}

interface Resolved {
  src: LogicalUnit;
  dst: LogicalUnit;
  seg: Segment;
}

/** Checks every segment before anything is copied: a bad one aborts the copy with nothing written. */
function resolve(cmd: ScsiCmd, targets: TargetDesc[], segments: Segment[]): Resolved[] {
  const lus = targets.map((t) => {
    const lu = findTarget(cmd, t.designator);
    return lu && (t.blockLen === 0 || t.blockLen === lu.blockSize) ? lu : undefined;
  });
  return segments.map((seg) => {
    const src = lus[seg.src];
    const dst = lus[seg.dst];
    // An index past the list or a designator we cannot reach: COPY TARGET DEVICE NOT REACHABLE.
    if (!src || !dst) throw copyAborted();
    if (seg.srcLba + seg.blocks > src.blocks || seg.dstLba + seg.blocks > dst.blocks) throw copyAborted();
    if (seg.blocks * src.blockSize > XCOPY_LIMITS.maxSegmentLength) throw copyAborted();
    if (src.blockSize !== dst.blockSize) throw copyAborted();
    for (const lu of [src, dst]) if (lu.medium !== undefined && !lu.medium.present) throw mediumNotPresent();
    if (dst.writeProtected || (dst === cmd.lu && cmd.itl.writeProtect)) throw writeProtected();
    return { src, dst, seg };
  });
}

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

async function copy(work: Resolved[], status: CopyStatus): Promise<void> {
  let buf: Buffer | undefined;
  for (const { src, dst, seg } of work) {
    const bs = src.blockSize;
    let done = 0;
    while (done < seg.blocks) {
      const n = Math.min(seg.blocks - done, Math.max(1, Math.floor(CHUNK / bs)));
      const len = n * bs;
      buf ??= Buffer.allocUnsafe(Math.max(len, CHUNK));
      const view = [buf.subarray(0, len)];
      await src.backstore.read((seg.srcLba + done) * bs, len, view);
      // Writes to the destination hold their range, as a WRITE command would.
      const hold = await dst.rangeLock.acquire(seg.dstLba + done, n, false);
      try {
        await dst.backstore.write((seg.dstLba + done) * bs, len, view, !dst.mode.wce);
      } finally {
        dst.rangeLock.release(hold);
      }
      done += n;
      status.bytes += len;
      await nextTurn();
    }
    status.segments++;
  }
}

async function extendedCopy(cmd: ScsiCmd): Promise<void> {
  if (!cmd.lu.so.attributes.emulate_3pc) throw invalidOpcode();
  if (cmd.dataLength === 0) return; // nothing to copy (SPC-4 6.3.1)
  const d = sglFlatten(cmd.out(), 0, Math.min(cmd.dataLength, cmd.transferLength));
  const { listId, usage, targets, segments } = parse(d);
  const work = resolve(cmd, targets, segments);
  const ops = heldOf(cmd.lu);
  const key = listKey(cmd, listId);
  // LIST ID USAGE 11b: the list identifier means nothing; otherwise it must not be in use.
  if (usage !== 3 && ops.get(key)?.state === 'running') throw new ScsiError(SenseKey.ILLEGAL_REQUEST, OPERATION_IN_PROGRESS);
  const status: CopyStatus = { state: 'running', segments: 0, bytes: 0 };
  if (usage === 0) ops.set(key, status); // 00b: results held for RECEIVE COPY RESULTS
  try {
    await copy(work, status);
    status.state = 'done';
  } catch (e) {
    status.state = 'failed';
    throw e;
  }
}

function receiveCopyResults(cmd: ScsiCmd): void {
  if (!cmd.lu.so.attributes.emulate_3pc) throw invalidOpcode();
  const sa = cmd.cdb[1] & 0x1f;
  if (sa === 0x03) return cmd.respond(operatingParameters());
  // COPY STATUS
  const ops = heldOf(cmd.lu);
  const key = listKey(cmd, cmd.cdb[2]);
  const st = ops.get(key);
  if (!st) throw invalidCdbField(2);
  if (st.state !== 'running') ops.delete(key); // reported once complete, then discarded
  const b = Buffer.alloc(12);
  b.writeUInt32BE(8, 0);
  b[4] = st.state === 'running' ? 0x00 : st.state === 'done' ? 0x01 : 0x02;
  b.writeUInt16BE(Math.min(st.segments, 0xffff), 5);
  // TRANSFER COUNT UNITS: bytes while they fit, then KiB, MiB... (SPC-4 table 115).
  let units = 0;
  let count = st.bytes;
  while (count > 0xffffffff) {
    count = Math.ceil(count / 1024);
    units++;
  }
  b[7] = units;
  b.writeUInt32BE(count, 8);
  cmd.respond(b);
}

function operatingParameters(): Buffer {
  const types = [SD_BLOCK_TO_BLOCK, TD_IDENTIFICATION];
  const b = Buffer.alloc(44 + types.length);
  const L = XCOPY_LIMITS;
  b.writeUInt32BE(b.length - 4, 0);
  b.writeUInt16BE(L.maxTargetDescriptors, 8);
  b.writeUInt16BE(L.maxSegmentDescriptors, 10);
  b.writeUInt32BE(L.maxDescriptorListLength, 12);
  b.writeUInt32BE(L.maxSegmentLength, 16);
  b.writeUInt32BE(L.maxInlineData, 20);
  b.writeUInt32BE(L.heldDataLimit, 24);
  b.writeUInt32BE(0, 28); // no stream devices
  b.writeUInt16BE(L.totalConcurrentCopies, 34);
  b[36] = Math.min(L.totalConcurrentCopies, 0xff);
  b[37] = L.dataSegmentGranularity;
  b[38] = 0;
  b[39] = 0;
  b[43] = types.length;
  Buffer.from(types).copy(b, 44);
  return b;
}

/**
 * The third-party copy descriptors of VPD page 8Fh (SPC-4 7.8.17): the copy
 * commands served (0001h) and the descriptor types they take (0008h).
 */
function thirdPartyCopyDescriptors(): Buffer {
  const desc = (type: number, body: number[]): Buffer => {
    const b = Buffer.alloc(4 + ((body.length + 3) & ~3));
    b.writeUInt16BE(type, 0);
    b.writeUInt16BE(b.length - 4, 2);
    Buffer.from(body).copy(b, 4);
    return b;
  };
  const commands = [0x83, 1, 0x00, 0x84, 2, 0x00, 0x03];
  return Buffer.concat([
    desc(0x0001, [commands.length, ...commands]),
    desc(0x0008, [2, SD_BLOCK_TO_BLOCK, TD_IDENTIFICATION]),
  ]);
}

addVpdPage(0x8f, (lu) => page(lu, 0x8f, thirdPartyCopyDescriptors()));

export const xcopyCommands: CommandDef[] = [
  {
    // LID1 (SPC-4): service action 00h of 83h.
    name: 'EXTENDED COPY(LID1)', opcode: 0x83, serviceAction: 0x00,
    usage: [0x83, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
    dir: DataDir.OUT, lengthField: [10, 4], flags: 0, pr: 'write', timeout: 600, execute: extendedCopy,
  },
  ...[0x00, 0x03].map((sa): CommandDef => ({
    name: `RECEIVE COPY RESULTS(${sa === 0 ? 'COPY STATUS' : 'OPERATING PARAMETERS'})`, opcode: 0x84, serviceAction: sa,
    usage: [0x84, 0x1f, sa === 0 ? 0xff : 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
    dir: DataDir.IN, lengthField: [10, 4], flags: 0, pr: 'read', execute: receiveCopyResults,
  })),
];
