// A SCSI-level fuzzer through the loopback fabric. Commands come from each
// unit's own command table (so a new opcode is fuzzed as soon as a table
// declares it), with random CDB fields and service actions, transfer lengths
// at the edges, parameter data short, long or garbled, random task attributes
// and the occasional ABORT TASK or LUN RESET, in concurrent batches. It fails
// on what no input may cause: an exception, HARDWARE ERROR or an internal-failure
// sense, a command or TMF that does not complete in time, a completion twice,
// or a changed byte of a unit's medium outside what the batch's commands may write.

import fs from 'node:fs';
import path from 'node:path';
import type { Completion } from '../../src/core/command';
import { TaskAttr } from '../../src/core/command';
import { F, readField, type CommandTable, type TableEntry } from '../../src/core/opcodes';
import { DataDir } from '../../src/core/types';
import { Status, decodeSense } from '../../src/core/sense';
import type { LogicalUnit } from '../../src/core/logical-unit';
import { LoopbackNexus, type LoopbackOptions } from '../../fabrics/loopback/loopback';
import type { StorageObjectSpec } from '../../src/model/root';
import { diskTable } from '../../src/scsi/disk';
import { createRoot } from '../../app/registry';
import { clearUas } from './loopback-setup';

/** mulberry32: one seed, one sequence of commands. */
export class Prng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** A unit's medium as bytes, read the way the fuzzer's check needs it (after a batch, nothing in flight). */
export interface Medium {
  /** Bytes per unit of the ranges mayWrite() returns (the logical block size; 1 for byte-addressed media). */
  readonly unit: number;
  read(): Promise<Buffer>;
}

export interface FuzzUnit {
  lun: number;
  lu: LogicalUnit;
  /** What kind of unit (rd_mcp, fileio, block, tape...): reports name it. */
  kind: string;
  /** Present: no byte of it may change but where the batch's commands may write. */
  medium?: Medium;
}

export interface FuzzTarget {
  units: FuzzUnit[];
  /** Two or more nexuses on the units' TPG: reservations and aborts between initiators. */
  nexuses: LoopbackNexus[];
  /** A LUN no unit is mapped at; commands to it come from this table. */
  unmapped: { lun: number; table: CommandTable };
  close(): Promise<void>;
}

export interface FuzzOptions {
  seed: number;
  commands: number;
  /** Builds a fresh target: at the start and every `epoch` commands (so no state a command sets sticks forever). */
  build(): Promise<FuzzTarget>;
  epoch?: number;
  /** Milliseconds a batch (its commands and TMFs) may take. */
  deadline?: number;
  /** Most failures kept verbatim (all are counted). */
  keep?: number;
  progress?(r: FuzzReport): void;
}

export interface FuzzReport {
  commands: number;
  batches: number;
  tmfs: number;
  /** Table entries (device type and name) of the units fuzzed. */
  entries: Set<string>;
  covered: Set<string>;
  good: Set<string>;
  failureCount: number;
  failures: string[];
}

const STATUSES = new Set<number>([
  Status.GOOD, Status.CHECK_CONDITION, 0x04 /* CONDITION MET */, 0x08 /* BUSY */, Status.RESERVATION_CONFLICT,
  Status.TASK_SET_FULL, 0x30 /* ACA ACTIVE */, Status.TASK_ABORTED,
]);
const HARDWARE_ERROR = 0x04;
const INTERNAL_TARGET_FAILURE = 0x44;
const ILLEGAL_REQUEST = 0x05;
/** Sense keys after which a command has changed nothing. */
const NOTHING_WRITTEN = new Set([0x02 /* NOT READY */, ILLEGAL_REQUEST, 0x06 /* UNIT ATTENTION */, 0x07 /* DATA PROTECT */, 0x0e /* MISCOMPARE */]);
/** Commands whose writes land on other units than their own (EXTENDED COPY's target). */
const WRITES_ELSEWHERE = /^EXTENDED COPY/;

