// The rbd backstore against a real single-node Ceph cluster (scripts/ceph-dev): image creation and
// growth, vectored I/O seen by another RADOS client, zeroing and the allocation map, WRITE SAME and
// COMPARE AND WRITE offload, resizes from outside, errors. Then the SCSI view through a loopback
// nexus: COMPARE AND WRITE's miscompare offset, GET LBA STATUS, CAPACITY DATA HAS CHANGED.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { createRbd } from '../backstores/rbd';
import type { Backstore, BackstoreOptions } from '../src/core/backstore';
import { Status } from '../src/core/sense';
import { ceph, type Ceph } from './util/ceph';
import { rig } from './util/loopback-setup';
import { rbdConnect } from '../native';
import { cdb16, checkSense, miscompareAt, readBlocks, writeBlocks } from './util/cdb';

const MiB = 1 << 20;
const OBJECT = 4 * MiB;

let c: Ceph;
const opened: Backstore[] = [];

before(() => {
  c = ceph();
});

after(async () => {
  for (const s of opened) await s.close().catch(() => undefined);
});

function opts(image: string, more: Partial<BackstoreOptions> = {}, params: Record<string, string | number> = {}): BackstoreOptions {
  return { name: image, params: { image, conf: c.conf, ...params }, ...more };
}

async function open(image: string, more: Partial<BackstoreOptions> = {}, params: Record<string, string | number> = {}): Promise<Backstore> {
  const s = await createRbd(opts(image, more, params));
  opened.push(s);
  return s;
}

async function readBack(s: Backstore, offset: number, length: number): Promise<Buffer> {
  const b = Buffer.alloc(length, 0xee);
  await s.read(offset, length, [b]);
  return b;
}

test('a missing image is created thin at the size asked; reopened it keeps it; a larger size grows it, a smaller never shrinks it', async () => {
  const name = c.imageName('create');
  const s = await open(name, { size: 64 * MiB });
  assert.equal(s.plugin, 'rbd');
  assert.equal(s.size, 64 * MiB);
  assert.equal(s.blockSize, 512);
  assert.deepEqual(s.caps, { unmap: true, writeZeroes: true, lbaStatus: true, sanitizeOverwrite: true, sanitizeBlockErase: true, persistent: true, nonRotational: false });
  const info = JSON.parse(c.rbd('info', `rbd/${name}`, '--format', 'json')) as { size: number; features: string[] };
  assert.equal(info.size, 64 * MiB);
  assert.ok(info.features.includes('fast-diff'), info.features.join());
  assert.match(c.rbd('du', `rbd/${name}`), /0 B/);
  await s.close();

  const bigger = await open(name, { size: 96 * MiB, blockSize: 4096 });
  assert.equal(bigger.size, 96 * MiB);
  assert.equal(bigger.blockSize, 4096);
  await assert.rejects(bigger.resize!(32 * MiB), /never shrunk/);
  await bigger.resize!(128 * MiB);
  assert.equal(bigger.size, 128 * MiB);
  await bigger.close();
  const again = await open(name, { size: 16 * MiB });
  assert.equal(again.size, 128 * MiB, 'an existing image keeps its size');
  await again.close();
});

