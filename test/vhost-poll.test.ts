// Notifications between tsiod's vhost-user back end and a front-end (the
// project's own, no guest): with EVENT_IDX the device signals only when the
// driver's used_event asks; with daemon.poll_max_ns the device polls its rings
// after a pass with the driver's kicks turned off (avail_event behind, or
// VRING_USED_F_NO_NOTIFY without EVENT_IDX), and turns them back on before it
// sleeps, so a request posted after the poll window is still served.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventfdRead } from '../native';
import { BlkSlot, ScsiSlot, VhostUserFrontend, type DriverQueue } from '../tools/vhost-frontend/frontend';
import { bench } from '../tools/vhost-frontend/cli';
import { bit, Feature } from '../fabrics/vhost/vhost-user-proto';
import { availSize } from '../fabrics/vhost/virtio-ring';
import { BlkStatus, BlkType } from '../fabrics/vhost/virtio-blk';
import { startTsiod, tcli, type Daemon } from './util/tsiod';

const dir = mkdtempSync(join(tmpdir(), 'tsio-vhost-poll-'));
/** A long enough window that a front-end answering each call always posts inside it, even on a busy machine. */
const POLL_MAX_NS = 5_000_000;
let plain: Daemon | undefined;
let polling: Daemon | undefined;

function config(sub: string, pollMaxNs = 0): string {
  return [
    ...(pollMaxNs > 0 ? ['daemon:', `  poll_max_ns: ${pollMaxNs}`] : []),
    'storage_objects:',
    '  - { name: r0, plugin: rd_mcp, size: 16MiB }',
    'targets:',
    '  - fabric: vhost',
    '    wwn: naa.5001405000000061',
    '    tpgs:',
    `      - { tag: 1, socket: ${join(dir, sub, 'scsi.sock')}, num_queues: 1, luns: [ { index: 0, storage_object: /backstores/rd_mcp/r0 } ] }`,
    '  - fabric: vhost',
    '    wwn: naa.5001405000000062',
    '    tpgs:',
    `      - { tag: 1, socket: ${join(dir, sub, 'blk.sock')}, device: blk, num_queues: 1, luns: [ { index: 0, storage_object: /backstores/rd_mcp/r0 } ] }`,
    '',
  ].join('\n');
}

before(async () => {
  plain = await startTsiod(config('plain'));
  // The config's daemon.poll_max_ns (the benches use tsiod --poll-max-ns, which overrides it).
  polling = await startTsiod(config('poll', POLL_MAX_NS));
});

