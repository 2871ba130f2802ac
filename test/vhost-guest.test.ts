// vhost-user-scsi end to end: a Linux guest under QEMU (TCG) with
// vhost-user-scsi-pci on tsiod's TPG socket sees our LUNs as /dev/sd* and
// uses them: identification, a file system, discard, fio with verify.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runGuest } from './util/guest';
import { startTsiod, type Daemon } from './util/tsiod';
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
