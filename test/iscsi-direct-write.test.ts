// O_DIRECT writes over iSCSI without a bounce copy: the receive path lays a
// data segment that leads a read on a page (rx-slab.ts ReadPlan), so fileio
// with direct: true writes it from the receive slab as it is. tsiod on a real
// socket, a file on the disk's filesystem, released slabs poisoned; the
// bounce counts come from its metrics. Commands one at a time (each PDU leads
// its read) must not bounce, with and without header and data digests, as
// immediate data and as R2T-solicited Data-Out of large segments; what cannot
// be aligned (a length that is not whole pages, small PDUs arriving together,
// segments split by a small MaxRecvDataSegmentLength) still bounces; every
// byte reads back exact, through the target and in the file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RawInitiator, simpleConfig } from './util/iscsi-initiator';
import { freePort, scrapeMetrics, startTsiod, type Daemon } from './util/tsiod';

const IQN = 'iqn.2026-12.org.tsio:dalign';
const LUN_BYTES = 32 << 20;
const MRDSL = 256 << 10;
const FIRST_BURST = 64 << 10;
let d: Daemon;
let metricsPort = 0;
const model = Buffer.alloc(LUN_BYTES);

before(async () => {
  process.env.TSIO_RXSLAB_POISON = '1';
  metricsPort = await freePort();
  d = await startTsiod(
    simpleConfig({
      iqn: IQN,
      store: (dir) => ({ entry: `{ name: disk0, plugin: fileio, dev: ${join(dir, 'disk0.img')}, size: ${LUN_BYTES}, direct: true }`, path: '/backstores/fileio/disk0' }),
      tpgExtra: `        parameters: { ImmediateData: 'Yes', FirstBurstLength: ${FIRST_BURST}, MaxBurstLength: ${MRDSL}, MaxRecvDataSegmentLength: ${MRDSL} }\n`,
    }),
    { args: ['--metrics', `127.0.0.1:${metricsPort}`] },
  );
});
after(async () => {
  delete process.env.TSIO_RXSLAB_POISON;
  assert.equal(await d.stop(), 0);
});

interface Counts {
  direct: number;
  bounced: number;
  bytes: number;
}

async function writeCounts(): Promise<Counts> {
  const metric = await scrapeMetrics(metricsPort);
  return {
    direct: metric('tsio_direct_io_commands_total{op="write",path="direct"}'),
    bounced: metric('tsio_direct_io_commands_total{op="write",path="bounced"}'),
    bytes: metric('tsio_direct_io_bounced_bytes_total'),
  };
}

const cdb10 = (op: number, lba: number, blocks: number): number[] =>
  [op, 0, lba >>> 24, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, blocks >> 8, blocks & 0xff, 0];

async function connect(isid: number, digests: boolean): Promise<RawInitiator> {
  const c = await RawInitiator.connect(d.port);
  c.isid = Buffer.from([0x80, 0, 0, 0, 0x44, isid]);
  const keys = await c.login(IQN, {
    ImmediateData: 'Yes', FirstBurstLength: String(FIRST_BURST), MaxBurstLength: String(MRDSL), MaxRecvDataSegmentLength: String(MRDSL),
    ...(digests ? { HeaderDigest: 'CRC32C', DataDigest: 'CRC32C' } : { HeaderDigest: 'None', DataDigest: 'None' }),
  });
  assert.equal(keys.get('HeaderDigest'), digests ? 'CRC32C' : 'None');
  assert.equal(keys.get('DataDigest'), digests ? 'CRC32C' : 'None');
  c.headerDigest = c.dataDigest = digests;
  await c.command([0, 0, 0, 0, 0, 0]); // the power-on unit attention
  return c;
}