test('reads and writes go through the sgl in place, in any segmentation, and another client sees them', async () => {
  const name = c.imageName('rw');
  const s = await open(name, { size: 32 * MiB });
  const data = crypto.randomBytes(3 * MiB);
  // Segments of odd sizes, and more of them than one librbd call takes (IOV_MAX).
  const segs: Buffer[] = [];
  for (let p = 0, i = 0; p < data.length; i++) {
    const n = Math.min(data.length - p, i < 1500 ? 512 : 65536 + 512 * (i % 7));
    segs.push(data.subarray(p, p + n));
    p += n;
  }
  assert.ok(segs.length > 1024);
  await s.write(OBJECT - MiB, data.length, segs, false);
  assert.ok((await readBack(s, OBJECT - MiB, data.length)).equals(data));
  // A second connection (another timeout makes another RADOS client) reads what the first wrote.
  const other = await open(name, {}, { timeout: 29 });
  assert.ok((await readBack(other, OBJECT - MiB, data.length)).equals(data));
  // Many at once: each completion settles its own command.
  const reads = Array.from({ length: 64 }, (_, i) => readBack(s, OBJECT - MiB + i * 4096, 4096));
  const got = await Promise.all(reads);
  got.forEach((b, i) => assert.ok(b.equals(data.subarray(i * 4096, (i + 1) * 4096)), `read ${i}`));
  // Many multi-segment reads at once (as guest memory comes): librbd fills each list at completion.
  const split = Array.from({ length: 64 }, () => {
    const b = Buffer.alloc(4096, 0xee);
    return [b.subarray(0, 512), b.subarray(512, 1536), b.subarray(1536)];
  });
  await Promise.all(split.map((sgl, i) => s.read(OBJECT - MiB + i * 4096, 4096, sgl)));
  split.forEach((sgl, i) => assert.ok(Buffer.concat(sgl).equals(data.subarray(i * 4096, (i + 1) * 4096)), `split read ${i}`));
  // A read into a longer sgl fills only the asked length.
  const long = Buffer.alloc(8192, 0xaa);
  await s.read(OBJECT - MiB, 4096, [long]);
  assert.ok(long.subarray(0, 4096).equals(data.subarray(0, 4096)));
  assert.equal(long[4096], 0xaa);
  await s.flush();
  await other.close();
  await s.close();
});

test('zeroing reads back zeros; a whole object is deallocated, part of one stays mapped', async () => {
  const name = c.imageName('zero');
  const s = await open(name, { size: 32 * MiB });
  await s.write(0, 3 * OBJECT, [crypto.randomBytes(3 * OBJECT)], false);
  assert.deepEqual(await s.lbaStatus(0, 32 * MiB), { deallocated: false, length: 3 * OBJECT });
  assert.deepEqual(await s.lbaStatus(3 * OBJECT, 32 * MiB - 3 * OBJECT), { deallocated: true, length: 32 * MiB - 3 * OBJECT });
  // Part of object 0, all of object 1.
  await s.unmap(512, 1024);
  await s.writeZeroes(OBJECT, OBJECT);
  const b = await readBack(s, 0, 2 * OBJECT);
  assert.ok(b.subarray(512, 1536).equals(Buffer.alloc(1024)));
  assert.notDeepEqual(b.subarray(0, 512), Buffer.alloc(512));
  assert.ok(b.subarray(OBJECT).equals(Buffer.alloc(OBJECT)));
  assert.deepEqual(await s.lbaStatus(0, 32 * MiB), { deallocated: false, length: OBJECT });
  assert.deepEqual(await s.lbaStatus(OBJECT, 32 * MiB - OBJECT), { deallocated: true, length: OBJECT });
  assert.deepEqual(await s.lbaStatus(OBJECT + 4096, 1024), { deallocated: true, length: 1024 });
  assert.deepEqual(await s.lbaStatus(2 * OBJECT, 32 * MiB - 2 * OBJECT), { deallocated: false, length: OBJECT });
  await s.close();
});

test('WRITE SAME and COMPARE AND WRITE are done by librbd: the pattern lands, a miscompare names its offset and writes nothing', async () => {
  const name = c.imageName('caw');
  const s = await open(name, { size: 16 * MiB });
  const block = crypto.randomBytes(512);
  await s.writeSame!(MiB, 64 * 512, block, false);
  const back = await readBack(s, MiB, 64 * 512);
  for (let p = 0; p < back.length; p += 512) assert.ok(back.subarray(p, p + 512).equals(block), `block ${p / 512}`);

  const next = crypto.randomBytes(512);
  const wrong = Buffer.from(block);
  wrong[300] ^= 1;
  assert.equal(await s.compareAndWrite!(MiB + 512, wrong, next, false), 300);
  assert.ok((await readBack(s, MiB + 512, 512)).equals(block), 'a miscompare writes nothing');
  assert.equal(await s.compareAndWrite!(MiB + 512, block, next, false), -1);
  assert.ok((await readBack(s, MiB + 512, 512)).equals(next));
  await s.close();
});

test('an image grown from outside (rbd resize) shows its new size and tells the unit', async () => {
  const name = c.imageName('grow');
  const s = await open(name, { size: 16 * MiB });
  const told = new Promise<void>((resolve) => s.watchCapacity!(resolve));
  c.rbd('resize', `rbd/${name}`, '--size', '48M');
  await Promise.race([told, new Promise((_, reject) => setTimeout(() => reject(new Error('no capacity change within 20 s')), 20_000))]);
  assert.equal(s.size, 48 * MiB);
  await s.close();
});

