// The iSCSI receive path reads into recycled slabs (fabrics/iscsi/rx-slab.ts)
// and hands Data-Out on as views of them until the backstore is done. These
// tests run tsiod with released slabs poisoned (TSIO_RXSLAB_POISON=1), so a
// view used after its slab went back would write poison to the file: verified
// writes of every size and data path (immediate, unsolicited, R2T; two
// connections of one session, so commands also wait out of CmdSN order) over
// fileio, whose writes complete asynchronously; and connections killed
// mid-burst, after which every slab must be back in the pool; a hostile
// session that parks commands a slab apart (their data never comes, or their
// CmdSN waits behind a gap) keeps no more than a few slabs while a healthy one
// does verified I/O, and the pool shrinks back once it is gone.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { openSync, readSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { RawInitiator } from './util/iscsi-initiator';
import { freePort, scrapeMetrics, startTsiod, type Daemon } from './util/tsiod';

const IQN = 'iqn.2026-11.org.tsio:rx';
const LUN_BYTES = 64 << 20;
const FIRST_BURST = 128 << 10;
/** The pool keeps at most this many idle slabs (rx-slab.ts MAX_IDLE). */
const MAX_IDLE = 32;
let d: Daemon;
let metricsPort = 0;

const PARAMS = {
  InitialR2T: 'No',
  ImmediateData: 'Yes',
  FirstBurstLength: String(FIRST_BURST),
  MaxBurstLength: String(256 << 10),
  MaxOutstandingR2T: '2',
  MaxConnections: '2',
};

before(async () => {
  process.env.TSIO_RXSLAB_POISON = '1';
  metricsPort = await freePort();
  d = await startTsiod(
    (port, dir) => `storage_objects:
  - { name: disk0, plugin: fileio, dev: ${join(dir, 'disk0.img')}, size: ${LUN_BYTES} }
targets:
  - fabric: iscsi
    wwn: ${IQN}
    tpgs:
      - tag: 1
        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }
        parameters: { InitialR2T: 'No', ImmediateData: 'Yes', FirstBurstLength: ${FIRST_BURST}, MaxBurstLength: 262144, MaxOutstandingR2T: 2, MaxConnections: 2, MaxRecvDataSegmentLength: 65536 }
        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]
        luns: [ { index: 0, storage_object: /backstores/fileio/disk0 } ]
`,
    { args: ['--metrics', `127.0.0.1:${metricsPort}`] },
  );
});
after(async () => {
  delete process.env.TSIO_RXSLAB_POISON;
  assert.equal(await d.stop(), 0);
});

async function slabs(): Promise<{ idle: number; busy: number; trimmed: number; unpinned: number }> {
  const metric = await scrapeMetrics(metricsPort);
  return {
    idle: metric('tsio_iscsi_rx_slabs{state="idle"}'),
    busy: metric('tsio_iscsi_rx_slabs{state="busy"}'),
    trimmed: metric('tsio_iscsi_rx_slabs_trimmed_total'),
    unpinned: metric('tsio_iscsi_rx_unpinned_bytes_total'),
  };
}

/** Waits until no slab is out of the pool (no connection left, no command holding data). */
async function slabsSettle(ms = 10_000): Promise<{ idle: number; busy: number }> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await slabs();
    if (s.busy === 0 || Date.now() > deadline) return s;
    await new Promise((r) => setTimeout(r, 50));
  }
}

const cdb10 = (op: number, lba: number, blocks: number): number[] =>
  [op, 0, lba >>> 24, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, blocks >> 8, blocks & 0xff, 0];

async function loginPair(isid: number): Promise<[RawInitiator, RawInitiator]> {
  const a = await RawInitiator.connect(d.port);
  a.isid = Buffer.from([0x80, 0, 0, 0, 0, isid]);
  const keys = await a.login(IQN, PARAMS);
  assert.equal(keys.get('InitialR2T'), 'No');
  assert.equal(keys.get('FirstBurstLength'), String(FIRST_BURST));
  await a.command([0, 0, 0, 0, 0, 0]); // the power-on unit attention
  const b = await RawInitiator.connect(d.port);
  b.isid = a.isid;
  b.tsih = a.tsih;
  b.cid = 1;
  b.cmdSN = a.cmdSN;
  b.itt = 1 << 20; // ITTs are unique across the session's connections
  await b.login(IQN, PARAMS);
  assert.equal(b.tsih, a.tsih, 'the second connection joins the session');
  return [a, b];
}

