// Real initiators in TCG guests: QEMU's libiscsi block driver (CHAP and
// header digests) under an ext4 file system, and the Linux kernel initiator
// (iscsid and tsiod both inside the guest, over the guest's loopback) with
// mutual CHAP and header and data digests: discovery, login, mkfs, files
// written and read back with matching checksums, fsck clean.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { iscsiLoginScript, runGuest } from './util/guest';
import { TSIOD, startTsiod } from './util/tsiod';

const IQN = 'iqn.2026-11.org.tsio:guest';
const INIT = 'iqn.2026-11.org.tsio:guest-initiator';

/** mkfs, files with checksums, remount after dropping caches, checksums again, fsck. */
const FS_SCRIPT = (dev: string) => `
mkfs.ext4 -q -F ${dev}
mkdir -p /mnt/t && mount ${dev} /mnt/t
for i in 1 2 3 4; do head -c $((i * 3 * 1024 * 1024 + 4097)) /dev/urandom > /mnt/t/f$i; done
mkdir /mnt/t/many && for i in $(seq 1 200); do echo "file $i" > /mnt/t/many/$i; done
(cd /mnt/t && sha256sum f1 f2 f3 f4 many/*) > /tmp/sums
umount /mnt/t
echo 3 > /proc/sys/vm/drop_caches
mount ${dev} /mnt/t
(cd /mnt/t && sha256sum -c --quiet /tmp/sums) && echo CHECKSUMS-OK
umount /mnt/t
fsck.ext4 -fn ${dev} && echo FSCK-OK
`;

test('QEMU libiscsi driver with CHAP and header digests: ext4 written, read back, fsck clean', { timeout: 600_000 }, async () => {
  const d = await startTsiod((port) => `storage_objects:
  - { name: disk, plugin: rd_mcp, size: 256MiB }
targets:
  - fabric: iscsi
    wwn: ${IQN}
    tpgs:
      - tag: 1
        attributes: { authentication: true }
        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]
        luns: [ { index: 0, storage_object: /backstores/rd_mcp/disk } ]
        node_acls:
          - node_wwn: ${INIT}
            auth: { userid: qemu, password: qemu-secret-12 }
            mapped_luns: [ { index: 0, tpg_lun: 0 } ]
`);
  try {
    const r = await runGuest({
      script: `set -e\n${FS_SCRIPT('/dev/sda')}`,
      qemuArgs: [
        '-iscsi', `initiator-name=${INIT},header-digest=crc32c`,
        '-drive', `file=iscsi://qemu%qemu-secret-12@127.0.0.1:${d.port}/${IQN}/0,if=none,id=d0,format=raw,cache=none`,
        '-device', 'virtio-scsi-pci,id=s0', '-device', 'scsi-hd,drive=d0,bus=s0.0',
      ],
      timeoutMs: 540_000,
    });
    assert.match(r.output, /CHECKSUMS-OK/, r.output.slice(-3000));
    assert.match(r.output, /FSCK-OK/, r.output.slice(-3000));
    assert.equal(r.exitCode, 0, r.output.slice(-3000));
  } finally {
    assert.equal(await d.stop(), 0);
  }
});

test('Linux kernel initiator in a guest: discovery, mutual CHAP, header and data digests, mkfs and fsck', { timeout: 600_000 }, async () => {
  const config = `storage_objects:
  - { name: disk, plugin: rd_mcp, size: 256MiB }
targets:
  - fabric: iscsi
    wwn: ${IQN}
    tpgs:
      - tag: 1
        attributes: { authentication: true }
        portals: [ { ip_address: 127.0.0.1, port: 3260 } ]
        luns: [ { index: 0, storage_object: /backstores/rd_mcp/disk } ]
        node_acls:
          - node_wwn: ${INIT}
            auth: { userid: linux, password: linux-secret-1, mutual_userid: tsio, mutual_password: tsio-secret-12 }
            mapped_luns: [ { index: 0, tpg_lun: 0 } ]
`;
  const script = `set -e
ip link set lo up
mkdir -p /tmp/tsio
cat > /tmp/tsio/c.yaml <<'EOF'
${config}EOF
node ${TSIOD} --config /tmp/tsio/c.yaml --control none --state-dir /tmp/tsio/state --saveconfig /tmp/tsio/save.json > /tmp/tsio/log 2>&1 &
for i in $(seq 1 120); do grep -q ready: /tmp/tsio/log && break; sleep 0.5; done
cat /tmp/tsio/log
${iscsiLoginScript(INIT, IQN, `node.session.auth.authmethod = CHAP
node.session.auth.username = linux
node.session.auth.password = linux-secret-1
node.session.auth.username_in = tsio
node.session.auth.password_in = tsio-secret-12
node.conn[0].iscsi.HeaderDigest = CRC32C
node.conn[0].iscsi.DataDigest = CRC32C
node.session.timeo.replacement_timeout = 30
`)}iscsiadm -m session -P 2 | grep -E "HeaderDigest|DataDigest|Target:"
${FS_SCRIPT('/dev/sda')}
iscsiadm -m node -T ${IQN} -p 127.0.0.1:3260 --logout && echo LOGOUT-OK
`;
  const r = await runGuest({ script, memoryMiB: 1536, timeoutMs: 540_000 });
  assert.match(r.output, new RegExp(`127.0.0.1:3260,1 ${IQN}`), `discovery: ${r.output.slice(-3000)}`);
  assert.match(r.output, /HeaderDigest: CRC32C/, r.output.slice(-3000));
  assert.match(r.output, /DataDigest: CRC32C/, r.output.slice(-3000));
  assert.match(r.output, /CHECKSUMS-OK/, r.output.slice(-3000));
  assert.match(r.output, /FSCK-OK/, r.output.slice(-3000));
  assert.match(r.output, /LOGOUT-OK/, r.output.slice(-3000));
  assert.equal(r.exitCode, 0, r.output.slice(-3000));
});