/** The backstore's read path and count of reads that bypassed librbd, as `info` shows them. */
async function readPath(s: Backstore): Promise<{ reads: string; direct: number }> {
  const st = await s.clusterStatus!();
  return { reads: String(st.reads), direct: Number(st.direct_reads) };
}

async function until(what: string, ok: () => Promise<boolean>): Promise<void> {
  for (const end = Date.now() + 20_000; !(await ok()); ) {
    if (Date.now() > end) throw new Error(`not within 20 s: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('reads bypass librbd on a plain image: what librbd wrote, across objects, holes and short objects as zeros, after a grow from outside', async () => {
  const name = c.imageName('direct');
  const s = await open(name, { size: 16 * MiB });
  assert.match((await readPath(s)).reads, /direct from the data objects/);
  // What the image holds, kept beside it: writes go through librbd.
  const model = Buffer.alloc(16 * MiB);
  const put = async (at: number, data: Buffer) => {
    await s.write(at, data.length, [data], false);
    data.copy(model, at);
  };
  await put(OBJECT - 3 * 4096, crypto.randomBytes(6 * 4096)); // across objects 0 and 1
  await put(2 * OBJECT - 512, crypto.randomBytes(1024 * 1024)); // across 1 and 2; object 2 ends short of its size
  const before = (await readPath(s)).direct;
  // One sgl of odd segments over four objects: objects 0 and 1 with data, 2 short, 3 never written.
  const segs: Buffer[] = [];
  for (let p = OBJECT - MiB, i = 0; p < 4 * OBJECT; i++) {
    const n = Math.min(4 * OBJECT - p, i % 3 === 0 ? 4096 + 512 * i : 300 * 1024 + 512);
    segs.push(Buffer.alloc(n, 0xee));
    p += n;
  }
  await s.read(OBJECT - MiB, 3 * OBJECT + MiB, segs);
  assert.ok(Buffer.concat(segs).equals(model.subarray(OBJECT - MiB, 4 * OBJECT)), 'segmented read over four objects');
  // Single buffers: within one object, across a boundary, past a short object's end, a hole.
  for (const [at, len] of [[OBJECT - 3 * 4096, 4096], [OBJECT - 4096, 8192], [2 * OBJECT + MiB - 4096, 64 * 1024], [3 * OBJECT, 4096]]) {
    const b = await readBack(s, at, len);
    assert.ok(b.equals(model.subarray(at, at + len)), `read of ${len} at ${at}`);
  }
  // Many at once, each settled by its own completion.
  const many = await Promise.all(Array.from({ length: 48 }, (_, i) => readBack(s, OBJECT - 3 * 4096 + i * 512, 4096)));
  many.forEach((b, i) => assert.ok(b.equals(model.subarray(OBJECT - 3 * 4096 + i * 512, OBJECT - 2 * 4096 + i * 512)), `read ${i}`));
  const after = (await readPath(s)).direct;
  assert.ok(after >= before + 53, `reads that bypassed librbd: ${before} -> ${after}`);

  // Grown from outside: the new range reads (zeros, then what librbd writes there).
  const told = new Promise<void>((resolve) => s.watchCapacity!(resolve));
  c.rbd('resize', `rbd/${name}`, '--size', '40M');
  await told;
  assert.equal(s.size, 40 * MiB);
  assert.ok((await readBack(s, 36 * MiB, 8192)).equals(Buffer.alloc(8192)), 'never-written grown range');
  const tail = crypto.randomBytes(2 * MiB);
  await s.write(38 * MiB, tail.length, [tail], false);
  assert.ok((await readBack(s, 38 * MiB, tail.length)).equals(tail), 'grown range');
  assert.match((await readPath(s)).reads, /direct/);

  // The switch: direct_reads false reads everything through librbd, and the same bytes.
  const plain = await open(name, {}, { timeout: 29, direct_reads: 'false' });
  assert.equal((await readPath(plain)).reads, 'through librbd (direct_reads off)');
  for (const at of [OBJECT - MiB, 2 * OBJECT]) {
    const [a, b] = await Promise.all([readBack(s, at, 2 * MiB), readBack(plain, at, 2 * MiB)]);
    assert.ok(a.equals(b), `librbd and direct agree at ${at}`);
  }
  assert.equal((await readPath(plain)).direct, 0);
  await plain.close();
  await s.close();
});

test('a clone reads through librbd (its parent holds data) and sees the parent; flattened, its reads bypass librbd', async () => {
  const parent = c.imageName('parent');
  const p = await open(parent, { size: 16 * MiB });
  const data = crypto.randomBytes(2 * MiB);
  await p.write(OBJECT - MiB, data.length, [data], false);
  await p.close();
  c.rbd('snap', 'create', `rbd/${parent}@base`);
  c.rbd('snap', 'protect', `rbd/${parent}@base`);
  const name = c.imageName('clone');
  c.rbd('clone', `rbd/${parent}@base`, `rbd/${name}`);
  const s = await open(name);
  assert.match((await readPath(s)).reads, /^through librbd \(a clone \(parent overlap 16777216 bytes\)\)$/);
  assert.ok((await readBack(s, OBJECT - MiB, data.length)).equals(data), "the parent's data through the clone");
  assert.equal((await readPath(s)).direct, 0);
  c.rbd('flatten', '--no-progress', `rbd/${name}`);
  await until('the flattened clone reads directly', async () => /direct/.test((await readPath(s)).reads));
  assert.ok((await readBack(s, OBJECT - MiB, data.length)).equals(data), 'the copied-up data, read directly');
  assert.ok((await readPath(s)).direct > 0);
  await s.close();
});

test('errors name what is wrong and leave nothing open: no image and no size, no pool, no ceph.conf, a bad block size', async () => {
  await assert.rejects(createRbd(opts(c.imageName('missing'))), /no such image and no size was given/);
  await assert.rejects(createRbd(opts(c.imageName('nopool'), { size: MiB }, { pool: 'nosuchpool' })), /no such pool/);
  await assert.rejects(createRbd(opts('x', { size: MiB }, { conf: '/nonexistent/ceph.conf' })), /cannot connect to the cluster.*ENOENT/);
  await assert.rejects(createRbd(opts('x', { size: MiB, blockSize: 1024 })), /block size 1024 must be 512 or 4096/);
  await assert.rejects(createRbd({ name: 'x', params: { conf: c.conf } }), /image is required/);
});

test('COMPARE AND WRITE holds across gateways: of two racing on one block through two RADOS clients, exactly one wins', async () => {
  const name = c.imageName('caw-race');
  // Two units on one image, as two gateways would have them: another timeout makes another RADOS client.
  const unit = (timeout: number) => ({ plugin: 'rbd', size: 16 * MiB, params: { image: name, conf: c.conf, timeout }, attributes: { emulate_caw: true } });
  const ra = await rig([unit(30) as never]);
  const rb = await rig([unit(31) as never]);
  try {
    const [a, b] = [await ra.nexus(), await rb.nexus()];
    const caw = cdb16(0x89, 0, 0);
    caw[13] = 1;
    let current = crypto.randomBytes(512);
    await writeBlocks(a, 0, 0, current);
    for (let round = 0; round < 8; round++) {
      const da = crypto.randomBytes(512);
      const db = crypto.randomBytes(512);
      const [x, y] = await Promise.all([
        a.command(0, caw, { dataOut: Buffer.concat([current, da]) }),
        b.command(0, caw, { dataOut: Buffer.concat([current, db]) }),
      ]);
      const won = [x, y].filter((r) => r.status === Status.GOOD).length;
      assert.equal(won, 1, `round ${round}: ${won} of the two compare-and-writes succeeded`);
      for (const r of [x, y]) if (r.status !== Status.GOOD) checkSense(r, miscompareAt(r.info === undefined ? 0 : Number(r.info)));
      current = x.status === Status.GOOD ? da : db;
      assert.ok((await readBlocks(b, 0, 0, 1)).equals(current), `round ${round}: the winner's data is on the image`);
    }
  } finally {
    await ra.close();
    await rb.close();
  }
});