test('verified writes of mixed sizes: immediate, unsolicited and R2T data, many in flight on two connections, over fileio', async () => {
  const [a, b] = await loginPair(1);
  const model = Buffer.alloc(LUN_BYTES);
  const sizes = [512, 4096, 8704, 65536, FIRST_BURST, 200 << 10, (256 << 10) + 4096, 1 << 20, (1 << 20) + (384 << 10)];
  const segments = [4096, 8192, 32768, 65536];
  const slot = 2 << 20;
  let cmdSN = a.cmdSN;
  let checked = 0;
  for (let round = 0; round < 6; round++) {
    // Distinct 2 MiB slots per round: commands in flight together never overlap.
    const slots = [...Array(LUN_BYTES / slot).keys()].sort(() => Math.random() - 0.5).slice(0, 24);
    const runs: Promise<{ status: number }>[] = [];
    for (const [i, s] of slots.entries()) {
      const size = sizes[(round * 7 + i) % sizes.length];
      const at = s * slot + 512 * Math.floor(Math.random() * ((slot - size) / 512));
      const data = randomBytes(size);
      data.copy(model, at);
      const mode = (round + i) % 3; // 0: immediate (+R2T), 1: immediate + unsolicited (+R2T), 2: R2T only
      const immediate = mode === 2 ? 0 : Math.min(size, [512, 4096, 65536][i % 3]);
      const unsolicited = mode === 1 ? FIRST_BURST : 0;
      const conn = i % 2 === 0 ? a : b;
      conn.cmdSN = cmdSN++;
      runs.push(conn.command(cdb10(0x2a, at / 512, size / 512), { write: data, immediate, unsolicited, segment: segments[(i + round) % 4] }));
    }
    for (const r of await Promise.all(runs)) assert.equal(r.status, 0, 'WRITE(10) GOOD');
    // Read every slot back through the target.
    for (const s of slots) {
      a.cmdSN = cmdSN++;
      const r = await a.command(cdb10(0x28, (s * slot) / 512, slot / 512), { read: slot });
      assert.equal(r.status, 0);
      assert.ok(r.data.equals(model.subarray(s * slot, (s + 1) * slot)), `slot ${s} of round ${round} reads back as written`);
      checked++;
    }
  }
  b.cmdSN = a.cmdSN = cmdSN;
  assert.equal(await b.logout(1, 1), 0);
  assert.equal(await a.logout(), 0);
  a.close();
  b.close();
  // And the file itself, past the target's own read path.
  const fd = openSync(join(d.dir, 'disk0.img'), 'r');
  try {
    const file = Buffer.alloc(LUN_BYTES);
    assert.equal(readSync(fd, file, 0, LUN_BYTES, 0), LUN_BYTES);
    assert.ok(file.equals(model), 'the backing file holds exactly what was written');
  } finally {
    closeSync(fd);
  }
  assert.ok(checked >= 100);
  const s = await slabsSettle();
  assert.equal(s.busy, 0, 'every slab back once the connections are gone');
  assert.ok(s.idle > 0 && s.idle <= MAX_IDLE, `idle slabs ${s.idle} within the pool's bound`);
});

test('connections killed mid-burst: held slabs all come back, the target serves on', async () => {
  for (let k = 0; k < 3; k++) {
    const [a, b] = await loginPair(10 + k);
    let cmdSN = a.cmdSN;
    const pending: Promise<unknown>[] = [];
    // Writes whose data never all comes: immediate data, part of the unsolicited burst, then silence.
    for (let i = 0; i < 12; i++) {
      const conn = i % 2 === 0 ? a : b;
      const size = 1 << 20;
      const h = Buffer.alloc(48);
      h[0] = 0x01;
      h[1] = 0x20 | 1; // W, simple; not final: unsolicited Data-Out follows
      h.writeUInt32BE(conn.nextItt(), 16);
      h.writeUInt32BE(size, 20);
      h.writeUInt32BE(cmdSN++, 24);
      Buffer.from(cdb10(0x2a, (i * size) / 512, size / 512)).copy(h, 32);
      conn.send(h, randomBytes(16384));
      const dout = Buffer.alloc(48);
      dout[0] = 0x05;
      dout.writeUInt32BE(h.readUInt32BE(16), 16);
      dout.writeUInt32BE(0xffffffff, 20);
      dout.writeUInt32BE(16384, 40);
      conn.send(dout, randomBytes(32768));
    }
    // A command far ahead of ExpCmdSN waits on the other connection with its data; one PDU is cut short.
    const ahead = Buffer.alloc(48);
    ahead[0] = 0x01;
    ahead[1] = 0x80 | 0x20 | 1;
    ahead.writeUInt32BE(b.nextItt(), 16);
    ahead.writeUInt32BE(4096, 20);
    ahead.writeUInt32BE(cmdSN + 5, 24);
    Buffer.from(cdb10(0x2a, 100000, 8)).copy(ahead, 32);
    b.send(ahead, randomBytes(4096));
    const cut = Buffer.alloc(48 + 20000);
    cut[0] = 0x05;
    cut.writeUIntBE(65536, 5, 3);
    a.raw(cut);
    await new Promise((r) => setTimeout(r, 100));
    const held = await slabs();
    assert.ok(held.busy >= 1, 'slabs are in use while the connections live');
    (k % 2 === 0 ? a : b).close();
    (k % 2 === 0 ? b : a).close();
    await Promise.allSettled(pending);
  }
  const s = await slabsSettle();
  assert.equal(s.busy, 0, 'no slab stays held by a dead connection or its commands');
  assert.ok(s.idle <= MAX_IDLE);
  // The target still serves, data intact.
  const i = await RawInitiator.connect(d.port);
  i.isid = Buffer.from([0x80, 0, 0, 0, 0, 99]);
  await i.login(IQN, PARAMS);
  await i.command([0, 0, 0, 0, 0, 0]);
  const data = randomBytes(300 << 10);
  assert.equal((await i.command(cdb10(0x2a, 2048, data.length / 512), { write: data, immediate: 8192, unsolicited: FIRST_BURST, segment: 65536 })).status, 0);
  const r = await i.command(cdb10(0x28, 2048, data.length / 512), { read: data.length });
  assert.ok(r.data.equals(data));
  assert.equal(await i.logout(), 0);
  i.close();
  assert.equal((await slabsSettle()).busy, 0);
});

