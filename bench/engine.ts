// The engine's own ceiling: SCSI commands per second on one core through the
// loopback fabric (hot-path form, caller-owned buffers) on an rd_mcp LUN, at
// queue depth 32: every completion resubmits its slot, so 32 commands are
// always in flight. The in-run reference is the same random I/O done straight
// on the backstore (no SCSI at all): the ratio is what the SCSI path costs, and
// it holds when the shared machine's speed drifts.

import { performance } from 'node:perf_hooks';
import { spawnSync } from 'node:child_process';
import { createRoot } from '../app/registry';
import type { Root } from '../src/model/root';
import { LoopbackNexus, type LoopbackOptions } from '../fabrics/loopback/loopback';
import type { Completion } from '../src/core/command';
import type { Backstore } from '../src/core/backstore';
import { diskTable } from '../src/scsi/disk';
import { Status } from '../src/core/sense';
import { Scenario, caseFilter, k, machineLine, numOpt, stats, table } from './common';

const GOAL = 1_000_000; // the goal: commands per second per core
const LUN_BYTES = 256 << 20;
const BLOCK = 512;
const QD = 32;

interface Op {
  write: boolean;
  cdbLen: 10 | 16;
}
const R10: Op = { write: false, cdbLen: 10 };
const W10: Op = { write: true, cdbLen: 10 };
const R16: Op = { write: false, cdbLen: 16 };
const W16: Op = { write: true, cdbLen: 16 };

interface Case {
  name: string;
  /** Each command picks one of these at random. */
  ops: Op[];
  bytes: number;
  nullio: boolean;
}

const CASES: Case[] = [
  { name: 'read10-4k', ops: [R10], bytes: 4096, nullio: false },
  { name: 'read16-4k', ops: [R16], bytes: 4096, nullio: false },
  { name: 'write10-4k', ops: [W10], bytes: 4096, nullio: false },
  { name: 'write16-4k', ops: [W16], bytes: 4096, nullio: false },
  // What a real initiator sends: both directions (2 reads : 1 write) in one stream, so call sites see both;
  // rw-4k also mixes 10- and 16-byte CDBs.
  { name: 'rw10-4k', ops: [R10, R10, W10], bytes: 4096, nullio: false },
  { name: 'rw-4k', ops: [R10, R16, R10, R16, W10, W16], bytes: 4096, nullio: false },
  { name: 'read10-64k', ops: [R10], bytes: 65536, nullio: false },
  { name: 'write10-64k', ops: [W10], bytes: 65536, nullio: false },
  { name: 'read10-4k-nullio', ops: [R10], bytes: 4096, nullio: true },
  { name: 'write10-4k-nullio', ops: [W10], bytes: 4096, nullio: true },
  { name: 'rw10-4k-nullio', ops: [R10, R10, W10], bytes: 4096, nullio: true },
];

/** xorshift32: cheap enough not to show in the profile. */
class Rng {
  private s = 0x9e3779b9;
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (this.s = x >>> 0);
  }
}

function opcode(op: Op): number {
  if (op.cdbLen === 10) return op.write ? 0x2a : 0x28;
  return op.write ? 0x8a : 0x88;
}

/** One in-flight position: a CDB and buffers per op kind, reused by every command it carries. */
interface Slot {
  cdbs: Buffer[];
  opts: LoopbackOptions[];
}

/** Keeps QD commands in flight on one LUN until a deadline; counts completions. */
class Driver {
  private readonly slots: Slot[] = [];
  private readonly ready: number[] = [];
  private pumping = false;
  private inflight = 0;
  private deadline = 0;
  private stopping = false;
  private drained: (() => void) | undefined;
  private readonly rng = new Rng();
  private readonly chunks: number;
  private readonly blocksPerIo: number;
  completed = 0;
  failed = 0;
  firstFailure: Completion | undefined;

  constructor(private readonly nexus: LoopbackNexus, private readonly c: Case) {
    this.blocksPerIo = c.bytes / BLOCK;
    this.chunks = Math.floor(LUN_BYTES / c.bytes);
    for (let i = 0; i < QD; i++) {
      const buf = Buffer.alloc(c.bytes, i);
      const slot: Slot = { cdbs: [], opts: [] };
      for (const op of c.ops) {
        const cdb = Buffer.alloc(op.cdbLen);
        cdb[0] = opcode(op);
        if (op.cdbLen === 10) cdb.writeUInt16BE(this.blocksPerIo, 7);
        else cdb.writeUInt32BE(this.blocksPerIo, 10);
        slot.cdbs.push(cdb);
        slot.opts.push(
          op.write
            ? { dataOut: [buf], expectedLength: c.bytes, tag: i + 1 }
            : { dataIn: [buf], expectedLength: c.bytes, tag: i + 1 },
        );
      }
      this.slots.push(slot);
    }
  }