test('the fencing primitives gateways build on: lock owners, a lock break blocklists the holder, whose next write fails as fenced', async () => {
  const name = c.imageName('fence');
  const connect = () => rbdConnect({ clientId: 'admin', conf: c.conf, options: [['rbd_cache', 'false'], ['rados_osd_op_timeout', '20']] });
  const [ca, cb] = [await connect(), await connect()];
  const a = await createRbd(opts(name, { size: 8 * MiB }, { timeout: 28 }));
  const ia = await ca.openImage('rbd', '', name, 0, false);
  const ib = await cb.openImage('rbd', '', name, 0, false);
  try {
    await ia.lockAcquire();
    assert.equal(await ia.isLockOwner(), true);
    const owners = await ib.lockOwners();
    assert.deepEqual(owners, [ca.addresses()], 'B sees A (by its address) as the owner');
    const t = Date.now();
    await ib.lockBreak(owners[0]);
    console.log(`lock break with blocklisting: ${Date.now() - t} ms`);
    await ib.lockAcquire();
    assert.equal(await ib.isLockOwner(), true);
    // A is blocklisted: taking the lock back fails as fenced (ESHUTDOWN, librados' EBLOCKLISTED).
    await assert.rejects(ia.lockAcquire(), (e: NodeJS.ErrnoException) => e.errno === -108);
    // The backstore's own client is another one: it still reads (reads need no lock).
    assert.equal((await readBack(a, 0, 512)).length, 512);
  } finally {
    await ia.close().catch(() => undefined);
    await ib.close();
    await a.close();
    await ca.shutdown();
    await cb.shutdown();
  }
});

