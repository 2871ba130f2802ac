// io_threads: 2: two vhost controllers homed on two I/O threads, driven at
// once by the project's front-end (no guest), each thread's CPU time read from
// /proc/PID/task/TID; the control API's views gathered from both threads, live
// changes placed where their storage lives, one group re-homed where they join
// two threads' storage, a failed change taking nothing with it. Two iSCSI
// targets on one portal live on two threads: one listens, and a login naming
// the other's target moves there with what was read (fabrics/iscsi/handoff.ts).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlClient } from '../cli/client';
import { freePort, startTsiod, type Daemon } from './util/tsiod';
import { RawInitiator, textOf } from './util/iscsi-initiator';

const run = promisify(execFile);
const FRONTEND = join(__dirname, '..', 'tools', 'vhost-frontend', 'cli.js');
const dir = mkdtempSync(join(tmpdir(), 'tsio-iothreads-'));
const sock = (n: string) => join(dir, `${n}.sock`);
let d: Daemon;
let c: ControlClient;
let metricsPort = 0;
let port2 = 0;
/** The portal iSCSI targets ic and id share. */
let port3 = 0;

interface ThreadInfo {
  index: number;
  tid: number;
  storage_objects: string[];
  targets: string[];
}

before(async () => {
  metricsPort = await freePort();
  port2 = await freePort();
  port3 = await freePort();
  const iscsi = (n: string, port: number) => [
    '  - fabric: iscsi',
    `    wwn: iqn.2026-12.org.tsio:${n}`,
    '    tpgs:',
    '      - tag: 1',
    '        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }',
    `        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]`,
    `        luns: [ { index: 0, storage_object: /backstores/rd_mcp/${n} } ]`,
  ];
  d = await startTsiod((port) =>
    [
      'daemon: { io_threads: 2 }',
      'storage_objects:',
      '  - { name: a, plugin: rd_mcp, size: 16MiB }',
      '  - { name: b, plugin: rd_mcp, size: 16MiB }',
      '  - { name: spare, plugin: rd_mcp, size: 1MiB }',
      '  - { name: ia, plugin: rd_mcp, size: 16MiB }',
      '  - { name: ib, plugin: rd_mcp, size: 16MiB }',
      '  - { name: ic, plugin: rd_mcp, size: 16MiB }',
      '  - { name: id, plugin: rd_mcp, size: 16MiB }',
      'targets:',
      '  - fabric: vhost',
      '    wwn: naa.5001405000000071',
      '    tpgs:',
      `      - { tag: 1, socket: ${sock('a')}, luns: [ { index: 0, storage_object: /backstores/rd_mcp/a } ] }`,
      '  - fabric: vhost',
      '    wwn: naa.5001405000000072',
      '    tpgs:',
      `      - { tag: 1, socket: ${sock('b')}, luns: [ { index: 0, storage_object: /backstores/rd_mcp/b } ] }`,
      ...iscsi('ia', port),
      ...iscsi('ib', port2),
      ...iscsi('ic', port3),
      ...iscsi('id', port3),
      '',
    ].join('\n'),
    { dir, args: ['--metrics', `127.0.0.1:${metricsPort}`] },
  );
  c = await ControlClient.connect(d.sock);
});

after(async () => {
  if (process.env.TSIO_TEST_LOG) process.stderr.write(d?.log() ?? '');
  c?.close();
  assert.equal(await d?.stop(), 0, 'tsiod stops cleanly, its I/O threads with it');
  rmSync(dir, { recursive: true, force: true });
});

