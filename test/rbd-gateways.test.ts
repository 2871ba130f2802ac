// Two tsiod gateways (two processes, two RADOS clients) exporting one rbd image of the shared test
// cluster under one target name, TPG 1 on gateway A and TPG 2 on B: persistent reservations made
// through one gateway hold through the other (the state is a RADOS object every gateway watches),
// and REPORT TARGET PORT GROUPS answers the same through both, before and after gateway A is killed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

import { ceph, type Ceph } from './util/ceph';
import { startTsiod, tcli, type Daemon } from './util/tsiod';
import { RawInitiator } from './util/iscsi-initiator';
import { cdb10, cdb16 } from './util/cdb';
import { SA, TYPES, prOutCdb } from './util/pr';
import { gatewayConfig, type GatewayUnit } from './util/gateways';

const IQN = 'iqn.2026-12.org.tsio:gateways';
const SERIAL = 'tsio-gateways-test-0001';
const X = 'iqn.2026-12.org.tsio:host-x';
const Y = 'iqn.2026-12.org.tsio:host-y';
const MiB = 1024 * 1024;
const SIZE = 256 * MiB;
const STATUS = { GOOD: 0, CHECK: 2, CONFLICT: 0x18, TASK_ABORTED: 0x40 };

let c: Ceph;
let image: string;
const gw: Daemon[] = [];
/** The standby test's own gateways and image (non_owner_state: standby). */
const sgw: Daemon[] = [];
let standbyImage: string | undefined;

let unit: GatewayUnit;
const config = (tag: number) => (port: number) => gatewayConfig(c, unit, tag, port);

before(async () => {
  c = ceph();
  image = c.imageName('gateways');
  unit = { iqn: IQN, serial: SERIAL, image, size: SIZE, attributes: 'max_write_same_len: 1048576' };
  gw.push(await startTsiod(config(1)));
  gw.push(await startTsiod(config(2)));
});

after(async () => {
  for (const d of [...gw, ...sgw]) await d.stop();
  for (const img of standbyImage === undefined ? [image] : [image, standbyImage]) {
    try {
      c.rbd('rm', '--no-progress', `rbd/${img}`);
    } catch (e) {
      if (img === image) throw e; // the standby test's image exists only once its gateways started
    }
    // The gateways' shared records outlive the image (they are its state, not its data).
    for (const rec of ['pr', 'alua']) {
      try {
        execFileSync('rados', ['-c', c.conf, '-p', 'rbd', 'rm', `tsio.${rec}.${img}`], { stdio: 'ignore' });
      } catch {
        /* never made */
      }
    }
  }
  c.ceph('osd', 'blocklist', 'clear');
});

/** An initiator logged in to a gateway, its power-on unit attention taken. */
async function host(d: Daemon, name: string): Promise<RawInitiator> {
  const ini = await RawInitiator.connect(d.port);
  await ini.login(IQN, {}, name);
  for (let i = 0; i < 4 && (await ini.command([0, 0, 0, 0, 0, 0])).status !== 0; i++);
  return ini;
}

function prOut(ini: RawInitiator, sa: number, type: number, key: bigint, saKey: bigint) {
  const p = Buffer.alloc(24);
  p.writeBigUInt64BE(key, 0);
  p.writeBigUInt64BE(saKey, 8);
  return ini.command(prOutCdb(sa, type, 24), { write: p, immediate: 24 });
}

async function readKeys(ini: RawInitiator): Promise<{ generation: number; keys: bigint[] }> {
  const r = await ini.command([0x5e, 0, 0, 0, 0, 0, 0, 4, 0, 0], { read: 1024 });
  assert.equal(r.status, STATUS.GOOD, `READ KEYS: sense ${r.sense.toString('hex')}`);
  const keys: bigint[] = [];
  for (let i = 0; i < r.data.readUInt32BE(4); i += 8) keys.push(r.data.readBigUInt64BE(8 + i));
  return { generation: r.data.readUInt32BE(0), keys };
}

async function readReservation(ini: RawInitiator): Promise<{ key: bigint; type: number } | undefined> {
  const r = await ini.command([0x5e, 1, 0, 0, 0, 0, 0, 4, 0, 0], { read: 1024 });
  assert.equal(r.status, STATUS.GOOD, 'READ RESERVATION');
  if (r.data.readUInt32BE(4) === 0) return undefined;
  return { key: r.data.readBigUInt64BE(8), type: r.data[21] & 0x0f };
}

const write = (ini: RawInitiator, lba: number) => ini.command(cdb10(0x2a, lba, 1), { write: Buffer.alloc(512, 0x5a), immediate: 512 });
const read = (ini: RawInitiator, lba: number) => ini.command(cdb10(0x28, lba, 1), { read: 512 });
const asc = (r: { sense: Buffer }) => (r.sense[12] << 8) | r.sense[13];

