// The iSCSI Data-In send path: READ data goes out of recycled buffers
// (fabrics/iscsi/data-in-pool.ts), and a buffer may only be reused once the
// socket has written it. A slow-reading initiator keeps many reads queued in
// the target while later commands (ORDERED writes to the same blocks, more
// reads) run; every read must still return the data as of its execution,
// with digests that match.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { RawInitiator, simpleConfig } from './util/iscsi-initiator';
import { startTsiod, type Daemon } from './util/tsiod';
import { BufferPool, POOL_MAX, POOL_MIN } from '../fabrics/iscsi/data-in-pool';
import { isAligned } from '../native';

const IQN = 'iqn.2026-11.org.tsio:data-in';
const BLOCK = 512;
/** Each read covers one region: four 64 KiB Data-In PDUs, one burst. */
const REGION = 256 << 10;
const REGIONS = 32;
/** The ORDERED write after each read rewrites the region's first 8 KiB (immediate data up to the target's MaxRecvDataSegmentLength, no R2T). */
const WRITE = 8 << 10;
let d: Daemon;

before(async () => {
  d = await startTsiod(simpleConfig({ iqn: IQN }));
});
after(async () => {
  assert.equal(await d.stop(), 0, 'tsiod exits cleanly on SIGTERM');
});

const cdb10 = (op: number, lba: number, blocks: number): number[] =>
  [op, 0, lba >>> 24, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, blocks >> 8, blocks & 0xff, 0];

/** Bytes that differ per generation, region and 4-byte word, so a misplaced or stale piece shows. */
function pattern(gen: number, region: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i += 4) b.writeUInt32LE(((gen * 0x9e3779b1) ^ (region << 20) ^ (i >> 2)) >>> 0, i);
  return b;
}

async function login(): Promise<RawInitiator> {
  const i = await RawInitiator.connect(d.port);
  const keys = await i.login(IQN, { HeaderDigest: 'CRC32C', DataDigest: 'CRC32C', ImmediateData: 'Yes', MaxRecvDataSegmentLength: '65536' });
  assert.equal(keys.get('DataDigest'), 'CRC32C');
  assert.equal(keys.get('ImmediateData'), 'Yes');
  // The power-on unit attention goes to the first command.
  await i.command([0, 0, 0, 0, 0, 0]);
  return i;
}

/** Reads only a little at a time: the target's writes back up in its socket queue. */
function trickle(i: RawInitiator): void {
  const s = i.socket;
  s.on('data', () => {
    s.pause();
    setTimeout(() => s.resume(), 1);
  });
}

test('data-in: queued reads keep their data while later writes and reads reuse the pool (digests on, slow reader)', async () => {
  const i = await login();
  const lba = (r: number) => (r * REGION) / BLOCK;
  let gen = 0;
  const expected: Buffer[] = [];
  for (let r = 0; r < REGIONS; r++) {
    expected[r] = pattern(gen, r, REGION);
    const w = await i.command(cdb10(0x2a, lba(r), REGION / BLOCK), { write: expected[r] });
    assert.equal(w.status, 0);
  }
  trickle(i);
  for (let round = 0; round < 3; round++) {
    gen++;
    i.socket.pause();
    const reads: Promise<{ status: number; data: Buffer }>[] = [];
    const writes: Promise<{ status: number }>[] = [];
    const fresh: Buffer[] = [];
    for (let r = 0; r < REGIONS; r++) {
      reads.push(i.command(cdb10(0x28, lba(r), REGION / BLOCK), { read: REGION }));
      // Runs after the read (ORDERED), most likely while the read's data is still queued for the socket.
      fresh[r] = pattern(gen, r, WRITE);
      writes.push(i.command(cdb10(0x2a, lba(r), WRITE / BLOCK), { write: fresh[r], immediate: WRITE, attr: 2 }));
    }
    // Let every command reach the target and complete before anything is read back.
    await new Promise((res) => setTimeout(res, 300));
    i.socket.resume();
    const got = await Promise.all(reads);
    for (const w of await Promise.all(writes)) assert.equal(w.status, 0);
    for (let r = 0; r < REGIONS; r++) {
      assert.equal(got[r].status, 0);
      assert.equal(got[r].data.length, REGION);
      assert.ok(got[r].data.equals(expected[r]), `round ${round}: region ${r} reads what it held when the READ ran`);
      fresh[r].copy(expected[r]);
    }
  }
  // And the writes landed.
  for (let r = 0; r < REGIONS; r += 7) {
    const x = await i.command(cdb10(0x28, lba(r), REGION / BLOCK), { read: REGION });
    assert.ok(x.data.equals(expected[r]));
  }
  assert.equal(await i.logout(), 0);
  i.close();
});

