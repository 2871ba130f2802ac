// Data integrity: a seeded random mix of WRITE, READ, UNMAP, WRITE SAME and
// COMPARE AND WRITE, several in flight at once, over a small hot region so
// that commands keep overlapping earlier ones, on rd_mcp, fileio and block (a
// loop device). Every READ and every COMPARE AND WRITE outcome is checked
// against an in-memory model. Commands in flight together touch disjoint
// ranges (SIMPLE tasks may run in any order, so overlapping ones in flight
// have no single right answer). On fileio and block, data written with FUA,
// or before a SYNCHRONIZE CACHE, is checked in the file a fresh open reads.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { rig } from './util/loopback-setup';
import type { LoopbackNexus, LoopbackResult } from '../fabrics/loopback/loopback';
import type { StorageObjectSpec } from '../src/model/root';
import { Status } from '../src/core/sense';
import { cdb10, cdb16, good, pattern } from './util/cdb';
import { losetup, readFileRange } from './util/losetup';
import { rng } from './util/rng';

const BS = 512;
const SIZE = 8 << 20;
const BLOCKS = SIZE / BS;
/** Commands land in the first HOT blocks: with QD commands per batch, most overlap earlier ones. */
const HOT = 2048;
const QD = 8;
const BATCHES = 250;
const MAX_BLOCKS = 64;
const SEED = 0x5bc2026;

