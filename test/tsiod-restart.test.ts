// Restarting tsiod under live initiators: SIGTERM stops new logins and
// commands at once, lets those in flight end, asks initiators to log out and
// exits within a bound however an initiator stalls; a reconnecting verifying
// client goes on across restarts (same config, same port) with nothing
// acknowledged lost and no error surfaced, the unit attentions SPC wants
// (power on) and the APTPL reservation kept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { once } from 'node:events';
import { mkdtempSync, openSync, readSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RawInitiator } from './util/iscsi-initiator';
import { freePort, startTsiod, type Daemon } from './util/tsiod';
import { VerifyingClient } from './util/verify-client';

const IQN = 'iqn.2026-12.org.tsio:restart';
const SOAK = process.env.TSIO_SOAK === '1';

const config = (tpgParams = '') => (port: number, dir: string) => `storage_objects:
  - { name: disk, plugin: fileio, dev: ${join(dir, 'disk.img')}, size: 16MiB }
targets:
  - fabric: iscsi
    wwn: ${IQN}
    tpgs:
      - tag: 1
        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }
        parameters: { InitialR2T: 'Yes', ImmediateData: 'Yes'${tpgParams} }
        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]
        luns: [ { index: 0, storage_object: /backstores/fileio/disk } ]
`;

const write10 = (lba: number, n: number) => [0x2a, 0, 0, 0, (lba >> 8) & 0xff, lba & 0xff, 0, 0, n, 0];

async function session(port: number, name: string): Promise<RawInitiator> {
  const i = await RawInitiator.connect(port);
  await i.login(IQN, {}, name);
  await i.command([0, 0, 0, 0, 0, 0]); // the power-on unit attention
  return i;
}

function readBlocks(file: string, lba: number, n: number): Buffer {
  const b = Buffer.alloc(n * 512);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, b, 0, b.length, lba * 512);
  } finally {
    closeSync(fd);
  }
  return b;
}

/** Resolves with the error code of a TCP connect to port (undefined: it connected). */
async function connectError(port: number): Promise<string | undefined> {
  const s = connect({ port, host: '127.0.0.1' });
  try {
    await once(s, 'connect');
    return undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code;
  } finally {
    s.destroy();
  }
}