const entryKey = (deviceType: number, e: TableEntry): string => `${deviceType.toString(16).padStart(2, '0')}:${e.name}`;
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** One command as sent, and what came back. */
interface Sent {
  unit: FuzzUnit | undefined;
  nexus: LoopbackNexus;
  entry: TableEntry | undefined;
  cdb: Buffer;
  data: Buffer | undefined;
  expected: number | undefined;
  attr: TaskAttr;
  tag: number;
  done?: Completion;
  twice?: boolean;
}

/** A value for a CDB field of `size` bytes: mostly near `typical`, sometimes at an edge. */
function fieldValue(r: Prng, size: number, typical: number): number {
  const max = size >= 7 ? Number.MAX_SAFE_INTEGER : 2 ** (8 * size) - 1;
  switch (r.int(10)) {
    case 0: return 0;
    case 1: return max;
    case 2: return Math.min(max, typical + 1);
    case 3: return r.int(Math.min(max, 0xffffffff) + 1);
    case 4: case 5: return Math.min(max, typical);
    default: return Math.min(max, r.int(typical + 1));
  }
}

function writeField(cdb: Buffer, offset: number, size: number, v: number): void {
  if (offset + size > cdb.length) return;
  if (size === 8) cdb.writeBigUInt64BE(BigInt(Math.min(v, Number.MAX_SAFE_INTEGER)), offset);
  else cdb.writeUIntBE(v % 2 ** (8 * size), offset, size);
}

export class Fuzzer {
  readonly report: FuzzReport = {
    commands: 0, batches: 0, tmfs: 0, entries: new Set(), covered: new Set(), good: new Set(), failureCount: 0, failures: [],
  };
  private readonly r: Prng;
  /** Data-in seen, reused (garbled or not) as parameter data: a MODE SENSE answer makes a MODE SELECT list. */
  private readonly pool: Buffer[] = [];
  private readonly errors: unknown[] = [];

  constructor(private readonly o: FuzzOptions) {
    this.r = new Prng(o.seed);
  }

  private fail(msg: string): void {
    this.report.failureCount++;
    if (this.report.failures.length < (this.o.keep ?? 20)) this.report.failures.push(msg);
  }

  async run(): Promise<FuzzReport> {
    const onError = (e: unknown): void => {
      this.errors.push(e);
    };
    process.on('uncaughtException', onError);
    process.on('unhandledRejection', onError);
    try {
      const epoch = this.o.epoch ?? 2_000;
      const keep = this.o.keep ?? 20;
      while (this.report.commands < this.o.commands && this.report.failures.length < keep) {
        const t = await this.o.build();
        try {
          for (const u of t.units) for (const e of u.lu.table.all) this.report.entries.add(entryKey(u.lu.deviceType, e));
          const shadows = new Map<FuzzUnit, Buffer>();
          for (const u of t.units) if (u.medium) shadows.set(u, await u.medium.read());
          const end = Math.min(this.o.commands, this.report.commands + epoch);
          while (this.report.commands < end && this.report.failures.length < keep) {
            const ok = await this.batch(t, shadows);
            this.o.progress?.(this.report);
            if (!ok) return this.report; // a hang: this target is wedged
          }
        } finally {
          await t.close();
        }
      }
      return this.report;
    } finally {
      process.off('uncaughtException', onError);
      process.off('unhandledRejection', onError);
    }
  }