test('data-in: a connection dropped with reads queued leaves the daemon serving correct data', async () => {
  const w = await login();
  const data = pattern(99, 1, REGION);
  assert.equal((await w.command(cdb10(0x2a, 0, REGION / BLOCK), { write: data })).status, 0);
  w.socket.pause();
  for (let k = 0; k < 24; k++) void w.command(cdb10(0x28, 0, REGION / BLOCK), { read: REGION }).catch(() => {});
  await new Promise((res) => setTimeout(res, 200));
  w.close();
  // The buffers of the dropped connection's reads come back only once its socket let go of them.
  const i = await login();
  const all = await Promise.all(Array.from({ length: 24 }, () => i.command(cdb10(0x28, 0, REGION / BLOCK), { read: REGION })));
  for (const x of all) assert.ok(x.data.equals(data));
  // A short read of a large expected length: the pool's buffer is larger than the data; the residual says so.
  const short = await i.command(cdb10(0x28, 0, 8), { read: REGION });
  assert.equal(short.status, 0);
  assert.equal(short.residual, REGION - 8 * BLOCK);
  assert.ok(short.data.equals(data.subarray(0, 8 * BLOCK)));
  assert.equal(await i.logout(), 0);
  i.close();
});

test('data-in pool: power-of-two classes, reuse, idle budget', () => {
  const p = new BufferPool(1 << 20);
  assert.equal(p.take(POOL_MIN - 1), undefined, 'small buffers come from Node');
  assert.equal(p.take(POOL_MAX + 1), undefined, 'huge ones are not kept');
  const a = p.take(65536)!;
  assert.equal(a.length, 65536);
  const b = p.take(65537)!;
  assert.equal(b.length, 131072);
  for (const n of [POOL_MIN, 65536, POOL_MAX]) assert.ok(isAligned(p.take(n)!, 4096), `a ${n}-byte buffer starts on a page (O_DIRECT reads into it without a bounce)`);
  p.give(a);
  assert.equal(p.idleSize, 65536);
  assert.strictEqual(p.take(40000), a, 'the idle 64 KiB buffer serves a 40000-byte read');
  assert.equal(p.idleSize, 0);
  p.give(p.take(POOL_MAX)!);
  assert.equal(p.idleSize, 0, 'over the idle budget: left to the garbage collector');
  for (let k = 0; k < 20; k++) p.give(Buffer.allocUnsafeSlow(65536));
  assert.equal(p.idleSize, 1 << 20);
});

test('data-in pool: buffers idle through a whole trimming window go back, down to 1 MiB', async () => {
  const p = new BufferPool(32 << 20, 100);
  const bufs = Array.from({ length: 8 }, () => p.take(1 << 20)!);
  for (const b of bufs) p.give(b);
  assert.equal(p.idleSize, 8 << 20);
  const held = [p.take(1 << 20)!, p.take(1 << 20)!];
  const deadline = Date.now() + 3000;
  while (p.idleSize > 1 << 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(p.idleSize, 1 << 20, 'unused idle buffers trimmed to the floor');
  assert.equal(p.trimmedBytes, 5 << 20);
  for (const b of held) p.give(b);
  assert.equal(p.idleSize, 3 << 20, 'given back buffers are pooled again');
  assert.strictEqual(p.take(1 << 20), held[1], 'and reused');
  p.give(held[1]);
  while (p.idleSize > 1 << 20 && Date.now() < deadline + 3000) await new Promise((r) => setTimeout(r, 50));
  assert.equal(p.idleSize, 1 << 20);
});
