// Failing sectors under block LUs: device-mapper's `error` and `flakey` targets, which the host kernel
// lacks, in a TCG guest whose kernel has them; and a SCSI disk deleted under a live LU. The guest runs
// test/util/faults-guest.ts (the host's node and this build, over 9p) and prints what each command
// answered; the assertions are here.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { projectShare, runGuest } from './util/guest';
import { BAD_BLOCKS, BAD_LBA, RESULT_MARK } from './util/faults-guest';

const PROJECT = path.resolve(__dirname, '..', '..');
const DRIVER = path.join(__dirname, 'util', 'faults-guest.js');
const SECTORS = 16384; // 8 MiB per device

type Brief = { status: number; key?: number; asc?: number; ascq?: number; info?: string; code?: number };
type Result = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** CHECK CONDITION with key/ASC/ASCQ and, when given, INFORMATION (VALID set). */
function sense(b: Brief, key: number, asc: number, ascq: number, info?: number): void {
  assert.equal(b.status, 2, JSON.stringify(b));
  assert.deepEqual([b.key, b.asc, b.ascq], [key, asc, ascq], JSON.stringify(b));
  if (info !== undefined) assert.equal(b.info, String(info), `INFORMATION: ${JSON.stringify(b)}`);
}

/** A dm table: linear over loop, but sectors BAD_LBA.. fail (error target). */
function errorTable(loop: string): string {
  const after = BAD_LBA + BAD_BLOCKS;
  return `0 ${BAD_LBA} linear ${loop} 0\\n${BAD_LBA} ${BAD_BLOCKS} error\\n${after} ${SECTORS - after} linear ${loop} ${after}`;
}