test('through SCSI: COMPARE AND WRITE miscompare offset in INFORMATION, GET LBA STATUS, CAPACITY DATA HAS CHANGED', async () => {
  const name = c.imageName('scsi');
  const r = await rig([{ plugin: 'rbd', size: 32 * MiB, params: { image: name, conf: c.conf }, attributes: { emulate_caw: true, emulate_tpu: true, emulate_tpws: true } } as never]);
  try {
    const n = await r.nexus();
    const a = crypto.randomBytes(512);
    await writeBlocks(n, 0, 8, a);
    const wrong = Buffer.from(a);
    wrong[17] ^= 0xff;
    // COMPARE AND WRITE(16) of one block at LBA 8.
    const caw = cdb16(0x89, 8, 0);
    caw[13] = 1;
    const miss = await n.command(0, caw, { dataOut: Buffer.concat([wrong, crypto.randomBytes(512)]) });
    checkSense(miss, miscompareAt(17));
    const b = crypto.randomBytes(512);
    const ok = await n.command(0, caw, { dataOut: Buffer.concat([a, b]) });
    assert.equal(ok.status, Status.GOOD);
    assert.ok((await readBlocks(n, 0, 8, 1)).equals(b));

    // GET LBA STATUS at LBA 0: mapped for the first object, then deallocated.
    const gls = cdb16(0x9e, 0, 0);
    gls[1] = 0x12;
    gls.writeUInt32BE(64, 10);
    const st = await n.command(0, gls);
    assert.equal(st.status, Status.GOOD);
    const d = st.data;
    assert.equal(d.readUInt32BE(0), 4 + 2 * 16);
    assert.deepEqual([Number(d.readBigUInt64BE(8)), d.readUInt32BE(16), d[20]], [0, OBJECT / 512, 0]);
    assert.deepEqual([Number(d.readBigUInt64BE(24)), d.readUInt32BE(32), d[36]], [OBJECT / 512, (32 * MiB - OBJECT) / 512, 1]);

    c.rbd('resize', `rbd/${name}`, '--size', '40M');
    let ua: Awaited<ReturnType<typeof n.command>> | undefined;
    for (let i = 0; i < 100 && ua?.status !== Status.CHECK_CONDITION; i++) {
      ua = await n.command(0, [0, 0, 0, 0, 0, 0]);
      if (ua.status !== Status.CHECK_CONDITION) await new Promise((res) => setTimeout(res, 200));
    }
    checkSense(ua!, { key: 6, asc: 0x2a, ascq: 0x09 });
    const cap = await n.command(0, [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert.equal(cap.data.readUInt32BE(0), 40 * MiB / 512 - 1);
  } finally {
    await r.close();
  }
});