after(async () => {
  await plain?.stop();
  await polling?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, ok: () => boolean, d: Daemon): Promise<void> {
  for (const t0 = Date.now(); !ok(); await sleep(2)) {
    if (Date.now() - t0 > 10_000) assert.fail(`${what}\n${d.log()}`);
  }
}

/**
 * As until, checking every loop turn: a driver that posts its next request as soon as it sees the last
 * complete, as a guest's does. With a 2 ms timer between checks the gaps came near the poll window's cap,
 * where it halves, and a whole-suite run saw 184 kicks for 300 requests.
 */
async function untilSoon(what: string, ok: () => boolean, d: Daemon): Promise<void> {
  for (const t0 = Date.now(); !ok(); await new Promise((r) => setImmediate(r))) {
    if (Date.now() - t0 > 10_000) assert.fail(`${what}\n${d.log()}`);
  }
}

/** A virtio-blk front-end on the plain daemon with its one ring running, EVENT_IDX negotiated. */
function blkFrontend(): { fe: VhostUserFrontend; q: DriverQueue } {
  const fe = new VhostUserFrontend(join(dir, 'plain', 'blk.sock'), { memory: 16 << 20 });
  fe.negotiate(1);
  fe.start(128);
  const q = fe.queues[0];
  assert.ok(q.eventIdx);
  return { fe, q };
}

test('EVENT_IDX: the device does not signal completions the driver\'s used_event says it does not want', async () => {
  const { fe, q } = blkFrontend();
  try {
    // Polling the used ring, as a guest driver in polling mode: used_event parked far behind.
    q.avail.writeUInt16LE(0xff00, availSize(q.num) - 2);
    const slots = Array.from({ length: 20 }, () => new BlkSlot(fe.ram, 4096));
    eventfdRead(q.callFd); // the call fd's first signal (libvhost-user's: a new call fd is signalled at once)
    const status: number[] = [];
    for (let i = 0; i < 20; i++) {
      slots[i].post(q, BlkType.IN, i * 8, 4096, (s) => status.push(s));
      q.kick();
      // Watching used->idx, not reaping (reaping would ask for a call).
      await until(`request ${i} completed`, () => q.used.readUInt16LE(2) === i + 1, plain!);
    }
    // The first completion after a new call fd is signalled whatever used_event says (nothing is known of what
    // the driver saw); none after it.
    const calls = eventfdRead(q.callFd);
    assert.ok(calls <= 1, `${calls} calls for 20 completions the driver asked not to hear of`);
    assert.equal(q.reap(), 20);
    assert.deepEqual(status, Array(20).fill(BlkStatus.OK));
  } finally {
    fe.close();
  }
});

/** What tsiod counted on the blk controller's front-end connection (the control API's TPG info). */
function counted(d: Daemon): { requests: number; kicks: number; calls: number } {
  const r = tcli(d.sock, ['--json', '/vhost/naa.5001405000000062/tpg1', 'info']);
  assert.equal(r.status, 0, r.stderr);
  const fes = JSON.parse(r.stdout).vhost.frontends;
  assert.equal(fes.length, 1);
  return { requests: fes[0].requests, kicks: fes[0].kicks, calls: fes[0].calls };
}

test('EVENT_IDX: every completion the driver\'s used_event asks for is signalled, once; tsiod counts the kicks and calls the driver saw', async () => {
  const { fe, q } = blkFrontend();
  try {
    const slot = new BlkSlot(fe.ram, 4096);
    eventfdRead(q.callFd); // the call fd's first signal
    const N = 30;
    let ok = 0;
    for (let i = 0; i < N; i++) {
      // A driver that has reaped everything asks for a call at the next completion (used_event = its last used index),
      // as Linux's virtqueue_enable_cb does; the device must signal it, whatever it signalled before.
      q.avail.writeUInt16LE(i, availSize(q.num) - 2);
      slot.post(q, i % 2 === 0 ? BlkType.IN : BlkType.OUT, i * 8, 4096, (s) => (ok += s === BlkStatus.OK ? 1 : 0));
      q.kick();
      await until(`request ${i} completed`, () => q.used.readUInt16LE(2) === i + 1, plain!);
      await until(`request ${i} signalled`, () => eventfdRead(q.callFd) === 1, plain!);
      assert.equal(q.reap(), 1);
    }
    assert.equal(ok, N);
    assert.deepEqual(counted(plain!), { requests: N, kicks: q.kicks, calls: N });
  } finally {
    fe.close();
  }
});

test('without --poll-max-ns every request at depth 1 needs its own kick', async () => {
  const r = await bench({ socket: join(dir, 'plain', 'blk.sock'), blk: true, qd: 1, rw: 'randread', seconds: 1 });
  assert.equal(r.errors, 0);
  assert.equal(r.kicksPerIo, 1);
});

test('--poll-max-ns: the device polls with kicks off, so requests at depth 1 mostly need none (EVENT_IDX, virtio-blk)', async () => {
  const r = await bench({ socket: join(dir, 'poll', 'blk.sock'), blk: true, qd: 1, rw: 'randread', seconds: 1 });
  assert.equal(r.errors, 0);
  assert.ok(r.ios > 50, `only ${r.ios} requests`);
  assert.ok(r.kicksPerIo < 0.5, `${r.kicksPerIo} kicks per request while the device polls`);
  assert.ok(r.callsPerIo > 0.9, `the driver still hears of every completion at depth 1: ${r.callsPerIo} calls per request`);
});

/** One request at a time on q, the next posted as soon as the last is reaped; kicks counted by the driver. */
async function serial(q: DriverQueue, slot: ScsiSlot, n: number, d: Daemon, cdb = [0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], ok = true): Promise<void> {
  for (let i = 0; i < n; i++) {
    let status = -1;
    slot.post(q, 0, cdb, cdb[0] === 0x88 ? 4096 : 0, false, BigInt(i + 1), (res) => (status = res.response === 0 ? res.status : 255));
    q.kick();
    await untilSoon(`request ${i} completed`, () => status >= 0, d);
    if (ok) assert.equal(status, 0);
  }
}

test('--poll-max-ns without EVENT_IDX (VRING_USED_F_NO_NOTIFY), virtio-scsi; after the window kicks are on again', async () => {
  const fe = new VhostUserFrontend(join(dir, 'poll', 'scsi.sock'), {
    memory: 16 << 20,
    features: bit(Feature.VERSION_1) | bit(Feature.PROTOCOL_FEATURES) | bit(Feature.INDIRECT_DESC),
  });
  try {
    fe.negotiate(3);
    fe.start(128);
    for (const x of fe.queues) x.watch();
    const q = fe.queues[2];
    assert.equal(q.eventIdx, false);
    const slot = new ScsiSlot(fe.ram, 4096);
    await serial(q, slot, 1, polling!, [0x00, 0, 0, 0, 0, 0], false); // the power-on unit attention
    const k0 = q.kicks;
    await serial(q, slot, 300, polling!);
    const kicks = q.kicks - k0;
    assert.ok(kicks < 150, `${kicks} kicks for 300 requests while the device polls`);
    // Longer than any poll window: the device sleeps, and must have asked for kicks again before it did.
    await sleep(100);
    await serial(q, slot, 1, polling!);
    assert.equal(q.kicks, k0 + kicks + 1, 'the request after the window was kicked');
  } finally {
    fe.close();
  }
});