/** utime + stime of one thread of tsiod, in clock ticks. */
function ticks(tid: number): number {
  const f = readFileSync(`/proc/${d.proc.pid}/task/${tid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]);
}

const threads = () => c.call<ThreadInfo[]>('threads');
const homeOf = async (what: string) => (await threads()).find((t) => t.targets.some((x) => x.includes(what)))?.index;

test('the two controllers are homed on two threads, each served there at once', async () => {
  const t = await threads();
  assert.equal(t.length, 2);
  assert.notEqual(t[0].tid, t[1].tid);
  for (const x of t) assert.notEqual(x.tid, d.proc.pid, 'an I/O thread is not the main thread');
  const ha = await homeOf('naa.5001405000000071');
  const hb = await homeOf('naa.5001405000000072');
  assert.ok(ha !== undefined && hb !== undefined && ha !== hb, JSON.stringify(t));

  const before = t.map((x) => ticks(x.tid));
  const drive = (s: string) => run(process.execPath, [FRONTEND, '--socket', s, '--qd', '8', '--seconds', '3', '--rw', 'randwrite', '--json']);
  const [ra, rb] = await Promise.all([drive(sock('a')), drive(sock('b'))]);
  const used = t.map((x, i) => ticks(x.tid) - before[i]);
  for (const r of [ra, rb]) {
    const j = JSON.parse(r.stdout) as { ios: number; errors: number };
    assert.ok(j.ios > 100, r.stdout);
    assert.equal(j.errors, 0, r.stdout);
  }
  // Each thread did its controller's work: CPU of its own in the 3 s (an idle thread has none; a loaded machine gives little).
  for (const [i, u] of used.entries()) assert.ok(u >= 3, `I/O thread ${i} used ${u} ticks (both: ${used.join(', ')})`);

  // The views of live objects come from both threads.
  const stats = await c.call<{ storage_objects: { path: string; stats: { writes: number } }[] }>('statistics');
  for (const p of ['/backstores/rd_mcp/a', '/backstores/rd_mcp/b']) {
    assert.ok((stats.storage_objects.find((s) => s.path === p)?.stats.writes ?? 0) > 100, `${p}: ${JSON.stringify(stats.storage_objects)}`);
  }
  const list = await c.call<{ path: string }[]>('storage_objects.list');
  assert.deepEqual(list.map((s) => s.path), ['/backstores/rd_mcp/a', '/backstores/rd_mcp/b', '/backstores/rd_mcp/ia', '/backstores/rd_mcp/ib', '/backstores/rd_mcp/ic', '/backstores/rd_mcp/id', '/backstores/rd_mcp/spare']);
  const pr = await c.call<{ generation: number }>('storage_objects.reservations', { path: '/backstores/rd_mcp/b' });
  assert.equal(pr.generation, 0);
});

test('two iSCSI targets on two portals: their sessions are served on two threads at once', async () => {
  const ia = await homeOf('iqn.2026-12.org.tsio:ia');
  const ib = await homeOf('iqn.2026-12.org.tsio:ib');
  assert.ok(ia !== undefined && ib !== undefined && ia !== ib, JSON.stringify(await threads()));
  const t = await threads();
  const before = t.map((x) => ticks(x.tid));
  const ports = [d.port, port2];
  const perf = (n: string, port: number) => run('iscsi-perf', ['-m', '8', '-b', '8', '-r', '-t', '3', `iscsi://127.0.0.1:${port}/iqn.2026-12.org.tsio:${n}/0`]);
  const during = new Promise((r) => setTimeout(r, 1500)).then(() => c.call<{ id: number; target: string }[]>('sessions.list'));
  const [oa, ob, sessions] = await Promise.all([perf('ia', ports[0]), perf('ib', ports[1]), during]);
  for (const o of [oa, ob]) assert.match(o.stdout, /iops average [1-9]/, o.stdout + o.stderr);
  const used = t.map((x, i) => ticks(x.tid) - before[i]);
  for (const [i, u] of used.entries()) assert.ok(u >= 3, `I/O thread ${i} used ${u} ticks (both: ${used.join(', ')})`);
  // One session per target, ids unique across the threads.
  assert.deepEqual(sessions.map((s) => s.target).sort(), ['iqn.2026-12.org.tsio:ia', 'iqn.2026-12.org.tsio:ib']);
  assert.equal(new Set(sessions.map((s) => s.id)).size, 2);
});