describe('block LUs over failing devices (dm error, dm flakey, a deleted SCSI disk) in a guest', { timeout: 360_000 }, () => {
  let result: Result;

  before(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsio-faults-guest-'));
    const disk = path.join(dir, 'scsi.img');
    fs.writeFileSync(disk, '');
    fs.truncateSync(disk, 8 << 20);
    try {
      const r = await runGuest({
        script: [
          'set -e',
          'modprobe dm-mod; modprobe dm-flakey; modprobe loop',
          ...projectShare(PROJECT).script,
          'for i in 1 2 3; do truncate -s 8M /tmp/d$i.img; done',
          // dm tables name the loop devices by major:minor (what the kernel resolves without udev).
          'for i in 1 2 3; do l=$(losetup -f --show /tmp/d$i.img); eval L$i=$(cat /sys/block/${l#/dev/}/dev); done',
          'echo "loops: $L1 $L2 $L3"',
          `printf "${errorTable('$L1')}\\n" | dmsetup create bad1`,
          `printf "${errorTable('$L2')}\\n" | dmsetup create bad2`,
          `dmsetup create flaky --table "0 ${SECTORS} flakey $L3 0 1 1"`,
          'dmsetup mknodes', // no udev in the guest
          'for i in $(seq 50); do [ -b /dev/sda ] && break; sleep 0.1; done',
          `node '${DRIVER}' --run /dev/mapper/bad1 /dev/mapper/bad2 /dev/mapper/flaky /dev/sda`,
        ].join('\n'),
        qemuArgs: [
          ...projectShare(PROJECT).qemuArgs,
          '-device', 'virtio-scsi-pci,id=scsi0',
          '-drive', `if=none,id=d0,file=${disk},format=raw,cache=unsafe`,
          '-device', 'scsi-hd,bus=scsi0.0,drive=d0',
        ],
        timeoutMs: 300_000,
      });
      const m = new RegExp(`${RESULT_MARK} (.*)`).exec(r.output);
      assert.ok(m, `the guest printed no result (exit ${r.exitCode}):\n${r.output.slice(-4000)}`);
      result = JSON.parse(m[1]);
      assert.equal(result.fatal, undefined, `guest driver failed: ${result.fatal}\n${r.output.slice(-3000)}`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('EIO on read: MEDIUM ERROR / UNRECOVERED READ ERROR at the first bad LBA, fixed (VALID) and descriptor format', () => {
    // O_DIRECT: exactly the first bad block.
    sense(result.readAcrossDirect, 0x3, 0x11, 0x00, BAD_LBA);
    sense(result.readDirect, 0x3, 0x11, 0x00, BAD_LBA);
    assert.equal(result.readJustBefore.status, 0, JSON.stringify(result.readJustBefore));
    // Through the page cache the kernel reads whole pages, and its readahead may fail the good page just
    // before the bad one: the block reported is the bad one or in that page, never after it.
    for (const r of [result.readAcross, result.readAcrossDescriptor]) {
      sense(r, 0x3, 0x11, 0x00);
      assert.ok(Number(r.info) >= BAD_LBA - 8 && Number(r.info) <= BAD_LBA, `INFORMATION ${r.info}`);
    }
    assert.equal(result.readAcross.code, 0xf0, 'fixed format with VALID');
    assert.equal(result.readAcrossDescriptor.code, 0x72);
    sense(result.readOne, 0x3, 0x11, 0x00, BAD_LBA + 4);
    assert.equal(result.readBefore.status, 0);
  });

  test('EIO on write: MEDIUM ERROR / WRITE ERROR, at the first bad LBA when write-through; at SYNCHRONIZE CACHE when write-back', () => {
    sense(result.writeAcross, 0x3, 0x0c, 0x00, BAD_LBA);
    assert.equal(result.writeGood.status, 0);
    assert.equal(result.writeBack.status, 0, 'the page cache took the write-back write');
    sense(result.syncCache, 0x3, 0x0c, 0x00);
  });

  test('dm flakey: every command is GOOD or a MEDIUM ERROR of its direction, never anything else, and the unit stays up', () => {
    const kinds = Object.keys(result.flaky);
    assert.ok(result.flaky.good > 0, JSON.stringify(result.flaky));
    assert.ok(kinds.some((k) => k !== 'good'), `no fault seen in 5 s of a 1 s up / 1 s down device: ${JSON.stringify(result.flaky)}`);
    for (const k of kinds) assert.ok(['good', 'r:3/17/0', 'w:3/12/0'].includes(k), `unexpected outcome ${k}`);
    assert.equal(result.flakyNotReady, null);
  });

  test('a SCSI disk deleted under a live LU: NOT READY / MANUAL INTERVENTION REQUIRED, health says so; other LUs served', () => {
    assert.equal(result.scsiBefore.status, 0);
    sense(result.scsiAfter, 0x2, 0x04, 0x03);
    sense(result.scsiAgain, 0x2, 0x04, 0x03);
    sense(result.scsiWrite, 0x2, 0x04, 0x03);
    assert.match(result.health['/backstores/block/so3'], /^storage lost: the device \/dev\/sda was removed/);
    assert.equal(result.health['/backstores/block/so0'], 'ok');
    assert.equal(result.ramWrite.status, 0);
    assert.equal(result.ramRead.status, 0);
  });
});

const THRESHOLD_IQN = 'iqn.2026-12.org.tsio:thresholds';

describe('the soft threshold UA reaches a Linux initiator (its kernel log) over iSCSI, in a guest', { timeout: 360_000 }, () => {
  let out = '';

  before(async () => {
    const tsiod = path.join(PROJECT, 'dist', 'app', 'daemon', 'tsiod.js');
    const config = [
      'storage_objects:',
      '  - { name: thin, plugin: fileio, dev: /mnt/small/thin.img, size: 64MiB,',
      '      attributes: { emulate_tpu: true, emulate_tpws: true, tp_soft_threshold: 40 } }',
      'targets:',
      '  - fabric: iscsi',
      `    wwn: ${THRESHOLD_IQN}`,
      '    tpgs:',
      '      - tag: 1',
      '        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }',
      '        portals: [ { ip_address: 127.0.0.1, port: 3260 } ]',
      '        luns: [ { index: 0, storage_object: /backstores/fileio/thin } ]',
    ].join('\n');
    const r = await runGuest({
      script: [
        'set -e',
        'modprobe loop; modprobe iscsi_tcp',
        ...projectShare(PROJECT).script,
        // A 16 MiB ext4 under a 64 MiB thin LU: 40% of it is crossed after about 6 MiB of writes.
        'truncate -s 16M /tmp/fs.img; mkfs.ext4 -q -F -m 0 /tmp/fs.img; mkdir -p /mnt/small; mount -o loop /tmp/fs.img /mnt/small',
        'ip link set lo up; mkdir -p /tmp/tsio',
        `printf '%s\\n' "${config}" > /tmp/tsio/c.yaml`,
        `node '${tsiod}' --config /tmp/tsio/c.yaml --control none --state-dir /tmp/tsio/state --saveconfig /tmp/tsio/save.yaml > /tmp/tsio/log 2>&1 &`,
        'for i in $(seq 1 120); do grep -q ready: /tmp/tsio/log && break; sleep 0.5; done',
        'mkdir -p /etc/iscsi /var/lib/iscsi /run/lock/iscsi',
        'echo "InitiatorName=iqn.2026-12.org.tsio:thresholds-guest" > /etc/iscsi/initiatorname.iscsi',
        'echo "node.startup = manual" > /etc/iscsi/iscsid.conf',
        'iscsid; sleep 1',
        'iscsiadm -m discovery -t sendtargets -p 127.0.0.1:3260 >/dev/null',
        `iscsiadm -m node -T ${THRESHOLD_IQN} -p 127.0.0.1:3260 --login >/dev/null`,
        'for i in $(seq 1 60); do [ -b /dev/sda ] && break; sleep 0.5; done',
        'echo "VPD-B2: $(sg_vpd -p lbpv -H /dev/sda | tr -s " \\n" " ")"',
        'sg_logs -p 0xc /dev/sda || true',
        'for i in $(seq 0 11); do dd if=/dev/urandom of=/dev/sda bs=1M count=1 seek=$i oflag=direct status=none; sleep 0.5; done',
        'sleep 2; dd if=/dev/sda of=/dev/null bs=4k count=1 iflag=direct status=none; sleep 1',
        'sg_logs -p 0xc /dev/sda || true',
        'dmesg | grep -i "soft threshold" && echo THRESHOLD-UA-IN-KERNEL-LOG',
        `iscsiadm -m node -T ${THRESHOLD_IQN} -p 127.0.0.1:3260 --logout >/dev/null || true`,
      ].join('\n'),
      qemuArgs: projectShare(PROJECT).qemuArgs,
      timeoutMs: 300_000,
    });
    out = r.output;
    assert.equal(r.exitCode, 0, out.slice(-4000));
  });

  test('sd logs the thin provisioning soft threshold warning', () => {
    assert.match(out, /THRESHOLD-UA-IN-KERNEL-LOG/, out.slice(-4000));
    assert.match(out, /reached a thin provisioning soft threshold/);
  });

  test('sg_logs reads the LOGICAL BLOCK PROVISIONING page: used grows with the writes', () => {
    const used = [...out.matchAll(/Used LBA mapping (?:threshold )?resource count: (\d+)/gi)].map((m) => Number(m[1]));
    assert.equal(used.length, 2, out.slice(-4000));
    assert.ok(used[0] <= 1 && used[1] >= 6, `used ${used}`);
  });
});
