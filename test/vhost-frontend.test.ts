// tsiod's vhost-user-scsi back-end driven by the project's own front-end
// tool (no guest): QEMU 7.2's negotiation, I/O through the rings, stop and
// restart, and hostile descriptors that must fail requests or the queue,
// never tsiod, and never another device.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, existsSync, truncateSync } from 'node:fs';
import { eventfd, eventfdRead } from '../native';
import { Req, u64Payload } from '../fabrics/vhost/vhost-user-proto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ScsiEvents, ScsiSlot, VhostUserFrontend, type DriverQueue, type ScsiResult } from '../tools/vhost-frontend/frontend';
import { PROTOCOL_FEATURES, RING_FEATURES } from '../fabrics/vhost/vhost-user-backend';
import { SCSI_FEATURES } from '../fabrics/vhost/virtio-scsi-device';
import { AnClass, CtrlType, EventType, Resp } from '../fabrics/vhost/virtio-scsi';
import { DescFlag } from '../fabrics/vhost/virtio-ring';
import { bench } from '../tools/vhost-frontend/cli';
import { BlkSlot } from '../tools/vhost-frontend/frontend';
import { BLK_ID_BYTES, BlkConfig, BlkFeature, BlkSegment, BlkStatus, BlkType, SECTOR_SIZE } from '../fabrics/vhost/virtio-blk';
import { controlRpc, startTsiod, tcli, type Daemon } from './util/tsiod';

const dir = mkdtempSync(join(tmpdir(), 'tsio-vhost-fe-'));
const sockA = join(dir, 'a.sock');
const sockB = join(dir, 'b.sock');
const sockBlk = join(dir, 'blk.sock');
const sockMedia = join(dir, 'media.sock');
const BLK_SERIAL = '5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f70819';
let d: Daemon | undefined;

before(async () => {
  mkdirSync(join(dir, 'tapes'));
  d = await startTsiod(
    [
      'storage_objects:',
      '  - { name: r0, plugin: rd_mcp, size: 16MiB }',
      '  - { name: r1, plugin: rd_mcp, size: 16MiB }',
      `  - { name: thin, plugin: rd_mcp, size: 8MiB, wwn: ${BLK_SERIAL}, attributes: { emulate_tpu: true, emulate_tpws: true, emulate_write_cache: true } }`,
      `  - { name: f0, plugin: fileio, dev: ${join(dir, 'f0.img')}, size: 16MiB }`,
      '  - { name: cd, plugin: optical }',
      '  - { name: grow, plugin: rd_mcp, size: 4MiB }',
      `  - { name: tp, plugin: tape, dev: ${join(dir, 'tapes')} }`,
      `  - { name: lib, plugin: changer, dev: ${join(dir, 'tapes')}, drives: t2, slots: 2 }`,
      `  - { name: t2, plugin: tape, dev: ${join(dir, 'tapes')} }`,
      'targets:',
      '  - fabric: vhost',
      '    wwn: naa.5001405000000051',
      '    tpgs:',
      `      - { tag: 1, socket: ${sockA}, num_queues: 2, luns: [ { index: 0, storage_object: /backstores/rd_mcp/r0 }, { index: 1, storage_object: /backstores/fileio/f0 }, { index: 300, storage_object: /backstores/rd_mcp/r1 } ] }`,
      '  - fabric: vhost',
      '    wwn: naa.5001405000000052',
      '    tpgs:',
      `      - { tag: 1, socket: ${sockB}, luns: [ { index: 3, storage_object: /backstores/rd_mcp/r1 } ] }`,
      '  - fabric: vhost',
      '    wwn: naa.5001405000000053',
      '    tpgs:',
      `      - { tag: 1, socket: ${sockBlk}, device: blk, num_queues: 2, luns: [ { index: 0, storage_object: /backstores/rd_mcp/thin } ] }`,
      '  - fabric: vhost',
      '    wwn: naa.5001405000000054',
      '    tpgs:',
      `      - { tag: 1, socket: ${sockMedia}, num_queues: 1, luns: [ { index: 0, storage_object: /backstores/optical/cd }, { index: 1, storage_object: /backstores/tape/tp }, { index: 2, storage_object: /backstores/rd_mcp/r1 }, { index: 3, storage_object: /backstores/rd_mcp/grow }, { index: 4, storage_object: /backstores/changer/lib } ] }`,
      '',
    ].join('\n'),
    { dir },
  );
});

