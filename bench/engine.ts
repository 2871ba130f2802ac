// The engine's own ceiling: SCSI commands per second on one core through the
// loopback fabric (hot-path form, caller-owned buffers) on an rd_mcp LUN, at
// queue depth 32: every completion resubmits its slot, so 32 commands are
// always in flight. The in-run reference is the same random I/O done straight
// on the backstore (no SCSI at all): the ratio is what the SCSI path costs, and
// it holds when the shared machine's speed drifts.

import { performance } from 'node:perf_hooks';
import { Root } from '../src/model/root';
import { LoopbackNexus, type LoopbackOptions } from '../fabrics/loopback/loopback';
import type { Completion } from '../src/core/command';
import type { Backstore } from '../backstores/backstore';
import { diskTable } from '../src/scsi/disk';
import { Status } from '../src/core/sense';
import { Scenario, caseFilter, k, machineLine, numOpt, stats, table } from './common';

const GOAL = 1_000_000; // the goal: commands per second per core
const LUN_BYTES = 256 << 20;
const BLOCK = 512;
const QD = 32;

interface Case {
  name: string;
  write: boolean;
  cdbLen: 10 | 16;
  bytes: number;
  nullio: boolean;
}

const CASES: Case[] = [
  { name: 'read10-4k', write: false, cdbLen: 10, bytes: 4096, nullio: false },
  { name: 'read16-4k', write: false, cdbLen: 16, bytes: 4096, nullio: false },
  { name: 'write10-4k', write: true, cdbLen: 10, bytes: 4096, nullio: false },
  { name: 'write16-4k', write: true, cdbLen: 16, bytes: 4096, nullio: false },
  { name: 'read10-64k', write: false, cdbLen: 10, bytes: 65536, nullio: false },
  { name: 'write10-64k', write: true, cdbLen: 10, bytes: 65536, nullio: false },
  { name: 'read10-4k-nullio', write: false, cdbLen: 10, bytes: 4096, nullio: true },
  { name: 'write10-4k-nullio', write: true, cdbLen: 10, bytes: 4096, nullio: true },
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

function opcode(c: Case): number {
  if (c.cdbLen === 10) return c.write ? 0x2a : 0x28;
  return c.write ? 0x8a : 0x88;
}

interface Slot {
  cdb: Buffer;
  opts: LoopbackOptions;
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
      const cdb = Buffer.alloc(c.cdbLen);
      cdb[0] = opcode(c);
      if (c.cdbLen === 10) cdb.writeUInt16BE(this.blocksPerIo, 7);
      else cdb.writeUInt32BE(this.blocksPerIo, 10);
      const buf = Buffer.alloc(c.bytes, i);
      const opts: LoopbackOptions = c.write
        ? { dataOut: [buf], expectedLength: c.bytes, tag: i + 1 }
        : { dataIn: [buf], expectedLength: c.bytes, tag: i + 1 };
      this.slots.push({ cdb, opts });
    }
  }

  /** Runs for ms milliseconds; resolves with commands per second. */
  run(ms: number): Promise<number> {
    this.completed = 0;
    this.stopping = false;
    const t0 = performance.now();
    this.deadline = t0 + ms;
    return new Promise((resolve) => {
      this.drained = () => resolve(this.completed / ((performance.now() - t0) / 1000));
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
    while (this.ready.length !== 0) {
      const i = this.ready.pop()!;
      if (this.stopping) continue;
      const s = this.slots[i];
      const lba = (this.rng.next() % this.chunks) * this.blocksPerIo;
      if (this.c.cdbLen === 10) s.cdb.writeUInt32BE(lba, 2);
      else {
        s.cdb.writeUInt32BE(0, 2);
        s.cdb.writeUInt32BE(lba, 6);
      }
      this.inflight++;
      this.nexus.submit(0, s.cdb, s.opts, this.onDone);
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
function direct(bs: Backstore, c: Case, ms: number): number {
  const rng = new Rng();
  const chunks = Math.floor(LUN_BYTES / c.bytes);
  const sgl = [Buffer.alloc(c.bytes, 1)];
  let n = 0;
  const t0 = performance.now();
  const end = t0 + ms;
  for (;;) {
    for (let i = 0; i < 1024; i++) {
      const off = (rng.next() % chunks) * c.bytes;
      if (c.write) bs.write(off, c.bytes, sgl, false);
      else bs.read(off, c.bytes, sgl);
    }
    n += 1024;
    const t = performance.now();
    if (t >= end) return n / ((t - t0) / 1000);
  }
}

async function setup(c: Case): Promise<{ root: Root; nexus: LoopbackNexus; bs: Backstore }> {
  const root = new Root();
  const so = await root.createStorageObject({ name: 'bench', plugin: 'rd_mcp', size: LUN_BYTES, blockSize: BLOCK, nullio: c.nullio });
  const tpg = root.createTarget('loopback', 'naa.5001405000000bb1').addTpg(1, {
    generate_node_acls: true,
    demo_mode_write_protect: false,
  });
  tpg.addLun(0, so);
  const nexus = LoopbackNexus.open(tpg, 'naa.5001405000000bb2');
  // The new nexus's POWER ON unit attention, then fill the LUN so reads copy real pages.
  for (let i = 0; i < 4; i++) await nexus.command(0, [0, 0, 0, 0, 0, 0]);
  const fill = [Buffer.alloc(1 << 20, 0xa5)];
  for (let off = 0; off < LUN_BYTES; off += 1 << 20) so.backstore.write(off, 1 << 20, fill, false);
  return { root, nexus, bs: so.backstore };
}

export const engineScenario: Scenario = {
  name: 'engine',
  description: 'SCSI commands/s on one core: loopback fabric, rd_mcp LUN, QD 32 (vs the backstore alone)',
  byDefault: true,
  async run(args) {
    const rounds = numOpt(args, '--rounds', 5);
    const ms = numOpt(args, '--seconds', 1) * 1000;
    const want = caseFilter(args, 'engine');
    console.log(machineLine());
    console.log(`${rounds} rounds of ${ms / 1000} s after a ${ms / 2000} s warm-up; 256 MiB LUN, 512-byte blocks, random aligned LBAs\n`);
    const rows: string[][] = [];
    for (const c of CASES) {
      if (!want(c.name)) continue;
      if (diskTable.find(opcode(c)) === undefined) {
        rows.push([c.name, 'not served yet', '', '', '', '', '', '']);
        continue;
      }
      const { root, nexus, bs } = await setup(c);
      const d = new Driver(nexus, c);
      await d.run(ms / 2);
      const eng: number[] = [];
      const ref: number[] = [];
      for (let r = 0; r < rounds; r++) {
        eng.push(await d.run(ms));
        ref.push(direct(bs, c, ms / 2));
      }
      if (d.failed) {
        const f = d.firstFailure!;
        throw new Error(`${c.name}: ${d.failed} commands failed (status ${f.status}, sense ${f.sense?.toString('hex')})`);
      }
      await root.close();
      const e = stats(eng);
      const b = stats(ref);
      rows.push([
        c.name, k(e.median), k(e.min), k(e.max), `${(1e9 / e.median).toFixed(0)}`,
        k(b.median), `${(e.median / b.median).toFixed(3)}`, `${((100 * e.median) / GOAL).toFixed(0)}%`,
      ]);
      console.log(table(['case', 'cmd/s', 'min', 'max', 'ns/cmd', 'direct/s', 'ratio', 'of 1M'], rows.slice(-1)).split('\n')[1]);
    }
    console.log('\n' + table(['case', 'cmd/s', 'min', 'max', 'ns/cmd', 'direct/s', 'ratio', 'of 1M'], rows));
    console.log('\ncmd/s: median over rounds (min, max); direct/s: the same I/O on the backstore without SCSI; ratio = cmd/s / direct/s');
  },
};
