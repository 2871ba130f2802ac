// tsiod restarted under a running guest: the front-end reconnects to the new
// tsiod on the same socket, and fio with verify in the guest goes on across the
// restarts with no error, no verify failure and no I/O error in the guest's
// kernel. vhost-user-blk on QEMU 7.2 (reconnect=1); vhost-user-scsi on QEMU 10
// from bookworm-backports (test/util/qemu10.ts; QEMU 7.2 cannot reconnect a
// vhost-user-scsi device, 8.2 can). Stops alternate: SIGTERM (tsiod finishes
// what it popped and pops nothing more) and SIGKILL (what was in flight is in
// the in-flight records QEMU keeps, INFLIGHT_SHMFD, and the next tsiod serves
// it again). The LU is a file (fileio), so the data outlives each tsiod. 4
// restarts here, 10 in npm run soak.
import { test, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGuest } from './util/guest';
import { startTsiod, type Daemon } from './util/tsiod';

const RESTARTS = process.env.TSIO_SOAK === '1' ? 10 : 4;
const dirs: string[] = [];
const daemons: (Daemon | undefined)[] = [];

after(async () => {
  for (const d of daemons) await d?.stop();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

interface Case {
  /** The TPG's `device:` (blk), or none (scsi). */
  device?: 'blk';
  wwn: string;
  /** QEMU's arguments for the device on the socket. */
  qemuArgs(sock: string): string[];
  qemu10?: boolean;
  /** The guest's block device. */
  disk: string;
}

/** fio with verify in a guest while tsiod restarts RESTARTS times; returns every tsiod's log, the last one last. */
async function fioAcrossRestarts(t: TestContext, c: Case): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'tsio-vhost-restart-'));
  dirs.push(dir);
  const sock = join(dir, 'vhost.sock');
  const config = [
    'storage_objects:',
    `  - { name: disk, plugin: fileio, dev: ${join(dir, 'disk.img')}, size: 64MiB }`,
    'targets:',
    '  - fabric: vhost',
    `    wwn: ${c.wwn}`,
    '    tpgs:',
    `      - { tag: 1, socket: ${sock},${c.device ? ` device: ${c.device},` : ''} num_queues: 1, luns: [ { index: 0, storage_object: /backstores/fileio/disk } ] }`,
    '',
  ].join('\n');
  const slot = daemons.length;
  const start = async () => {
    daemons[slot] = await startTsiod(config, { dir: mkdtempSync(join(dir, 'tsiod-')) });
  };
  const logs: string[] = [];
  await start();
  const runtime = 20 + RESTARTS * 8;
  const g = startGuest({
    qemu10: c.qemu10,
    sharedMemory: true,
    memoryMiB: 512,
    timeoutMs: 540_000,
    qemuArgs: c.qemuArgs(sock),
    script: [
      `for i in $(seq 100); do [ -b ${c.disk} ] && break; sleep 0.1; done`,
      'echo FIO-START',
      `fio --name=restart --filename=${c.disk} --rw=randwrite --bs=4k --size=32M --iodepth=8 --ioengine=libaio --direct=1 ` +
        `--verify=crc32c --verify_backlog=64 --verify_fatal=1 --time_based --runtime=${runtime} ` +
        '--output-format=terse --terse-version=3 > /tmp/fio.out 2>/tmp/fio.err; echo "FIO-EXIT $?"',
      'echo "FIO-ERRORS $(cut -d";" -f5 /tmp/fio.out)"',
      'cat /tmp/fio.err',
      'dmesg | grep -i -E "i/o error|reset|abort|timing out|FAILED" | sed "s/^/DMESG /"',
      // A new tsiod is a new I_T nexus for virtio-scsi: its POWER ON OR RESET unit attention (Linux logs it and
      // retries) is the one reset expected; any other reset, abort, timeout or I/O error is a request lost or failed.
      'echo "KERNEL-IO-ERRORS $(dmesg | grep -i -E "i/o error|reset|abort|timing out" | grep -c -v "Power-on or device reset occurred")"',
    ].join('\n'),
  });
  try {
    await g.waitFor(/FIO-START/, 180_000);
    for (let i = 0; i < RESTARTS; i++) {
      await new Promise((r) => setTimeout(r, 5000));
      const t0 = Date.now();
      const kill = i % 2 === 1;
      const d = daemons[slot]!;
      if (kill) d.proc.kill('SIGKILL');
      await d.stop();
      logs.push(d.log());
      await start();
      t.diagnostic(`restart ${i + 1} (${kill ? 'SIGKILL' : 'SIGTERM'}): tsiod back after ${Date.now() - t0} ms`);
    }
    const r = await g.done;
    const out = r.output;
    const last = daemons[slot]!.log();
    assert.equal(r.exitCode, 0, `${out.slice(-3000)}\n--- tsiod:\n${last.slice(-2000)}`);
    assert.match(out, /FIO-EXIT 0\n/, `fio ended cleanly: ${out.slice(-2000)}`);
    assert.match(out, /FIO-ERRORS 0\n/, 'fio counted no error');
    assert.match(out, /KERNEL-IO-ERRORS 0\n/, `no I/O error, reset or abort in the guest: ${out.slice(-2000)}`);
    assert.doesNotMatch(out, /verify: bad|crc32c: verify failed/);
    assert.equal(logs.length, RESTARTS);
    // The new tsiod serves I/O again: QEMU reconnected.
    assert.match(last, /front-end connected/, 'QEMU reconnected to the last tsiod');
    logs.push(last);
    const served = logs.join('').match(/requests left in flight by the last back end, served again/g) ?? [];
    t.diagnostic(`requests a killed tsiod left, served again by the next: ${served.length} times`);
    return logs;
  } finally {
    g.kill();
  }
}