test('a hostile session parking commands a slab apart keeps few slabs; a healthy one meanwhile does verified I/O; the pool shrinks back', async () => {
  const t0 = Date.now();
  const MiB = 1 << 20;
  // Healthy: its own session, random writes of every data path read back exactly, until the hostile part is done.
  const good = await RawInitiator.connect(d.port);
  good.isid = Buffer.from([0x80, 0, 0, 0, 0, 40]);
  await good.login(IQN, PARAMS);
  await good.command([0, 0, 0, 0, 0, 0]);
  let stop = false;
  let verified = 0;
  const healthy = (async () => {
    while (!stop) {
      const size = 512 * (1 + Math.floor(Math.random() * 512));
      const at = 512 * Math.floor(Math.random() * ((16 * MiB - size) / 512));
      const data = randomBytes(size);
      const mode = verified % 3;
      const w = await good.command(cdb10(0x2a, at / 512, size / 512), { write: data, immediate: mode === 2 ? 0 : 8192, unsolicited: mode === 1 ? FIRST_BURST : 0, segment: 65536 });
      assert.equal(w.status, 0, 'healthy WRITE GOOD');
      const r = await good.command(cdb10(0x28, at / 512, size / 512), { read: size });
      assert.equal(r.status, 0, 'healthy READ GOOD');
      assert.ok(r.data.equals(data), 'healthy data reads back exactly');
      verified++;
    }
  })();

  const bad = await RawInitiator.connect(d.port);
  bad.isid = Buffer.from([0x80, 0, 0, 0, 0, 41]);
  await bad.login(IQN, PARAMS);
  await bad.command([0, 0, 0, 0, 0, 0]);
  let sn = bad.cmdSN;
  const filler = randomBytes(65536);
  /** A little over a slab of immediate NOP-Outs that want no answer: the next command lands in a slab of its own. */
  const spacer = (): void => {
    for (let k = 0; k < 17; k++) {
      const h = Buffer.alloc(48);
      h[0] = 0x40;
      h[1] = 0x80;
      h.writeUInt32BE(0xffffffff, 16);
      h.writeUInt32BE(0xffffffff, 20);
      h.writeUInt32BE(sn, 24);
      bad.send(h, filler);
    }
  };
  const writeCmd = (lba: number, bytes: number, imm: Buffer, cmdSN: number, final = true): number => {
    const h = Buffer.alloc(48);
    h[0] = 0x01;
    h[1] = (final ? 0x80 : 0) | 0x20 | 1; // final: no unsolicited Data-Out, the rest by R2T
    const itt = bad.nextItt();
    h.writeUInt32BE(itt, 16);
    h.writeUInt32BE(bytes, 20);
    h.writeUInt32BE(cmdSN, 24);
    Buffer.from(cdb10(0x2a, lba, bytes / 512)).copy(h, 32);
    bad.send(h, imm);
    return itt;
  };
  const BASE = 32 * MiB;
  const model = randomBytes(40 * 65536);
  // 24 WRITEs of 64 KiB whose R2T'd data is withheld, then a CmdSN gap and 16 WRITEs parked behind it with all
  // their data: immediate, or 16 KiB immediate and the rest as unsolicited Data-Out.
  const parked: number[] = [];
  for (let i = 0; i < 24; i++) {
    parked.push(writeCmd((BASE + i * 65536) / 512, 65536, model.subarray(i * 65536, i * 65536 + 8192), sn++));
    spacer();
  }
  const gap = sn++;
  const early: number[] = [];
  for (let i = 24; i < 40; i++) {
    const at = i * 65536;
    if (i % 2 === 0) early.push(writeCmd((BASE + at) / 512, 65536, model.subarray(at, at + 65536), sn++));
    else {
      const itt = writeCmd((BASE + at) / 512, 65536, model.subarray(at, at + 16384), sn++, false);
      early.push(itt);
      const h = Buffer.alloc(48);
      h[0] = 0x05;
      h[1] = 0x80;
      h.writeUInt32BE(itt, 16);
      h.writeUInt32BE(0xffffffff, 20);
      h.writeUInt32BE(16384, 40);
      bad.send(h, model.subarray(at + 16384, at + 65536));
    }
    spacer();
  }
  const r2ts = new Map<number, Buffer>();
  for (const itt of parked) r2ts.set(itt, (await bad.next((p) => p.opcode === 0x31 && p.itt === itt)).bhs);
  bad.cmdSN = sn;
  await bad.nop(Buffer.alloc(0));
  // Everything read and framed (the ping came back): within a few sweeps the parked commands let their slabs go.
  await new Promise((r) => setTimeout(r, 1000));
  let most = 0;
  for (let k = 0; k < 5; k++) {
    most = Math.max(most, (await slabs()).busy);
    await new Promise((r) => setTimeout(r, 100));
  }
  const mid = await slabs();
  assert.ok(most <= 8, `40 commands parked a slab apart keep ${most} slabs busy (unbounded: 40 or more)`);
  assert.ok(mid.unpinned > 0, 'the parked commands copied their data out of the slabs');

  // The parked commands still complete with exactly the data they were sent with.
  for (const [itt, r2t] of r2ts) {
    const o = r2t.readUInt32BE(40);
    const len = r2t.readUInt32BE(44);
    assert.equal(o, 8192);
    for (let off = o; off < o + len; off += 32768) {
      const h = Buffer.alloc(48);
      h[0] = 0x05;
      if (off + 32768 >= o + len) h[1] = 0x80;
      h.writeUInt32BE(itt, 16);
      h.writeUInt32BE(r2t.readUInt32BE(20), 20);
      h.writeUInt32BE((off - o) / 32768, 36);
      h.writeUInt32BE(off, 40);
      const i = parked.indexOf(itt);
      bad.send(h, model.subarray(i * 65536 + off, i * 65536 + Math.min(off + 32768, o + len)));
    }
  }
  bad.cmdSN = gap;
  assert.equal((await bad.command([0, 0, 0, 0, 0, 0])).status, 0, 'the gap filled');
  for (const itt of [...parked, ...early]) {
    const p = await bad.next((x) => x.opcode === 0x21 && x.itt === itt);
    assert.equal(p.bhs[3], 0, `parked WRITE 0x${itt.toString(16)} GOOD`);
  }
  bad.cmdSN = sn;
  const back = await bad.command(cdb10(0x28, BASE / 512, model.length / 512), { read: model.length });
  assert.ok(back.data.equals(model), 'what the parked commands held (copied out of the slabs) was written exactly');

  // Park a few more and vanish.
  for (let i = 0; i < 8; i++) {
    writeCmd((BASE + i * 65536) / 512, 65536, filler.subarray(0, 8192), bad.cmdSN++);
    spacer();
  }
  await new Promise((r) => setTimeout(r, 200));
  bad.close();
  stop = true;
  await healthy;
  assert.ok(verified >= 3, `healthy session verified ${verified} writes meanwhile`);
  assert.equal(await good.logout(), 0);
  good.close();

  // Idle slabs nobody needs go back to the garbage collector within a couple of trimming windows (2 s each).
  const deadline = Date.now() + 8000;
  let s = await slabs();
  while ((s.busy > 0 || s.idle > 2) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    s = await slabs();
  }
  assert.equal(s.busy, 0, 'no slab held once both sessions are gone');
  assert.ok(s.idle <= 2, `idle slabs trimmed to ${s.idle}`);
  assert.ok(s.trimmed > mid.trimmed, 'slabs were trimmed');
  // Writes left waiting for data when a connection dies end as aborted, not as internal failures logged as warnings.
  assert.doesNotMatch(d.log(), /tsio warn: command \S+ failed/);
  console.log(`hostile/healthy: ${most} slabs busy at most while parked, ${mid.unpinned} bytes unpinned, ${verified} healthy writes verified, ${Date.now() - t0} ms`);
});
