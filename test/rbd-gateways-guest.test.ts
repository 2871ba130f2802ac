// Real Linux initiators on one rbd image exported by two tsiod gateways (gateway_group, implicit ALUA):
// - two vhost-user-scsi guests, one through each gateway, both up at once: sg_persist in the first registers
//   and reserves; the second sees the key and the reservation, gets RESERVATION CONFLICT, registers and
//   preempts; the first then learns it was preempted and is refused.
// - a guest (no network: its iSCSI connections reach the gateways through a tunnel over virtio-serial) whose
//   open-iscsi logs in to both gateways, dm-multipath grouping the paths by ALUA: fio with verify runs while
//   gateway A is killed with SIGKILL; I/O goes on through B, verify passes, and sg_rtpg answers the same
//   through both paths before, and through B after.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ceph, type Ceph } from './util/ceph';
import { startTsiod, type Daemon } from './util/tsiod';
import { gatewayConfig, vhostGatewayConfig, type GatewayUnit } from './util/gateways';
import { projectShare, startGuest } from './util/guest';
import { startTunnelHost, tunnelQemuArgs } from './util/serial-tunnel';

const PROJECT = join(__dirname, '..', '..');
const TUNNEL = join(__dirname, 'util', 'serial-tunnel.js');
const MiB = 1024 * 1024;

let c: Ceph;
const dir = mkdtempSync(join(tmpdir(), 'tsio-rbd-gw-guest-'));
const images: string[] = [];
const daemons: Daemon[] = [];

before(() => {
  c = ceph();
});

after(async () => {
  for (const d of daemons) await d.stop();
  for (const image of images) {
    await c.rmImage(image);
    for (const rec of ['pr', 'alua']) {
      try {
        execFileSync('rados', ['-c', c.conf, '-p', 'rbd', 'rm', `tsio.${rec}.${image}`], { stdio: 'ignore' });
      } catch {
        /* never made */
      }
    }
  }
  c.ceph('osd', 'blocklist', 'clear');
  rmSync(dir, { recursive: true, force: true });
});

/** A folder the host writes and the guest reads (its own 9p share): how the test tells a guest to go on. */
function control(name: string): { path: string; qemuArgs: string[]; mount: string; waitFile: (f: string) => string } {
  const path = join(dir, name);
  execFileSync('mkdir', ['-p', path]);
  return {
    path,
    qemuArgs: ['-virtfs', `local,path=${path},mount_tag=ctl,security_model=none,multidevs=remap`],
    mount: 'mkdir -p /ctl && mount -t 9p -o trans=virtio,version=9p2000.L ctl /ctl',
    waitFile: (f) => `while [ ! -e /ctl/${f} ]; do sleep 0.2; done`,
  };
}

/** One step in the guest between markers, so the test can pick each output apart. */
const step = (name: string, cmd: string): string => `echo "== ${name}"; ${cmd} 2>&1; echo "== ${name} rc=$?"`;

function section(out: string, name: string): { text: string; rc: number } {
  const m = new RegExp(`== ${name}\\n([\\s\\S]*?)== ${name} rc=(\\d+)`).exec(out);
  assert.ok(m, `no output of step ${name}:\n${out.slice(-3000)}`);
  return { text: m[1], rc: Number(m[2]) };
}

// One block through sg_raw, so the status (Reservation Conflict, a check condition's sense) shows as such.
const READ1 = 'sg_raw -r 512 $D 28 00 00 00 00 00 00 00 01 00';
const WRITE1 = 'sg_raw -s 512 -i /tmp/blk $D 2a 00 00 00 00 00 00 00 01 00';
const SD = [
  'echo 1 > /proc/sys/kernel/printk',
  'for i in $(seq 200); do ls /sys/block | grep -q "^sd" && break; sleep 0.1; done',
  'D=/dev/$(ls /sys/block | grep "^sd" | head -1)',
  'head -c 512 /dev/urandom > /tmp/blk',
];

