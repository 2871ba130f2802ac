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
import { rig, type Rig } from './util/loopback-setup';
import { losetup } from './util/losetup';

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
    assert.equal((storageObjectsRuntime(live)['/backstores/fileio/so0'] as { health: string }).health, 'ok');
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
    const health = (storageObjectsRuntime(live)['/backstores/fileio/so0'] as { health: string }).health;
    assert.match(health, /^storage lost: .*gone\.img was deleted/);
    await writeBlocks(n, 1, 0, pattern(4096, 5));
    assert.ok((await readBlocks(n, 1, 0, 8)).equals(pattern(4096, 5)));
  } finally {
    await r.close();
  }
});
