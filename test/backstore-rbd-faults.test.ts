// Cluster faults under a real tsiod serving rbd units over iSCSI, on the shared test cluster: the
// one OSD stopped for 10 s while an initiator writes (every write waits, completes once the OSD is
// back, and reads back), and stopped for longer than a unit's timeout (its commands fail with
// ABORTED COMMAND / LOGICAL UNIT COMMUNICATION TIME-OUT, tsiod stays up, its RAM unit keeps
// serving, and the rbd unit serves again once the OSD returns). And, on a backstore directly, more
// operations in flight to a stopped OSD than librados' objecter lets through by default.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

import { createRbd } from '../backstores/rbd';
import { ceph, type Ceph } from './util/ceph';
import { startTsiod, type Daemon } from './util/tsiod';
import { RawInitiator } from './util/iscsi-initiator';
import { cdb16 } from './util/cdb';

const IQN = 'iqn.2026-12.org.tsio:rbd-faults';
const KiB = 1024;
const REGION = 512 * KiB;
const REGIONS = 48;

let c: Ceph;
let d: Daemon;
const images: string[] = [];

before(async () => {
  c = ceph();
  const img = (what: string) => {
    const name = c.imageName(what);
    images.push(name);
    return name;
  };
  // LUN 0 waits up to 60 s for the cluster, LUN 2 only 3 s; LUN 1 is RAM.
  d = await startTsiod((port) => `storage_objects:
  - { name: patient, plugin: rbd, image: ${img('patient')}, conf: ${c.conf}, size: 64MiB, timeout: 60 }
  - { name: ram, plugin: rd_mcp, size: 16MiB }
  - { name: hasty, plugin: rbd, image: ${img('hasty')}, conf: ${c.conf}, size: 16MiB, timeout: 3 }
targets:
  - fabric: iscsi
    wwn: ${IQN}
    tpgs:
      - tag: 1
        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }
        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]
        luns:
          - { index: 0, storage_object: /backstores/rbd/patient }
          - { index: 1, storage_object: /backstores/rd_mcp/ram }
          - { index: 2, storage_object: /backstores/rbd/hasty }
`);
});

after(async () => {
  // Whatever happened, the shared cluster gets its OSD back.
  if (!/1 up/.test(c.ceph('osd', 'stat'))) await c.osdStart();
  const code = await d?.stop();
  for (const i of images) await c.rmImage(i);
  // Closed its images and exited on SIGTERM (a tsiod killed after 10 s would leave its watches behind).
  if (d) assert.equal(code, 0, `tsiod stopped cleanly:\n${d.log()}`);
});

/** Runs qemu-io commands on a LUN over iSCSI; resolves with its output. */
function qemuIo(lun: number, cmds: string[]): Promise<string> {
  const args = ['-f', 'raw', ...cmds.flatMap((x) => ['-c', x]), `iscsi://127.0.0.1:${d.port}/${IQN}/${lun}`];
  return new Promise((resolve, reject) => {
    const p = spawn('qemu-io', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (x) => (out += x));
    p.stderr.on('data', (x) => (out += x));
    p.on('error', (e) => reject(new Error(`qemu-io not runnable (scripts/install-deps --test installs qemu-utils): ${e.message}`)));
    p.on('close', () => resolve(out));
  });
}

/** The pattern byte of the writer's write number i: two writes to one region never share it. */
const pattern = (i: number) => 1 + (i % 250);
const OUTAGE_PATTERN = 0xee;

/** Where the OSD is when a write is issued or completes, as this process sees it. */
type Phase = 'up' | 'stopping' | 'down' | 'starting' | 'back';

