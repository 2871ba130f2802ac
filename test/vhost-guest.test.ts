// vhost-user-scsi end to end: a Linux guest under QEMU (TCG) with
// vhost-user-scsi-pci on tsiod's TPG socket sees our LUNs as /dev/sd* and
// uses them: identification, a file system, discard, fio with verify.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runGuest, startGuest } from './util/guest';
import { startTsiod, tcli, type Daemon } from './util/tsiod';
import { naaFromSerial } from '../src/model/storage-object';

const SERIAL0 = '0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9';
const SERIAL1 = '1f2e3d4c-5b6a-7988-97a6-b5c4d3e2f1a0';

const dir = mkdtempSync(join(tmpdir(), 'tsio-vhost-guest-'));
const sock = join(dir, 'vhost.sock');
let d: Daemon | undefined;

after(async () => {
  await d?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Starts tsiod, again if it died. */
async function startDaemon(): Promise<void> {
  if (d?.proc.exitCode === null) return;
  d = await startTsiod(
    [
      'storage_objects:',
      `  - { name: disk0, plugin: rd_mcp, size: 96MiB, wwn: ${SERIAL0} }`,
      `  - { name: thin1, plugin: rd_mcp, size: 64MiB, wwn: ${SERIAL1}, attributes: { emulate_tpu: true, emulate_tpws: true } }`,
      'targets:',
      '  - fabric: vhost',
      '    wwn: naa.5001405000000042',
      '    tpgs:',
      '      - tag: 1',
      `        socket: ${sock}`,
      '        num_queues: 2',
      '        luns:',
      '          - { index: 0, storage_object: /backstores/rd_mcp/disk0 }',
      '          - { index: 1, storage_object: /backstores/rd_mcp/thin1 }',
      '',
    ].join('\n'),
    { dir },
  );
}

function vhostArgs(): string[] {
  return ['-chardev', `socket,path=${sock},id=vus`, '-device', 'vhost-user-scsi-pci,chardev=vus,num_queues=2'];
}

/** Guest shell: waits for n disks and names each LUN's device in $LUN0, $LUN1... */
const FIND_DISKS = `
for i in $(seq 100); do [ "$(ls /sys/block | grep -c '^sd')" -ge 2 ] && break; sleep 0.1; done
for d in /sys/block/sd*; do
  a=$(basename "$(readlink -f "$d/device")")
  echo "DISK $(basename "$d") $a"
  eval "LUN\${a##*:}=/dev/$(basename "$d")"
done
`;

test('a guest finds both LUNs as /dev/sd* with our identity, designators and block limits', { timeout: 300_000 }, async () => {
  await startDaemon();
  const r = await runGuest({
    sharedMemory: true,
    memoryMiB: 512,
    qemuArgs: vhostArgs(),
    script: [
      'set -e',
      FIND_DISKS,
      'sg_inq "$LUN0"',
      'sg_inq "$LUN1"',
      'sg_vpd -p di "$LUN0"',
      'sg_vpd -p bl "$LUN1"',
      'echo IDENT-DONE',
    ].join('\n'),
  });
  const out = r.output;
  assert.equal(r.exitCode, 0, `${out.slice(-3000)}\n--- tsiod:\n${d!.log()}`);
  assert.match(out, /DISK sd[a-z] \d+:0:0:0\n/);
  assert.match(out, /DISK sd[a-z] \d+:0:0:1\n/);
  assert.equal([...out.matchAll(/Vendor identification: TSIO/g)].length, 2);
  assert.equal([...out.matchAll(/Product identification: RAMDISK-MCP/g)].length, 2);
  assert.match(out, new RegExp(`Unit serial number: ${SERIAL0}`));
  assert.match(out, new RegExp(`Unit serial number: ${SERIAL1}`));
  assert.match(out, new RegExp(`0x${naaFromSerial(SERIAL0).toString('hex')}`), 'NAA designator of LUN 0');
  assert.match(out, /naa\.5001405000000042,t,0x0001/, 'target port name');
  assert.match(out, /Block limits VPD page[\s\S]*Maximum unmap LBA count: [1-9]/, 'block limits of the thin LUN');
  assert.match(out, /IDENT-DONE/);
});

test('a file system, discard on the thin LUN and fio with verify, all through guest memory', { timeout: 400_000 }, async () => {
  await startDaemon();
  const r = await runGuest({
    sharedMemory: true,
    memoryMiB: 512,
    qemuArgs: vhostArgs(),
    timeoutMs: 360_000,
    script: [
      'set -e',
      FIND_DISKS,
      'echo SIZE0 $(cat /sys/block/${LUN0#/dev/}/size)',
      'echo SIZE1 $(cat /sys/block/${LUN1#/dev/}/size)',
      'mkfs.ext4 -q -F "$LUN0"',
      'mkdir -p /mnt/t && mount "$LUN0" /mnt/t',
      'dd if=/dev/urandom of=/tmp/data bs=1M count=8 status=none',
      'cp /tmp/data /mnt/t/data && sync && umount /mnt/t',
      'echo 3 > /proc/sys/vm/drop_caches',
      'mount "$LUN0" /mnt/t && cmp /tmp/data /mnt/t/data && echo "FS-OK $(sha256sum < /mnt/t/data)"',
      'umount /mnt/t',
      'echo DISCARD-MAX $(cat /sys/block/${LUN1#/dev/}/queue/discard_max_bytes)',
      'dd if=/dev/urandom of="$LUN1" bs=1M count=4 oflag=direct status=none',
      'blkdiscard -o 0 -l 4194304 "$LUN1"',
      'cmp -n 4194304 "$LUN1" /dev/zero && echo DISCARD-ZEROES',
      'fio --name=verify --filename="$LUN1" --rw=randrw --bs=4k --size=8M --iodepth=8 --ioengine=libaio --direct=1 ' +
        '--verify=crc32c --do_verify=1 --verify_fatal=1 --group_reporting --output-format=terse --terse-version=3 > /tmp/fio.out',
      'echo "FIO-OK $(cut -d";" -f1-8 /tmp/fio.out)"',
    ].join('\n'),
  });
  const out = r.output;
  assert.equal(r.exitCode, 0, `${out.slice(-3000)}\n--- tsiod:\n${d!.log().slice(-3000)}`);
  assert.match(out, /SIZE0 196608\n/, '96 MiB in 512-byte sectors');
  assert.match(out, /SIZE1 131072\n/, '64 MiB in 512-byte sectors');
  assert.match(out, /FS-OK [0-9a-f]{64}/);
  assert.match(out, /DISCARD-MAX [1-9]\d*/, 'the guest sees the thin LUN as discard-capable');
  assert.match(out, /DISCARD-ZEROES/);
  assert.match(out, /FIO-OK /);
});

test('num_queues: a guest with 2 vCPUs gets the 2 request queues offered; a QEMU set up for more than offered fails to start; targets from the config', { timeout: 400_000 }, async () => {
  const sockMq = join(dir, 'mq.sock');
  const sockOne = join(dir, 'one.sock');
  const dm = await startTsiod(
    [
      'storage_objects:',
      '  - { name: mq0, plugin: rd_mcp, size: 16MiB }',
      '  - { name: mq1, plugin: rd_mcp, size: 8MiB }',
      '  - { name: one, plugin: rd_mcp, size: 8MiB }',
      'targets:',
      '  - fabric: vhost',
      '    wwn: naa.5001405000000043',
      '    tpgs:',
      `      - { tag: 1, socket: ${sockMq}, num_queues: 2, luns: [ { index: 0, storage_object: /backstores/rd_mcp/mq0 } ] }`,
      `      - { tag: 2, socket: ${sockMq}, num_queues: 2, target: 3, luns: [ { index: 5, storage_object: /backstores/rd_mcp/mq1 } ] }`,
      '  - fabric: vhost',
      '    wwn: naa.5001405000000044',
      '    tpgs:',
      `      - { tag: 1, socket: ${sockOne}, num_queues: 1, luns: [ { index: 0, storage_object: /backstores/rd_mcp/one } ] }`,
      '',
    ].join('\n'),
    { dir: mkdtempSync(join(dir, 'mq-')) },
  );
  try {
    const g = startGuest({
      sharedMemory: true,
      memoryMiB: 512,
      cpus: 2,
      // No num_queues: QEMU gives one request queue per vCPU.
      qemuArgs: ['-chardev', `socket,path=${sockMq},id=vus`, '-device', 'vhost-user-scsi-pci,chardev=vus'],
      script: [
        'for i in $(seq 100); do [ "$(ls /sys/block | grep -c "^sd")" -ge 2 ] && break; sleep 0.1; done',
        'for d in /sys/block/sd*; do echo "MQ $(basename $(readlink -f $d/device)) $(ls $d/mq | wc -l)"; done',
        'for d in /sys/block/sd*; do dd if=/dev/$(basename $d) of=/dev/null bs=64k count=64 iflag=direct status=none & done; wait',
        'echo MQ-DONE',
        'sleep 600',
      ].join('\n'),
    });
    try {
      await g.waitFor(/MQ-DONE/, 240_000);
      const out = g.output();
      assert.match(out, /MQ \d+:0:0:0 2\n/, 'target 0 LUN 0 with 2 hardware queues');
      assert.match(out, /MQ \d+:0:3:5 2\n/, 'target 3 LUN 5 (the second TPG on the socket) with 2 hardware queues');
      // The controller removed live under QEMU 7.2's vhost-user-scsi, which asks for in-flight records yet cannot
      // reconnect (as its first connection, this one has not): tsiod warns, naming the socket.
      const del = tcli(dm.sock, ['/vhost', 'delete', 'naa.5001405000000043']);
      assert.equal(del.status, 0, del.stderr);
      const HANG = /hang until the VM restarts/;
      for (let i = 0; i < 500 && !HANG.test(dm.log()); i++) await new Promise((res) => setTimeout(res, 10));
      const warning = dm.log().split('\n').find((l) => HANG.test(l)) ?? '';
      assert.ok(warning.includes(sockMq), `the warning names the socket: ${dm.log().slice(-2000)}`);
      assert.match(warning, /keeps in-flight records but has not reconnected before: if it cannot reconnect .* the guest's I\/O on this device will hang until the VM restarts/);
    } finally {
      g.kill();
    }

    const refused = await runGuest({
      sharedMemory: true,
      memoryMiB: 512,
      timeoutMs: 120_000,
      qemuArgs: ['-chardev', `socket,path=${sockOne},id=vus`, '-device', 'vhost-user-scsi-pci,chardev=vus,num_queues=2'],
      script: 'ls /sys/block; echo SHOULD-NOT-RUN',
    });
    assert.doesNotMatch(refused.output, /SHOULD-NOT-RUN/, 'the guest never runs with queues the device does not serve');
    assert.match(refused.output, /vhost/i, `QEMU names the vhost device it could not start: ${refused.output.slice(-1500)}`);
    assert.match(dm.log(), /sets up queue 3, but the device has 3 \(num_queues\)/);
  } finally {
    await dm.stop();
  }
});

test('vhost-user-blk: a guest uses the LU as /dev/vda (ext4, fio with verify, blkdiscard), a reservation taken over virtio-scsi blocks its writes, a resize is seen', { timeout: 500_000 }, async () => {
  const sockBlk = join(dir, 'blk.sock');
  const sockScsi = join(dir, 'blk-scsi.sock');
  const SERIAL = '7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d';
  const db = await startTsiod(
    [
      'storage_objects:',
      `  - { name: vblk, plugin: rd_mcp, size: 64MiB, wwn: ${SERIAL}, attributes: { emulate_tpu: true, emulate_tpws: true, emulate_write_cache: true } }`,
      'targets:',
      '  - fabric: vhost',
      '    wwn: naa.5001405000000045',
      '    tpgs:',
      `      - { tag: 1, socket: ${sockBlk}, device: blk, luns: [ { index: 0, storage_object: /backstores/rd_mcp/vblk } ] }`,
      '  - fabric: vhost',
      '    wwn: naa.5001405000000046',
      '    tpgs:',
      `      - { tag: 1, socket: ${sockScsi}, luns: [ { index: 0, storage_object: /backstores/rd_mcp/vblk } ] }`,
      '',
    ].join('\n'),
    { dir: mkdtempSync(join(dir, 'blk-')) },
  );
  const { ControlClient } = await import('../cli/client');
  const g = startGuest({
    sharedMemory: true,
    memoryMiB: 512,
    timeoutMs: 450_000,
    qemuArgs: [
      '-chardev', `socket,path=${sockBlk},id=vub`, '-device', 'vhost-user-blk-pci,chardev=vub,num-queues=1',
      '-chardev', `socket,path=${sockScsi},id=vus`, '-device', 'vhost-user-scsi-pci,chardev=vus',
    ],
    script: [
      'set -e',
      'for i in $(seq 100); do [ -b /dev/vda ] && [ -b /dev/sda ] && break; sleep 0.1; done',
      'echo "VDA $(cat /sys/block/vda/size) $(cat /sys/block/vda/queue/logical_block_size) $(cat /sys/block/vda/serial) $(cat /sys/block/vda/queue/discard_max_bytes) $(ls /sys/block/vda/mq | wc -l)"',
      'mkfs.ext4 -q -F /dev/vda',
      'mkdir -p /mnt/b && mount /dev/vda /mnt/b',
      'dd if=/dev/urandom of=/tmp/data bs=1M count=8 status=none',
      'cp /tmp/data /mnt/b/data && sync && umount /mnt/b',
      'echo 3 > /proc/sys/vm/drop_caches',
      'mount /dev/vda /mnt/b && cmp /tmp/data /mnt/b/data && echo "FS-OK"',
      'umount /mnt/b',
      'fio --name=verify --filename=/dev/vda --rw=randrw --bs=4k --size=16M --iodepth=8 --ioengine=libaio --direct=1 ' +
        '--verify=crc32c --do_verify=1 --verify_fatal=1 --group_reporting --output-format=terse --terse-version=3 > /tmp/fio.out',
      'echo "FIO-OK $(cut -d";" -f1-8 /tmp/fio.out)"',
      'dd if=/dev/urandom of=/dev/vda bs=1M count=4 seek=32 oflag=direct status=none',
      'blkdiscard -f -o 33554432 -l 4194304 /dev/vda',
      'cmp -n 4194304 -i 33554432:0 /dev/vda /dev/zero && echo DISCARD-ZEROES',
      // A Write Exclusive reservation held by the virtio-scsi nexus: the virtio-blk nexus may read, not write.
      'sg_persist -n --out --register --param-sark=0x1 /dev/sda >/dev/null',
      'sg_persist -n --out --reserve --param-rk=0x1 --prout-type=1 /dev/sda >/dev/null',
      'dd if=/dev/vda of=/dev/null bs=4k count=1 iflag=direct status=none && echo PR-READ-OK',
      'if dd if=/dev/zero of=/dev/vda bs=4k count=1 seek=100 oflag=direct status=none 2>/dev/null; then echo PR-WRITE-PASSED; else echo PR-WRITE-BLOCKED; fi',
      'sg_persist -n --out --release --param-rk=0x1 --prout-type=1 /dev/sda >/dev/null',
      'sg_persist -n --out --register --param-rk=0x1 --param-sark=0 /dev/sda >/dev/null',
      'dd if=/dev/zero of=/dev/vda bs=4k count=1 seek=100 oflag=direct status=none && echo PR-WRITE-AGAIN',
      'S=$(cat /sys/block/vda/size); echo "RESIZE-READY $S"',
      'for i in $(seq 600); do [ "$(cat /sys/block/vda/size)" != "$S" ] && break; sleep 0.1; done',
      'echo "RESIZED $(cat /sys/block/vda/size)"',
    ].join('\n'),
  });
  try {
    await g.waitFor(/RESIZE-READY \d+\n/, 400_000);
    const c = await ControlClient.connect(db.sock);
    try {
      await c.call('storage_objects.set', { path: '/backstores/rd_mcp/vblk', fields: { size: '96MiB' } });
    } finally {
      c.close();
    }
    const r = await g.done;
    const out = r.output;
    assert.equal(r.exitCode, 0, `${out.slice(-3000)}\n--- tsiod:\n${db.log().slice(-3000)}`);
    assert.match(out, new RegExp(`VDA 131072 512 ${SERIAL.slice(0, 20)} [1-9]\\d* 1\\n`), 'size, block size, serial (GET_ID), discard, one queue');
    assert.match(out, /FS-OK/);
    assert.match(out, /FIO-OK /);
    assert.match(out, /DISCARD-ZEROES/);
    assert.match(out, /PR-READ-OK/);
    assert.match(out, /PR-WRITE-BLOCKED/, 'a write from virtio-blk to a unit reserved by another nexus fails');
    assert.match(out, /PR-WRITE-AGAIN/);
    assert.match(out, /RESIZED 196608\n/, 'the guest sees 96 MiB after the resize (config change)');
  } finally {
    g.kill();
    await db.stop();
  }
});