test(`vhost-user-blk: fio with verify in a guest across ${RESTARTS} tsiod restarts (SIGTERM and SIGKILL; QEMU 7.2, reconnect=1)`, { timeout: 600_000 }, async (t) => {
  const logs = await fioAcrossRestarts(t, {
    device: 'blk',
    wwn: 'naa.5001405000000047',
    qemuArgs: (sock) => ['-chardev', `socket,path=${sock},id=vub,reconnect=1`, '-device', 'vhost-user-blk-pci,chardev=vub,num-queues=1'],
    disk: '/dev/vda',
  });
  // A vhost-user-blk front-end that keeps in-flight records reconnects: no tsiod stopping under it warns of a hang.
  for (const l of logs) assert.doesNotMatch(l, /hang until the VM restarts/);
});

test(`vhost-user-scsi: fio with verify in a guest across ${RESTARTS} tsiod restarts (SIGTERM and SIGKILL; QEMU 10, reconnect-ms)`, { timeout: 600_000 }, async (t) => {
  const logs = await fioAcrossRestarts(t, {
    wwn: 'naa.5001405000000048',
    qemuArgs: (sock) => ['-chardev', `socket,path=${sock},id=vus,reconnect-ms=500`, '-device', 'vhost-user-scsi-pci,chardev=vus,num_queues=1'],
    qemu10: true,
    disk: '/dev/sda',
  });
  // QEMU 10 keeps in-flight records for vhost-user-scsi (INFLIGHT_SHMFD) with every tsiod it connects to.
  for (const l of logs) assert.match(l, /front-end keeps in-flight records/);
  // The first tsiod cannot know that a vhost-user-scsi front-end reconnects (QEMU 7.2's asks for records too, and
  // cannot): it warns. The next ones get the records the last one filled, proof of a reconnect: no warning.
  assert.match(logs[0], /has not reconnected before: if it cannot reconnect/);
  for (const l of logs.slice(1)) assert.doesNotMatch(l, /hang until the VM restarts/);
});
