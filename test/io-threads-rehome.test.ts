// io_threads: 2, live changes that join home groups running on two threads:
// the lighter group is re-homed on the other thread instead of the change
// being refused. A restoreconfig that exports one RAM LU through a second
// iSCSI target of the other thread is accepted; the data written before reads
// back through both targets (the RAM pages are shared memory, adopted by the
// new thread), a persistent reservation survives, and an initiator writing
// all along is asked to log out (Async Message), logs in again on the new
// home and carries on, its data verified. A vhost controller with a connected
// front-end is not moved: the change is refused, naming it. A change that
// fails on the new home reopens everything where it was, with its state.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlClient } from '../cli/client';
import { freePort, startTsiod, type Daemon } from './util/tsiod';
import { RawInitiator } from './util/iscsi-initiator';

const FRONTEND = join(__dirname, '..', 'tools', 'vhost-frontend', 'cli.js');
const dir = mkdtempSync(join(tmpdir(), 'tsio-rehome-'));
const sock = (n: string) => join(dir, `${n}.sock`);
const IQN = (n: string) => `iqn.2026-12.org.tsio:${n}`;
const VHOST = 'naa.5001405000000091';
let d: Daemon;
let c: ControlClient;
let port1 = 0;
let port2 = 0;

interface ThreadInfo {
  index: number;
  storage_objects: string[];
  targets: string[];
}

/**
 * The whole configuration; `join`: t2 also exports `shared`, `vhostJoin`: the vhost controller also exports heavy1,
 * `busy`: t2 also lists this portal.
 */
function config(o: { join?: boolean; vhostJoin?: boolean; busy?: number } = {}): string {
  const lun = (i: number, so: string) => `          - { index: ${i}, storage_object: /backstores/rd_mcp/${so} }`;
  const iscsi = (n: string, ports: number[], luns: string[]) => [
    '  - fabric: iscsi',
    `    wwn: ${IQN(n)}`,
    '    tpgs:',
    '      - tag: 1',
    '        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }',
    `        portals: [ ${ports.map((p) => `{ ip_address: 127.0.0.1, port: ${p} }`).join(', ')} ]`,
    '        luns:',
    ...luns.map((so, i) => lun(i, so)),
  ];
  return [
    'daemon: { io_threads: 2 }',
    'storage_objects:',
    ...['shared', 'heavy1', 'heavy2', 'mine', 'v'].map((n) => `  - { name: ${n}, plugin: rd_mcp, size: 16MiB }`),
    'targets:',
    // t1 is the heavier group (three LUNs): t2's group joins it on its thread.
    ...iscsi('t1', [port1], ['shared', 'heavy1', 'heavy2']),
    ...iscsi('t2', o.busy ? [port2, o.busy] : [port2], o.join ? ['mine', 'shared'] : ['mine']),
    '  - fabric: vhost',
    `    wwn: ${VHOST}`,
    '    tpgs:',
    `      - tag: 1`,
    `        socket: ${sock('v')}`,
    '        luns:',
    lun(0, 'v'),
    ...(o.vhostJoin ? [lun(1, 'heavy1')] : []),
    '',
  ].join('\n');
}

before(async () => {
  port1 = await freePort();
  port2 = await freePort();
  d = await startTsiod(() => config(), { dir });
  c = await ControlClient.connect(d.sock);
});

after(async () => {
  if (process.env.TSIO_TEST_LOG) process.stderr.write(d?.log() ?? '');
  c?.close();
  assert.equal(await d?.stop(), 0, 'tsiod stops cleanly');
  rmSync(dir, { recursive: true, force: true });
});

const threads = () => c.call<ThreadInfo[]>('threads');
const homeOf = async (what: string) => (await threads()).find((t) => t.targets.some((x) => x.includes(what)))?.index;
const rw = (op: number, lba: number, blocks: number): number[] => [op, 0, lba >>> 24, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, blocks >> 8, blocks & 0xff, 0];
const block = (n: number) => Buffer.alloc(512, (n * 7 + 1) & 0xff).fill(n & 0xff, 0, 4);
const KEY = 0xabcdef0123n;

function prOut(sa: number, type: number, key: bigint, saKey: bigint): { cdb: number[]; data: Buffer } {
  const data = Buffer.alloc(24);
  data.writeBigUInt64BE(key, 0);
  data.writeBigUInt64BE(saKey, 8);
  return { cdb: [0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0], data };
}

async function login(port: number, target: string, who: string, isid: Buffer<ArrayBuffer>): Promise<RawInitiator> {
  const i = await RawInitiator.connect(port);
  i.isid = isid;
  await i.login(target, {}, who);
  // The unit attention a new nexus starts with.
  await i.command([0, 0, 0, 0, 0, 0]);
  return i;
}