async function waitFor(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('SIGTERM: no new login or command, the write in flight completes, stalled initiators do not hold the exit', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsiod-restart-'));
  let d: Daemon | undefined;
  try {
    d = await startTsiod(config(), { dir });
    const disk = join(dir, 'disk.img');
    // A stalled writer: its WRITE's R2T is never answered.
    const stalled = await session(d.port, 'iqn.2026-12.org.tsio:stalled');
    const sw = stalled.commandHeader(write10(100, 8), { write: 4096 });
    stalled.send(sw.h);
    await stalled.next((p) => p.opcode === 0x31 && p.itt === sw.itt);
    // A reader that stops reading its socket, with reads the target cannot send out.
    const deaf = await session(d.port, 'iqn.2026-12.org.tsio:deaf');
    deaf.socket.pause();
    for (let k = 0; k < 64; k++) deaf.send(deaf.commandHeader([0x28, 0, 0, 0, 0, 0, 0, 0x08, 0, 0], { read: 1 << 20 }).h);
    // A healthy initiator with a write in flight: its R2T is answered only after SIGTERM.
    const healthy = await session(d.port, 'iqn.2026-12.org.tsio:healthy');
    const inflight = Buffer.alloc(4096, 0x5a);
    const hw = healthy.commandHeader(write10(200, 8), { write: 4096 });
    healthy.send(hw.h);
    const r2t = await healthy.next((p) => p.opcode === 0x31 && p.itt === hw.itt);

    const t0 = Date.now();
    d.proc.kill('SIGTERM');
    const exited = once(d.proc, 'close');
    await waitFor('the shutdown to begin', () => d!.log().includes('SIGTERM: shutting down'));
    assert.equal(await connectError(d.port), 'ECONNREFUSED', 'no new connection once shutting down');
    // A new command is not run (its data came with it): the restarted target gets it again.
    const late = healthy.commandHeader(write10(300, 8), { write: 4096 });
    healthy.send(late.h, Buffer.alloc(4096, 0x77));
    healthy.answerR2t(r2t.bhs, inflight);
    const st = await healthy.next((p) => p.opcode === 0x21 && p.itt === hw.itt, 10_000);
    assert.equal(st.bhs[3], 0, 'the write in flight completes GOOD');
    const req = await healthy.next((p) => p.opcode === 0x32, 10_000);
    assert.equal(req.bhs[36], 1, 'AsyncEvent 1: the target asks for a logout');
    assert.ok(!healthy.pdus.some((p) => p.itt === late.itt), 'the late command is not answered');
    assert.equal(await healthy.logout(), 0);
    healthy.close();
    await exited;
    const took = Date.now() - t0;
    assert.equal(d.proc.exitCode, 0, `tsiod exits 0 (took ${took} ms):\n${d.log()}`);
    assert.ok(!d.log().includes('shutdown not done'), d.log());
    assert.ok(stalled.closed || (await stalled.waitClosed(1000)), 'the stalled initiator is dropped');
    stalled.close();
    deaf.close();
    assert.ok(readBlocks(disk, 200, 8).equals(inflight), 'the completed write is on the LU');
    assert.ok(readBlocks(disk, 300, 8).equals(Buffer.alloc(4096)), 'the late write did not run');
    assert.ok(readBlocks(disk, 100, 8).equals(Buffer.alloc(4096)), 'the stalled write did not run');
  } finally {
    await d?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

const PR_KEY = 0x7e57n;

/** PERSISTENT RESERVE OUT through a raw session. */
async function prOut(i: RawInitiator, sa: number, type: number, key: bigint, saKey: bigint, aptpl = false) {
  const p = Buffer.alloc(24);
  p.writeBigUInt64BE(key, 0);
  p.writeBigUInt64BE(saKey, 8);
  p[20] = aptpl ? 1 : 0;
  return i.command([0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0], { write: p, immediate: 24 });
}

test(`a verifying client with reconnect runs across ${SOAK ? 50 : 10} restarts of tsiod: nothing lost, no error, the APTPL reservation kept`, async () => {
  const restarts = SOAK ? 50 : 10;
  const dir = mkdtempSync(join(tmpdir(), 'tsiod-restart-'));
  const port = await freePort();
  const cfg = config();
  let d: Daemon = await startTsiod(cfg, { dir, port });
  const holder = 'iqn.2026-12.org.tsio:verifier';
  const client = new VerifyingClient({ port, target: IQN, initiator: holder, blocks: 8192, workers: 4, seed: 16 });
  try {
    // The holder registers with APTPL and reserves WRITE EXCLUSIVE: others may read, not write.
    const setup = await RawInitiator.connect(port);
    Buffer.from([0x80, 0x5e, 0, 0, 0, 1]).copy(setup.isid); // the client's ISID: the same I_T nexus
    await setup.login(IQN, {}, holder);
    await setup.command([0, 0, 0, 0, 0, 0]);
    assert.equal((await prOut(setup, 0, 0, 0n, PR_KEY, true)).status, 0, 'REGISTER with APTPL');
    assert.equal((await prOut(setup, 1, 1, PR_KEY, 0n)).status, 0, 'RESERVE WRITE EXCLUSIVE');
    assert.equal(await setup.logout(), 0);
    setup.close();

    client.start();
    for (let k = 0; k < restarts; k++) {
      const before = client.completed;
      await waitFor('commands before the restart', () => client.completed >= before + 200 || client.stats.errors.length > 0, 60_000);
      assert.deepEqual(client.stats.errors, []);
      assert.equal(await d.stop(), 0, `restart ${k}: tsiod exits 0:\n${d.log()}`);
      d = await startTsiod(cfg, { dir, port });
      // Another initiator sees the reservation as it was: RESERVATION CONFLICT on a write.
      const other = await session(port, 'iqn.2026-12.org.tsio:other');
      const w = await other.command(write10(9000, 1), { write: Buffer.alloc(512), immediate: 512 });
      assert.equal(w.status, 0x18, `restart ${k}: the reservation survived`);
      other.close();
    }
    await waitFor('commands after the last restart', () => client.completed > 0 && client.stats.reconnects >= restarts, 60_000);
    const stats = await client.stop();
    await client.verifyAll();
    const uas = Object.fromEntries(stats.unitAttentions);
    console.log(`restarts ${restarts}: writes ${stats.writes}, reads ${stats.reads}, blocks verified ${stats.blocksVerified}, reconnects ${stats.reconnects}, ` +
      `reissued ${stats.reissued}, logout requests ${stats.logoutRequests}, unit attentions ${JSON.stringify(uas)}`);
    assert.deepEqual(stats.errors, []);
    assert.deepEqual(stats.verifyFailures, []);
    assert.ok(stats.reconnects >= restarts, `a new session after each restart (${stats.reconnects})`);
    assert.ok(stats.logoutRequests >= restarts, `each shutdown asked for a logout (${stats.logoutRequests})`);
    // Each new nexus starts with POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (SAM-5), once per session.
    assert.ok((stats.unitAttentions.get('2900') ?? 0) >= restarts, JSON.stringify(uas));
  } finally {
    await client.close();
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** One qemu-io run (libiscsi, which reconnects and reissues): `ops` writes of 64 KiB with a pattern, each read back with it. */
function qemuIo(port: number, ops: { pattern: number; offset: number }[]): Promise<{ code: number | null; out: string }> {
  const args = ['-f', 'raw'];
  for (const o of ops) args.push('-c', `write -P ${o.pattern} ${o.offset} 64k`, '-c', `read -P ${o.pattern} ${o.offset} 64k`);
  const q = spawn('qemu-io', [...args, `iscsi://127.0.0.1:${port}/${IQN}/0`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  q.stdout.on('data', (b: Buffer) => (out += b));
  q.stderr.on('data', (b: Buffer) => (out += b));
  return new Promise((resolve, reject) => {
    q.once('error', (e) => reject(new Error(`qemu-io: ${e.message} (scripts/install-deps --test installs qemu-utils)`)));
    q.once('close', (code) => resolve({ code, out }));
  });
}

test(`libiscsi (qemu-io, patterns written and read back) across ${SOAK ? 50 : 10} restarts of tsiod: every run succeeds, the LU holds every last pattern`, async () => {
  const restarts = SOAK ? 50 : 10;
  const dir = mkdtempSync(join(tmpdir(), 'tsiod-restart-'));
  const port = await freePort();
  const cfg = config();
  let d: Daemon = await startTsiod(cfg, { dir, port });
  const last = new Map<number, number>();
  let runs = 0;
  let refused = 0;
  let restarted = 0;
  const failures: string[] = [];
  try {
    let stop = false;
    const io = (async () => {
      for (let k = 0; !stop; k++) {
        const ops = Array.from({ length: 100 }, (_, j) => ({ pattern: 1 + ((k * 100 + j) % 251), offset: ((k * 37 + j * 11) % 32) * 65536 }));
        const r = await qemuIo(port, ops);
        // A run that starts while tsiod is down cannot open its disk (no reconnect before a first login): again.
        if (r.code !== 0 && !/^wrote /m.test(r.out) && /connect/i.test(r.out)) {
          refused++;
          await new Promise((r) => setTimeout(r, 200));
          continue;
        }
        runs++;
        const bad = r.out.split('\n').filter((l) => /fail|error|mismatch/i.test(l) && !/CheckCondition: SENSE KEY:UNIT_ATTENTION/.test(l));
        if (r.code !== 0 || bad.length > 0) failures.push(`run ${k}: exit ${r.code}: ${bad.slice(0, 5).join(' | ')}`);
        const acked = (r.out.match(/^wrote /gm) ?? []).length;
        for (const o of ops.slice(0, acked)) last.set(o.offset, o.pattern);
      }
    })();
    for (; restarted < restarts; restarted++) {
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(await d.stop(), 0, d.log());
      d = await startTsiod(cfg, { dir, port });
    }
    stop = true;
    await io;
    console.log(`restarts ${restarted}: qemu-io runs ${runs} (and ${refused} that found tsiod down before their first login), blocks of 64 KiB checked at the end ${last.size}`);
    assert.deepEqual(failures, []);
    const disk = join(dir, 'disk.img');
    for (const [offset, pattern] of last) assert.ok(readBlocks(disk, offset / 512, 128).equals(Buffer.alloc(65536, pattern)), `64 KiB at ${offset}: pattern ${pattern}`);
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