test('reservations made through gateway A hold through gateway B; PREEMPT AND ABORT through B aborts on A', { timeout: 300_000 }, async () => {
  const [a, b] = gw;
  const x = await host(a, X);
  const y = await host(b, Y);
  try {
    // X registers and reserves WRITE EXCLUSIVE through A.
    assert.equal((await prOut(x, SA.REGISTER, 0, 0n, 0xaan)).status, STATUS.GOOD);
    assert.equal((await prOut(x, SA.RESERVE, TYPES.WE, 0xaan, 0n)).status, STATUS.GOOD);

    // B sees them at once: READ KEYS and READ RESERVATION from its cache, kept current by A's notify.
    assert.deepEqual(await readKeys(y), { generation: 1, keys: [0xaan] });
    assert.deepEqual(await readReservation(y), { key: 0xaan, type: TYPES.WE });

    // Y (unregistered) through B: reads are allowed under WRITE EXCLUSIVE, writes conflict; X writes through A.
    assert.equal((await read(y, 0)).status, STATUS.GOOD);
    assert.equal((await write(y, 0)).status, STATUS.CONFLICT, 'a write through B conflicts with the reservation made through A');
    assert.equal((await write(x, 0)).status, STATUS.GOOD);
    // Y may not reserve over X's reservation.
    assert.equal((await prOut(y, SA.REGISTER, 0, 0n, 0xbbn)).status, STATUS.GOOD);
    assert.equal((await prOut(y, SA.RESERVE, TYPES.EA, 0xbbn, 0n)).status, STATUS.CONFLICT, 'RESERVE through B conflicts');
    // A sees Y's registration.
    assert.deepEqual(await readKeys(x), { generation: 2, keys: [0xaan, 0xbbn] });

    // A long WRITE SAME from X through A (the whole 256 MiB image), then Y preempts and aborts X through B.
    const block = Buffer.alloc(512, 0x77);
    const long = x.command(cdb16(0x93, 0, SIZE / 512), { write: block, immediate: 512, wait: 120_000 });
    await new Promise((r) => setTimeout(r, 100));
    const t = Date.now();
    const pa = await prOut(y, SA.PREEMPT_AND_ABORT, TYPES.EA, 0xbbn, 0xaan);
    assert.equal(pa.status, STATUS.GOOD, 'PREEMPT AND ABORT through B');
    const ls = await long;
    console.log(`PREEMPT AND ABORT took ${Date.now() - t} ms; X's WRITE SAME ended with status 0x${ls.status.toString(16)}`);
    assert.equal(ls.status, STATUS.TASK_ABORTED, "X's command on gateway A ended as aborted by another initiator");

    // The new state through both gateways; X's nexus on A learns it was preempted.
    assert.deepEqual(await readReservation(y), { key: 0xbbn, type: TYPES.EA });
    const ua = await read(x, 0);
    assert.equal(ua.status, STATUS.CHECK);
    assert.equal(asc(ua), 0x2a05, 'REGISTRATIONS PREEMPTED on X through A');
    assert.deepEqual(await readKeys(x), { generation: 3, keys: [0xbbn] });
    assert.deepEqual(await readReservation(x), { key: 0xbbn, type: TYPES.EA });
    const denied = await read(x, 0);
    assert.equal(denied.status, STATUS.CONFLICT, 'X through A may not even read under EXCLUSIVE ACCESS held through B');
    assert.equal((await write(y, 0)).status, STATUS.GOOD);

    // Y releases through B; X (registering again) reserves through A.
    assert.equal((await prOut(y, SA.RELEASE, TYPES.EA, 0xbbn, 0n)).status, STATUS.GOOD);
    assert.equal(await readReservation(x), undefined);
    assert.equal((await prOut(x, SA.REGISTER, 0, 0n, 0xacn)).status, STATUS.GOOD);
    assert.equal((await prOut(x, SA.CLEAR, 0, 0xacn, 0n)).status, STATUS.GOOD);
    const cleared = await read(y, 0);
    assert.equal(asc(cleared), 0x2a03, 'RESERVATIONS PREEMPTED on Y through B after the CLEAR through A');
    assert.deepEqual((await readKeys(y)).keys, []);
  } finally {
    x.close();
    y.close();
  }
});

test('concurrent PR OUTs through both gateways: every one is a compare-and-swap, none is lost', { timeout: 300_000 }, async () => {
  const [a, b] = gw;
  const hosts = await Promise.all([host(a, `${X}-1`), host(b, `${Y}-1`), host(a, `${X}-2`), host(b, `${Y}-2`)]);
  try {
    const rs = await Promise.all(hosts.map((h, i) => prOut(h, SA.REGISTER, 0, 0n, BigInt(0x100 + i))));
    assert.deepEqual(rs.map((r) => r.status), [0, 0, 0, 0]);
    const k = await readKeys(hosts[0]);
    assert.deepEqual([...k.keys].sort(), [0x100n, 0x101n, 0x102n, 0x103n]);
    assert.deepEqual(await readKeys(hosts[1]), k);
    assert.equal((await prOut(hosts[1], SA.CLEAR, 0, 0x101n, 0n)).status, STATUS.GOOD);
    for (const h of [hosts[0], hosts[2], hosts[3]]) assert.equal(asc(await read(h, 0)), 0x2a03, 'RESERVATIONS PREEMPTED on every other registrant, on both gateways');
    assert.deepEqual((await readKeys(hosts[2])).keys, []);
  } finally {
    for (const h of hosts) h.close();
  }
});