after(async () => {
  await d?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** What tsiod offers a vhost-user-scsi front-end: the ring's features and virtio-scsi's own. */
const DEVICE_FEATURES = RING_FEATURES | SCSI_FEATURES;

let nextId = 1n;

function scsi(q: DriverQueue, slot: ScsiSlot, lun: number, cdb: number[], len: number, write = false, target = 0): Promise<ScsiResult> {
  return new Promise((resolve) => {
    slot.post(q, lun, cdb, len, write, nextId++, resolve, target);
    q.kick();
  });
}

function connect(path: string, queues: number): VhostUserFrontend {
  const fe = new VhostUserFrontend(path, { memory: 96 * 1024 * 1024 });
  fe.negotiate(queues);
  fe.start(64);
  for (const q of fe.queues) q.watch();
  return fe;
}

test('negotiation in QEMU 7.2 order: features, protocol features, queue count, memory slots', () => {
  const fe = new VhostUserFrontend(sockA);
  try {
    fe.negotiate(4);
    assert.equal(fe.features, DEVICE_FEATURES);
    assert.equal(fe.features & (1n << 32n), 1n << 32n, 'VERSION_1');
    assert.equal(fe.features & (1n << 30n), 1n << 30n, 'F_PROTOCOL_FEATURES');
    assert.equal(fe.features & (1n << 34n), 0n, 'no packed rings offered');
    assert.equal(fe.protocolFeatures, PROTOCOL_FEATURES);
    assert.equal(fe.queueNum, 4, 'control + event + 2 request queues');
    fe.start(64);
    assert.deepEqual(fe.sent.slice(0, 7), [
      'GET_FEATURES', 'GET_PROTOCOL_FEATURES', 'SET_PROTOCOL_FEATURES', 'GET_QUEUE_NUM', 'GET_MAX_MEM_SLOTS', 'SET_OWNER', 'GET_FEATURES',
    ]);
    assert.ok(fe.sent.includes('ADD_MEM_REG'), 'memory sent as slots');
    assert.deepEqual(fe.stop(), [0, 0, 0, 0], 'nothing was posted');
    fe.reset();
  } finally {
    fe.close();
  }
});

test('I/O round trip: unit attention, INQUIRY, write and read back through guest memory, stop and resume', async () => {
  const fe = connect(sockA, 4);
  try {
    const q = fe.queues[2];
    const slot = new ScsiSlot(fe.ram, 65536);
    let r = await scsi(q, slot, 0, [0x00, 0, 0, 0, 0, 0], 0);
    assert.equal(r.response, Resp.OK);
    assert.equal(r.status, 2, 'first command: POWER ON unit attention');
    assert.equal(r.sense[2] & 0x0f, 6);
    assert.equal(r.sense[12], 0x29);
    r = await scsi(q, slot, 0, [0x12, 0, 0, 0, 96, 0], 96);
    assert.equal(r.status, 0);
    assert.equal(r.data.subarray(8, 12).toString(), 'TSIO');
    assert.equal(r.usedLen, 108 + 96);
    const pattern = Buffer.alloc(8192);
    for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 7 + 3) & 0xff;
    pattern.copy(slot.data);
    r = await scsi(q, slot, 0, [0x2a, 0, 0, 0, 0, 8, 0, 0, 16, 0], 8192, true);
    assert.equal(r.status, 0, `WRITE(10): ${r.sense.toString('hex')}`);
    slot.data.fill(0);
    r = await scsi(q, slot, 0, [0x28, 0, 0, 0, 0, 8, 0, 0, 16, 0], 8192);
    assert.equal(r.status, 0);
    assert.equal(r.usedLen, 108 + 8192);
    assert.ok(slot.data.subarray(0, 8192).equals(pattern), 'read back what was written');
    // Read into a larger buffer than the command moves: residual reported.
    r = await scsi(q, slot, 0, [0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0], 4096);
    assert.equal(r.residual, 4096 - 512);
    // The second request queue works too.
    r = await scsi(fe.queues[3], new ScsiSlot(fe.ram, 512), 0, [0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0], 512);
    assert.equal(r.status, 0);
    const bases = fe.stop();
    assert.deepEqual(bases, [0, 0, 5, 1], 'GET_VRING_BASE: next avail index per ring');
    // Start again from those bases, as QEMU does after a stop (the rings keep their indexes).
    fe.start(64);
    for (const qq of fe.queues) qq.watch();
    r = await scsi(fe.queues[2], new ScsiSlot(fe.ram, 512), 0, [0x00, 0, 0, 0, 0, 0], 0);
    assert.equal(r.status, 0);
  } finally {
    fe.close();
  }
});

test('bad target, unknown LUN and short headers get virtio-scsi errors', async () => {
  const fe = connect(sockA, 3);
  try {
    const q = fe.queues[2];
    const slot = new ScsiSlot(fe.ram, 4096);
    let r = await scsi(q, slot, 0, [0x00, 0, 0, 0, 0, 0], 0, false, 5);
    assert.equal(r.response, Resp.BAD_TARGET);
    r = await scsi(q, slot, 0, [0x00, 0, 0, 0, 0, 0], 0);
    r = await scsi(q, slot, 9, [0x00, 0, 0, 0, 0, 0], 0);
    assert.equal(r.response, Resp.OK);
    assert.equal(r.status, 2, 'LOGICAL UNIT NOT SUPPORTED');
    assert.equal(r.sense[12], 0x25);
    // LUN 300: flat space addressing (0x40 | 300 >> 8, 300 & 0xff).
    r = await scsi(q, slot, 300, [0x12, 0, 0, 0, 36, 0], 36);
    assert.equal(r.status, 0);
    assert.equal(r.data[0] & 0x1f, 0, 'a disk at LUN 300');
    // A 20-byte request header.
    const len = await new Promise<number>((resolve) => {
      q.add([[slot.reqGpa, 20]], [[slot.respGpa, 108]], resolve);
      q.kick();
    });
    assert.equal(len, 108);
    assert.equal(slot.resp[11], Resp.FAILURE);
  } finally {
    fe.close();
  }
});

test('hostile descriptors fail the request or the queue; tsiod keeps serving this and every other device', async () => {
  const fe = connect(sockA, 4);
  const other = connect(sockB, 3);
  try {
    const q = fe.queues[2];
    const slot = new ScsiSlot(fe.ram, 4096);
    const lenOf = (out: [number, number][], inb: [number, number][]) =>
      new Promise<number>((resolve) => {
        q.add(out, inb, resolve);
        q.kick();
      });
    // Data buffer outside guest memory: the request comes back empty.
    assert.equal(await lenOf([[slot.reqGpa, 51]], [[slot.respGpa, 108], [fe.ram.gpa + fe.ram.size - 100, 4096]]), 0);
    assert.equal(await lenOf([[0x10, 51]], [[slot.respGpa, 108]]), 0, 'header below guest memory');
    // A chain describing more than the back-end accepts (three 32 MiB views of the same RAM).
    const big: [number, number][] = [[fe.ram.gpa, 32 << 20], [fe.ram.gpa, 32 << 20], [fe.ram.gpa, 32 << 20]];
    assert.equal(await lenOf([[slot.reqGpa, 51]], [[slot.respGpa, 108], ...big]), 0);
    // An indirect table outside memory, and a good indirect request.
    const viaIndirect = (table: number) =>
      new Promise<number>((resolve) => {
        q.addIndirect(table, [
          { addr: slot.reqGpa, len: 51, flags: DescFlag.NEXT, next: 1 },
          { addr: slot.respGpa, len: 108, flags: DescFlag.WRITE },
        ], resolve);
        q.kick();
      });
    assert.equal(await viaIndirect(0xdead_0000), 0);
    slot.req.fill(0);
    slot.req[0] = 1;
    slot.req[2] = 0x40;
    assert.equal(await viaIndirect(fe.ram.alloc(64)), 108, 'indirect TEST UNIT READY');
    assert.equal(slot.resp[11], Resp.OK);
    // Still serving on the same queue.
    let r = await scsi(q, slot, 0, [0x12, 0, 0, 0, 36, 0], 36);
    assert.equal(r.status, 0);
    // A descriptor loop breaks the queue: nothing comes back from it any more...
    const q3 = fe.queues[3];
    const loop = await new Promise<number | undefined>((resolve) => {
      const t = setTimeout(() => resolve(undefined), 500);
      q3.addRaw(
        [
          { addr: slot.reqGpa, len: 51, flags: DescFlag.NEXT, next: 1 },
          { addr: slot.respGpa, len: 108, flags: DescFlag.WRITE | DescFlag.NEXT, next: 2 },
          { addr: slot.dataGpa, len: 512, flags: DescFlag.WRITE | DescFlag.NEXT, next: 1 },
        ],
        0,
        (len) => (clearTimeout(t), resolve(len)),
      );
      q3.kick();
    });
    assert.equal(loop, undefined, 'a looping chain is never completed');
    // ...but the other request queue of the same device still works,
    r = await scsi(q, slot, 0, [0x00, 0, 0, 0, 0, 0], 0);
    assert.equal(r.response, Resp.OK);
    // and so does the other device.
    const s2 = new ScsiSlot(other.ram, 512);
    r = await scsi(other.queues[2], s2, 3, [0x12, 0, 0, 0, 36, 0], 36);
    assert.equal(r.status, 0);
    assert.equal(r.data.subarray(8, 12).toString(), 'TSIO');
    // Out-of-range head index on the control queue: that queue stops, nothing else.
    fe.queues[0].publishRaw(999);
    fe.queues[0].kick();
    await new Promise((res) => setTimeout(res, 100));
    r = await scsi(q, slot, 0, [0x00, 0, 0, 0, 0, 0], 0);
    assert.equal(r.response, Resp.OK);
    assert.equal(d!.proc.exitCode, null, 'tsiod still running');
    assert.match(d!.log(), /outside guest memory/);
    assert.match(d!.log(), /loops or is longer than its table/);
    assert.match(d!.log(), /head 999 out of a ring/);
  } finally {
    fe.close();
    other.close();
  }
});

test('vhost-frontend bench: random writes and reads at depth on two queues, no errors, batched notifications', async () => {
  const w = await bench({ socket: sockA, queues: 2, qd: 8, bs: 4096, rw: 'randwrite', seconds: 1, pid: d!.proc.pid });
  assert.equal(w.errors, 0);
  assert.ok(w.ios > 100, `only ${w.ios} writes in a second`);
  assert.ok(w.backendCpuSeconds !== undefined && w.backendCpuSeconds >= 0);
  const r = await bench({ socket: sockA, queues: 1, qd: 16, bs: 8192, rw: 'randread', seconds: 1 });
  assert.equal(r.errors, 0);
  assert.ok(r.ios > 100);
  assert.ok(r.callsPerIo < 1, `EVENT_IDX should batch calls at depth 16: ${r.callsPerIo} per I/O`);
});

test('the same front-end drives qemu-storage-daemon vhost-user-blk (a real peer) with virtio-blk', async () => {
  const img = join(dir, 'blk.img');
  writeFileSync(img, Buffer.alloc(0));
  truncateSync(img, 32 << 20);
  const qsdSock = join(dir, 'qsd.sock');
  const qsd = spawn('qemu-storage-daemon', [
    '--blockdev', `driver=file,filename=${img},node-name=f,cache.direct=off`,
    '--export', `type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path=${qsdSock},writable=on,num-queues=2`,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let qsdLog = '';
  qsd.stderr!.on('data', (d) => (qsdLog += d));
  qsd.on('error', (e) => (qsdLog += `spawn failed (scripts/install-deps --test installs qemu-system-x86): ${e.message}`));
  try {
    const t0 = Date.now();
    while (!existsSync(qsdSock)) {
      if (Date.now() - t0 > 10_000 || qsd.exitCode !== null) throw new Error(`qemu-storage-daemon did not start: ${qsdLog}`);
      await new Promise((res) => setTimeout(res, 20));
    }
    const w = await bench({ socket: qsdSock, blk: true, queues: 2, qd: 8, rw: 'randwrite', seconds: 1 });
    assert.equal(w.errors, 0, qsdLog);
    assert.ok(w.ios > 100);
    const r = await bench({ socket: qsdSock, blk: true, qd: 4, rw: 'randread', seconds: 1 });
    assert.equal(r.errors, 0, qsdLog);
    assert.ok(r.ios > 100);
  } finally {
    qsd.kill('SIGKILL');
  }
});

test('control queue: LUN RESET, QUERY TASK, ABORT TASK of nothing, AN query, a bad subtype', async () => {
  const fe = connect(sockA, 3);
  try {
    const ctl = fe.queues[0];
    const reqGpa = fe.ram.alloc(24);
    const respGpa = fe.ram.alloc(8);
    const req = fe.ram.view(reqGpa, 24);
    const resp = fe.ram.view(respGpa, 8);
    const tmf = (subtype: number, lun: number, id = 0n) =>
      new Promise<number>((resolve) => {
        req.fill(0);
        req.writeUInt32LE(0, 0);
        req.writeUInt32LE(subtype, 4);
        req[8] = 1;
        req[10] = 0x40 | (lun >> 8);
        req[11] = lun & 0xff;
        req.writeBigUInt64LE(id, 16);
        resp.fill(0xee);
        ctl.add([[reqGpa, 24]], [[respGpa, 1]], (len) => {
          assert.equal(len, 1);
          resolve(resp[0]);
        });
        ctl.kick();
      });
    const q = fe.queues[2];
    const slot = new ScsiSlot(fe.ram, 512);
    await scsi(q, slot, 0, [0x00, 0, 0, 0, 0, 0], 0); // clears the power-on UA if still pending
    assert.equal(await tmf(5, 0), Resp.OK, 'LOGICAL UNIT RESET');
    let r = await scsi(q, slot, 0, [0x00, 0, 0, 0, 0, 0], 0);
    assert.equal(r.status, 2);
    assert.equal(r.sense[12], 0x29, 'reset unit attention after LUN RESET');
    assert.equal(await tmf(6, 0, 12345n), Resp.OK, 'QUERY TASK of an unknown task: function complete');
    assert.equal(await tmf(0, 0, 12345n), Resp.OK, 'ABORT TASK of an unknown task: function complete');
    assert.equal(await tmf(5, 77), Resp.INCORRECT_LUN, 'LUN RESET of a LUN that is not there');
    assert.equal(await tmf(7, 0), Resp.FUNCTION_REJECTED, 'QUERY TASK SET is not supported');
    // Asynchronous notification query: nothing supported, answered OK.
    const an = await new Promise<Buffer>((resolve) => {
      req.fill(0);
      req.writeUInt32LE(1, 0);
      req[4] = 1;
      req[6] = 0x40;
      req.writeUInt32LE(0xff, 12);
      resp.fill(0xee);
      ctl.add([[reqGpa, 16]], [[respGpa, 5]], () => resolve(Buffer.from(resp.subarray(0, 5))));
      ctl.kick();
    });
    assert.equal(an.readUInt32LE(0), 0, 'event_actual');
    assert.equal(an[4], Resp.OK);
    r = await scsi(q, slot, 0, [0x00, 0, 0, 0, 0, 0], 0);
    assert.equal(r.status, 0);
  } finally {
    fe.close();
  }
});

test('GET_VRING_BASE waits for requests in flight on a file LUN; the memory table can be replaced mid-run', async () => {
  const fe = connect(sockA, 3);
  try {
    const q = fe.queues[2];
    const first = new ScsiSlot(fe.ram, 512);
    await scsi(q, first, 1, [0x00, 0, 0, 0, 0, 0], 0); // power-on unit attention of LUN 1
    // SET_MEM_TABLE (not slots) with the same RAM while the device runs: I/O goes on.
    fe.sendMemoryTable();
    const slots = Array.from({ length: 20 }, () => new ScsiSlot(fe.ram, 65536));
    const results: number[] = [];
    slots.forEach((s, i) => {
      s.data.fill(i + 1);
      s.post(q, 1, [0x2a, 0, 0, 0, (i * 128) >> 8, (i * 128) & 0xff, 0, 0, 128, 0], 65536, true, BigInt(1000 + i), (r) => results.push(r.status));
    });
    q.kick();
    await new Promise((res) => setTimeout(res, 5));
    // Stop while the writes run: the reply comes only after every request the device took finished,
    // and names the next avail index; the rest wait in the ring for the restart.
    const bases = fe.stop();
    q.reap();
    assert.ok(bases[2] >= 1 && bases[2] <= 21, `base ${bases[2]}`);
    assert.equal(results.length, bases[2] - 1, 'every request taken was completed before GET_VRING_BASE answered');
    fe.start(64);
    for (const qq of fe.queues) qq.watch();
    for (let i = 0; i < 200 && results.length < 20; i++) await new Promise((res) => setTimeout(res, 10));
    assert.equal(results.length, 20, 'the rest ran after the restart, from the base');
    assert.ok(results.every((st) => st === 0), `statuses ${results}`);
    const r = await scsi(fe.queues[2], slots[0], 1, [0x28, 0, 0, 0, 0x09, 0x80, 0, 0, 128, 0], 65536);
    assert.equal(r.status, 0);
    assert.ok(r.data.equals(Buffer.alloc(65536, 20)), 'the 20th write is on the file');
  } finally {
    fe.close();
  }
});

test('a call fd replaced mid-run (QEMU masking MSI-X) is signalled at once: a completion signalled on the old one is not lost', async () => {
  const fe = new VhostUserFrontend(sockA, { memory: 96 * 1024 * 1024 });
  const fresh = eventfd();
  try {
    fe.negotiate(4);
    fe.start(64);
    const q = fe.queues[2];
    assert.ok(q.eventIdx, 'EVENT_IDX negotiated: later calls depend on what was signalled');
    const slot = new ScsiSlot(fe.ram, 512);
    const usedIdx = () => q.used.readUInt16LE(2);
    const until = async (what: string, ok: () => boolean) => {
      for (const t0 = Date.now(); !ok(); await new Promise((r) => setTimeout(r, 5))) {
        if (Date.now() - t0 > 5000) assert.fail(`${what}\n${d!.log()}`);
      }
    };
    // The driver does not reap: the first completion is signalled on the old fd, which "QEMU" has masked.
    slot.post(q, 0, [0x00, 0, 0, 0, 0, 0], 0, false, nextId++, () => {});
    q.kick();
    await until('the first request completed', () => usedIdx() === 1);
    assert.ok(eventfdRead(q.callFd) > 0, 'signalled on the old call fd');
    fe.request(Req.SET_VRING_CALL, u64Payload(2), [fresh]);
    let calls = 0;
    await until('the new call fd was never signalled: the guest would wait forever', () => (calls += eventfdRead(fresh)) > 0);
    // A second completion (used_event still 0, as the driver never looked) is signalled too.
    new ScsiSlot(fe.ram, 512).post(q, 0, [0x00, 0, 0, 0, 0, 0], 0, false, nextId++, () => {});
    q.kick();
    await until('the second request completed', () => usedIdx() === 2);
    await until('the second completion was signalled on the new call fd', () => eventfdRead(fresh) > 0);
    assert.equal(q.reap(), 2);
  } finally {
    fe.close();
    closeSync(fresh);
  }
});

function blk(q: DriverQueue, slot: BlkSlot, type: number, sector: number, len: number): Promise<number> {
  return new Promise((resolve) => {
    slot.post(q, type, sector, len, resolve);
    q.kick();
  });
}

test('vhost-user-blk: config space from the unit; IN, OUT, FLUSH, GET_ID, DISCARD and WRITE_ZEROES through the engine', async () => {
  const fe = new VhostUserFrontend(sockBlk, { memory: 32 * 1024 * 1024 });
  try {
    fe.negotiate(2);
    assert.equal(fe.queueNum, 2, 'GET_QUEUE_NUM is num_queues (no fixed queues)');
    for (const f of [BlkFeature.SEG_MAX, BlkFeature.BLK_SIZE, BlkFeature.FLUSH, BlkFeature.MQ, BlkFeature.DISCARD, BlkFeature.WRITE_ZEROES]) {
      assert.equal(fe.features & (1n << f), 1n << f, `feature ${f}`);
    }
    assert.equal(fe.features & (1n << BlkFeature.RO), 0n);
    const cfg = fe.getConfig(BlkConfig.LENGTH);
    assert.equal(cfg.readBigUInt64LE(BlkConfig.CAPACITY), BigInt((8 << 20) / SECTOR_SIZE));
    assert.equal(cfg.readUInt32LE(BlkConfig.BLK_SIZE), 512);
    assert.equal(cfg.readUInt16LE(BlkConfig.NUM_QUEUES), 2);
    assert.ok(cfg.readUInt32LE(BlkConfig.MAX_DISCARD_SECTORS) > 0);
    assert.equal(cfg[BlkConfig.WRITE_ZEROES_MAY_UNMAP], 1);
    fe.start(64);
    for (const q of fe.queues) q.watch();
    const q = fe.queues[1];
    const slot = new BlkSlot(fe.ram, 64 * 1024);
    slot.data.fill(0x5a);
    assert.equal(await blk(q, slot, BlkType.OUT, 16, 64 * 1024), BlkStatus.OK);
    slot.data.fill(0);
    assert.equal(await blk(q, slot, BlkType.IN, 16, 64 * 1024), BlkStatus.OK);
    assert.ok(slot.data.every((b) => b === 0x5a), 'read back what was written');
    assert.equal(await blk(q, slot, BlkType.FLUSH, 0, 0), BlkStatus.OK);
    assert.equal(await blk(q, slot, BlkType.GET_ID, 0, BLK_ID_BYTES), BlkStatus.OK);
    assert.equal(slot.data.subarray(0, BLK_ID_BYTES).toString('latin1'), BLK_SERIAL.slice(0, BLK_ID_BYTES));
    // DISCARD sectors 16..47, then WRITE_ZEROES 48..143: both read back as zeros.
    const seg = (sector: number, n: number, flags: number) => {
      slot.data.fill(0, 0, BlkSegment.LENGTH);
      slot.data.writeBigUInt64LE(BigInt(sector), BlkSegment.SECTOR);
      slot.data.writeUInt32LE(n, BlkSegment.NUM_SECTORS);
      slot.data.writeUInt32LE(flags, BlkSegment.FLAGS);
    };
    seg(16, 32, 0);
    assert.equal(await blk(q, slot, BlkType.DISCARD, 0, BlkSegment.LENGTH), BlkStatus.OK);
    seg(48, 96, 1);
    assert.equal(await blk(q, slot, BlkType.WRITE_ZEROES, 0, BlkSegment.LENGTH), BlkStatus.OK);
    slot.data.fill(0xff);
    assert.equal(await blk(q, slot, BlkType.IN, 16, 64 * 1024), BlkStatus.OK);
    const nz = slot.data.findIndex((b) => b !== 0);
    assert.equal(nz, -1, 'discarded and zeroed sectors read as zeros');
    // Beyond the end, and a type virtio-blk has but tsio does not serve.
    assert.equal(await blk(q, slot, BlkType.IN, (8 << 20) / SECTOR_SIZE, 4096), BlkStatus.IOERR);
    assert.equal(await blk(q, slot, BlkType.SECURE_ERASE, 0, 0), BlkStatus.UNSUPP);
  } finally {
    fe.close();
  }
});

test('vhost-user-blk: a front-end setting up more queues than num_queues is dropped', async () => {
  const fe = new VhostUserFrontend(sockBlk);
  try {
    assert.throws(() => {
      fe.negotiate(3);
      fe.getConfig(BlkConfig.LENGTH);
    }, /closed the connection|EPIPE|ECONNRESET/);
    for (let i = 0; i < 200 && !/sets up queue 2, but the device has 2/.test(d!.log()); i++) await new Promise((r) => setTimeout(r, 10));
    assert.match(d!.log(), /sets up queue 2, but the device has 2 \(num_queues\)/);
  } finally {
    fe.close();
  }
});

const STOP_WARNING = /closing under a connected front-end that .* the guest's I\/O on this device will hang until the VM restarts/;

test('stop warning, by socket, when tsiod stops or a controller goes live under a front-end not known to reconnect: none with in-flight records (cannot), virtio-scsi with fresh records (QEMU 7.2 cannot, 8.2 can); none for virtio-blk with records, nor for one that reconnected', async () => {
  const sdir = mkdtempSync(join(tmpdir(), 'tsio-vhost-stop-'));
  const sock = (n: string) => join(sdir, `${n}.sock`);
  const tpg = (wwn: string, n: string, extra = '') => [
    '  - fabric: vhost',
    `    wwn: ${wwn}`,
    `    tpgs: [ { tag: 1, socket: ${sock(n)},${extra} num_queues: 1, luns: [ { index: 0, storage_object: /backstores/rd_mcp/r0 } ] } ]`,
  ];
  const daemon = await startTsiod(
    [
      'storage_objects:',
      '  - { name: r0, plugin: rd_mcp, size: 4MiB }',
      'targets:',
      ...tpg('naa.5001405000000061', 'scsi'),
      ...tpg('naa.5001405000000062', 'norecords'),
      ...tpg('naa.5001405000000063', 'blk', ' device: blk,'),
      ...tpg('naa.5001405000000064', 'again'),
      '',
    ].join('\n'),
    { dir: sdir },
  );
  const fes: VhostUserFrontend[] = [];
  const open = (name: string, queues: number, inflight: 'acked' | 'kept', handOver?: { fd: number; msg: Buffer }) => {
    const fe = new VhostUserFrontend(sock(name), { memory: 8 * 1024 * 1024, inflight, handOver });
    fes.push(fe);
    fe.negotiate(queues);
    fe.start(64);
    return fe;
  };
  const warnings = () => daemon.log().split('\n').filter((l) => STOP_WARNING.test(l));
  try {
    // As QEMU 7.2's vhost-user-scsi: in-flight records asked for at start, yet it cannot reconnect.
    open('scsi', 3, 'kept');
    open('norecords', 3, 'acked');
    open('blk', 1, 'kept');
    // A front-end that reconnected: its records come from the connection before, with no GET_INFLIGHT_FD.
    const first = open('again', 3, 'kept');
    const kept = { fd: openSync(`/proc/self/fd/${first.inflightFd}`, 'r+'), msg: first.inflightMsg! };
    first.close();
    fes.splice(fes.indexOf(first), 1);
    for (let i = 0; i < 200 && !/front-end disconnected/.test(daemon.log()); i++) await new Promise((r) => setTimeout(r, 10));
    const again = open('again', 3, 'kept', kept);
    closeSync(kept.fd);
    assert.equal(again.sent.includes('GET_INFLIGHT_FD'), false);
    assert.deepEqual(warnings(), [], 'a front-end that hangs up itself is not warned of');

    const del = tcli(daemon.sock, ['/vhost', 'delete', 'naa.5001405000000062']);
    assert.equal(del.status, 0, del.stderr);
    for (let i = 0; i < 200 && warnings().length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(warnings().length, 1, daemon.log());
    assert.ok(warnings()[0].includes(sock('norecords')), 'the warning names the socket');
    assert.match(warnings()[0], /keeps no in-flight records \(it acked INFLIGHT_SHMFD but sent no SET_INFLIGHT_FD\): it cannot reconnect, and the guest's I\/O/);

    assert.equal(await daemon.stop(), 0);
    const all = warnings();
    assert.equal(all.length, 2, daemon.log());
    assert.ok(all[1].includes(sock('scsi')), 'SIGTERM: the virtio-scsi front-end is warned of');
    assert.match(all[1], /keeps in-flight records but has not reconnected before: if it cannot reconnect \(QEMU 7\.2's vhost-user-scsi cannot/);
    assert.ok(!all.some((l) => l.includes(sock('blk'))), 'virtio-blk with records reconnects: no warning');
    assert.ok(!all.some((l) => l.includes(sock('again'))), 'a front-end that reconnected before: no warning');
  } finally {
    for (const fe of fes) fe.close();
    await daemon.stop();
    rmSync(sdir, { recursive: true, force: true });
  }
});

test('asynchronous notification: removable LUNs and changers report the media class; after AN_SUBSCRIBE an eject, an insert, a cartridge loaded, unloaded or imported post ASYNC_NOTIFY on the event queue', async () => {
  const call = async (method: string, params: object) => {
    const r = await controlRpc(d!.sock, method, params);
    if (r.error) throw new Error(`${method}: ${r.error.message}`);
    return r.result;
  };
  const iso = join(dir, 'disc.iso');
  writeFileSync(iso, Buffer.alloc(32 * 2048, 0x41));
  const fe = connect(sockMedia, 3);
  const ALL = 0x7e;
  try {
    const ev = new ScsiEvents(fe, 8);
    const media = () => ev.events.filter((e) => e.event === EventType.ASYNC_NOTIFY);
    // Query: the media class for the CD/DVD drive and the tape drive, nothing for a disk; wrong addresses refused.
    assert.deepEqual(await ev.an(CtrlType.AN_QUERY, 0, 0, ALL), { actual: AnClass.MEDIA_CHANGE, response: Resp.OK }, 'CD/DVD');
    assert.deepEqual(await ev.an(CtrlType.AN_QUERY, 0, 1, ALL), { actual: AnClass.MEDIA_CHANGE, response: Resp.OK }, 'tape');
    assert.deepEqual(await ev.an(CtrlType.AN_QUERY, 0, 2, ALL), { actual: 0, response: Resp.OK }, 'a fixed disk');
    assert.equal((await ev.an(CtrlType.AN_QUERY, 0, 9, ALL)).response, Resp.INCORRECT_LUN);
    assert.equal((await ev.an(CtrlType.AN_QUERY, 5, 0, ALL)).response, Resp.BAD_TARGET);
    // Not subscribed yet: a disc put in posts nothing.
    await call('optical.insert', { path: '/backstores/optical/cd', image: iso });
    assert.deepEqual(await ev.an(CtrlType.AN_SUBSCRIBE, 0, 0, AnClass.MEDIA_CHANGE | AnClass.POWER_MGMT), { actual: AnClass.MEDIA_CHANGE, response: Resp.OK });
    assert.deepEqual(await ev.an(CtrlType.AN_SUBSCRIBE, 0, 1, AnClass.MEDIA_CHANGE), { actual: AnClass.MEDIA_CHANGE, response: Resp.OK });
    assert.deepEqual(await ev.an(CtrlType.AN_SUBSCRIBE, 0, 2, AnClass.MEDIA_CHANGE), { actual: 0, response: Resp.OK }, 'a fixed disk has no media events');
    assert.deepEqual(media(), [], 'nothing before the subscription');
    await call('optical.eject', { path: '/backstores/optical/cd' });
    await ev.wait(1);
    assert.deepEqual(media(), [{ event: EventType.ASYNC_NOTIFY, target: 0, lun: 0, reason: AnClass.MEDIA_CHANGE }], 'eject');
    await call('optical.insert', { path: '/backstores/optical/cd', image: iso });
    await call('cartridges.create', { path: '/backstores/tape/tp', barcode: 'AN0001', capacity: '1MiB' });
    await call('tape.load', { path: '/backstores/tape/tp', barcode: 'AN0001' });
    const until = async (n: number) => {
      for (let i = 0; i < 500 && media().length < n; i++) await new Promise((r) => setTimeout(r, 10));
      return media();
    };
    assert.deepEqual((await until(3)).map((e) => [e.lun, e.reason]), [[0, 16], [0, 16], [1, 16]], 'insert on LUN 0, a cartridge loaded on LUN 1');
    // Unsubscribed (no class asked): the disc changes unheard; the tape's subscription stays.
    assert.deepEqual(await ev.an(CtrlType.AN_SUBSCRIBE, 0, 0, 0), { actual: 0, response: Resp.OK });
    await call('optical.eject', { path: '/backstores/optical/cd' });
    await call('tape.unload', { path: '/backstores/tape/tp' });
    assert.deepEqual((await until(4)).map((e) => [e.lun, e.reason]), [[0, 16], [0, 16], [1, 16], [1, 16]]);
    // A media changer: cartridges through its import/export slot.
    assert.deepEqual(await ev.an(CtrlType.AN_SUBSCRIBE, 0, 4, ALL), { actual: AnClass.MEDIA_CHANGE, response: Resp.OK }, 'changer');
    await call('cartridges.create', { path: '/backstores/changer/lib', barcode: 'AN0002', capacity: '1MiB' });
    await call('changer.import', { path: '/backstores/changer/lib', barcodes: 'AN0002' });
    assert.deepEqual((await until(5)).map((e) => [e.lun, e.reason]).slice(4), [[4, 16]], 'import');
    assert.ok(ev.events.every((e) => e.event === EventType.ASYNC_NOTIFY || e.event === EventType.PARAM_CHANGE), JSON.stringify(ev.events));
  } finally {
    fe.close();
  }
});

test('a resize through the control API posts PARAM_CHANGE with CAPACITY DATA HAS CHANGED (2Ah/09h) for the LUN, and READ CAPACITY gives the new size', async () => {
  const fe = connect(sockMedia, 3);
  try {
    const ev = new ScsiEvents(fe, 4);
    const r = await controlRpc(d!.sock, 'storage_objects.set', { path: '/backstores/rd_mcp/grow', fields: { size: '8MiB' } });
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    const [e] = await ev.wait(1);
    assert.deepEqual(e, { event: EventType.PARAM_CHANGE, target: 0, lun: 3, reason: 0x2a | (0x09 << 8) });
    const slot = new ScsiSlot(fe.ram, 512);
    // Unit attentions first (power on, then the resize's CAPACITY DATA HAS CHANGED).
    let rc: ScsiResult = await scsi(fe.queues[2], slot, 3, [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8);
    for (let i = 0; i < 3 && rc.status === 2; i++) rc = await scsi(fe.queues[2], slot, 3, [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8);
    assert.equal(rc.status, 0);
    assert.equal(rc.data.readUInt32BE(0) + 1, (8 << 20) / 512, 'READ CAPACITY(10): 8 MiB');
  } finally {
    fe.close();
  }
});