test('sg_persist across gateways: a guest through A reserves, a guest through B sees it, conflicts, preempts', { timeout: 600_000 }, async () => {
  const image = c.imageName('gw-pr');
  images.push(image);
  const unit: GatewayUnit = { iqn: 'naa.5001405000000f01', serial: 'tsio-gw-guest-pr-0001', image, size: 64 * MiB };
  const sock = [join(dir, 'a.sock'), join(dir, 'b.sock')];
  const a = await startTsiod(vhostGatewayConfig(c, unit, 1, sock[0], 'naa.5001405000000a01'));
  daemons.push(a);
  const b = await startTsiod(vhostGatewayConfig(c, unit, 2, sock[1], 'naa.5001405000000b02'));
  daemons.push(b);
  const ctl = control('pr');
  const guest = (s: string, script: string[]) => startGuest({
    sharedMemory: true,
    memoryMiB: 512,
    timeoutMs: 540_000,
    qemuArgs: ['-chardev', `socket,path=${s},id=vus`, '-device', 'vhost-user-scsi-pci,chardev=vus', ...ctl.qemuArgs],
    script: [ctl.mount, ...SD, ...script].join('\n'),
  });
  // Both guests up at once: guest 1's I_T nexus (and its reservation) stays while guest 2 works.
  const g1 = guest(sock[0], [
    step('g1-register', 'sg_persist --out --register --param-sark=0xaaaa $D'),
    step('g1-reserve', 'sg_persist --out --reserve --param-rk=0xaaaa --prout-type=3 $D'),
    step('g1-write', WRITE1),
    'echo G1-RESERVED',
    ctl.waitFile('preempted'),
    step('g1-ua', READ1),
    step('g1-read', READ1),
    step('g1-write2', WRITE1),
    step('g1-keys', 'sg_persist --in -k $D'),
    step('g1-resv', 'sg_persist --in -r $D'),
  ]);
  const g2 = guest(sock[1], [
    'echo G2-UP',
    ctl.waitFile('reserved'),
    step('g2-keys', 'sg_persist --in -k $D'),
    step('g2-resv', 'sg_persist --in -r $D'),
    step('g2-read', READ1),
    step('g2-write', WRITE1),
    step('g2-register', 'sg_persist --out --register --param-sark=0xbbbb $D'),
    step('g2-write-registered', WRITE1),
    step('g2-preempt', 'sg_persist --out --preempt --param-rk=0xbbbb --param-sark=0xaaaa --prout-type=3 $D'),
    step('g2-write-holder', WRITE1),
    step('g2-keys2', 'sg_persist --in -k $D'),
    'echo G2-PREEMPTED',
    ctl.waitFile('g1done'),
    step('g2-clear', 'sg_persist --out --clear --param-rk=0xbbbb $D'),
  ]);
  try {
    await g1.waitFor(/G1-RESERVED/);
    writeFileSync(join(ctl.path, 'reserved'), '');
    await g2.waitFor(/G2-PREEMPTED/);
    writeFileSync(join(ctl.path, 'preempted'), '');
    const r1 = await g1.done;
    writeFileSync(join(ctl.path, 'g1done'), '');
    const r2 = await g2.done;
    const o1 = r1.output;
    const o2 = r2.output;
    const logs = `\n--- guest 1:\n${o1.slice(-4000)}\n--- guest 2:\n${o2.slice(-4000)}\n--- A:\n${a.log().slice(-2000)}\n--- B:\n${b.log().slice(-2000)}`;
    const s1 = (n: string) => section(o1, n);
    const s2 = (n: string) => section(o2, n);
    assert.equal(s1('g1-register').rc, 0, logs);
    assert.equal(s1('g1-reserve').rc, 0, logs);
    assert.equal(s1('g1-write').rc, 0, `the holder writes through A${logs}`);
    // Guest 2 through B sees guest 1's key and EXCLUSIVE ACCESS reservation.
    assert.match(s2('g2-keys').text, /1 registered reservation key follows:\s+0xaaaa\s/, logs);
    assert.match(s2('g2-resv').text, /Key=0xaaaa\s+scope: LU_SCOPE,\s+type: Exclusive Access\s/, logs);
    // Unregistered, it may neither read nor write; registered, still not write (not the holder).
    assert.match(s2('g2-read').text, /Reservation Conflict/i, logs);
    assert.match(s2('g2-write').text, /Reservation Conflict/i, logs);
    assert.equal(s2('g2-register').rc, 0, logs);
    assert.match(s2('g2-write-registered').text, /Reservation Conflict/i, logs);
    // PREEMPT through B: B's guest holds the reservation, guest 1's registration is gone.
    assert.equal(s2('g2-preempt').rc, 0, logs);
    assert.equal(s2('g2-write-holder').rc, 0, `${s2('g2-write-holder').text}${logs}`);
    assert.match(s2('g2-keys2').text, /1 registered reservation key follows:\s+0xbbbb\s/, logs);
    // Guest 1 through A: REGISTRATIONS PREEMPTED (2Ah/05h), then refused, and sees the new state.
    assert.match(s1('g1-ua').text, /Registrations preempted/i, logs);
    assert.match(s1('g1-read').text, /Reservation Conflict/i, logs);
    assert.match(s1('g1-write2').text, /Reservation Conflict/i, logs);
    assert.match(s1('g1-keys').text, /1 registered reservation key follows:\s+0xbbbb\s/, logs);
    assert.match(s1('g1-resv').text, /Key=0xbbbb\s+scope: LU_SCOPE,\s+type: Exclusive Access\s/, logs);
    assert.equal(s2('g2-clear').rc, 0, logs);
    assert.equal(r1.exitCode, 0, logs);
    assert.equal(r2.exitCode, 0, logs);
  } finally {
    g1.kill();
    g2.kill();
  }
});