interface PortGroup {
  id: number;
  state: number;
  ports: number[];
}

/** Unit attentions the helpers below took on each path (ASCs), for tests that check them. */
const uasSeen = new WeakMap<RawInitiator, number[]>();

/** REPORT TARGET PORT GROUPS (extended header) through an initiator's path. */
async function rtpg(ini: RawInitiator): Promise<{ groups: PortGroup[]; transitionTime: number }> {
  for (let i = 0; ; i++) {
    const r = await ini.command([0xa3, 0x0a | (1 << 5), 0, 0, 0, 0, 0, 0, 4, 0, 0, 0], { read: 1024 });
    if (r.status === STATUS.CHECK && (r.sense[2] & 0xf) === 6 && i < 8) {
      uasSeen.set(ini, [...(uasSeen.get(ini) ?? []), asc(r)]);
      continue; // unit attentions first
    }
    assert.equal(r.status, STATUS.GOOD, `RTPG: sense ${r.sense.toString('hex')}`);
    const groups: PortGroup[] = [];
    for (let d = 8; d < 4 + r.data.readUInt32BE(0);) {
      const n = r.data[d + 7];
      const ports = Array.from({ length: n }, (_, k) => r.data.readUInt16BE(d + 8 + 4 * k + 2));
      groups.push({ id: r.data.readUInt16BE(d + 2), state: r.data[d] & 0x0f, ports });
      d += 8 + 4 * n;
    }
    return { groups, transitionTime: r.data[5] };
  }
}

/** Polls RTPG through ini until pred holds (up to ms); returns what it saw last and when. */
async function rtpgUntil(ini: RawInitiator, pred: (g: PortGroup[]) => boolean, ms = 30_000, every = 200): Promise<{ groups: PortGroup[]; ms: number }> {
  const t = Date.now();
  let g = (await rtpg(ini)).groups;
  while (!pred(g) && Date.now() - t < ms) {
    await new Promise((r) => setTimeout(r, every));
    g = (await rtpg(ini)).groups;
  }
  return { groups: g, ms: Date.now() - t };
}

const AO = 0;
const ANO = 1;
const UNAVAILABLE = 3;

test('ALUA: one target port group per gateway, the same answer through both, before and after gateway A is killed', { timeout: 300_000 }, async () => {
  const [a, b] = gw;
  let x = await host(a, `${X}-alua`);
  const y = await host(b, `${Y}-alua`);
  try {
    // A came first: it owns the image (active/optimized); B is active/non-optimized. Each group lists its ports
    // once its gateway has seen a nexus (within a ping).
    const before = [{ id: 1, state: AO, ports: [1] }, { id: 2, state: ANO, ports: [2] }];
    assert.deepEqual((await rtpgUntil(y, (g) => JSON.stringify(g) === JSON.stringify(before))).groups, before, 'through B');
    assert.deepEqual((await rtpgUntil(x, (g) => JSON.stringify(g) === JSON.stringify(before))).groups, before, 'through A');
    assert.equal((await rtpg(x)).transitionTime, 10, 'IMPLICIT TRANSITION TIME: seconds, not 45');

    // SIGKILL gateway A: B notices within seconds, fences A, takes ownership, and says so on its nexuses.
    const t = Date.now();
    a.proc.kill('SIGKILL');
    const after = [{ id: 1, state: UNAVAILABLE, ports: [1] }, { id: 2, state: AO, ports: [2] }];
    const seen = await rtpgUntil(y, (g) => JSON.stringify(g) === JSON.stringify(after));
    if (JSON.stringify(seen.groups) !== JSON.stringify(after)) console.log(b.log().slice(-4000));
    assert.deepEqual(seen.groups, after, 'through B after A died');
    console.log(`failover: B reported itself active/optimized ${Date.now() - t} ms after A was killed`);
    assert.match(c.ceph('osd', 'blocklist', 'ls'), /127\.0\.0\.1/, 'A was fenced (blocklisted)');

    // A comes back (a new process, a new client): it joins as non-optimized; ownership stays with B.
    x.close();
    await a.stop();
    const a2 = await startTsiod(config(1));
    gw[0] = a2;
    x = await host(a2, `${X}-alua`);
    const back = [{ id: 1, state: ANO, ports: [1] }, { id: 2, state: AO, ports: [2] }];
    assert.deepEqual((await rtpgUntil(x, (g) => JSON.stringify(g) === JSON.stringify(back))).groups, back, 'through the restarted A');
    assert.deepEqual((await rtpgUntil(y, (g) => JSON.stringify(g) === JSON.stringify(back))).groups, back, 'through B');
    // Data still flows through both paths.
    assert.equal((await write(x, 8)).status, STATUS.GOOD);
    assert.equal((await read(y, 8)).status, STATUS.GOOD);
  } finally {
    x.close();
    y.close();
  }
});

