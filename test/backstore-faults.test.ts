// Faults of the storage under a unit, with real kernel parts: a small ext4 on a loop device filled up
// under a thin fileio LU, a backing file deleted under a live LU. (Failing sectors need device-mapper's
// error and flakey targets, which the host kernel lacks: backstore-faults-guest.test.ts.)

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { storageObjectsRuntime } from '../app/control/views';
import type { Live } from '../app/daemon/reconcile';
import { checkSense, cdb16, good, pattern, readBlocks, writeBlocks } from './util/cdb';
import { INITIATOR_B, rig, type Rig } from './util/loopback-setup';
import type { LoopbackNexus, LoopbackResult } from '../fabrics/loopback/loopback';
import { losetup } from './util/losetup';
import { startTsiod, tcli } from './util/tsiod';

const MiB = 1 << 20;
const FS_SIZE = 16 * MiB;

let dir: string;
let mnt: string;
let loop: string;

/** A fresh 16 MiB ext4, loop-mounted at mnt (root, util-linux and e2fsprogs: scripts/install-deps --test). */
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsio-faults-'));
  const img = path.join(dir, 'fs.img');
  fs.writeFileSync(img, '');
  fs.truncateSync(img, FS_SIZE);
  execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', img]);
  loop = losetup(['--find', '--show', img]);
  mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  execFileSync('mount', [loop, mnt]);
});

after(() => {
  if (mnt) execFileSync('umount', [mnt]);
  if (loop) losetup(['-d', loop]);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A thin 64 MiB fileio LU on the small file system (LUN 0) and a RAM LU beside it (LUN 1). */
async function thinRig(file: string, attributes: Record<string, number | boolean> = {}): Promise<Rig> {
  return rig([
    { plugin: 'fileio', dev: file, size: 64 * MiB, attributes: { emulate_tpu: true, emulate_tpws: true, ...attributes } },
    { plugin: 'rd_mcp', size: 4 * MiB },
  ] as never);
}

test('a full file system under a thin fileio LU: DATA PROTECT / SPACE ALLOCATION FAILED WRITE PROTECT, reads still served, other LUs too', async () => {
  const file = path.join(mnt, 'thin.img');
  const r = await thinRig(file);
  try {
    const n = await r.nexus();
    const first = pattern(MiB, 1);
    await writeBlocks(n, 0, 0, first);
    // 1 MiB at a time, each at a new place: the file system runs out long before the LU's 64 MiB.
    let res;
    let lba = 2048;
    for (; lba < 64 * 2048; lba += 2048) {
      res = await n.command(0, cdb16(0x8a, lba, 2048), { dataOut: pattern(MiB, lba) });
      if (res.status !== 0) break;
    }
    assert.ok(lba < 64 * 2048, 'the 16 MiB file system took 64 MiB of writes');
    checkSense(res!, { key: 0x7, asc: 0x27, ascq: 0x07 }, 'WRITE on a full file system');
    // What was written reads back, and the unit still serves reads and its neighbours everything.
    assert.ok((await readBlocks(n, 0, 0, 2048)).equals(first));
    good(await n.command(0, [0, 0, 0, 0, 0, 0]), 'TEST UNIT READY');
    await writeBlocks(n, 1, 0, pattern(4096, 7));
    assert.ok((await readBlocks(n, 1, 0, 8)).equals(pattern(4096, 7)));
    // Space freed (the initiator unmaps a range) lets writes allocate again.
    const unmap = Buffer.alloc(24);
    unmap.writeUInt16BE(22, 0);
    unmap.writeUInt16BE(16, 2);
    unmap.writeBigUInt64BE(2048n, 8);
    unmap.writeUInt32BE(8 * 2048, 16);
    good(await n.command(0, [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], { dataOut: unmap }), 'UNMAP');
    await writeBlocks(n, 0, lba, pattern(MiB, 9));
  } finally {
    await r.close();
    fs.rmSync(file, { force: true });
  }
});

test('the backing file deleted under a live fileio LU: NOT READY / MANUAL INTERVENTION REQUIRED, health says so, other LUs served', async () => {
  const file = path.join(dir, 'gone.img');
  const r = await thinRig(file);
  try {
    const n = await r.nexus();
    await writeBlocks(n, 0, 0, pattern(4096, 3));
    const live = { root: r.root } as unknown as Live;
    assert.equal(((await storageObjectsRuntime(live))['/backstores/fileio/so0'] as { health: string }).health, 'ok');
    fs.unlinkSync(file);
    // inotify tells the store within a turn or two of the loop.
    for (let i = 0; i < 100 && r.sos[0].lu.fault === undefined; i++) await new Promise((res) => setTimeout(res, 10));
    checkSense(await n.command(0, cdb16(0x88, 0, 8)), { key: 0x2, asc: 0x04, ascq: 0x03 }, 'READ after delete');
    checkSense(await n.command(0, cdb16(0x8a, 0, 8), { dataOut: pattern(4096, 4) }), { key: 0x2, asc: 0x04, ascq: 0x03 }, 'WRITE');
    checkSense(await n.command(0, [0, 0, 0, 0, 0, 0]), { key: 0x2, asc: 0x04, ascq: 0x03 }, 'TEST UNIT READY');
    good(await n.command(0, [0x12, 0, 0, 0, 96, 0]), 'INQUIRY');
    // REQUEST SENSE reports the condition as data.
    const rs = await n.command(0, [0x03, 0, 0, 0, 18, 0]);
    good(rs, 'REQUEST SENSE');
    assert.deepEqual([rs.data[2] & 0xf, rs.data[12], rs.data[13]], [0x2, 0x04, 0x03]);
    const health = ((await storageObjectsRuntime(live))['/backstores/fileio/so0'] as { health: string }).health;
    assert.match(health, /^storage lost: .*gone\.img was deleted/);
    await writeBlocks(n, 1, 0, pattern(4096, 5));
    assert.ok((await readBlocks(n, 1, 0, 8)).equals(pattern(4096, 5)));
  } finally {
    await r.close();
  }
});

/** LOG SENSE of page/subpage, current values. */
const logSense = (n: LoopbackNexus, lun: number, page: number, subpage = 0, pointer = 0) =>
  n.command(lun, [0x4d, 0, 0x40 | page, subpage, 0, pointer >> 8, pointer & 0xff, 0x10, 0, 0]);

/** The LOGICAL BLOCK PROVISIONING log page's parameters: code -> [count, scope]. */
function lbpCounts(data: Buffer): Map<number, [number, number]> {
  assert.equal(data[0] & 0x3f, 0x0c);
  const m = new Map<number, [number, number]>();
  for (let p = 4; p < 4 + data.readUInt16BE(2); p += 4 + data[p + 3]) {
    assert.equal(data[p + 3], 8, 'parameter length');
    m.set(data.readUInt16BE(p), [data.readUInt32BE(p + 4), data[p + 8] & 3]);
  }
  return m;
}

/** TEST UNIT READY every 100 ms until it reports a unit attention (its sense), or ms pass (undefined). */
async function awaitUa(n: LoopbackNexus, lun: number, ms: number): Promise<LoopbackResult | undefined> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((res) => setTimeout(res, 100))) {
    const r = await n.command(lun, [0, 0, 0, 0, 0, 0]);
    if (r.status === 2 && r.senseKey === 6) return r;
  }
  return undefined;
}