  /** Runs for ms milliseconds; resolves with commands per second. */
  run(ms: number): Promise<Rate> {
    this.completed = 0;
    this.stopping = false;
    const clock = startClock();
    this.deadline = performance.now() + ms;
    return new Promise((resolve) => {
      this.drained = () => resolve(clock.rate(this.completed));
      for (let i = 0; i < QD; i++) this.ready.push(i);
      this.pump();
    });
  }

  private readonly onDone = (c: Completion): void => {
    this.inflight--;
    if (c.status !== Status.GOOD) {
      this.failed++;
      this.firstFailure ??= c;
    }
    if ((++this.completed & 1023) === 0 && performance.now() >= this.deadline) this.stopping = true;
    this.ready.push(c.tag - 1);
    this.pump();
  };

  /**
   * Resubmits ready slots. Synchronous completions arrive inside submit(): they
   * only queue their slot, and this loop (not the call stack) resubmits it.
   */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    const nops = this.c.ops.length;
    while (this.ready.length !== 0) {
      const i = this.ready.pop()!;
      if (this.stopping) continue;
      const s = this.slots[i];
      const r = this.rng.next();
      const k = nops === 1 ? 0 : r % nops;
      const cdb = s.cdbs[k];
      const lba = (r % this.chunks) * this.blocksPerIo;
      if (cdb.length === 10) cdb.writeUInt32BE(lba, 2);
      else cdb.writeUInt32BE(lba, 6);
      this.inflight++;
      this.nexus.submit(0, cdb, s.opts[k], this.onDone);
    }
    this.pumping = false;
    if (this.stopping && this.inflight === 0 && this.drained) {
      const d = this.drained;
      this.drained = undefined;
      d();
    }
  }
}

/** The same random I/O straight on the backstore, one at a time: the floor under the SCSI path. */
function direct(bs: Backstore, c: Case, ms: number): Rate {
  const rng = new Rng();
  const chunks = Math.floor(LUN_BYTES / c.bytes);
  const sgl = [Buffer.alloc(c.bytes, 1)];
  const nops = c.ops.length;
  let n = 0;
  const clock = startClock();
  const end = performance.now() + ms;
  for (;;) {
    for (let i = 0; i < 1024; i++) {
      const r = rng.next();
      const off = (r % chunks) * c.bytes;
      if (c.ops[nops === 1 ? 0 : r % nops].write) bs.write(off, c.bytes, sgl, false);
      else bs.read(off, c.bytes, sgl);
    }
    n += 1024;
    if (performance.now() >= end) return clock.rate(n);
  }
}

async function setup(c: Case): Promise<{ root: Root; nexus: LoopbackNexus; bs: Backstore }> {
  const root = createRoot();
  const so = await root.createStorageObject({ name: 'bench', plugin: 'rd_mcp', size: LUN_BYTES, blockSize: BLOCK, nullio: c.nullio });
  const tpg = root.createTarget('loopback', 'naa.5001405000000bb1').addTpg(1, {
    generate_node_acls: true,
    demo_mode_write_protect: false,
  });
  tpg.addLun(0, so);
  const nexus = LoopbackNexus.open(tpg, 'naa.5001405000000bb2');
  // The new nexus's POWER ON unit attention, then what an initiator sends when it finds a LUN: the engine's
  // call sites see many table entries, as in a daemon that has served a login (not just the case's opcodes).
  for (let i = 0; i < 4; i++) await nexus.command(0, [0, 0, 0, 0, 0, 0]);
  for (let i = 0; i < 8; i++) for (const cdb of SCAN) await nexus.command(0, cdb);
  const fill = [Buffer.alloc(1 << 20, 0xa5)];
  for (let off = 0; off < LUN_BYTES; off += 1 << 20) so.backstore.write(off, 1 << 20, fill, false);
  return { root, nexus, bs: so.backstore };
}

/** Operations per second of wall time, and per second of this process's CPU time (all its threads). */
interface Rate {
  wall: number;
  cpu: number;
}

function startClock(): { rate(n: number): Rate } {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  return {
    rate(n) {
      const wall = (performance.now() - t0) / 1000;
      const c = process.cpuUsage(c0);
      return { wall: n / wall, cpu: n / ((c.user + c.system) / 1e6) };
    },
  };
}