const IQN = (n: string) => `iqn.2026-12.org.tsio:${n}`;
const rw = (op: number, lba: number, blocks: number): number[] => [op, 0, lba >>> 24, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, blocks >> 8, blocks & 0xff, 0];
type SessionRow = { id: number; target: string; initiator: string; thread: number };

test('two iSCSI targets on one portal: homed on two threads, both served there with data verified, both listed by SendTargets', async () => {
  const hc = await homeOf(IQN('ic'));
  const hd = await homeOf(IQN('id'));
  assert.ok(hc !== undefined && hd !== undefined && hc !== hd, JSON.stringify(await threads()));

  // Data written through each target reads back through it; each session is served on its target's thread.
  const pattern = (n: string) => Buffer.alloc(64 * 1024, n);
  const inits = await Promise.all(['ic', 'id'].map(async (n) => {
    const i = await RawInitiator.connect(port3);
    i.isid = Buffer.from([0x80, 0, 0, 0, 0x30, n.charCodeAt(1)]);
    await i.login(IQN(n), {}, `iqn.2026-12.org.tsio:init-${n}`);
    return i;
  }));
  for (const [k, n] of ['ic', 'id'].entries()) {
    await inits[k].command([0, 0, 0, 0, 0, 0]); // takes the unit attention a new nexus starts with
    const w = await inits[k].command(rw(0x2a, 8, 128), { write: pattern(n) });
    assert.equal(w.status, 0);
  }
  for (const [k, n] of ['ic', 'id'].entries()) {
    const r = await inits[k].command(rw(0x28, 8, 128), { read: 64 * 1024 });
    assert.equal(r.status, 0);
    assert.ok(r.data.equals(pattern(n)), `${n}: the data written reads back`);
  }
  const sessions = await c.call<SessionRow[]>('sessions.list');
  for (const [n, home] of [['ic', hc], ['id', hd]] as const) {
    const s = sessions.filter((x) => x.target === IQN(n));
    assert.equal(s.length, 1, JSON.stringify(sessions));
    assert.equal(s[0].thread, home, `the session of ${n} lives on its target's thread: ${JSON.stringify(sessions)}`);
  }
  for (const i of inits) {
    assert.equal(await i.logout(), 0);
    i.close();
  }

  // Both loaded at once through the one portal: both threads work.
  const t = await threads();
  const before = t.map((x) => ticks(x.tid));
  const perf = (n: string) => run('iscsi-perf', ['-m', '8', '-b', '8', '-r', '-t', '3', `iscsi://127.0.0.1:${port3}/${IQN(n)}/0`]);
  for (const o of await Promise.all([perf('ic'), perf('id')])) assert.match(o.stdout, /iops average [1-9]/, o.stdout + o.stderr);
  const used = t.map((x, i) => ticks(x.tid) - before[i]);
  for (const [i, u] of used.entries()) assert.ok(u >= 3, `I/O thread ${i} used ${u} ticks (both: ${used.join(', ')})`);

  // Discovery through the shared portal lists both targets, whichever thread listens there.
  const disc = await RawInitiator.connect(port3);
  await disc.login(undefined);
  const text = (await disc.textRequest('SendTargets=All\0')).data.toString().split('\0').filter(Boolean);
  for (const n of ['ic', 'id']) {
    const at = text.indexOf(`TargetName=${IQN(n)}`);
    assert.ok(at >= 0, text.join(' '));
    assert.equal(text[at + 1], `TargetAddress=127.0.0.1:${port3},1`, text.join(' '));
  }
  assert.equal(await disc.logout(), 0);
  disc.close();
});