  /** One batch: commands submitted together, perhaps a TMF among them, then every check. False on a hang. */
  private async batch(t: FuzzTarget, shadows: Map<FuzzUnit, Buffer>): Promise<boolean> {
    const r = this.r;
    const n = 1 + r.int(12);
    const sent: Sent[] = [];
    const waits: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) {
      const s = this.make(t);
      sent.push(s);
      waits.push(new Promise<void>((resolve) => {
        const opts: LoopbackOptions = { dataOut: s.data, expectedLength: s.expected, taskAttr: s.attr };
        if (sent.length > 1 && r.chance(0.02)) opts.tag = sent[r.int(sent.length - 1)].tag; // an overlapped command
        try {
          s.tag = s.nexus.submit(s.unit?.lun ?? t.unmapped.lun, s.cdb, opts, (c) => {
            if (s.done !== undefined) s.twice = true;
            s.done = c;
            resolve();
          });
        } catch (e) {
          this.fail(`${this.describe(s)}: submit threw ${(e as Error).stack ?? e}`);
          resolve();
        }
      }));
    }
    const tmfs: string[] = [];
    if (r.chance(0.08)) {
      const s = r.pick(sent);
      const lun = s.unit?.lun ?? t.unmapped.lun;
      const fn = r.chance(0.25) ? 'lun-reset' : 'abort-task';
      tmfs.push(`${fn} lun ${lun}`);
      this.report.tmfs++;
      waits.push(s.nexus.taskManagement(fn, lun, s.tag).catch((e) => this.fail(`${fn}: ${(e as Error).stack ?? e}`)));
    }
    let timer: NodeJS.Timeout | undefined;
    const hung = await Promise.race([
      Promise.all(waits).then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), this.o.deadline ?? 10_000);
      }),
    ]);
    clearTimeout(timer);
    this.report.batches++;
    this.report.commands += sent.length;
    if (hung) {
      const open = sent.filter((s) => s.done === undefined).map((s) => this.describe(s));
      this.fail(`hang: no completion within ${this.o.deadline ?? 10_000} ms for ${open.join('; ') || 'a TMF'} (TMFs: ${tmfs.join(', ') || 'none'})`);
      return false;
    }
    // Let a second completion or a late rejection show before judging the batch.
    await new Promise((resolve) => setImmediate(resolve));
    for (const e of this.errors.splice(0)) {
      this.fail(`exception during the batch [${sent.map((s) => this.describe(s)).join('; ')}]: ${(e as Error)?.stack ?? e}`);
    }
    for (const s of sent) this.check(s);
    // A SANITIZE with IMMED goes on writing after its command: the medium is compared once it is done.
    const sanitized = new Set(sent.filter((s) => s.unit !== undefined && s.entry !== undefined && /^SANITIZE/.test(s.entry.name)).map((s) => s.unit!));
    for (const u of sanitized) {
      if (!(await this.settle(u, t.nexuses[0]))) return false;
    }
    await this.checkMedia(sent, shadows, sanitized);
    return true;
  }

  /** Waits for a unit's background operation (SANITIZE) to end; false (and a failure) past the deadline. */
  private async settle(u: FuzzUnit, nexus: LoopbackNexus): Promise<boolean> {
    const until = Date.now() + (this.o.deadline ?? 10_000);
    while (Date.now() < until) {
      // REQUEST SENSE: answered under any reservation (a TEST UNIT READY may get RESERVATION CONFLICT instead).
      const r = await nexus.command(u.lun, [0x03, 0, 0, 0, 18, 0]);
      const d = r.data;
      const key = d.length >= 14 ? d[2] & 0x0f : -1;
      const busy = key === 0x02 && d[12] === 0x04 && d[13] === 0x1b; // SANITIZE IN PROGRESS
      if (!busy && key !== 0x06) return true;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    this.fail(`hang: ${u.kind} LUN ${u.lun} still sanitizing after ${this.o.deadline ?? 10_000} ms`);
    return false;
  }

  /** A command: an entry of the unit's table (rarely an unknown opcode, or the unmapped LUN), its CDB and data. */
  private make(t: FuzzTarget): Sent {
    const r = this.r;
    const unmapped = r.chance(0.03);
    const unit = unmapped ? undefined : r.pick(t.units);
    const table = unit?.lu.table ?? t.unmapped.table;
    const nexus = r.pick(t.nexuses);
    const attr = r.chance(0.85) ? TaskAttr.SIMPLE : r.pick([TaskAttr.ORDERED, TaskAttr.HEAD_OF_QUEUE, TaskAttr.ACA]);
    if (r.chance(0.02)) {
      // Any opcode at all, declared or not, with any bytes.
      const cdb = r.bytes(r.pick([6, 10, 12, 16, 1 + r.int(32)]));
      return { unit, nexus, entry: table.lookup(cdb) ?? undefined, cdb, data: undefined, expected: r.chance(0.5) ? r.int(4096) : undefined, attr, tag: 0 };
    }
    const entry = r.pick(table.all);
    const blockSize = unit?.lu.blockSize ?? 512;
    const blocks = unit?.lu.blocks ?? 0;
    let cdb = Buffer.alloc(entry.usage.length);
    cdb[0] = entry.opcode;
    // Random bits where the usage mask allows them, often none.
    for (let i = 1; i < cdb.length; i++) if (r.chance(0.3)) cdb[i] = r.int(256) & entry.usage[i];
    if (entry.serviceAction !== undefined) {
      if (entry.opcode === 0x7f) cdb.writeUInt16BE(entry.serviceAction, 8);
      else cdb[1] = (cdb[1] & ~0x1f) | entry.serviceAction;
    }
    const lba = entry.lbaField && fieldValue(r, entry.lbaField[1], Math.max(0, blocks - 1));
    if (entry.lbaField) writeField(cdb, entry.lbaField[0], entry.lbaField[1], lba!);
    let count = 0;
    if (entry.blocksField) {
      count = r.chance(0.8) ? r.int(9) : fieldValue(r, entry.blocksField[1], Math.max(1, blocks - (lba ?? 0)));
      writeField(cdb, entry.blocksField[0], entry.blocksField[1], count);
    }
    if (entry.lengthField) {
      // Parameter lists are mostly short and of a few exact sizes (a PR OUT list is 24 bytes, an UNMAP one 8 + 16n).
      const len = entry.dir === DataDir.OUT && r.chance(0.4) ? r.pick([8, 24, 32, 40]) : fieldValue(r, entry.lengthField[1], r.pick([8, 24, 32, 255, 1024]));
      writeField(cdb, entry.lengthField[0], entry.lengthField[1], len);
    }
    // Now and then, a CDB no table allows: a bit outside the mask, too short, too long.
    if (r.chance(0.1)) {
      const i = 1 + r.int(cdb.length - 1);
      cdb[i] ^= 1 << r.int(8);
    }
    if (r.chance(0.03)) cdb = cdb.subarray(0, 1 + r.int(cdb.length - 1));
    else if (r.chance(0.03)) cdb = Buffer.concat([cdb, r.bytes(1 + r.int(16))]);

    let data: Buffer | undefined;
    let expected: number | undefined;
    if (entry.dir === DataDir.OUT) {
      let nominal = entry.lengthField && cdb.length >= entry.lengthField[0] + entry.lengthField[1] ? readField(cdb, entry.lengthField) : 0;
      if (entry.blocksField) nominal = (count || (cdb.length <= 6 ? 256 : 0)) * blockSize;
      if (/COMPARE AND WRITE/.test(entry.name)) nominal *= 2;
      if (/WRITE SAME/.test(entry.name)) nominal = blockSize;
      nominal = Math.min(nominal, 1 << 20);
      const len = r.chance(0.7) ? nominal : r.pick([0, 1, 8, Math.max(0, nominal - 1 - r.int(16)), nominal + 1 + r.int(64), r.int(4096)]);
      data = this.parameterData(len);
    } else if (r.chance(0.3)) {
      expected = r.pick([0, 1, 18, 36, 252, 512, r.int(65536), 0xffffffff]);
    }
    if (data !== undefined && r.chance(0.1)) expected = r.pick([0, data.length + 512, Math.max(0, data.length - 1)]);
    return { unit, nexus, entry, cdb, data, expected, attr, tag: 0 };
  }

  /** Parameter data of `len` bytes: zeros, random, small keys, or data-in seen earlier, as it is or garbled. */
  private parameterData(len: number): Buffer {
    const r = this.r;
    const b = Buffer.alloc(len);
    const kind = r.int(5);
    if (kind === 1) r.bytes(len).copy(b);
    else if (kind === 4) {
      // Small big-endian numbers in 8-byte fields, from few values: reservation keys that match now and then.
      for (let p = 7; p < len; p += 8) if (r.chance(0.5)) b[p] = r.int(3);
    }
    else if (kind >= 2 && this.pool.length > 0) {
      const src = r.pick(this.pool);
      src.copy(b, 0, 0, Math.min(len, src.length));
      // MODE SENSE data as a MODE SELECT list: its MODE DATA LENGTH is reserved there.
      if (len >= 2 && r.chance(0.5)) b[0] = b[1] = 0;
      if (kind === 3) for (let i = 0; i < 1 + r.int(4) && len > 0; i++) b[r.int(len)] ^= 1 << r.int(8);
    }
    return b;
  }

  private describe(s: Sent): string {
    const where = s.unit ? `${s.unit.kind} LUN ${s.unit.lun}` : 'unmapped LUN';
    const data = s.data === undefined ? '' : ` data ${s.data.length} B ${hex(s.data.subarray(0, 32))}${s.data.length > 32 ? '...' : ''}`;
    const exp = s.expected === undefined ? '' : ` expected ${s.expected}`;
    return `${s.entry?.name ?? 'unknown opcode'} on ${where}: cdb ${hex(s.cdb)}${data}${exp} attr ${s.attr}`;
  }

  private check(s: Sent): void {
    const c = s.done!;
    const what = this.describe(s);
    if (s.twice) this.fail(`${what}: completed twice`);
    if (s.entry !== undefined && s.unit !== undefined) this.report.covered.add(entryKey(s.unit.lu.deviceType, s.entry));
    if (!STATUSES.has(c.status)) this.fail(`${what}: status 0x${c.status.toString(16)}`);
    if (c.status === Status.GOOD) {
      if (s.entry !== undefined && s.unit !== undefined) this.report.good.add(entryKey(s.unit.lu.deviceType, s.entry));
      if (c.dataInLength > 0 && c.dataIn !== undefined && this.pool.length < 256 && this.r.chance(0.2)) {
        this.pool.push(Buffer.concat(c.dataIn as Buffer[]).subarray(0, Math.min(c.dataInLength, 4096)));
      } else if (c.dataInLength > 0 && c.dataIn !== undefined && this.r.chance(0.01)) {
        this.pool[this.r.int(this.pool.length)] = Buffer.concat(c.dataIn as Buffer[]).subarray(0, Math.min(c.dataInLength, 4096));
      }
    }
    if (c.status === Status.CHECK_CONDITION) {
      if (c.sense === undefined || c.sense.length < 8) return this.fail(`${what}: CHECK CONDITION without sense`);
      const d = decodeSense(c.sense);
      if (d.key === HARDWARE_ERROR || d.asc === INTERNAL_TARGET_FAILURE) {
        this.fail(`${what}: sense ${hex(c.sense)} (key ${d.key}, ASC ${d.asc.toString(16)}h/${d.ascq.toString(16)}h)`);
      }
    }
    const room = s.expected ?? Number.MAX_SAFE_INTEGER;
    if (c.dataInLength > room) this.fail(`${what}: ${c.dataInLength} bytes of data-in, ${room} expected at most`);
    c.release?.();
  }

  /** What a command may have written on `unit`'s medium, in medium units: ranges, or 'all'. */
  private mayWrite(s: Sent, unit: FuzzUnit): [number, number][] | 'all' {
    const c = s.done!;
    const e = s.entry;
    if (e === undefined) return [];
    if (c.status !== Status.GOOD && c.status !== Status.TASK_ABORTED && c.status !== Status.CHECK_CONDITION) return [];
    if (c.status === Status.CHECK_CONDITION && NOTHING_WRITTEN.has(decodeSense(c.sense!).key)) return [];
    if (s.unit !== unit) return WRITES_ELSEWHERE.test(e.name) ? 'all' : [];
    if (WRITES_ELSEWHERE.test(e.name)) return 'all';
    if ((e.flags & F.WRITE) === 0) return [];
    if (unit.medium!.unit === 1) return 'all'; // byte-addressed (a tape): any write may move every byte after it
    if (e.lbaField && e.blocksField && s.cdb.length >= e.usage.length) {
      const lba = readField(s.cdb, e.lbaField) & (s.cdb.length === 6 ? 0x1fffff : Number.MAX_SAFE_INTEGER);
      const n = readField(s.cdb, e.blocksField) || (s.cdb.length === 6 ? 256 : 0);
      return [[lba, lba + n]];
    }
    if (e.name === 'UNMAP' && s.data !== undefined) {
      const out: [number, number][] = [];
      for (let p = 8; p + 16 <= s.data.length; p += 16) {
        const lba = Number(s.data.readBigUInt64BE(p));
        out.push([lba, lba + s.data.readUInt32BE(p + 8)]);
      }
      return out;
    }
    return 'all';
  }

  /**
   * The media against their shadows, but where the batch may have written; then the shadows follow the media.
   * Units the batch sent nothing to are read every 16th batch only (reading every medium each time costs more
   * than the commands): what a command writes on another unit than its own is still found, a little later.
   */
  private async checkMedia(sent: Sent[], shadows: Map<FuzzUnit, Buffer>, sanitized: Set<FuzzUnit>): Promise<void> {
    const everything = this.report.batches % 16 === 0;
    for (const [unit, shadow] of shadows) {
      if (!everything && !sent.some((s) => s.unit === unit || (s.entry !== undefined && WRITES_ELSEWHERE.test(s.entry.name)))) continue;
      const now = await unit.medium!.read();
      const allowed: [number, number][] = [];
      let all = sanitized.has(unit);
      for (const s of sent) {
        const w = this.mayWrite(s, unit);
        if (w === 'all') all = true;
        else for (const [a, b] of w) allowed.push([a * unit.medium!.unit, b * unit.medium!.unit]);
      }
      if (!all) {
        const diff = firstDiff(shadow, now, allowed);
        if (diff !== undefined) {
          this.fail(`${unit.kind} LUN ${unit.lun}: byte ${diff} changed outside what the batch may write ` +
            `(${sent.map((s) => `${this.describe(s)} -> status ${s.done!.status.toString(16)}`).join('; ')})`);
        }
      }
      shadows.set(unit, now);
    }
  }
}