test('an OSD stopped for 10 s under writes: every write waits, completes once it is back, and reads back', { timeout: 300_000 }, async () => {
  // The claim is about order, not speed: a write issued once the OSD process is gone cannot complete
  // before a new OSD process is started, and must complete (with its data) after it is. So every
  // write is tagged with the phase it was issued and completed in. osdStop resolves once the process
  // has exited and the phase turns 'starting' just before osd-start runs, so a write issued in 'down'
  // and completed in 'down' is a write acknowledged with no OSD, whatever the speed of the machine.
  // Writes issued before the OSD is gone may complete at any time (the OSD may commit them before
  // it exits, and the reply may reach qemu-io late on a loaded machine).
  let phase: Phase = 'up';
  interface W { what: string; region: number; pattern: number; issued: Phase; completed?: Phase }
  const writes: W[] = [];
  const write = async (what: string, region: number, p: number) => {
    const w: W = { what, region, pattern: p, issued: phase };
    writes.push(w);
    const out = await qemuIo(0, [`write -P ${p} ${region * REGION} ${REGION}`]);
    assert.match(out, new RegExp(`wrote ${REGION}/${REGION} bytes`), `${what} (region ${region}): ${out}`);
    w.completed = phase;
  };
  // One region per qemu-io run, back to back, wrapping around the regions, from before the stop until
  // two writes issued after the OSD is back have completed: however fast or slow the machine is,
  // the writer is running when the OSD goes and when it returns.
  const last = new Map<number, number>();
  let quit = false;
  const writer = (async () => {
    for (let i = 0; !quit && writes.filter((w) => w.issued === 'back' && w.completed).length < 2; i++) {
      await write(`write ${i}`, i % REGIONS, pattern(i));
      last.set(i % REGIONS, pattern(i));
    }
  })();
  writer.catch(() => {}); // awaited below; a failure must not surface as unhandled in the meantime
  let outage: Promise<void> | undefined;
  try {
    // The writer is running: two writes done with the OSD up.
    while (writes.filter((w) => w.completed === 'up').length < 2) {
      await Promise.race([writer, new Promise((r) => setTimeout(r, 20))]);
    }
    phase = 'stopping';
    await c.osdStop();
    phase = 'down';
    // A write issued with no OSD at all, whatever the writer is doing at this moment (its next write
    // may be in flight since before the stop), on a region of its own.
    outage = write('the write issued during the outage', REGIONS, OUTAGE_PATTERN);
    outage.catch(() => {});
    await new Promise((r) => setTimeout(r, 10_000));
    phase = 'starting';
    await c.osdStart();
    phase = 'back';
    await Promise.all([writer, outage]);
  } finally {
    quit = true;
  }
  const issuedDown = writes.filter((w) => w.issued === 'down');
  const summary = writes.map((w) => `${w.what}: ${w.issued} -> ${w.completed}`).join('\n');
  console.log(`${writes.length} writes; issued with the OSD down: ${issuedDown.length}`);
  assert.ok(writes.some((w) => w.issued === 'up' && w.completed === 'up'), 'writes were running when the OSD stopped');
  assert.ok(issuedDown.length >= 1, summary);
  for (const w of issuedDown) {
    assert.ok(w.completed === 'starting' || w.completed === 'back', `${w.what} waited for the OSD to return, completed ${w.completed}:\n${summary}`);
  }
  assert.ok(writes.some((w) => w.issued === 'back' && w.completed === 'back'), 'the writer went on once the OSD was back');
  // Nothing lost: every region holds the pattern of its last write, the outage write's region its own.
  const expect = [...last, [REGIONS, OUTAGE_PATTERN] as const];
  const verify = await qemuIo(0, expect.map(([r, p]) => `read -P ${p} ${r * REGION} ${REGION}`));
  assert.doesNotMatch(verify, /fail/i, verify);
  assert.equal(verify.match(new RegExp(`read ${REGION}/${REGION} bytes`, 'g'))?.length, expect.length, verify);
  assert.equal(d.proc.exitCode, null, 'tsiod still runs');
});