test('one portal, the target on the thread not listening: a re-login with the same ISID reinstates the session', async () => {
  // One of ic and id is on the thread that does not listen on the shared portal: both are tried.
  assert.notEqual(await homeOf(IQN('ic')), await homeOf(IQN('id')));
  for (const n of ['ic', 'id']) {
    const isid = Buffer.from([0x80, 0, 0, 0, 0x31, n.charCodeAt(1)]);
    const who = `iqn.2026-12.org.tsio:reinstate-${n}`;
    const first = await RawInitiator.connect(port3);
    first.isid = isid;
    await first.login(IQN(n), {}, who);
    await first.command([0, 0, 0, 0, 0, 0]);
    const w = await first.command(rw(0x2a, 0, 1), { write: Buffer.alloc(512, 0x5a) });
    assert.equal(w.status, 0);
    const old = (await c.call<SessionRow[]>('sessions.list')).filter((s) => s.initiator === who);
    assert.equal(old.length, 1);
    const second = await RawInitiator.connect(port3);
    second.isid = isid;
    await second.login(IQN(n), {}, who);
    assert.ok(await first.waitClosed(), `${n}: the old session's connection is dropped`);
    await second.command([0, 0, 0, 0, 0, 0]);
    const r = await second.command(rw(0x28, 0, 1), { read: 512 });
    assert.equal(r.status, 0);
    assert.ok(r.data.equals(Buffer.alloc(512, 0x5a)));
    const now = (await c.call<SessionRow[]>('sessions.list')).filter((s) => s.initiator === who);
    assert.equal(now.length, 1, JSON.stringify(now));
    assert.notEqual(now[0].id, old[0].id, 'a new session replaced the old one');
    assert.equal(now[0].thread, old[0].thread);
    assert.equal(await second.logout(), 0);
    second.close();
  }
});

test('one portal: a command pipelined right behind the login request is served on the target\'s thread', async () => {
  assert.notEqual(await homeOf(IQN('ic')), await homeOf(IQN('id')));
  for (const n of ['ic', 'id']) {
    const i = await RawInitiator.connect(port3);
    // One login request straight to full feature phase, every key the target would otherwise offer answered,
    // and an INQUIRY in the same write: it reaches the target before the login response leaves.
    const lh = Buffer.alloc(48);
    lh[0] = 0x43;
    lh[1] = 0x80 | (1 << 2) | 3;
    i.isid.copy(lh, 8);
    lh.writeUInt32BE(i.nextItt(), 16);
    lh.writeUInt32BE(i.cmdSN, 24);
    const keys = textOf({
      InitiatorName: `iqn.2026-12.org.tsio:pipeline-${n}`, SessionType: 'Normal', TargetName: IQN(n), HeaderDigest: 'None', DataDigest: 'None',
      MaxRecvDataSegmentLength: '65536', InitialR2T: 'Yes', ImmediateData: 'Yes', MaxBurstLength: '262144', FirstBurstLength: '65536', MaxOutstandingR2T: '1',
    });
    lh.writeUIntBE(keys.length, 5, 3);
    // INQUIRY: answered whatever unit attention the new nexus has pending.
    const { h } = i.commandHeader([0x12, 0, 0, 0, 36, 0], { read: 36 });
    i.raw(Buffer.concat([lh, keys, Buffer.alloc((4 - (keys.length & 3)) & 3), h]));
    const login = await i.next((p) => p.opcode === 0x23);
    assert.equal(login.bhs.readUInt16BE(36), 0, `${n}: login accepted`);
    assert.ok(login.flags & 0x80, `${n}: straight to full feature phase`);
    const data = await i.next((p) => p.opcode === 0x25);
    assert.equal(data.data.length, 36, `${n}: the pipelined INQUIRY was answered`);
    assert.equal(data.data[0] & 0x1f, 0, 'a disk');
    assert.equal(await i.logout(), 0);
    i.close();
  }
});