/** A Linux-like LUN scan: INQUIRY and its VPD pages, capacities, mode pages, REPORT LUNS, cache flush. */
const SCAN: number[][] = [
  [0x12, 0, 0, 0, 36, 0],
  [0x12, 1, 0x00, 0, 255, 0],
  [0x12, 1, 0x80, 0, 255, 0],
  [0x12, 1, 0x83, 0, 255, 0],
  [0x12, 1, 0xb0, 0, 255, 0],
  [0x12, 1, 0xb1, 0, 255, 0],
  [0x12, 1, 0xb2, 0, 255, 0],
  [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
  [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
  [0x1a, 0, 0x3f, 0, 255, 0],
  [0x5a, 0, 0x08, 0, 0, 0, 0, 0, 255, 0],
  [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
  [0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0],
  [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0],
  [0x00, 0, 0, 0, 0, 0],
];

interface CaseResult {
  engine: Rate[];
  direct: Rate[];
}

/** Runs one case in this process: warm-up, then rounds alternating the engine and the reference. */
async function runCase(c: Case, rounds: number, ms: number): Promise<CaseResult> {
  const { root, nexus, bs } = await setup(c);
  const d = new Driver(nexus, c);
  await d.run(ms / 2);
  const res: CaseResult = { engine: [], direct: [] };
  for (let r = 0; r < rounds; r++) {
    res.engine.push(await d.run(ms));
    res.direct.push(direct(bs, c, ms / 2));
  }
  if (d.failed) {
    const f = d.firstFailure!;
    throw new Error(`${c.name}: ${d.failed} commands failed (status ${f.status}, sense ${f.sense?.toString('hex')})`);
  }
  await root.close();
  return res;
}

/**
 * Each case runs in a process of its own, so that what the JIT learned from
 * one case (say, only reads) does not help or hurt the next.
 */
function runChild(c: Case, args: string[]): CaseResult {
  const r = spawnSync(process.execPath, [...process.execArgv, require.main!.filename, 'engine', '--child', c.name, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = r.stdout.split('\n').find((l) => l.startsWith(RESULT));
  if (r.status !== 0 || !line) throw new Error(`${c.name}: child failed (status ${r.status})\n${r.stdout}`);
  return JSON.parse(line.slice(RESULT.length)) as CaseResult;
}

const RESULT = 'engine-result ';
const HEADER = ['case', 'cmd/cpu-s', 'min', 'max', 'cpu-ns/cmd', 'cmd/s wall', 'direct/cpu-s', 'ratio', 'of 1M'];

export const engineScenario: Scenario = {
  name: 'engine',
  description: 'SCSI commands/s on one core: loopback fabric, rd_mcp LUN, QD 32 (vs the backstore alone)',
  byDefault: true,
  async run(args) {
    const rounds = numOpt(args, '--rounds', 5);
    const ms = numOpt(args, '--seconds', 1) * 1000;
    const child = args.indexOf('--child');
    if (child >= 0) {
      const c = CASES.find((x) => x.name === args[child + 1])!;
      console.log(RESULT + JSON.stringify(await runCase(c, rounds, ms)));
      return;
    }
    const want = caseFilter(args, 'engine');
    const passOn = args.filter((a, i) => a === '--rounds' || a === '--seconds' || args[i - 1] === '--rounds' || args[i - 1] === '--seconds');
    console.log(machineLine());
    console.log(`each case in its own process: ${ms / 2000} s warm-up, ${rounds} rounds of ${ms / 1000} s; ` +
      `${LUN_BYTES >> 20} MiB LUN, ${BLOCK}-byte blocks, random aligned LBAs\n`);
    console.log(table(HEADER, [HEADER.map(() => '')]).split('\n')[0]);
    const rows: string[][] = [];
    for (const c of CASES) {
      if (!want(c.name)) continue;
      const missing = c.ops.find((op) => diskTable.find(opcode(op)) === undefined);
      if (missing) {
        rows.push([c.name, 'not served yet', ...HEADER.slice(2).map(() => '')]);
        continue;
      }
      const res = runChild(c, passOn);
      const e = stats(res.engine.map((r) => r.cpu));
      const w = stats(res.engine.map((r) => r.wall));
      const b = stats(res.direct.map((r) => r.cpu));
      const row = [
        c.name, k(e.median), k(e.min), k(e.max), `${(1e9 / e.median).toFixed(0)}`, k(w.median),
        k(b.median), `${(e.median / b.median).toFixed(3)}`, `${((100 * e.median) / GOAL).toFixed(0)}%`,
      ];
      rows.push(row);
      console.log(table(HEADER, [row]).split('\n')[1]);
    }
    console.log('\n' + table(HEADER, rows));
    console.log('\ncmd/cpu-s: commands per second of the process\'s CPU time (the per-core rate), median over rounds ' +
      '(min, max);\ncmd/s wall: per second of elapsed time (lower when the machine is shared); direct/cpu-s: the same ' +
      'I/O on the backstore\nwithout SCSI; ratio = cmd/cpu-s / direct/cpu-s');
  },
};