/** Logs in, retrying while the target is between threads (refused, reset, or not yet listening). */
async function loginAgain(port: number, target: string, who: string, isid: Buffer<ArrayBuffer>): Promise<RawInitiator> {
  const until = Date.now() + 20_000;
  for (;;) {
    try {
      return await login(port, target, who, isid);
    } catch (e) {
      if (Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

test('a re-homing change that fails on the new home leaves the old placement serving, data and reservation kept', async () => {
  const before = await threads();
  const doc = await c.call<unknown>('config.get');
  const who = IQN('init-f');
  const isid = Buffer.from([0x80, 0, 0, 0, 0x44, 4]);
  const keyF = 0x5151n;
  const i = await login(port2, IQN('t2'), who, isid);
  const reg = prOut(0, 0, 0n, keyF);
  assert.equal((await i.command(reg.cdb, { write: reg.data })).status, 0);
  const data = Buffer.alloc(8192, 0xc3);
  assert.equal((await i.command(rw(0x2a, 2000, 16), { write: data })).status, 0);
  // A port another socket holds: t2 cannot listen on its new home, after its old home let it go.
  const busy = createServer();
  busy.listen(0, '127.0.0.1');
  await once(busy, 'listening');
  try {
    const change = c.call('restoreconfig', { text: config({ join: true, busy: (busy.address() as AddressInfo).port }), clear_existing: true });
    // The session is asked to log out as t2 leaves its thread; it does.
    const async = await i.next((p) => p.opcode === 0x32, 15_000);
    assert.equal(async.bhs[36], 1);
    await i.logout().catch(() => undefined);
    i.close();
    await assert.rejects(change, /EADDRINUSE|address already in use|in use/i);
  } finally {
    busy.close();
  }
  assert.deepEqual(await c.call('config.get'), doc, 'the configuration is as it was');
  assert.deepEqual(await threads(), before, 'every storage object and target where it was');
  // t2 serves again on its old thread, with the data and the registration it had.
  const again = await loginAgain(port2, IQN('t2'), who, isid);
  const r = await again.command(rw(0x28, 2000, 16), { read: 8192 });
  assert.equal(r.status, 0);
  assert.ok(r.data.equals(data), 'the data written before the failed change');
  const keys = await again.command([0x5e, 0, 0, 0, 0, 0, 0, 1, 0, 0], { read: 256 });
  assert.equal(keys.data.readUInt32BE(4), 8);
  assert.equal(keys.data.readBigUInt64BE(8), keyF);
  // Unregistered again, for the next test.
  const unreg = prOut(0, 0, keyF, 0n);
  assert.equal((await again.command(unreg.cdb, { write: unreg.data })).status, 0);
  assert.equal(await again.logout(), 0);
  again.close();
});

test('a restoreconfig joining a RAM LU of two threads re-homes the lighter group: data, reservation and a writing initiator carry on', async () => {
  const h1 = await homeOf(IQN('t1'));
  const h2 = await homeOf(IQN('t2'));
  assert.ok(h1 !== undefined && h2 !== undefined && h1 !== h2, `t1 and t2 start on two threads: ${JSON.stringify(await threads())}`);

  // Data through t1 on the LU both will export.
  const i1 = await login(port1, IQN('t1'), IQN('init-1'), Buffer.from([0x80, 0, 0, 0, 0x41, 1]));
  const pattern = Buffer.alloc(64 * 1024);
  for (let k = 0; k < pattern.length; k += 4) pattern.writeUInt32BE((k * 2654435761) >>> 0, k);
  assert.equal((await i1.command(rw(0x2a, 100, 128), { write: pattern })).status, 0);

  // t2's initiator registers and reserves its own LU (Write Exclusive), then writes block after block.
  const who = IQN('init-2');
  const isid = Buffer.from([0x80, 0, 0, 0, 0x42, 2]);
  let i2 = await login(port2, IQN('t2'), who, isid);
  const reg = prOut(0, 0, 0n, KEY);
  assert.equal((await i2.command(reg.cdb, { write: reg.data })).status, 0);
  const res = prOut(1, 1, KEY, 0n);
  assert.equal((await i2.command(res.cdb, { write: res.data })).status, 0);

  let written = 0;
  let asked = false;
  let relogins = 0;
  const change = c.call<{ changed: string[]; created: string[] }>('restoreconfig', { text: config({ join: true }), clear_existing: true });
  let changed = false;
  void change.then(() => (changed = true), () => (changed = true));
  // Writes go on through the change and after it, until 40 blocks past it have landed.
  let after = 0;
  while (after < 40) {
    const r = await i2.command(rw(0x2a, written, 1), { write: block(written) }).catch(() => undefined);
    if (r?.status === 0) {
      written++;
      if (changed) after++;
    } else if (r) {
      assert.fail(`write ${written}: status ${r.status}, sense ${r.sense.toString('hex')}`);
    }
    const async = i2.pdus.findIndex((p) => p.opcode === 0x32);
    if (async >= 0 || r === undefined || i2.closed) {
      if (async >= 0) {
        // Async Message, AsyncEvent 1: the target asks for a logout.
        assert.equal(i2.pdus[async].bhs[36], 1, 'AsyncEvent 1: logout requested');
        asked = true;
        i2.pdus.splice(async, 1);
        await i2.logout().catch(() => undefined);
      }
      i2.close();
      i2 = await loginAgain(port2, IQN('t2'), who, isid);
      relogins++;
    }
  }
  const report = await change;
  assert.ok(asked, 'the session was asked to log out');
  assert.ok(relogins >= 1);
  // Released on its old thread, created on its new one.
  assert.ok(report.created.includes('/backstores/rd_mcp/mine') && report.created.includes(`iscsi/${IQN('t2')}`), JSON.stringify(report));

  // One thread now: t2's group moved to t1's.
  const t = await threads();
  assert.equal(await homeOf(IQN('t2')), h1, JSON.stringify(t));
  assert.ok(t[h1].storage_objects.includes('/backstores/rd_mcp/mine'), JSON.stringify(t));
  assert.deepEqual(t[h2].storage_objects.filter((x) => x.includes('mine') || x.includes('shared')), []);

  // Every block written through the move reads back, through t2's new home.
  const all = await i2.command(rw(0x28, 0, written), { read: written * 512 });
  assert.equal(all.status, 0);
  for (let n = 0; n < written; n++) assert.ok(all.data.subarray(n * 512, (n + 1) * 512).equals(block(n)), `block ${n} of ${written}: ${all.data.subarray(n * 512, n * 512 + 16).toString("hex")}`);

  // The registration and the reservation came along.
  const keys = await i2.command([0x5e, 0, 0, 0, 0, 0, 0, 1, 0, 0], { read: 256 });
  assert.equal(keys.status, 0);
  assert.equal(keys.data.readUInt32BE(4), 8);
  assert.equal(keys.data.readBigUInt64BE(8), KEY);
  const rsv = await i2.command([0x5e, 1, 0, 0, 0, 0, 0, 1, 0, 0], { read: 256 });
  assert.equal(rsv.data.readUInt32BE(4), 16, 'a reservation is held');
  assert.equal(rsv.data.readBigUInt64BE(8), KEY);
  assert.equal(rsv.data[21] & 0x0f, 1, 'Write Exclusive');
  // Another initiator is still kept from writing by it.
  const other = await login(port2, IQN('t2'), IQN('init-3'), Buffer.from([0x80, 0, 0, 0, 0x43, 3]));
  assert.equal((await other.command(rw(0x2a, 0, 1), { write: block(0) })).status, 0x18, 'RESERVATION CONFLICT');

  // The RAM LU written through t1 before reads the same through both targets after (its new LUN's unit attention first).
  assert.equal((await i2.command([0, 0, 0, 0, 0, 0], { lun: 1 })).status, 2);
  const via2 = await i2.command(rw(0x28, 100, 128), { read: 64 * 1024, lun: 1 });
  assert.equal(via2.status, 0);
  assert.ok(via2.data.equals(pattern), 'through t2, the data t1 wrote before the move');
  const via1 = await i1.command(rw(0x28, 100, 128), { read: 64 * 1024 });
  assert.ok(via1.data.equals(pattern), 'through t1 (its session kept)');
  // And a write through one shows through the other.
  assert.equal((await i2.command(rw(0x2a, 300, 1), { write: block(300), lun: 1 })).status, 0);
  assert.ok((await i1.command(rw(0x28, 300, 1), { read: 512 })).data.equals(block(300)));
  for (const i of [i1, i2, other]) {
    assert.equal(await i.logout(), 0);
    i.close();
  }
});

test('a vhost controller with a connected front-end is not moved: the change is refused whole, naming it; once it is gone the controller moves', async () => {
  const hv = await homeOf(VHOST);
  const h1 = await homeOf(IQN('t1'));
  assert.ok(hv !== undefined && h1 !== undefined && hv !== h1, `the controller starts on the other thread: ${JSON.stringify(await threads())}`);
  const doc = await c.call<unknown>('config.get');
  const fe = spawn(process.execPath, [FRONTEND, '--socket', sock('v'), '--qd', '2', '--seconds', '4', '--rw', 'randwrite', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  fe.stdout.on('data', (b: Buffer) => (out += b.toString()));
  const done = new Promise<number | null>((r) => fe.once('exit', r));
  try {
    // Connected once the control API shows its front-end.
    const until = Date.now() + 10_000;
    for (;;) {
      const tpg = await c.call<{ fabric_state?: { frontends?: unknown[] } }>('tpgs.get', { wwn: VHOST, tag: 1 });
      if ((tpg.fabric_state?.frontends?.length ?? 0) > 0) break;
      assert.ok(Date.now() < until, `no front-end shown: ${JSON.stringify(tpg)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const msg = new RegExp(`vhost controller ${sock('v').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\(target ${VHOST}\\) .*from I/O thread ${hv}; 1 front-end is connected to it`);
    await assert.rejects(c.call('restoreconfig', { text: config({ join: true, vhostJoin: true }), clear_existing: true }), msg);
    assert.deepEqual(await c.call('config.get'), doc, 'nothing of the refused change was applied');
    assert.equal(await homeOf(VHOST), hv);
  } finally {
    assert.equal(await done, 0, out);
  }
  assert.equal((JSON.parse(out) as { errors: number }).errors, 0, out);
  // No front-end now: the controller moves to the thread of the storage it joins.
  await c.call('restoreconfig', { text: config({ join: true, vhostJoin: true }), clear_existing: true });
  assert.equal(await homeOf(VHOST), h1);
});