/** A WRITE(10) of fresh random bytes at byte offset `at`, kept in the model. */
function write(c: RawInitiator, at: number, size: number, opts: { immediate?: number; segment?: number } = {}): Promise<{ status: number }> {
  const data = randomBytes(size);
  data.copy(model, at);
  return c.command(cdb10(0x2a, at / 512, size / 512), { write: data, immediate: opts.immediate ?? Math.min(size, FIRST_BURST), segment: opts.segment ?? MRDSL });
}

async function verify(c: RawInitiator, at: number, size: number): Promise<void> {
  const r = await c.command(cdb10(0x28, at / 512, size / 512), { read: size });
  assert.equal(r.status, 0);
  assert.ok(r.data.equals(model.subarray(at, at + size)), `${size} bytes at ${at} read back as written`);
}

for (const digests of [false, true]) {
  test(`aligned writes one at a time reach the file from the receive slabs, no bounce (${digests ? 'header and data digests' : 'no digests'})`, async () => {
    const c = await connect(digests ? 2 : 1, digests);
    const base = digests ? 16 << 20 : 0;
    const before = await writeCounts();
    const done: [number, number][] = [];
    let n = 0;
    // 4 KiB as immediate data; 64 KiB immediate; 1 MiB: 64 KiB immediate, then 256 KiB Data-Out PDUs to R2Ts; 200 KiB the same.
    for (const [i, size] of [4096, 4096, 65536, 4096, 1 << 20, 4096, 200 << 10, 8192, 1 << 20, 4096].entries()) {
      const at = base + i * (1 << 20) + (i % 3) * 4096;
      const r = await write(c, at, size);
      assert.equal(r.status, 0, 'WRITE(10) GOOD');
      done.push([at, size]);
      n++;
    }
    const after = await writeCounts();
    assert.equal(after.bounced - before.bounced, 0, `no aligned write bounced (${after.bytes - before.bytes} bytes copied)`);
    assert.equal(after.direct - before.direct, n, 'every write went to the file from the command\'s own buffers');
    for (const [at, size] of done) await verify(c, at, size);
    assert.equal(await c.logout(), 0);
    c.close();
  });
}

test('what cannot be aligned still bounces, and every byte is exact (digests, small segments, PDUs arriving together)', async () => {
  const plain = await connect(3, false);
  const dig = await connect(4, true);
  const base = 8 << 20;
  const before = await writeCounts();
  const done: [number, number][] = [];
  // A length that is not whole pages bounces whatever its address.
  for (const [i, c] of [plain, dig].entries()) {
    const at = base + i * 65536 + 512;
    assert.equal((await write(c, at, 512 * 17)).status, 0);
    done.push([at, 512 * 17]);
  }
  const odd = await writeCounts();
  assert.equal(odd.bounced - before.bounced, 2, 'writes of 17 blocks bounce');
  // Data-Out in 8 KiB PDUs, and many small writes in flight at once, on both connections.
  const runs: Promise<{ status: number }>[] = [];
  for (let i = 0; i < 24; i++) {
    const c = i % 2 === 0 ? plain : dig;
    const at = base + (1 << 20) + i * (256 << 10);
    const size = i % 4 === 0 ? 192 << 10 : 4096 * (1 + (i % 5));
    runs.push(write(c, at, size, { immediate: i % 3 === 0 ? 0 : 4096, segment: 8192 }));
    done.push([at, size]);
  }
  for (const r of await Promise.all(runs)) assert.equal(r.status, 0, 'WRITE(10) GOOD');
  const after = await writeCounts();
  assert.ok(after.bounced > odd.bounced, 'unaligned Data-Out bounced');
  assert.equal(after.direct + after.bounced - before.direct - before.bounced, 26, 'every write counted once');
  for (const [at, size] of done) await verify(plain, at, size);
  for (const c of [plain, dig]) {
    assert.equal(await c.logout(), 0);
    c.close();
  }
});

test('the backing file holds exactly what was written', () => {
  assert.ok(readFileSync(join(d.dir, 'disk0.img')).equals(model), 'file and model agree');
});