test('an OSD down for longer than the timeout: that unit fails with a clear sense, tsiod and its other units keep serving, the unit recovers', { timeout: 300_000 }, async () => {
  const ini = await RawInitiator.connect(d.port);
  await ini.login(IQN);
  // An rbd unit's command may wait out its timeout (3 s), and a loaded machine adds to that.
  const read = (lun: number) => ini.command(cdb16(0x88, 0, 8), { read: 4096, lun, wait: 30_000 });
  const write = (lun: number, data: Buffer) => ini.command(cdb16(0x8a, 0, data.length / 512), { write: data, lun, wait: 30_000 });
  // Power-on unit attentions out of the way.
  for (const lun of [0, 1, 2]) for (let i = 0; i < 4 && (await read(lun)).status !== 0; i++);
  assert.equal((await write(2, Buffer.alloc(4096, 0x42))).status, 0);
  try {
    await c.osdStop();
    const t = Date.now();
    const r = await read(2);
    const ms = Date.now() - t;
    assert.equal(r.status, 2, 'CHECK CONDITION');
    // Fixed format: sense key in byte 2, ASC/ASCQ in 12/13: ABORTED COMMAND, LU COMMUNICATION TIME-OUT.
    assert.deepEqual([r.sense[2] & 0xf, r.sense[12], r.sense[13]], [0xb, 0x08, 0x01]);
    // Not before the unit's 3 s timeout; and well before the 60 s of the patient unit, with room for a
    // loaded machine (the OSD stays down all along, so nothing else ends the wait).
    assert.ok(ms >= 2500 && ms < 30_000, `failed after the 3 s timeout (${ms} ms)`);
    const w = await write(2, Buffer.alloc(4096, 0x43));
    assert.deepEqual([w.status, w.sense[2] & 0xf, w.sense[12], w.sense[13]], [2, 0xb, 0x08, 0x01]);
    // The RAM unit is served all along.
    const data = Buffer.alloc(4096, 0x77);
    assert.equal((await write(1, data)).status, 0);
    const back = await read(1);
    assert.equal(back.status, 0);
    assert.ok(back.data.equals(data));
    assert.equal(d.proc.exitCode, null, 'tsiod still runs');
  } finally {
    await c.osdStart();
  }
  // Back: the rbd unit serves again, and what it had acknowledged is there.
  let r = await read(2);
  for (let i = 0; i < 20 && r.status !== 0; i++) {
    await new Promise((res) => setTimeout(res, 1000));
    r = await read(2);
  }
  assert.equal(r.status, 0, 'the unit serves again once the OSD is back');
  assert.ok(r.data.equals(Buffer.alloc(4096, 0x42)) || r.data.equals(Buffer.alloc(4096, 0x43)));
  await ini.logout();
  ini.close();
  assert.equal(d.proc.exitCode, null);
  assert.doesNotMatch(d.log(), /uncaught|FATAL|Segmentation/i);
});

test('with the OSD down, more operations than the objecter admits by default (1024) neither block the loop nor fail: all complete once it is back', { timeout: 300_000 }, async () => {
  // tsio submits on the event loop (rbd_non_blocking_aio off). Were the objecter's throttle on, the
  // 1025th submission would block the loop until operations timed out (here after 120 s), and those
  // would fail; with it off every submission returns at once, and every read waits for the OSD.
  const name = c.imageName('many');
  images.push(name);
  const s = await createRbd({ name: 'many', size: 8 << 20, params: { image: name, conf: c.conf, timeout: 120 } });
  const N = 1100;
  let down = false;
  try {
    // Both objects of the image exist: a read of one that does not is answered from the object map.
    await s.write(0, 4096, [Buffer.alloc(4096, 0x5a)], false);
    await s.write(4 << 20, 4096, [Buffer.alloc(4096, 0x5b)], false);
    down = true;
    await c.osdStop();
    let settled = 0;
    const ops: Promise<void>[] = [];
    const bufs = Array.from({ length: N }, () => Buffer.alloc(4096, 0xee));
    for (let i = 0; i < N; i++) {
      const p = Promise.resolve(s.read((i % 2048) * 4096, 4096, [bufs[i]]));
      p.then(() => settled++, () => settled++);
      ops.push(p);
    }
    // The loop is free: a timer runs while all of them wait.
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(settled, 0, 'no read completed with the OSD down');
    await c.osdStart();
    down = false;
    const results = await Promise.allSettled(ops);
    const failed = results.filter((r) => r.status === 'rejected');
    assert.equal(failed.length, 0, `${failed.length} of ${N} reads failed: ${(failed[0] as PromiseRejectedResult | undefined)?.reason}`);
    assert.ok(bufs[0].equals(Buffer.alloc(4096, 0x5a)) && bufs[2048 % N].equals(Buffer.alloc(4096)), 'the reads read the image');
  } finally {
    // Not from `ceph osd stat`: the mon may still show the OSD up for a while after it stopped.
    if (down) await c.osdStart();
    await s.close();
  }
});
