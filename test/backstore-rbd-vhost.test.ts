// A Linux guest (QEMU TCG, vhost-user-scsi) on an rbd unit of the shared test cluster: ext4 made,
// written, read back after a remount with cold caches; discard deallocates whole objects (the
// cluster's own accounting drops) and reads zeros; guest memory goes to librbd in place.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runGuest } from './util/guest';
import { startTsiod, type Daemon } from './util/tsiod';
import { ceph, type Ceph } from './util/ceph';

const dir = mkdtempSync(join(tmpdir(), 'tsio-rbd-vhost-'));
const sock = join(dir, 'vhost.sock');
let c: Ceph;
let d: Daemon | undefined;
let image: string;

before(async () => {
  c = ceph();
  image = c.imageName('vhost');
  d = await startTsiod(
    [
      'storage_objects:',
      `  - { name: disk0, plugin: rbd, image: ${image}, conf: ${c.conf}, size: 96MiB, attributes: { emulate_tpu: true, emulate_tpws: true } }`,
      'targets:',
      '  - fabric: vhost',
      '    wwn: naa.5001405000000043',
      '    tpgs:',
      '      - tag: 1',
      `        socket: ${sock}`,
      '        luns: [ { index: 0, storage_object: /backstores/rbd/disk0 } ]',
      '',
    ].join('\n'),
    { dir },
  );
});

after(async () => {
  await d?.stop();
  rmSync(dir, { recursive: true, force: true });
  c.rbd('rm', '--no-progress', `rbd/${image}`);
});

/** Bytes the cluster holds for the image (rbd du: whole objects, from the object map). */
function used(): number {
  const du = JSON.parse(c.rbd('du', `rbd/${image}`, '--format', 'json')) as { images: { used_size: number }[] };
  return du.images[0].used_size;
}

test('ext4 round trip on an rbd unit through vhost-user-scsi; discard gives the space back to the cluster', { timeout: 400_000 }, async () => {
  const r = await runGuest({
    sharedMemory: true,
    memoryMiB: 512,
    qemuArgs: ['-chardev', `socket,path=${sock},id=vus`, '-device', 'vhost-user-scsi-pci,chardev=vus'],
    timeoutMs: 360_000,
    script: [
      'set -e',
      'for i in $(seq 100); do ls /sys/block | grep -q "^sd" && break; sleep 0.1; done',
      'DEV=/dev/$(ls /sys/block | grep "^sd" | head -1)',
      'echo SIZE $(cat /sys/block/${DEV#/dev/}/size)',
      'mkfs.ext4 -q -F -E nodiscard "$DEV"',
      'mkdir -p /mnt/t && mount "$DEV" /mnt/t',
      'dd if=/dev/urandom of=/tmp/data bs=1M count=16 status=none',
      'cp /tmp/data /mnt/t/data && sync && umount /mnt/t',
      'echo 3 > /proc/sys/vm/drop_caches',
      'mount "$DEV" /mnt/t && cmp /tmp/data /mnt/t/data && echo "FS-OK $(sha256sum < /mnt/t/data)"',
      'rm /mnt/t/data && umount /mnt/t',
      'blkdiscard -f "$DEV"',
      'cmp -n 16777216 "$DEV" /dev/zero && echo DISCARD-ZEROES',
    ].join('\n'),
  });
  const out = r.output;
  assert.equal(r.exitCode, 0, `${out.slice(-3000)}\n--- tsiod:\n${d!.log().slice(-3000)}`);
  assert.match(out, /SIZE 196608\n/, '96 MiB in 512-byte sectors');
  assert.match(out, /FS-OK [0-9a-f]{64}/);
  assert.match(out, /DISCARD-ZEROES/);
  assert.equal(used(), 0, 'after blkdiscard of the whole unit no object is left');
});
