// Restarting tsiod under live initiators: SIGTERM stops new logins and
// commands at once, lets those in flight end, asks initiators to log out and
// exits within a bound however an initiator stalls; a reconnecting verifying
// client goes on across restarts (same config, same port) with nothing
// acknowledged lost and no error surfaced, the unit attentions SPC wants
// (power on) and the APTPL reservation kept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { once } from 'node:events';
import { mkdtempSync, openSync, readSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RawInitiator } from './util/iscsi-initiator';
import { startTsiod, type Daemon } from './util/tsiod';

const IQN = 'iqn.2026-12.org.tsio:restart';

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
