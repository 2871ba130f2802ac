// tsiod restarted under a running guest: QEMU 7.2's vhost-user-blk with
// reconnect=1 reconnects to the new tsiod on the same socket, and fio with
// verify in the guest goes on across the restarts with no error and no verify
// failure. Stops alternate: SIGTERM (tsiod finishes what it popped and pops
// nothing more) and SIGKILL (what was in flight is in the in-flight records
// QEMU keeps, INFLIGHT_SHMFD, and the next tsiod serves it again). The LU is a
// file (fileio), so the data outlives each tsiod. 4 restarts here, 10 in npm
// run soak.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGuest } from './util/guest';
import { startTsiod, type Daemon } from './util/tsiod';

const RESTARTS = process.env.TSIO_SOAK === '1' ? 10 : 4;
const dir = mkdtempSync(join(tmpdir(), 'tsio-vhost-restart-'));
const sock = join(dir, 'blk.sock');
const config = [
  'storage_objects:',
  `  - { name: disk, plugin: fileio, dev: ${join(dir, 'disk.img')}, size: 64MiB }`,
  'targets:',
  '  - fabric: vhost',
  '    wwn: naa.5001405000000047',
  '    tpgs:',
  `      - { tag: 1, socket: ${sock}, device: blk, num_queues: 1, luns: [ { index: 0, storage_object: /backstores/fileio/disk } ] }`,
  '',
].join('\n');
let d: Daemon | undefined;
const logs: string[] = [];

after(async () => {
  await d?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function start(): Promise<void> {
  d = await startTsiod(config, { dir: mkdtempSync(join(dir, 'tsiod-')) });
}

test(`vhost-user-blk: fio with verify in a guest across ${RESTARTS} tsiod restarts (SIGTERM and SIGKILL; QEMU 7.2, reconnect=1)`, { timeout: 600_000 }, async (t) => {
  await start();
  const runtime = 20 + RESTARTS * 8;
  const g = startGuest({
    sharedMemory: true,
    memoryMiB: 512,
    timeoutMs: 540_000,
    qemuArgs: ['-chardev', `socket,path=${sock},id=vub,reconnect=1`, '-device', 'vhost-user-blk-pci,chardev=vub,num-queues=1'],
    script: [
      'for i in $(seq 100); do [ -b /dev/vda ] && break; sleep 0.1; done',
      'echo FIO-START',
      `fio --name=restart --filename=/dev/vda --rw=randwrite --bs=4k --size=32M --iodepth=8 --ioengine=libaio --direct=1 ` +
        `--verify=crc32c --verify_backlog=64 --verify_fatal=1 --time_based --runtime=${runtime} ` +
        '--output-format=terse --terse-version=3 > /tmp/fio.out 2>/tmp/fio.err; echo "FIO-EXIT $?"',
      'echo "FIO-ERRORS $(cut -d";" -f5 /tmp/fio.out)"',
      'cat /tmp/fio.err',
      'echo "KERNEL-IO-ERRORS $(dmesg | grep -c -i "i/o error")"',
    ].join('\n'),
  });
  try {
    await g.waitFor(/FIO-START/, 180_000);
    for (let i = 0; i < RESTARTS; i++) {
      await new Promise((r) => setTimeout(r, 5000));
      const t0 = Date.now();
      const kill = i % 2 === 1;
      if (kill) d!.proc.kill('SIGKILL');
      await d!.stop();
      logs.push(d!.log());
      await start();
      t.diagnostic(`restart ${i + 1} (${kill ? 'SIGKILL' : 'SIGTERM'}): tsiod back after ${Date.now() - t0} ms`);
    }
    // The new tsiod serves I/O again: QEMU reconnected.
    const r = await g.done;
    const out = r.output;
    assert.equal(r.exitCode, 0, `${out.slice(-3000)}\n--- tsiod:\n${d!.log().slice(-2000)}`);
    assert.match(out, /FIO-EXIT 0\n/, `fio ended cleanly: ${out.slice(-2000)}`);
    assert.match(out, /FIO-ERRORS 0\n/, 'fio counted no error');
    assert.match(out, /KERNEL-IO-ERRORS 0\n/);
    assert.doesNotMatch(out, /verify: bad|crc32c: verify failed/);
    assert.equal(logs.length, RESTARTS);
    assert.match(d!.log(), /front-end connected/, 'QEMU reconnected to the last tsiod');
  } finally {
    g.kill();
  }
});