test('thin provisioning soft threshold on the file system: VPD B2 exponent, LOG SENSE 0Ch counts, THIN PROVISIONING SOFT THRESHOLD REACHED once', async () => {
  const file = path.join(mnt, 'thresh.img');
  const r = await thinRig(file, { tp_soft_threshold: 40 });
  try {
    const n = await r.nexus();
    const other = await r.nexus(INITIATOR_B);
    const b2 = await n.command(0, [0x12, 1, 0xb2, 0, 64, 0]);
    assert.equal(b2.data[4], 11, 'THRESHOLD EXPONENT: 1 MiB sets of 512-byte blocks');
    const pages = await logSense(n, 0, 0);
    good(pages, 'LOG SENSE supported pages');
    assert.deepEqual([...pages.data.subarray(4)], [0x00, 0x0c]);
    const sub = await logSense(n, 0, 0, 0xff);
    assert.deepEqual([...sub.data.subarray(4)], [0x00, 0x00, 0x00, 0xff, 0x0c, 0x00]);
    const before = lbpCounts((await logSense(n, 0, 0x0c)).data);
    assert.equal(before.get(2)![0], 0, 'nothing used yet');
    assert.ok(before.get(1)![0] >= 12 && before.get(1)![0] <= 16, `available ${before.get(1)![0]} MiB of a 16 MiB file system`);
    assert.equal(before.get(1)![1], 2, 'available: shared with the file system');
    assert.equal(await awaitUa(n, 0, 1500), undefined, 'no threshold UA while nearly empty');
    // The UA may come while the writes go on (the unit looks every second): a write it fails is sent again.
    let ua: LoopbackResult | undefined;
    for (let i = 0; i < 8; i++) {
      const w = () => n.command(0, cdb16(0x8a, i * 2048, 2048), { dataOut: pattern(MiB, i) });
      let res = await w();
      if (res.status === 2 && res.senseKey === 6 && ua === undefined) [ua, res] = [res, await w()];
      good(res, `WRITE ${i}`);
    }
    ua ??= await awaitUa(n, 0, 5000);
    assert.ok(ua, 'THIN PROVISIONING SOFT THRESHOLD REACHED within 5 s of crossing');
    checkSense(ua, { key: 6, asc: 0x38, ascq: 0x07 }, 'the threshold UA');
    // Every nexus gets it (SITUA 0), each once.
    const seen = [];
    for (let i = 0; i < 8; i++) {
      const t = await other.command(0, [0, 0, 0, 0, 0, 0]);
      if (t.status === 2 && t.senseKey === 6) seen.push(`${t.asc}/${t.ascq}`);
    }
    assert.ok(seen.includes(`${0x38}/${0x07}`), `second nexus saw ${seen}`);
    assert.equal(await awaitUa(n, 0, 2500), undefined, 'raised once, not at every look');
    const afterWrites = lbpCounts((await logSense(n, 0, 0x0c)).data);
    assert.ok(afterWrites.get(2)![0] >= 8, `used ${afterWrites.get(2)![0]} MiB`);
    assert.ok(afterWrites.get(1)![0] <= before.get(1)![0] - 8, 'available shrank by what was written');
    // PARAMETER POINTER 2: only the used count; past the last parameter: refused.
    assert.deepEqual([...lbpCounts((await logSense(n, 0, 0x0c, 0, 2)).data).keys()], [2]);
    checkSense(await logSense(n, 0, 0x0c, 0, 3), { key: 5, asc: 0x24, field: { inCdb: true, byte: 5 } });
    // A fully provisioned unit serves no thresholds: exponent 0, no page 0Ch.
    const fat = await n.command(1, [0x12, 1, 0xb2, 0, 64, 0]);
    assert.equal(fat.data[4], 0);
    checkSense(await logSense(n, 1, 0x0c), { key: 5, asc: 0x24, field: { inCdb: true, byte: 2 } });
  } finally {
    await r.close();
    fs.rmSync(file, { force: true });
  }
});