/** First offset where a and b differ outside the allowed [from, to) byte ranges, or undefined. */
function firstDiff(a: Buffer, b: Buffer, allowed: [number, number][]): number | undefined {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  if (a.equals(b)) return undefined;
  allowed.sort((x, y) => x[0] - y[0]);
  let from = 0;
  const gap = (to: number): number | undefined => {
    if (to <= from || a.subarray(from, to).equals(b.subarray(from, to))) return undefined;
    for (let i = from; i < to; i++) if (a[i] !== b[i]) return i;
    return undefined;
  };
  for (const [x, y] of allowed) {
    const d = gap(Math.min(x, a.length));
    if (d !== undefined) return d;
    from = Math.max(from, Math.min(y, a.length));
  }
  return gap(a.length);
}

/** A unit's data read through its backstore (a disk). */
export function diskMedium(lu: LogicalUnit): Medium {
  return {
    unit: lu.blockSize,
    async read() {
      const b = Buffer.alloc(lu.backstore.size);
      await lu.backstore.read(0, b.length, [b]);
      return b;
    },
  };
}

/** Every cartridge file of a shelf, one after the other in name order (a tape's medium). */
export function shelfMedium(dir: string): Medium {
  return {
    unit: 1,
    async read() {
      const names = fs.readdirSync(dir).filter((f) => f.endsWith('.tape')).sort();
      return Buffer.concat(names.map((f) => Buffer.concat([Buffer.from(`${f}\0`), fs.readFileSync(path.join(dir, f))])));
    },
  };
}

