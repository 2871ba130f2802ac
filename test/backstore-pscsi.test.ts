// pscsi: SCSI pass-through with SG_IO to real devices. There are none on the
// host, so one guest boots with three: a scsi_debug disk (descriptor sense, so
// the device's own sense format is visible), a tape served by tgtd's SSC
// emulation on the host (QEMU's iSCSI driver, scsi-generic), and a QEMU
// scsi-cd holding an ISO built here. Inside it test/util/pscsi-guest.ts drives
// them through a loopback target and prints its findings; then tsiod exports
// the tape and the CD over iSCSI to the guest's own initiator, so Linux's st
// and sr drivers run on the pass-through LUNs. The tests below assert on what
// the guest printed. Refusing non-SCSI paths is checked on the host.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { projectShare, runGuest } from './util/guest';
import { losetup } from './util/losetup';
import { RESULT_MARK } from './util/pscsi-guest';
import { createRoot } from '../app/registry';
import { Status } from '../src/core/sense';

const PROJECT = path.resolve(__dirname, '..', '..');
const DRIVER = path.join(__dirname, 'util', 'pscsi-guest.js');
const TAPE_IQN = 'iqn.2026-11.io.tsio.test:pscsi-tape';

function need(tool: string, pkg: string): string {
  for (const dir of ['/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    const p = path.join(dir, tool);
    if (fs.existsSync(p)) return p;
  }
  throw new Error(`${tool} is missing: run scripts/install-deps --test (Debian package ${pkg})`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** tgtd on 127.0.0.1 with one SSC tape LUN on a fresh virtual cartridge. */
async function startTapeTarget(dir: string): Promise<{ port: number; tgtd: ChildProcess; control: number }> {
  const tgtd = need('tgtd', 'tgt');
  const tgtadm = need('tgtadm', 'tgt');
  const tgtimg = need('tgtimg', 'tgt');
  const image = path.join(dir, 'tape.img');
  sh(tgtimg, ['--op', 'new', '--device-type', 'tape', '--barcode', 'TSIO01', '--size', '16', '--type', 'data', '--file', image]);
  const port = await freePort();
  // The control socket is per instance: another tgtd on this machine keeps its own.
  const control = 1000 + (process.pid % 30000); // tgtd keeps it in a short
  const child = spawn(tgtd, ['-f', '--iscsi', `portal=127.0.0.1:${port}`, '-C', String(control)], { stdio: 'ignore' });
  const adm = (args: string[]) => sh(tgtadm, ['-C', String(control), '--lld', 'iscsi', ...args]);
  for (let i = 0; ; i++) {
    try {
      adm(['--op', 'new', '--mode', 'target', '--tid', '1', '-T', TAPE_IQN]);
      break;
    } catch (e) {
      if (i > 50 || child.exitCode !== null) throw new Error(`tgtd did not come up: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  adm(['--op', 'new', '--mode', 'logicalunit', '--tid', '1', '--lun', '1', '--bstype', 'ssc', '--device-type', 'tape', '-b', image]);
  adm(['--op', 'bind', '--mode', 'target', '--tid', '1', '-I', 'ALL']);
  return { port, tgtd: child, control };
}

/** An ISO 9660 image with a known volume id (genisoimage from Debian). */
function makeIso(dir: string): string {
  const genisoimage = need('genisoimage', 'genisoimage');
  const src = path.join(dir, 'iso-src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'hello.txt'), 'pass-through\n'.repeat(1000));
  const iso = path.join(dir, 'disc.iso');
  sh(genisoimage, ['-quiet', '-V', 'TSIO_PSCSI', '-o', iso, src]);
  return iso;
}

const KERNEL_IQN = 'iqn.2026-11.org.tsio:pscsi';

/**
 * After the driver: tsiod exports the tape and the CD over iSCSI, and the
 * guest's own initiator logs in, so Linux's st and sr drivers (and isofs) run
 * on the pass-through LUNs: files to tape and back, a filemark skipped with
 * mt, the ISO mounted and a file compared.
 */
function kernelInitiatorScript(): string {
  const tsiod = path.join(PROJECT, 'dist', 'app', 'daemon', 'tsiod.js');
  const config = [
    'storage_objects:',
    '  - { name: tape, plugin: pscsi, dev: $TAPE }',
    '  - { name: cd, plugin: pscsi, dev: $CD }',
    'targets:',
    '  - fabric: iscsi',
    `    wwn: ${KERNEL_IQN}`,
    '    tpgs:',
    '      - tag: 1',
    '        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }',
    '        portals: [ { ip_address: 127.0.0.1, port: 3260 } ]',
    '        luns: [ { index: 0, storage_object: /backstores/pscsi/tape }, { index: 1, storage_object: /backstores/pscsi/cd } ]',
  ].join('\n');
  return `
for d in /sys/class/scsi_generic/*; do
  t=$(cat $d/device/type)
  [ "$t" = 1 ] && TAPE=/dev/\${d##*/}
  [ "$t" = 5 ] && CD=/dev/$(ls $d/device/block)
done
ip link set lo up
mkdir -p /tmp/tsio
printf '%s\\n' "${config}" > /tmp/tsio/c.yaml
node '${tsiod}' --config /tmp/tsio/c.yaml --control none --state-dir /tmp/tsio/state --saveconfig /tmp/tsio/save.yaml > /tmp/tsio/log 2>&1 &
for i in $(seq 1 120); do grep -q ready: /tmp/tsio/log && break; sleep 0.5; done
cat /tmp/tsio/log
modprobe iscsi_tcp
mkdir -p /etc/iscsi /var/lib/iscsi /run/lock/iscsi
echo "InitiatorName=iqn.2026-11.org.tsio:pscsi-guest" > /etc/iscsi/initiatorname.iscsi
echo "node.startup = manual" > /etc/iscsi/iscsid.conf
iscsid
sleep 1
iscsiadm -m discovery -t sendtargets -p 127.0.0.1:3260 >/dev/null
iscsiadm -m node -T ${KERNEL_IQN} -p 127.0.0.1:3260 --login >/dev/null
for i in $(seq 1 60); do [ -c /dev/nst1 ] && [ -b /dev/sr1 ] && break; sleep 0.5; done
head -c 1048576 /dev/urandom > /tmp/f1
head -c 524288 /dev/urandom > /tmp/f2
mt -f /dev/nst1 rewind
dd if=/tmp/f1 of=/dev/nst1 bs=32768 2>/dev/null
dd if=/tmp/f2 of=/dev/nst1 bs=32768 2>/dev/null
mt -f /dev/nst1 rewind
dd if=/dev/nst1 of=/tmp/b1 bs=32768 2>/dev/null
dd if=/dev/nst1 of=/tmp/b2 bs=32768 2>/dev/null
cmp /tmp/f1 /tmp/b1 && cmp /tmp/f2 /tmp/b2 && echo ST-FILES-OK
mt -f /dev/nst1 rewind
mt -f /dev/nst1 fsf 1
dd if=/dev/nst1 of=/tmp/b3 bs=32768 2>/dev/null
cmp /tmp/f2 /tmp/b3 && echo ST-FSF-OK
mkdir -p /mnt/cd
mount -t iso9660 -o ro /dev/sr1 /mnt/cd
yes pass-through | head -n 1000 | cmp - /mnt/cd/hello.txt && echo SR-ISO-OK
umount /mnt/cd
iscsiadm -m node -T ${KERNEL_IQN} -p 127.0.0.1:3260 --logout >/dev/null && echo LOGOUT-OK
`;
}

type Section = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('pscsi pass-through to a disk, a tape and a CD in a guest', { timeout: 300_000 }, () => {
  let dir: string;
  let tgtd: ChildProcess | undefined;
  let control = 0;
  let result: Record<string, Section>;
  let console_ = '';

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsio-pscsi-'));
    const iso = makeIso(dir);
    const tape = await startTapeTarget(dir);
    tgtd = tape.tgtd;
    control = tape.control;
    const r = await runGuest({
      script: [
        'set -e',
        'modprobe scsi_debug dev_size_mb=8 dsense=1',
        ...projectShare(PROJECT).script,
        'for i in $(seq 50); do [ -e /sys/class/scsi_generic/sg2 ] && break; sleep 0.1; done',
        `node '${DRIVER}' --run`,
        kernelInitiatorScript(),
      ].join('\n'),
      qemuArgs: [
        ...projectShare(PROJECT).qemuArgs,
        '-device', 'virtio-scsi-pci,id=scsi0',
        '-drive', `driver=iscsi,transport=tcp,portal=127.0.0.1:${tape.port},target=${TAPE_IQN},lun=1,if=none,id=tape0`,
        '-device', 'scsi-generic,bus=scsi0.0,scsi-id=1,drive=tape0',
        '-drive', `if=none,id=cd0,file=${iso},format=raw,media=cdrom,readonly=on`,
        '-device', 'scsi-cd,bus=scsi0.0,scsi-id=2,drive=cd0',
      ],
      timeoutMs: 240_000,
    });
    console_ = r.output;
    const m = new RegExp(`${RESULT_MARK} (.*)`).exec(r.output);
    assert.ok(m, `the guest printed no result (exit ${r.exitCode}):\n${r.output.slice(-4000)}`);
    result = JSON.parse(m[1]);
    // TSIO_PSCSI_DUMP=file keeps the guest's findings for a look by hand.
    if (process.env.TSIO_PSCSI_DUMP) fs.writeFileSync(process.env.TSIO_PSCSI_DUMP, JSON.stringify(result, null, 1));
    assert.equal(result.fatal, undefined, `guest driver failed: ${result.fatal}\n${r.output.slice(-3000)}`);
  });

  after(async () => {
    if (tgtd && tgtd.exitCode === null) {
      // tgtd ignores SIGTERM; ask it to stop, then make sure.
      try {
        sh(need('tgtadm', 'tgt'), ['-C', String(control), '--op', 'delete', '--mode', 'system']);
      } catch {
        /* killed below */
      }
      const child = tgtd;
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => (child.kill('SIGKILL'), resolve()), 2000);
        child.once('exit', () => (clearTimeout(t), resolve()));
      });
    }
    // tgtd leaves its control socket files behind; they are this instance's own.
    if (control !== 0) {
      for (const f of [`socket.${control}`, `socket.${control}.lock`]) fs.rmSync(path.join('/var/run/tgtd', f), { force: true });
    }
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const part = (name: string): Section => {
    const s = result[name] as Section;
    assert.equal(s.error, undefined, `${name}: ${s.error}\n${console_.slice(-2000)}`);
    return s;
  };

  test('Linux initiator over tsio iSCSI: st writes files to the pass-through tape and reads them back, mt skips a filemark, sr mounts the ISO', () => {
    for (const mark of ['ST-FILES-OK', 'ST-FSF-OK', 'SR-ISO-OK', 'LOGOUT-OK']) {
      assert.match(console_, new RegExp(mark), console_.slice(-4000));
    }
  });

  test('each storage object takes its device type from the device', () => {
    assert.deepEqual(result.deviceTypes, [0, 0, 1, 5]);
  });

  test('disk: INQUIRY, READ CAPACITY, WRITE/READ round trip, device sense, emulated REPORT LUNS, write protection', () => {
    const d = part('disk');
    assert.equal(d.inquiry.status, Status.GOOD);
    assert.equal(d.inquiry.vendor, 'Linux');
    assert.equal(d.inquiry.product, 'scsi_debug');
    assert.equal(d.inquirySameAsDevice, true, 'INQUIRY data is the device\'s own');
    assert.equal(d.vpd83SameAsDevice, true, 'VPD 83h is the device\'s own');
    assert.equal(d.readCapacity.status, Status.GOOD);
    assert.equal(d.readCapacity.blockSize, 512);
    assert.equal(d.readCapacity.lastLba, 8 * 2048 - 1);
    assert.equal(d.write.status, Status.GOOD);
    assert.equal(d.read.status, Status.GOOD);
    assert.equal(d.read.equal, true, 'data read back through multi-segment buffers');
    assert.equal(d.writeBig.status, Status.GOOD, JSON.stringify(d.writeBig));
    assert.equal(d.readBig.status, Status.GOOD, JSON.stringify(d.readBig));
    assert.equal(d.readBig.equal, true, '1 MiB through 64 segments');
    assert.equal(d.readViaBlockNode.status, Status.GOOD);
    assert.equal(d.readViaBlockNode.equal, true, 'the block node sees the same blocks');
    // Too long for the kernel's SG_IO: our ILLEGAL REQUEST (fixed format), pointing at the transfer length.
    assert.equal(d.readTooLong.status, Status.CHECK_CONDITION, JSON.stringify(d.readTooLong));
    assert.equal(d.readTooLong.senseFormat, 0x70);
    assert.equal(d.readTooLong.senseKey, 0x5);
    assert.equal(d.readTooLong.asc, 0x24);
    assert.deepEqual(d.readTooLong.field, { inCdb: true, byte: 10 });
    // scsi_debug was loaded with dsense=1: descriptor sense proves the bytes are the device's.
    assert.equal(d.outOfRange.status, Status.CHECK_CONDITION);
    assert.equal(d.outOfRange.senseFormat, 0x72);
    assert.equal(d.outOfRange.senseKey, 0x5);
    assert.equal(d.outOfRange.asc, 0x21);
    assert.equal(d.outOfRange.length, 0, 'no data with a failed READ');
    assert.equal(d.unknownOpcode.status, Status.CHECK_CONDITION);
    assert.equal(d.unknownOpcode.senseFormat, 0x72);
    assert.equal(d.unknownOpcode.senseKey, 0x5);
    assert.equal(d.unknownOpcode.asc, 0x20);
    // scsi_debug has one LUN; the nexus sees four: REPORT LUNS is ours.
    assert.equal(d.reportLuns.status, Status.GOOD);
    assert.equal(d.reportLuns.count, 4);
    // A write-protected mapping: the core refuses the write in its own (fixed) format, and sets WP in the
    // device's MODE SENSE answer, as LIO's pscsi does.
    assert.equal(d.modeSense.status, Status.GOOD);
    assert.equal(d.modeSense.wp, false);
    assert.equal(d.modeSenseWriteProtected.status, Status.GOOD);
    assert.equal(d.modeSenseWriteProtected.wp, true);
    assert.equal(d.writeWriteProtected.status, Status.CHECK_CONDITION);
    assert.equal(d.writeWriteProtected.senseFormat, 0x70);
    assert.equal(d.writeWriteProtected.senseKey, 0x7);
    assert.equal(d.writeWriteProtected.asc, 0x27);
  });

  test('tape: variable and fixed blocks, filemarks, REWIND, SPACE, READ POSITION, LOAD UNLOAD, device sense with data', () => {
    const t = part('tape');
    assert.equal(t.inquiry.pdt, 1);
    assert.equal(t.inquiry.vendor, 'IET');
    assert.equal(t.inquiry.product, 'VIRTUAL-TAPE');
    for (const k of ['rewind', 'modeSelectVariable', 'writeA', 'writeB', 'filemark1', 'writeC', 'filemark2', 'rewind2']) {
      assert.equal(t[k].status, Status.GOOD, `${k}: ${JSON.stringify(t[k])}`);
    }
    assert.equal(t.readPosition.status, Status.GOOD);
    assert.equal(t.readPosition.length, 20, 'short form READ POSITION data');
    assert.equal(t.readA.status, Status.GOOD);
    assert.equal(t.readA.equal, true);
    // A longer read than the block: the device's ILI sense, and the block's 300 bytes handed on
    // with it (SSC's residue in INFORMATION). tgtd sends no Data-In along with a CHECK CONDITION,
    // so their contents cannot be checked on this rig; their count can.
    assert.equal(t.readBLong.status, Status.CHECK_CONDITION, JSON.stringify(t.readBLong));
    assert.equal(t.readBLong.ili, true);
    assert.equal(t.readBLong.info, '100');
    assert.equal(t.readBLong.length, 300);
    assert.equal(t.readBLong.residual, 100);
    assert.equal(t.readFilemark.status, Status.CHECK_CONDITION);
    assert.equal(t.readFilemark.filemark, true);
    assert.equal(t.readFilemark.length, 0, 'a filemark carries no data');
    assert.equal(t.spaceFilemark.status, Status.GOOD);
    assert.equal(t.readC.status, Status.GOOD);
    assert.equal(t.readC.equal, true);
    assert.equal(t.modeSelectFixed.status, Status.GOOD);
    assert.equal(t.tapeBlockLength, 512, 'MODE SELECT set the fixed block length');
    assert.equal(t.modeSenseBlockLength, 512);
    for (const k of ['spaceEnd', 'writeFixed', 'rewind4', 'spaceTwo']) {
      assert.equal(t[k].status, Status.GOOD, `${k}: ${JSON.stringify(t[k])}`);
    }
    assert.equal(t.readFixed.status, Status.GOOD);
    assert.equal(t.readFixed.length, 1024);
    assert.equal(t.readFixed.equal, true);
    assert.equal(t.unload.status, Status.GOOD);
    assert.equal(t.load.status, Status.GOOD);
    assert.equal(t.unsupported.status, Status.CHECK_CONDITION);
    assert.equal(t.unsupported.senseKey, 0x5);
    assert.equal(t.unsupported.asc, 0x20);
  });

  test('CD: READ TOC, READ(10)/(12) of the volume descriptor, GET CONFIGURATION, status commands, eject', () => {
    const c = part('cd');
    assert.equal(c.inquiry.pdt, 5);
    assert.equal(c.inquiry.vendor, 'QEMU');
    assert.equal(c.tur.status, Status.GOOD);
    assert.equal(c.readCapacity.blockSize, 2048);
    assert.equal(c.toc.status, Status.GOOD);
    assert.equal(c.toc.firstTrack, 1);
    assert.equal(c.toc.lastTrack, 1);
    assert.equal(c.toc.track1Control, 4, 'a data track');
    assert.equal(c.toc.track1Start, 0);
    assert.equal(c.toc.leadOutTrack, 0xaa);
    assert.equal(c.toc.leadOutStart, c.readCapacity.lastLba + 1);
    assert.equal(c.read10.status, Status.GOOD);
    assert.equal(c.read10.length, 2048);
    assert.equal(c.read10.type, 1, 'primary volume descriptor');
    assert.equal(c.read10.id, 'CD001');
    assert.equal(c.read10.volume, 'TSIO_PSCSI');
    assert.equal(c.read12.same, true);
    assert.equal(c.getConfiguration.status, Status.GOOD);
    assert.ok([0x08, 0x10].includes(c.getConfiguration.currentProfile), `profile ${c.getConfiguration.currentProfile}`);
    assert.equal(c.eventStatus.status, Status.GOOD);
    assert.equal(c.eventStatus.notificationClass, 4, 'media class');
    assert.equal(c.discInformation.status, Status.GOOD);
    assert.equal(c.discInformation.discStatus, 2, 'a complete disc');
    assert.equal(c.mechanismStatus.status, Status.GOOD);
    assert.equal(c.eject.status, Status.GOOD);
    assert.equal(c.turEjected.status, Status.CHECK_CONDITION);
    assert.equal(c.turEjected.senseKey, 0x2);
    assert.equal(c.turEjected.asc, 0x3a, 'MEDIUM NOT PRESENT, from the drive');
    assert.equal(c.load.status, Status.GOOD);
  });
});

test('pscsi refuses a path that is not a SCSI device', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsio-pscsi-bad-'));
  const root = createRoot();
  try {
    const file = path.join(dir, 'plain.img');
    fs.writeFileSync(file, Buffer.alloc(4096));
    await assert.rejects(root.createStorageObject({ name: 'f', plugin: 'pscsi', dev: file }), /pscsi f: .*plain\.img is not a SCSI device/);
    await assert.rejects(root.createStorageObject({ name: 'n', plugin: 'pscsi', dev: '/dev/null' }), /pscsi n: \/dev\/null is not a SCSI device/);
    await assert.rejects(root.createStorageObject({ name: 'm', plugin: 'pscsi', dev: path.join(dir, 'missing') }), /pscsi m: .*missing.*ENOENT|ENOENT.*missing/);
    await assert.rejects(root.createStorageObject({ name: 'd', plugin: 'pscsi' }), /pscsi d: dev .* is required/);
    // A block device that is not SCSI: the kernel refuses SG_IO on it.
    fs.truncateSync(file, 1 << 20);
    const loop = losetup(['--find', '--show', file]);
    try {
      await assert.rejects(root.createStorageObject({ name: 'l', plugin: 'pscsi', dev: loop }), /pscsi l: \/dev\/loop\d+ is not a SCSI device \(SG_IO/);
    } finally {
      losetup(['-d', loop]);
    }
    assert.equal(root.storageObjects.size, 0);
  } finally {
    await root.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