test('a storage object exported live joins its endpoint\'s thread; joining two threads\' storage re-homes one group; a failed change takes nothing', async () => {
  const hb = await homeOf('naa.5001405000000072');
  await c.call('luns.create', { wwn: 'naa.5001405000000072', tag: 1, storage_object: '/backstores/rd_mcp/spare' });
  const t = await threads();
  assert.ok(t[hb!].storage_objects.includes('/backstores/rd_mcp/spare'), JSON.stringify(t));
  // ia and ib (no session now) live on two threads: exporting ib through ia moves one group to the other's thread.
  const ha = await homeOf(IQN('ia'));
  assert.notEqual(ha, await homeOf(IQN('ib')));
  await c.call('luns.create', { wwn: IQN('ia'), tag: 1, storage_object: '/backstores/rd_mcp/ib' });
  const joined = await threads();
  assert.equal(await homeOf(IQN('ia')), await homeOf(IQN('ib')), JSON.stringify(joined));
  const on = joined[(await homeOf(IQN('ia')))!].storage_objects;
  assert.ok(on.includes('/backstores/rd_mcp/ia') && on.includes('/backstores/rd_mcp/ib'), JSON.stringify(joined));
  const doc = await c.call<unknown>('config.get');
  // A failure on one thread (the file's directory is missing) takes nothing with it.
  await assert.rejects(c.call('storage_objects.create', { plugin: 'fileio', name: 'f', fields: { dev: join(dir, 'none', 'f.img'), size: 1 << 20 } }), /does not exist/);
  assert.deepEqual(await c.call('config.get'), doc);
  assert.deepEqual(await threads(), joined);
});

test('metrics and status gather every thread', async () => {
  const st = await c.call<{ storage_objects: number; sessions: number }>('status');
  assert.equal(st.storage_objects, 7);
  assert.equal(typeof st.sessions, 'number');
  const tree = await c.call<{ runtime: { storage_objects: Record<string, unknown> } }>('tree');
  assert.deepEqual(Object.keys(tree.runtime.storage_objects).sort(), ['/backstores/rd_mcp/a', '/backstores/rd_mcp/b', '/backstores/rd_mcp/ia', '/backstores/rd_mcp/ib', '/backstores/rd_mcp/ic', '/backstores/rd_mcp/id', '/backstores/rd_mcp/spare']);
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  for (const so of ['a', 'b']) assert.match(text, new RegExp(`^tsio_lu_commands_total\\{storage_object="/backstores/rd_mcp/${so}"\\} [1-9]`, 'm'));
  assert.equal(text.match(/^# TYPE tsio_lu_commands_total /gm)?.length, 1, 'one family, series from both threads');
});

test('one portal: a first login request continued over several PDUs (C bit) reaches a target of either thread', async () => {
  assert.notEqual(await homeOf(IQN('ic')), await homeOf(IQN('id')));
  for (const n of ['ic', 'id', 'ic', 'id']) {
    const i = await RawInitiator.connect(port3);
    try {
      // 20-byte PDUs: the target's name arrives only in the third or a later one, after acknowledgements.
      await i.login(IQN(n), {}, `iqn.2026-12.org.tsio:continued-${n}`, 20);
      const r = await i.command([0x12, 0, 0, 0, 36, 0], { read: 36 });
      assert.equal(r.status, 0, `INQUIRY through ${n}`);
      assert.equal(await i.logout(), 0);
    } finally {
      i.close();
    }
  }
});

test('one portal: when its listening thread lets it go, the other thread listens; a target whose portal is back is reached again', async () => {
  assert.notEqual(await homeOf(IQN('ic')), await homeOf(IQN('id')));
  const login = async (n: string) => {
    const i = await RawInitiator.connect(port3);
    try {
      await i.login(IQN(n), {}, `iqn.2026-12.org.tsio:move-${n}`);
      const r = await i.command([0x12, 0, 0, 0, 36, 0], { read: 36 });
      assert.equal(r.data.length, 36);
      assert.equal(await i.logout(), 0);
    } finally {
      i.close();
    }
  };
  // Whichever of ic and id listens on the shared portal gives it up: the other one's thread takes the port.
  for (const [gone, stays] of [['ic', 'id'], ['id', 'ic']]) {
    await c.call('portals.delete', { wwn: IQN(gone), tag: 1, ip_address: '127.0.0.1', port: port3 });
    await login(stays);
    await assert.rejects(login(gone), (e: Error & { status?: number }) => e.status === 0x0203, `${gone} is no longer on the portal`);
    await c.call('portals.create', { wwn: IQN(gone), tag: 1, ip_address: '127.0.0.1', port: port3 });
    await login(gone);
    await login(stays);
  }
});