/** The counts a run prints. */
export function summary(r: FuzzReport): string {
  return [
    `commands ${r.commands}`, `batches ${r.batches}`, `TMFs ${r.tmfs}`,
    `entries covered ${r.covered.size}/${r.entries.size}`, `entries GOOD at least once ${r.good.size}`,
    `failures ${r.failureCount}`,
  ].join(', ');
}

/**
 * The units the fuzzer runs against, as LUNs of one loopback TPG: thin disks on rd_mcp (512-byte blocks), fileio
 * (4096) and block (the loop device `loopDev`, 512), a tape drive with a cartridge, a changer with a drive of its
 * own, and a CD/DVD drive with a disc; two initiators; LUN 9 unmapped. Files go under `dir`, new ones per build.
 */
export async function fuzzTarget(dir: string, loopDev: string, build: number): Promise<FuzzTarget> {
  const root = createRoot();
  const d = path.join(dir, `b${build}`);
  fs.mkdirSync(path.join(d, 'shelf'), { recursive: true });
  fs.mkdirSync(path.join(d, 'library'), { recursive: true });
  const disc = path.join(d, 'disc.iso');
  fs.writeFileSync(disc, new Prng(build).bytes(64 * 2048));
  const thin = { emulate_tpu: true, emulate_tpws: true };
  const specs: [string, Record<string, unknown>][] = [
    ['rd_mcp', { name: 'rd', plugin: 'rd_mcp', size: MEDIUM_SIZE, attributes: thin }],
    ['fileio', { name: 'fio', plugin: 'fileio', dev: path.join(d, 'fio.img'), size: MEDIUM_SIZE, block_size: 4096, attributes: thin }],
    ['block', { name: 'blk', plugin: 'block', dev: loopDev, attributes: thin }],
    ['tape', { name: 't0', plugin: 'tape', dev: path.join(d, 'shelf'), cartridge: 'FUZZ01', capacity: 1 << 20 }],
    ['changer', { name: 'lib', plugin: 'changer', dev: path.join(d, 'library'), drives: 'd0', slots: 4, import_export: 1, cartridges: 'FUZ001L6,FUZ002L6', capacity: 1 << 20 }],
    ['tape', { name: 'd0', plugin: 'tape', dev: path.join(d, 'library') }],
    ['optical', { name: 'cd', plugin: 'optical', dev: disc }],
  ];
  const target = root.createTarget('loopback', 'naa.5001405000000f22');
  const tpg = target.addTpg(1, { generate_node_acls: true, demo_mode_write_protect: false });
  const units: FuzzUnit[] = [];
  for (const [i, [kind, spec]] of specs.entries()) {
    const so = await root.createStorageObject(spec as unknown as StorageObjectSpec);
    tpg.addLun(i, so);
    const medium = kind === 'tape' && i === 3 ? shelfMedium(path.join(d, 'shelf')) : ['rd_mcp', 'fileio', 'block'].includes(kind) ? diskMedium(so.lu) : undefined;
    units.push({ lun: i, lu: so.lu, kind, medium });
  }
  const nexuses = [LoopbackNexus.open(tpg, 'naa.5001405aaaaaaaa1'), LoopbackNexus.open(tpg, 'naa.5001405bbbbbbbb2')];
  for (const n of nexuses) await clearUas(n, specs.length);
  return {
    units,
    nexuses,
    unmapped: { lun: 9, table: diskTable },
    async close() {
      await root.close();
      fs.rmSync(d, { recursive: true, force: true });
    },
  };
}

/** Bytes of each disk unit: small, so that reading them all after a batch stays cheap. */
export const MEDIUM_SIZE = 128 << 10;