interface RtpgGroup {
  id: number;
  state: number;
  ports: number[];
}

/** The groups sg_rtpg -d printed: id, asymmetric access state, relative port ids. */
function rtpgGroups(text: string): RtpgGroup[] {
  const groups: RtpgGroup[] = [];
  for (const g of text.split(/target port group id\s*:\s*/).slice(1)) {
    const id = /^0x([0-9a-f]+)/i.exec(g);
    const state = /asymmetric access state\s*:\s*0x([0-9a-f]+)/i.exec(g);
    const ports = /Relative target port ids:\s*([\s\S]*)$/i.exec(g);
    assert.ok(id && state, `sg_rtpg output: ${text}`);
    groups.push({
      id: parseInt(id[1], 16),
      state: parseInt(state[1], 16),
      ports: ports ? [...ports[1].matchAll(/0x([0-9a-f]+)/gi)].map((m) => parseInt(m[1], 16)) : [],
    });
  }
  return groups;
}

const AO = 0;
const ANO = 1;
const UNAVAILABLE = 3;
const IQN = 'iqn.2026-12.org.tsio:failover';

test('failover under a real initiator: open-iscsi + dm-multipath (ALUA) in a guest, fio with verify, gateway A killed', { timeout: 900_000 }, async () => {
  const image = c.imageName('gw-failover');
  images.push(image);
  const unit: GatewayUnit = { iqn: IQN, serial: 'tsio-gw-guest-failover-0001', image, size: 128 * MiB };
  const a = await startTsiod((port) => gatewayConfig(c, unit, 1, port));
  daemons.push(a);
  const b = await startTsiod((port) => gatewayConfig(c, unit, 2, port));
  daemons.push(b);
  const ctl = control('failover');
  const tunnelSock = join(dir, 'tunnel.sock');
  const share = projectShare(PROJECT);
  const fio = (extra: string) =>
    `fio --name=failover --filename=/dev/mapper/mpatha --rw=randwrite --bs=16k --size=16M --direct=1 --ioengine=libaio --iodepth=4 --verify=crc32c --verify_fatal=1 --randrepeat=1 ${extra}`;
  const script = [
    'echo 1 > /proc/sys/kernel/printk',
    'ip link set lo up',
    ...share.script,
    ctl.mount,
    'modprobe virtio_console; modprobe iscsi_tcp; modprobe scsi_dh_alua; modprobe dm_multipath; for m in dm_round_robin dm_service_time dm_queue_length dm_historical_service_time; do modprobe $m; done',
    // The tunnel: 127.0.0.1:3260 is gateway A, :3261 gateway B.
    `node ${TUNNEL} --guest tsio.tunnel 3260 3261 > /tmp/tunnel.log 2>&1 &`,
    'for i in $(seq 300); do grep -q listening /tmp/tunnel.log && break; sleep 0.2; done; cat /tmp/tunnel.log',
    // udev, for multipath's device properties and /dev/mapper.
    '/lib/systemd/systemd-udevd --daemon; udevadm trigger --action=add; udevadm settle -t 60',
    'mkdir -p /etc/iscsi /var/lib/iscsi /run/lock/iscsi',
    'echo "InitiatorName=iqn.2026-12.org.tsio:failover-guest" > /etc/iscsi/initiatorname.iscsi',
    `cat > /etc/iscsi/iscsid.conf <<'EOF'
node.startup = manual
node.session.timeo.replacement_timeout = 5
node.conn[0].timeo.noop_out_interval = 2
node.conn[0].timeo.noop_out_timeout = 4
EOF`,
    `cat > /etc/multipath.conf <<'EOF'
defaults {
    user_friendly_names yes
    find_multipaths off
    polling_interval 2
}
blacklist {
    devnode "^(ram|loop|fd|md|dm-|sr|scd|st|vd)[0-9]*"
}
devices {
    device {
        vendor "LIO-ORG"
        product ".*"
        path_grouping_policy group_by_prio
        path_selector "round-robin 0"
        prio alua
        hardware_handler "1 alua"
        path_checker tur
        failback immediate
        no_path_retry 30
    }
}
EOF`,
    'iscsid',
    'sleep 1',
    `for p in 3260 3261; do iscsiadm -m node -o new -T ${IQN} -p 127.0.0.1:$p >/dev/null; iscsiadm -m node -T ${IQN} -p 127.0.0.1:$p --login; done`,
    'for i in $(seq 300); do [ "$(ls /sys/block | grep -c "^sd")" -ge 2 ] && break; sleep 0.2; done',
    'udevadm settle -t 60',
    // Which disk is which gateway's path: the relative target port (1: A, 2: B).
    'for d in $(ls /sys/block | grep "^sd"); do p=$(sg_vpd -p di /dev/$d | grep -io "relative target port: 0x[0-9a-f]*" | grep -o "0x.*"); echo "PATH $d $p"; case $p in 0x1|0x01|0x0001) A=$d;; 0x2|0x02|0x0002) B=$d;; esac; done',
    'echo "PATHS A=$A B=$B"',
    'multipathd',
    'for i in $(seq 300); do [ -b /dev/mapper/mpatha ] && break; sleep 0.2; done',
    'multipath -r >/dev/null 2>&1; udevadm settle -t 60; [ -b /dev/mapper/mpatha ] || dmsetup mknodes',
    // (else fio would write a plain file in /dev/mapper)
    '[ -b /dev/mapper/mpatha ] || { echo "NO-MPATH"; dmesg | tail -20; multipath -v3 2>&1 | tail -60; exit 1; }',
    step('mpath-before', 'multipath -ll; dmsetup table'),
    step('rtpg-a-before', 'sg_rtpg -d /dev/$A'),
    step('rtpg-b-before', 'sg_rtpg -d /dev/$B'),
    'echo "B-WRITES-BEFORE $(awk \'{print $5}\' /sys/block/$B/stat)"',
    `${fio('--rate_iops=64 --output-format=json --output=/tmp/fio.json')} &`,
    'FIO=$!',
    'echo FIO-RUNNING',
    'wait $FIO; echo "FIO-RC $?"',
    ctl.waitFile('killed'),
    'echo "B-WRITES-AFTER $(awk \'{print $5}\' /sys/block/$B/stat)"',
    step('fio-json', 'cat /tmp/fio.json'),
    step('verify-again', fio('--verify_only')),
    step('mpath-after', 'multipath -ll'),
    step('rtpg-b-after', 'for i in 1 2 3; do sg_rtpg -d /dev/$B > /tmp/rtpg 2>&1 && break; done; cat /tmp/rtpg'),
    step('rtpg-a-after', 'sg_rtpg -d /dev/$A'),
    'echo 3 > /proc/sys/kernel/printk; dmesg | grep -iE "alua|multipath|iscsi|connection|device-mapper" | tail -40',
  ].join('\n');
  const g = startGuest({ script, memoryMiB: 1024, timeoutMs: 840_000, qemuArgs: [...tunnelQemuArgs(tunnelSock), ...share.qemuArgs, ...ctl.qemuArgs] });
  const tunnel = await startTunnelHost(tunnelSock, [a.port, b.port]);
  try {
    await g.waitFor(/FIO-RUNNING|NO-MPATH/);
    if (/NO-MPATH/.test(g.output())) assert.fail(`no multipath device:\n${(await g.done).output.slice(-6000)}`);
    // Let fio write through A for a while, then kill A.
    await new Promise((r) => setTimeout(r, 5000));
    const killed = Date.now();
    a.proc.kill('SIGKILL');
    writeFileSync(join(ctl.path, 'killed'), String(killed));
    const r = await g.done;
    const out = r.output;
    const logs = `\n--- guest:\n${out.slice(-6000)}\n--- A:\n${a.log().slice(-2000)}\n--- B:\n${b.log().slice(-3000)}`;
    console.log(section(out, 'mpath-before').text);
    const paths = /PATHS A=(sd[a-z]+) B=(sd[a-z]+)/.exec(out);
    assert.ok(paths, `both paths, told apart by their relative target port${logs}`);
    // Before: two path groups by ALUA priority, and RTPG the same through both paths: A active/optimized, B not.
    assert.match(section(out, 'mpath-before').text, /hwhandler='1 alua'/, logs);
    assert.equal((section(out, 'mpath-before').text.match(/policy=/g) ?? []).length, 2, `two path groups${logs}`);
    const beforeA = rtpgGroups(section(out, 'rtpg-a-before').text);
    const beforeB = rtpgGroups(section(out, 'rtpg-b-before').text);
    const expected = [{ id: 1, state: AO, ports: [1] }, { id: 2, state: ANO, ports: [2] }];
    assert.deepEqual(beforeA, expected, `RTPG through A${logs}`);
    assert.deepEqual(beforeB, expected, `RTPG through B${logs}`);
    // I/O went on through B: fio ended well, verify of everything written passed (twice), B carried writes.
    assert.match(out, /FIO-RC 0\n/, logs);
    const json = JSON.parse(section(out, 'fio-json').text.replace(/^[^{]*/, '')) as { jobs: { error: number; write: { io_bytes: number; lat_ns: { max: number } } }[] };
    const job = json.jobs[0];
    assert.equal(job.error, 0, logs);
    assert.equal(job.write.io_bytes, 16 * MiB, `every block written${logs}`);
    assert.equal(section(out, 'verify-again').rc, 0, `a second verify of all that was written${logs}`);
    const bBefore = Number(/B-WRITES-BEFORE (\d+)/.exec(out)?.[1]);
    const bAfter = Number(/B-WRITES-AFTER (\d+)/.exec(out)?.[1]);
    assert.equal(bBefore, 0, `no writes through the non-optimized path before the kill${logs}`);
    assert.ok(bAfter > 0, `writes through B after A died (${bAfter})${logs}`);
    // After: through B, A's group unavailable and B's active/optimized; A's path is gone.
    assert.deepEqual(rtpgGroups(section(out, 'rtpg-b-after').text).map((x) => [x.id, x.state]), [[1, UNAVAILABLE], [2, AO]], `RTPG through B after${logs}`);
    assert.notEqual(section(out, 'rtpg-a-after').rc, 0, `A's path answers nothing${logs}`);
    console.log(`failover seen by the guest: longest write ${(job.write.lat_ns.max / 1e6).toFixed(0)} ms (fio, A killed ${Math.round((Date.now() - killed) / 1000)} s before the guest ended); streams A ${tunnel.opened[0]}, B ${tunnel.opened[1]}`);
    assert.equal(r.exitCode, 0, logs);
  } finally {
    g.kill();
    tunnel.close();
  }
});