const TRANSITIONING = 0xf;
const senseOf = (r: { sense: Buffer }) => ({ key: r.sense[2] & 0x0f, asc: asc(r), sksv: (r.sense[15] & 0x80) !== 0, cd: (r.sense[15] & 0x40) !== 0, field: r.sense.readUInt16BE(16) });

/** SET TARGET PORT GROUPS with descriptors [state, group] (len: a parameter list length other than theirs). */
function stpg(ini: RawInitiator, descs: [number, number][], len?: number, wait?: number) {
  const p = Buffer.alloc(4 + 4 * descs.length);
  descs.forEach(([state, id], i) => {
    p[4 + 4 * i] = state;
    p.writeUInt16BE(id, 4 + 4 * i + 2);
  });
  const n = len ?? p.length;
  const cdb = [0xa4, 0x0a, 0, 0, 0, 0, (n >> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff, 0, 0];
  return ini.command(cdb, { write: p.subarray(0, n), immediate: n, wait });
}

/** Takes pending unit attentions on a path; returns their ASCs. */
async function takeUas(ini: RawInitiator): Promise<number[]> {
  const out: number[] = uasSeen.get(ini) ?? [];
  uasSeen.delete(ini);
  for (let i = 0; i < 8; i++) {
    const r = await ini.command([0, 0, 0, 0, 0, 0]);
    if (r.status === STATUS.GOOD || (r.sense[2] & 0xf) !== 6) break;
    out.push(asc(r));
  }
  return out;
}

test('SET TARGET PORT GROUPS: explicit ALUA across gateways, transitioning while the owner drains, precise ILLEGAL REQUESTs', { timeout: 300_000 }, async () => {
  const [a, b] = gw;
  const x = await host(a, `${X}-stpg`);
  const y = await host(b, `${Y}-stpg`);
  try {
    // After the failover test B owns the unit; A (restarted) is non-optimized.
    const bOwns = [{ id: 1, state: ANO, ports: [1] }, { id: 2, state: AO, ports: [2] }];
    assert.deepEqual((await rtpgUntil(x, (g) => JSON.stringify(g) === JSON.stringify(bOwns))).groups, bOwns);

    // INQUIRY TPGS 11b and RSOC listing STPG as supported, on both paths.
    for (const ini of [x, y]) {
      const inq = await ini.command([0x12, 0, 0, 0, 96, 0], { read: 96 });
      assert.equal((inq.data[5] >> 4) & 3, 3, 'TPGS 11b: implicit and explicit');
      const rsoc = await ini.command([0xa3, 0x0c, 0x02, 0xa4, 0, 0x0a, 0, 0, 0, 64, 0, 0], { read: 64 });
      assert.equal(rsoc.status, STATUS.GOOD);
      assert.equal(rsoc.data[1] & 7, 3, 'RSOC: SET TARGET PORT GROUPS supported');
    }

    // Invalid requests: each its precise ILLEGAL REQUEST, nothing moves.
    const unknown = senseOf(await stpg(x, [[AO, 9]]));
    assert.deepEqual(unknown, { key: 5, asc: 0x2600, sksv: true, cd: false, field: 6 }, 'unknown group: INVALID FIELD IN PARAMETER LIST at its id');
    const standby = senseOf(await stpg(x, [[2, 1]]));
    assert.deepEqual(standby, { key: 5, asc: 0x2600, sksv: true, cd: false, field: 4 }, 'standby (not configured): INVALID FIELD IN PARAMETER LIST at the state');
    assert.equal((r => r.sense[15] & 7)(await stpg(x, [[2, 1]])), 3, 'bit pointer: the state field');
    assert.deepEqual(senseOf(await stpg(x, [[AO, 1], [AO, 2]])).asc, 0x2600, 'two groups active/optimized');
    assert.deepEqual(senseOf(await stpg(x, [[ANO, 2]])).asc, 0x2600, 'the owner non-optimized with nobody to take over');
    assert.equal(senseOf(await stpg(x, [[AO, 1]], 6)).asc, 0x1a00, 'a list of 4 + 2 bytes: PARAMETER LIST LENGTH ERROR');
    assert.equal((await stpg(x, [[AO, 2]])).status, STATUS.GOOD, 'the owner active/optimized: nothing to do');
    assert.deepEqual((await rtpg(x)).groups, bOwns);
    await takeUas(x);
    await takeUas(y);
    await new Promise((r) => setTimeout(r, 1500)); // a ping: nothing changes
    assert.deepEqual(await takeUas(y), [], 'no state changed: no unit attention');

    // A long WRITE SAME in flight on the owner B; an STPG through A makes A's group active/optimized. While B lets
    // the command finish, both groups are transitioning and B refuses medium commands with NOT READY, 04/0A.
    const logAt = [a.log().length, b.log().length];
    const block = Buffer.alloc(512, 0x33);
    // Several, on separate connections, so that the drain lasts well beyond a few RTPG polls.
    const writers = await Promise.all([1, 2, 3].map((i) => host(b, `${Y}-stpg-w${i}`)));
    // Each answers once the whole image is written: on a loaded machine that takes well over the initiator's usual
    // 5 s per reply, so these (and the STPG, which waits for them up to the drain's bound) wait longer.
    const slow = 120_000;
    let wrote = 0;
    const t0 = Date.now();
    const long = Promise.all([y, ...writers].map((w) => w.command(cdb16(0x93, 0, SIZE / 512), { write: block, immediate: 512, wait: slow })))
      .then((rs) => rs.find((r) => r.status !== STATUS.GOOD) ?? rs[0])
      .finally(() => {
        wrote = Date.now() - t0;
        writers.forEach((w) => w.close());
      });
    await new Promise((r) => setTimeout(r, 50));
    const t = Date.now();
    const move = stpg(x, [[AO, 1], [ANO, 2]], undefined, slow);
    let moved = 0;
    void move.then(() => (moved = Date.now() - t));
    const seen = await rtpgUntil(y, (g) => g.every((p) => p.state === TRANSITIONING), 5000, 10);
    assert.deepEqual(seen.groups.map((g) => g.state), [TRANSITIONING, TRANSITIONING], 'RTPG through B during the move');
    let during = await read(y, 0);
    while (senseOf(during).key === 6) during = await read(y, 0);
    assert.deepEqual([during.status, senseOf(during).key, senseOf(during).asc], [STATUS.CHECK, 2, 0x040a], 'NOT READY, ASYMMETRIC ACCESS STATE TRANSITION');
    assert.equal((await move).status, STATUS.GOOD, 'STPG');
    assert.equal((await long).status, STATUS.GOOD, "B's WRITE SAME finished before B gave up ownership");
    console.log(`STPG: group 1 active/optimized ${moved} ms after the STPG (B drained four WRITE SAMEs of ${SIZE / MiB} MiB first, or 3 s; they took ${wrote} ms)`);

    const aOwns = [{ id: 1, state: AO, ports: [1] }, { id: 2, state: ANO, ports: [2] }];
    assert.deepEqual((await rtpg(x)).groups, aOwns, 'through A');
    assert.deepEqual((await rtpgUntil(y, (g) => JSON.stringify(g) === JSON.stringify(aOwns), 5000)).groups, aOwns, 'through B');
    const status = (await x.command([0xa3, 0x0a | (1 << 5), 0, 0, 0, 0, 0, 0, 4, 0, 0, 0], { read: 1024 })).data[8 + 5];
    assert.equal(status, 0x01, 'STATUS CODE: altered by SET TARGET PORT GROUPS');
    assert.ok((await takeUas(x)).includes(0x2a06), 'ASYMMETRIC ACCESS STATE CHANGED through A');
    assert.ok((await takeUas(y)).includes(0x2a06), 'ASYMMETRIC ACCESS STATE CHANGED through B');
    // No planned move fences anyone.
    assert.doesNotMatch(a.log().slice(logAt[0]) + b.log().slice(logAt[1]), /fencing|stopped answering/, 'no gateway was fenced for the move');

    // Stray I/O on the non-optimized path (B) never moves ownership.
    for (let i = 0; i < 20; i++) assert.equal((await write(y, 16 + i)).status, STATUS.GOOD);
    await new Promise((r) => setTimeout(r, 2500)); // two pings
    assert.deepEqual((await rtpg(y)).groups, aOwns, 'writes through B did not move ownership');
    assert.deepEqual((await rtpg(x)).groups, aOwns);

    // And back through B's own path.
    const t2 = Date.now();
    assert.equal((await stpg(y, [[AO, 2]])).status, STATUS.GOOD);
    console.log(`STPG back: group 2 active/optimized ${Date.now() - t2} ms after the STPG (nothing in flight)`);
    assert.deepEqual((await rtpgUntil(x, (g) => JSON.stringify(g) === JSON.stringify(bOwns), 5000)).groups, bOwns, 'through A');
    assert.deepEqual((await rtpg(y)).groups, bOwns, 'through B');
  } finally {
    x.close();
    y.close();
  }
});

test('a gateway fenced while stopped (SIGSTOP past the failover, SIGCONT) serves nothing stale, gets a new client and rejoins as non-optimized', { timeout: 300_000 }, async () => {
  const [a, b] = gw;
  const x = await host(a, `${X}-fence`);
  const y = await host(b, `${Y}-fence`);
  try {
    // A owns the unit (a planned move), then stops answering.
    assert.equal((await stpg(y, [[AO, 1]])).status, STATUS.GOOD);
    const aOwns = [{ id: 1, state: AO, ports: [1] }, { id: 2, state: ANO, ports: [2] }];
    assert.deepEqual((await rtpgUntil(x, (g) => JSON.stringify(g) === JSON.stringify(aOwns), 5000)).groups, aOwns);
    assert.equal((await write(x, 100)).status, STATUS.GOOD);
    const logAt = a.log().length;
    const info0 = tcli(a.sock, ['info', '/backstores/rbd/shared']);
    const oldClient = /^cluster: client client\.(\d+)/m.exec(info0.stdout)?.[1];
    assert.ok(oldClient !== undefined, `info shows the client: ${info0.stdout}${info0.stderr}`);
    const t = Date.now();
    a.proc.kill('SIGSTOP');
    const bOwns = [{ id: 1, state: UNAVAILABLE, ports: [1] }, { id: 2, state: AO, ports: [2] }];
    const seen = await rtpgUntil(y, (g) => JSON.stringify(g) === JSON.stringify(bOwns));
    assert.deepEqual(seen.groups, bOwns, 'B fenced the stopped A and owns the unit');
    console.log(`fence: B active/optimized ${Date.now() - t} ms after A was stopped`);
    // New data through B while A is stopped.
    const fresh = Buffer.alloc(512, 0xb7);
    assert.equal((await y.command(cdb10(0x2a, 100, 1), { write: fresh, immediate: 512 })).status, STATUS.GOOD);

    // A continues: whatever it answers before it has a new client is NOT READY, transitioning (or a unit
    // attention), never the old data and never a write that lands.
    a.proc.kill('SIGCONT');
    const tc = Date.now();
    const refused = new Set<string>();
    let r = await x.command(cdb10(0x28, 100, 1), { read: 512 });
    for (; r.status !== STATUS.GOOD && Date.now() - tc < 60_000; r = await x.command(cdb10(0x28, 100, 1), { read: 512 })) {
      const s = senseOf(r);
      assert.ok(s.key === 6 || (s.key === 2 && s.asc === 0x040a), `A while fenced: status ${r.status}, sense ${r.sense.toString('hex')}`);
      refused.add(`${s.key}/${s.asc.toString(16)}`);
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal(r.status, STATUS.GOOD, `A serves again within 60 s:\n${a.log().slice(logAt)}`);
    console.log(`fenced recovery: A served again ${Date.now() - tc} ms after SIGCONT; meanwhile ${[...refused].join(', ')}`);
    assert.ok(refused.has('2/40a'), 'A refused with NOT READY, ASYMMETRIC ACCESS STATE TRANSITION while fenced');
    assert.deepEqual(r.data, fresh, "A reads what B wrote while A was stopped (a new client, no stale data)");

    // Identical RTPG on both paths: A non-optimized, B keeps ownership.
    const after = [{ id: 1, state: ANO, ports: [1] }, { id: 2, state: AO, ports: [2] }];
    assert.deepEqual((await rtpgUntil(x, (g) => JSON.stringify(g) === JSON.stringify(after), 10_000)).groups, after, 'through A');
    assert.deepEqual((await rtpgUntil(y, (g) => JSON.stringify(g) === JSON.stringify(after), 10_000)).groups, after, 'through B');
    // Writes through A land again.
    const mark = Buffer.alloc(512, 0xa9);
    let w = await x.command(cdb10(0x2a, 101, 1), { write: mark, immediate: 512 });
    while (w.status === STATUS.CHECK && (w.sense[2] & 0xf) === 6) w = await x.command(cdb10(0x2a, 101, 1), { write: mark, immediate: 512 });
    assert.equal(w.status, STATUS.GOOD);
    assert.deepEqual((await read(y, 101)).data, mark);
    const log = a.log().slice(logAt);
    assert.match(log, /is fenced \(blocklisted\)/, 'A logs that it was fenced');
    assert.match(log, /joined again as client\.\d+/, 'A logs its new client');
    assert.match(log, /joined again after its fence as active\/non-optimized/, 'A logs its ALUA state');

    // tcli info on each gateway: its client and connection, the image's lock, its ALUA state and the owner.
    const infoA = tcli(a.sock, ['info', '/backstores/rbd/shared']);
    assert.equal(infoA.status, 0, infoA.stderr);
    assert.match(infoA.stdout, /^cluster: client client\.\d+, address 127\.0\.0\.1:\S+, fsid [0-9a-f-]+, connection connected, exclusive_lock (held by|free)/m);
    assert.match(infoA.stdout, /^ALUA: group 1 active\/non-optimized, owner group 2$/m);
    const infoB = tcli(b.sock, ['info', '/backstores/rbd/shared']);
    assert.match(infoB.stdout, /^ALUA: group 2 active\/optimized, owner group 2$/m);
    assert.doesNotMatch(infoA.stdout.match(/^cluster: .*$/m)![0], new RegExp(`client\\.${oldClient}\\b`), 'A has a new client');
  } finally {
    x.close();
    y.close();
  }
});

const STANDBY = 2;

test('ALUA standby (non_owner_state: standby): the same RTPG on both paths, 04/0B but for what SPC-4 allows, STPG to and from standby, failover to the standby gateway', { timeout: 300_000 }, async () => {
  standbyImage = c.imageName('standby');
  const su: GatewayUnit = { iqn: IQN, serial: 'tsio-gateways-standby-0001', image: standbyImage, size: 64 * MiB, nonOwnerState: 'standby' };
  sgw.push(await startTsiod((port) => gatewayConfig(c, su, 1, port)));
  sgw.push(await startTsiod((port) => gatewayConfig(c, su, 2, port)));
  const [sc, sd] = sgw;
  const p = await host(sc, `${X}-standby`);
  const q = await host(sd, `${Y}-standby`);
  const same = (want: PortGroup[]) => (g: PortGroup[]) => JSON.stringify(g) === JSON.stringify(want);
  const both = async (want: PortGroup[], what: string) => {
    for (const [ini, via] of [[p, 'C'], [q, 'D']] as const) {
      assert.deepEqual((await rtpgUntil(ini, same(want), 10_000)).groups, want, `${what}, through ${via}`);
    }
  };
  /** A command through a path, unit attentions taken first. */
  const cmd = async (ini: RawInitiator, cdb: number[] | Buffer, opts: Parameters<RawInitiator['command']>[1] = {}) => {
    let r = await ini.command(cdb, opts);
    for (let i = 0; i < 8 && r.status === STATUS.CHECK && (r.sense[2] & 0xf) === 6; i++) r = await ini.command(cdb, opts);
    return r;
  };
  const inStandby = (r: { status: number; sense: Buffer }) => [r.status, r.sense[2] & 0xf, asc(r)];
  try {
    // C came first: it owns the unit; D is standby. Both paths say so, and both groups say standby is supported.
    const cOwns = [{ id: 1, state: AO, ports: [1] }, { id: 2, state: STANDBY, ports: [2] }];
    await both(cOwns, 'C active/optimized, D standby');
    for (const ini of [p, q]) {
      const r = await cmd(ini, [0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0], { read: 1024 });
      assert.deepEqual([r.data[4 + 1], r.data[4 + 8 + 4 + 1]], [0x8f, 0x8f], 'supported states: T, U, S, AN, AO for both groups');
    }

    // Through the standby port: medium access and TEST UNIT READY are NOT READY, TARGET PORT IN STANDBY STATE.
    const data = Buffer.alloc(4096);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
    assert.equal((await cmd(p, cdb10(0x2a, 200, 8), { write: data, immediate: 4096 })).status, STATUS.GOOD, 'WRITE through the owner C');
    const refused: [string, number[] | Buffer, Parameters<RawInitiator['command']>[1]][] = [
      ['READ(10)', cdb10(0x28, 200, 8), { read: 4096 }],
      ['WRITE(10)', cdb10(0x2a, 300, 1), { write: Buffer.alloc(512, 0xee), immediate: 512 }],
      ['TEST UNIT READY', [0, 0, 0, 0, 0, 0], {}],
      ['SYNCHRONIZE CACHE(10)', [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], {}],
    ];
    for (const [name, c0, o] of refused) {
      assert.deepEqual(inStandby(await cmd(q, c0, o)), [STATUS.CHECK, 2, 0x040b], `${name} through the standby D: NOT READY, 04/0B`);
    }
    // What SPC-4 5.15.2.4.4 lets through (and READ CAPACITY, as LIO).
    const allowed: [string, number[], number][] = [
      ['INQUIRY', [0x12, 0, 0, 0, 96, 0], 96],
      ['REPORT LUNS', [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], 256],
      ['REPORT TARGET PORT GROUPS', [0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0], 1024],
      ['PERSISTENT RESERVE IN (READ KEYS)', [0x5e, 0, 0, 0, 0, 0, 0, 4, 0, 0], 1024],
      ['MODE SENSE(6)', [0x1a, 0, 0x3f, 0, 255, 0], 255],
      ['REQUEST SENSE', [0x03, 0, 0, 0, 18, 0], 18],
      ['READ CAPACITY(10)', [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8],
    ];
    for (const [name, c0, n] of allowed) assert.equal((await cmd(q, c0, { read: n })).status, STATUS.GOOD, `${name} through the standby D`);
    // PERSISTENT RESERVE OUT too: a key registered through D is seen through C.
    assert.equal((await prOut(q, SA.REGISTER, 0, 0n, 0xd0n)).status, STATUS.GOOD, 'PR OUT REGISTER through the standby D');
    assert.deepEqual((await readKeys(p)).keys, [0xd0n]);
    assert.equal((await prOut(q, SA.REGISTER, 0, 0xd0n, 0n)).status, STATUS.GOOD, 'unregister through D');
    // The port's access state comes before reservations (SPC-4 5.15.2.4.4; LIO checks ALUA, then reservations): with
    // the unit reserved EXCLUSIVE ACCESS through C, what D may not serve is NOT READY, 04/0B, not RESERVATION CONFLICT.
    assert.equal((await prOut(p, SA.REGISTER, 0, 0n, 0xc0n)).status, STATUS.GOOD, 'PR OUT REGISTER through C');
    assert.equal((await prOut(p, SA.RESERVE, TYPES.EA, 0xc0n, 0n)).status, STATUS.GOOD, 'RESERVE EXCLUSIVE ACCESS through C');
    assert.deepEqual(await readReservation(q), { key: 0xc0n, type: TYPES.EA }, 'D sees the reservation made through C');
    for (const [name, c0, o] of refused) {
      assert.deepEqual(inStandby(await cmd(q, c0, o)), [STATUS.CHECK, 2, 0x040b], `${name} through the standby D, the unit reserved through C`);
    }
    assert.equal((await prOut(p, SA.REGISTER, 0, 0xc0n, 0n)).status, STATUS.GOOD, 'unregister through C: the reservation goes with it');
    assert.equal(await readReservation(q), undefined);

    // STPG: the owner standby with nobody to take over is refused at its state field; D non-optimized, then standby again.
    assert.deepEqual(senseOf(await stpg(q, [[STANDBY, 1]])), { key: 5, asc: 0x2600, sksv: true, cd: false, field: 4 }, 'the owner standby, nobody to take over');
    assert.equal((await stpg(q, [[ANO, 2]])).status, STATUS.GOOD, 'STPG: D active/non-optimized');
    await both([{ id: 1, state: AO, ports: [1] }, { id: 2, state: ANO, ports: [2] }], 'D non-optimized after STPG');
    assert.equal((await cmd(q, cdb10(0x28, 200, 8), { read: 4096 })).status, STATUS.GOOD, 'READ through the non-optimized D');
    assert.equal((await stpg(p, [[STANDBY, 2]])).status, STATUS.GOOD, 'STPG through C: D standby');
    await both(cOwns, 'D standby again');
    assert.deepEqual(inStandby(await cmd(q, cdb10(0x28, 200, 8), { read: 4096 })), [STATUS.CHECK, 2, 0x040b]);
    // Ownership to D with C standby in one list, and back.
    assert.equal((await stpg(q, [[AO, 2], [STANDBY, 1]])).status, STATUS.GOOD, 'STPG: D active/optimized, C standby');
    await both([{ id: 1, state: STANDBY, ports: [1] }, { id: 2, state: AO, ports: [2] }], 'D owns, C standby');
    assert.deepEqual(inStandby(await cmd(p, cdb10(0x28, 200, 8), { read: 4096 })), [STATUS.CHECK, 2, 0x040b], 'READ through the standby C');
    assert.deepEqual((await cmd(q, cdb10(0x28, 200, 8), { read: 4096 })).data, data, 'READ through the owner D');
    assert.equal((await stpg(p, [[AO, 1]])).status, STATUS.GOOD, 'STPG through the standby C: C active/optimized');
    await both(cOwns, 'C owns again, D standby');
    await takeUas(p);
    await takeUas(q);

    // SIGKILL the owner C: the standby D fences it, takes ownership, says so, and serves what C wrote.
    const t = Date.now();
    sc.proc.kill('SIGKILL');
    const dOwns = [{ id: 1, state: UNAVAILABLE, ports: [1] }, { id: 2, state: AO, ports: [2] }];
    const seen = await rtpgUntil(q, same(dOwns));
    if (!same(dOwns)(seen.groups)) console.log(sd.log().slice(-4000));
    assert.deepEqual(seen.groups, dOwns, 'through D after C died');
    console.log(`standby failover: D reported itself active/optimized ${Date.now() - t} ms after C was killed`);
    assert.ok((await takeUas(q)).includes(0x2a06), 'ASYMMETRIC ACCESS STATE CHANGED through D');
    const r = await cmd(q, cdb10(0x28, 200, 8), { read: 4096 });
    assert.equal(r.status, STATUS.GOOD);
    assert.deepEqual(r.data, data, 'D reads what C wrote');
    const more = Buffer.alloc(512, 0x6b);
    assert.equal((await cmd(q, cdb10(0x2a, 208, 1), { write: more, immediate: 512 })).status, STATUS.GOOD, 'WRITE through D');
    assert.deepEqual((await cmd(q, cdb10(0x28, 208, 1), { read: 512 })).data, more);
    assert.equal((await cmd(q, [0, 0, 0, 0, 0, 0])).status, STATUS.GOOD, 'TEST UNIT READY through D');
  } finally {
    p.close();
    q.close();
  }
});