let dir: string;
const loops: string[] = [];

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsio-integrity-'));
});
after(() => {
  for (const dev of loops) losetup(['--detach', dev]);
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Op {
  lba: number;
  blocks: number;
  run(): Promise<void>;
  /** Checks the file after the batch (FUA writes on persistent stores). */
  durable?: boolean;
}

interface Counts {
  [op: string]: number;
}

/**
 * Runs the random mix against LUN 0 of a rig built from spec. `file`: where
 * the blocks end up on disk (the fileio file, the loop's backing file).
 */
async function run(spec: Partial<StorageObjectSpec>, file?: string): Promise<Counts> {
  const r = await rig([{ size: SIZE, ...spec, attributes: { emulate_tpu: true, emulate_tpws: true } }]);
  const counts: Counts = {};
  try {
    const n = await r.nexus();
    // Every store starts fresh: all zeros.
    const model = Buffer.alloc(SIZE);
    const random = rng(SEED);
    const int = (k: number): number => Math.floor(random() * k);
    let seed = 1;
    const cmd = async (c: Buffer, dataOut?: Buffer): Promise<LoopbackResult> => n.command(0, c, dataOut ? { dataOut } : {});
    const expectGood = (res: LoopbackResult, what: string): void => good(res, what);

    const makeOp = (lba: number, blocks: number): Op => {
      const kind = int(100);
      const at = lba * BS;
      const len = blocks * BS;
      if (kind < 35) {
        const data = pattern(len, seed++);
        const fua = int(4) === 0;
        const c = int(2) === 0 ? cdb10(0x2a, lba, blocks, fua ? 0x08 : 0) : cdb16(0x8a, lba, blocks, fua ? 0x08 : 0);
        data.copy(model, at);
        counts.write = (counts.write ?? 0) + 1;
        return { lba, blocks, durable: fua, run: async () => expectGood(await cmd(c, data), `WRITE ${lba}+${blocks}`) };
      }
      if (kind < 60) {
        const want = Buffer.from(model.subarray(at, at + len));
        counts.read = (counts.read ?? 0) + 1;
        return {
          lba, blocks, run: async () => {
            const res = await cmd(cdb16(0x88, lba, blocks));
            expectGood(res, `READ ${lba}+${blocks}`);
            assert.ok(res.data.equals(want), `READ ${lba}+${blocks} differs from the model`);
          },
        };
      }
      if (kind < 70) {
        const list = Buffer.alloc(24);
        list.writeUInt16BE(22, 0);
        list.writeUInt16BE(16, 2);
        list.writeBigUInt64BE(BigInt(lba), 8);
        list.writeUInt32BE(blocks, 16);
        model.fill(0, at, at + len);
        counts.unmap = (counts.unmap ?? 0) + 1;
        return { lba, blocks, run: async () => expectGood(await cmd(Buffer.from([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0]), list), 'UNMAP') };
      }
      if (kind < 82) {
        // Half of them zero with UNMAP (deallocate), half a pattern.
        const zero = int(2) === 0;
        const block = zero ? Buffer.alloc(BS) : pattern(BS, seed++);
        for (let p = at; p < at + len; p += BS) block.copy(model, p);
        counts.writeSame = (counts.writeSame ?? 0) + 1;
        return {
          lba, blocks,
          run: async () => expectGood(await cmd(cdb16(0x93, lba, blocks, zero ? 0x08 : 0), block), 'WRITE SAME'),
        };
      }
      // COMPARE AND WRITE of one block: the verify half from the model, or wrong at a known byte.
      const cur = Buffer.from(model.subarray(at, at + BS));
      const next = pattern(BS, seed++);
      const wrongAt = int(3) === 0 ? int(BS) : -1;
      const verify = Buffer.from(cur);
      if (wrongAt >= 0) verify[wrongAt] ^= 0x80;
      else next.copy(model, at);
      const c = Buffer.alloc(16);
      c[0] = 0x89;
      c.writeBigUInt64BE(BigInt(lba), 2);
      c[13] = 1;
      counts.compareAndWrite = (counts.compareAndWrite ?? 0) + 1;
      return {
        lba, blocks: 1, run: async () => {
          const res = await cmd(c, Buffer.concat([verify, next]));
          if (wrongAt < 0) return expectGood(res, `COMPARE AND WRITE ${lba}`);
          assert.equal(res.status, Status.CHECK_CONDITION);
          assert.deepEqual([res.senseKey, res.asc, res.info], [0xe, 0x1d, BigInt(wrongAt)], `miscompare at ${wrongAt}`);
        },
      };
    };

    for (let b = 0; b < BATCHES; b++) {
      const ops: Op[] = [];
      for (let tries = 0; ops.length < QD && tries < 4 * QD; tries++) {
        const blocks = 1 + int(MAX_BLOCKS);
        const lba = int(HOT - blocks);
        if (ops.some((o) => lba < o.lba + o.blocks && o.lba < lba + blocks)) continue;
        ops.push(makeOp(lba, blocks));
      }
      await Promise.all(ops.map((o) => o.run()));
      if (file === undefined) continue;
      for (const o of ops) {
        if (!o.durable) continue;
        const at = o.lba * BS;
        assert.ok(readFileRange(file, at, o.blocks * BS).equals(model.subarray(at, at + o.blocks * BS)), `FUA write at ${o.lba} not in the file`);
      }
      if (b % 50 === 49) {
        expectGood(await cmd(cdb10(0x35, 0, 0)), 'SYNCHRONIZE CACHE');
        assert.ok(readFileRange(file, 0, HOT * BS).equals(model.subarray(0, HOT * BS)), `after SYNCHRONIZE CACHE (batch ${b}) the file differs`);
      }
    }
    // The whole medium, once more, through the target.
    const all = await cmd(cdb16(0x88, 0, BLOCKS));
    good(all);
    assert.ok(all.data.equals(model), 'the medium differs from the model');
  } finally {
    await r.close();
  }
  return counts;
}

function assertMix(c: Counts): void {
  for (const op of ['write', 'read', 'unmap', 'writeSame', 'compareAndWrite']) assert.ok((c[op] ?? 0) > 50, `${op}: ${c[op]}`);
}

test('rd_mcp: random overlapping WRITE/READ/UNMAP/WRITE SAME/COMPARE AND WRITE at QD 8 match the model', async () => {
  assertMix(await run({ plugin: 'rd_mcp' }));
});

test('fileio: the same mix matches the model, and FUA / SYNCHRONIZE CACHE data is in the file', async () => {
  const file = path.join(dir, 'fileio.img');
  assertMix(await run({ plugin: 'fileio', dev: file }, file));
  // Closing flushed: the file is the medium.
  assert.equal(fs.statSync(file).size, SIZE);
});

test('block (loop device): the same mix matches the model, and FUA / SYNCHRONIZE CACHE data reaches the backing file', async () => {
  const file = path.join(dir, 'loop.img');
  fs.writeFileSync(file, '');
  fs.truncateSync(file, SIZE);
  const dev = losetup(['--find', '--show', file]);
  loops.push(dev);
  assertMix(await run({ plugin: 'block', dev }, file));
});