test('tp_allocation_limit: the available count is what is left of the limit, and the soft threshold counts against it', async () => {
  const file = path.join(dir, 'limited.img');
  const r = await thinRig(file, { tp_soft_threshold: 50, tp_allocation_limit: 4 });
  try {
    const n = await r.nexus();
    assert.deepEqual(lbpCounts((await logSense(n, 0, 0x0c)).data).get(1), [4, 1], '4 MiB available, the unit\'s own');
    await writeBlocks(n, 0, 0, pattern(MiB, 1));
    assert.equal(await awaitUa(n, 0, 1500), undefined, '1 of 4 MiB: below 50%');
    await writeBlocks(n, 0, 2048, pattern(MiB, 2));
    const ua = await awaitUa(n, 0, 5000);
    assert.ok(ua, 'soft threshold UA at 2 of 4 MiB');
    checkSense(ua, { key: 6, asc: 0x38, ascq: 0x07 });
    assert.deepEqual(lbpCounts((await logSense(n, 0, 0x0c)).data).get(1), [2, 1]);
  } finally {
    await r.close();
    fs.rmSync(file, { force: true });
  }
});

test('tsiod: a deleted backing file shows in tcli info as the unit\'s health; the other storage object stays ok', async () => {
  const file = path.join(dir, 'daemon.img');
  const d = await startTsiod(
    `storage_objects:\n  - { name: f0, plugin: fileio, dev: ${file}, size: 1MiB }\n  - { name: ram0, plugin: rd_mcp, size: 1MiB }\ntargets: []\n`,
  );
  try {
    const info = (p: string) => {
      const r = tcli(d.sock, ['info', p]);
      assert.equal(r.status, 0, r.stderr);
      return r.stdout;
    };
    assert.match(info('/backstores/fileio/f0'), /^health: ok$/m);
    fs.unlinkSync(file);
    let out = '';
    for (let i = 0; i < 50 && !/storage lost/.test(out); i++, await new Promise((res) => setTimeout(res, 100))) out = info('/backstores/fileio/f0');
    assert.match(out, /^health: storage lost: the backing file .*daemon\.img was deleted$/m);
    assert.match(info('/backstores/rd_mcp/ram0'), /^health: ok$/m);
  } finally {
    await d.stop();
  }
});
