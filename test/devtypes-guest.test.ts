// Tape drives, a media changer and a CD/DVD drive used by real clients in a
// Linux guest (TCG): the kernel's st, ch and sr drivers, mt, tar, mtx, Bacula's
// btape, mount of an ISO, and a disc changed from outside. The same script
// runs against tsiod over iSCSI (QEMU's libiscsi, the devices passed through
// to virtio-scsi), over vhost-user-scsi, and against tgtd's emulated ssc, smc
// and mmc over iSCSI; tsiod must pass every check, and the table says which
// pass on each. btape writes some 1.5 GB and a TCG guest takes tens of minutes
// for it, so btape and the tgtd column run in `npm run soak` (TSIO_SOAK=1);
// npm test runs every other check on both fabrics.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGuest } from './util/guest';
import { controlRpc, freePort, startTsiod, type Daemon } from './util/tsiod';
import { startTgtd, tgtLibrary, type Tgtd } from './util/tgtd';

const IQN = 'iqn.2026-12.org.tsio:vtl';
const SOAK = process.env.TSIO_SOAK === '1';
/**
 * Library cartridges: small, so that btape's fill reaches the end soon, but with more than the 10000 records
 * (some 5100 blocks of 63 KiB, 315 MiB) its read-back reads from the first before it repositions to that
 * first cartridge's last block: a smaller one has it read on into the second, where that block is not.
 */
const MB = 400;
/** The first drive's cartridge: btape's test writes 2 x 10000 blocks of 63 KiB. */
const SOLO_MB = 1600;
const dir = mkdtempSync(join(tmpdir(), 'tsio-devtypes-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Two ISO images with their checksum lists (the guest sees the host's files read-only). */
function images(): { one: string; two: string } {
  const make = (name: string, files: Record<string, number>) => {
    const src = join(dir, `${name}-src`);
    mkdirSync(join(src, 'sub'), { recursive: true });
    for (const [f, n] of Object.entries(files)) writeFileSync(join(src, f), Buffer.alloc(n, f));
    execFileSync('sh', ['-c', `cd ${src} && find . -type f | sort | xargs sha256sum > ${join(dir, `${name}.sums`)}`]);
    execFileSync('genisoimage', ['-quiet', '-R', '-V', name.toUpperCase(), '-o', join(dir, `${name}.iso`), src]);
    return join(dir, `${name}.iso`);
  };
  return { one: make('one', { 'a.txt': 1000, 'sub/b.bin': 300_000 }), two: make('two', { 'two.txt': 5000, 'sub/c.bin': 700_000 }) };
}
const iso = images();

/** A Bacula storage daemon config with one tape device (and, given a changer, its autochanger). */
const BACULA_CONF = (device: string, changer?: string) => `Storage { Name = t-sd; WorkingDirectory = /tmp/bacula; Pid Directory = /tmp/bacula; }
Director { Name = t-dir; Password = "secret"; }
Device { Name = Tape; Media Type = LTO; Archive Device = ${device}; AutomaticMount = yes; AlwaysOpen = yes; RemovableMedia = yes; RandomAccess = no;${
  changer ? ` Autochanger = yes; Changer Device = ${changer}; Changer Command = "/etc/bacula/scripts/mtx-changer %c %o %S %a %d"; Drive Index = 0;` : ''} }
Messages { Name = Standard; console = all; }
`;

/** The checks, each printing RESULT name PASS|FAIL; LUN 1 a drive, 2 a changer, 3 its drive, 4 a CD/DVD drive. */
const SCRIPT = `
res() { if [ "$2" = 0 ]; then echo "RESULT $1 PASS"; else echo "RESULT $1 FAIL"; fi; }
modprobe ch
for i in $(seq 50); do [ -e /dev/sr0 ] && [ -e /dev/sch0 ] && ls /dev/nst1 >/dev/null 2>&1 && break; sleep 0.2; done
lsscsi -g
for t in $(ls /sys/class/scsi_tape | grep -E '^st[0-9]+$'); do
  l=$(basename "$(readlink -f "/sys/class/scsi_tape/$t/device")"); eval "ST\${l##*:}=/dev/n$t"
done
SG=$(lsscsi -g | awk '/mediumx/ {print $NF}')
echo "solo=$ST1 library-drive=$ST3 changer=$SG"
[ -n "$ST1" ] && [ -n "$ST3" ]; res bind-st $?
[ -e /dev/sch0 ]; res bind-ch $?
[ -b /dev/sr0 ]; res bind-sr $?

mkdir -p /tmp/src/a/x /tmp/src/b /tmp/src/c /tmp/src/d /tmp/out
for i in 1 2 3; do head -c $((i * 200000 + 17)) /dev/urandom > /tmp/src/a/x/f$i; done
head -c 1000000 /dev/urandom > /tmp/src/b/big; echo small > /tmp/src/c/s; head -c 123457 /dev/urandom > /tmp/src/d/odd
(cd /tmp/src && find . -type f | sort | xargs sha256sum) > /tmp/src.sums

# mt and tar: three archives, positioning by filemarks both ways, end of data, an extra filemark.
(set -e
  mt -f $ST1 status
  mt -f $ST1 rewind
  for p in a b c; do tar -cf $ST1 -C /tmp/src $p; done
  mt -f $ST1 status | tee /tmp/st; grep -q "File number=3" /tmp/st
  mt -f $ST1 rewind; tar -xf $ST1 -C /tmp/out
  mt -f $ST1 rewind; mt -f $ST1 fsf 2; tar -xf $ST1 -C /tmp/out
  mt -f $ST1 bsf 2; mt -f $ST1 fsf 1; tar -xf $ST1 -C /tmp/out
  mt -f $ST1 eod; mt -f $ST1 weof 1; tar -cf $ST1 -C /tmp/src d
  mt -f $ST1 rewind; mt -f $ST1 fsf 4; tar -xf $ST1 -C /tmp/out
  mt -f $ST1 rewind; mt -f $ST1 fsf 3; ! tar -tf $ST1 2>/dev/null | grep -q .
); res mt $?
(cd /tmp/out && find . -type f | sort | xargs sha256sum) > /tmp/out.sums; cat /tmp/out.sums
cmp /tmp/src.sums /tmp/out.sums; res tar $?

# mtx: slot 1 into the drive, written, back, moved, loaded again and read.
(set -e
  mtx -f $SG status
  mtx -f $SG load 1 0
  mt -f $ST3 status | grep -q ONLINE
  mt -f $ST3 rewind; tar -cf $ST3 -C /tmp/src c; mt -f $ST3 rewind
  mt -f $ST3 offline
  mtx -f $SG unload 1 0
  mtx -f $SG transfer 1 4
  mtx -f $SG load 4 0
  tar -tf $ST3 | grep -q '^c/s'
  mt -f $ST3 offline
  mtx -f $SG unload 4 0
  mtx -f $SG status | tee /tmp/mtx
  grep -q 'Storage Element 4:Full' /tmp/mtx; grep -q 'Storage Element 1:Empty' /tmp/mtx
  mtx -f $SG transfer 4 1
); res mtx $?

# Bacula's btape: test on the first drive (it writes some 1.3 GB); fill on the library's drive, the multiple
# tape test: it labels and fills TestVolume1 (slot 1), at its end labels TestVolume2 (slot 2) and writes on,
# then reads the first and the second back. The script is the operator: at each prompt it moves the
# cartridge asked for into the drive with mtx, then presses return. What is asked for is read from the
# prompt, not from how many came before (btape also asks for a volume by name when the drive holds one
# with another label): a blank volume is TestVolume1 until the first cartridge is full ("End of tape"),
# TestVolume2 after; the first tape is slot 1, the second slot 2.
mkdir -p /tmp/bacula
cat > /tmp/bacula/sd1.conf <<EOF
${BACULA_CONF('$ST1')}EOF
cat > /tmp/bacula/sd3.conf <<EOF
${BACULA_CONF('$ST3')}EOF
if [ "$BTAPE" = 1 ]; then
mt -f $ST1 rewind
printf 'test\\nquit\\n' | timeout 600 btape -c /tmp/bacula/sd1.conf Tape > /tmp/btape-test 2>&1; rc=$?
grep -v Orphaned /tmp/btape-test | tail -30
[ $rc = 0 ] && ! grep -qE 'ERR=|Error|Fatal' /tmp/btape-test && grep -q 'End Forward space files test' /tmp/btape-test; res btape-test $?
swap() {
  cur=$(mtx -f $SG status | sed -n 's/^Data Transfer Element 0:Full (Storage Element \\([0-9]*\\) Loaded).*/\\1/p')
  [ "$cur" = "$1" ] && return
  [ -n "$cur" ] && { mt -f $ST3 offline; mtx -f $SG unload $cur 0; }
  mtx -f $SG load $1 0
}
swap 1
rm -f /tmp/bin; mkfifo /tmp/bin
trap '' PIPE # btape may be gone when the last answer goes to it
# stdbuf: some prompts go to a buffered stdout; the operator must see them while btape waits.
timeout 900 stdbuf -o0 btape -c /tmp/bacula/sd3.conf Tape < /tmp/bin > /tmp/btape-fill 2>&1 &
pid=$!
exec 3>/tmp/bin
printf 'fill\\nm\\n' >&3
PROMPTS='Mount (blank Volume|Volume "[^"]*"|second Volume|first tape|second tape)'
answered=0
for i in $(seq 1800); do
  kill -0 $pid 2>/dev/null || break
  n=$(grep -oE "$PROMPTS" /tmp/btape-fill | wc -l)
  if [ "$n" -gt "$answered" ]; then
    answered=$((answered + 1))
    p=$(grep -oE "$PROMPTS" /tmp/btape-fill | sed -n "\${answered}p")
    case "$p" in
      'Mount blank Volume') if grep -q 'End of tape [0-9]' /tmp/btape-fill; then s=2; else s=1; fi;;
      *TestVolume1*|*'first tape') s=1;;
      *) s=2;;
    esac
    sleep 1 # btape closes the drive after printing its prompt
    swap $s; echo "operator: $p -> slot $s ($?)"
    echo >&3 2>/dev/null
  fi
  grep -qE 'Test succeeded|do_unfill failed|Error during test' /tmp/btape-fill && { echo quit >&3 2>/dev/null; }
  sleep 0.5
done
exec 3>&-
wait $pid
grep -vE 'Orphaned|Last block at|End of tape 1:0' /tmp/btape-fill | tail -60
grep -q 'The last block on the second tape matches. Test succeeded' /tmp/btape-fill && ! grep -q 'Fatal' /tmp/btape-fill; res btape-fill $?
mt -f $ST3 offline; mtx -f $SG unload 2>/dev/null
fi

# sr: mount the disc, checksums; the operator ejects and inserts another; it mounts.
mkdir -p /mnt/cd
(set -e; mount -t iso9660 -o ro /dev/sr0 /mnt/cd; cd /mnt/cd; sha256sum -c --quiet ${join(dir, 'one.sums')}; cd /; umount /mnt/cd); res sr-mount $?
echo EJECT-NOW
for i in $(seq 60); do sg_turs /dev/sr0 >/dev/null 2>&1 || break; sleep 0.5; done
sg_turs /dev/sr0 >/dev/null 2>&1; [ $? != 0 ]; res sr-eject-seen $?
echo INSERT-NOW
ok=1
for i in $(seq 60); do
  if mount -t iso9660 -o ro /dev/sr0 /mnt/cd 2>/dev/null; then
    (cd /mnt/cd && sha256sum -c --quiet ${join(dir, 'two.sums')} >/dev/null 2>&1) && ok=0; umount /mnt/cd; [ $ok = 0 ] && break
  fi
  sleep 0.5
done
res sr-insert $ok
echo CHECKS-DONE
`;

interface Media {
  eject(): Promise<void>;
  insert(): Promise<void>;
}

/** Boots the guest with the given devices, changes the disc when it asks; returns each check's outcome. */
async function run(qemuArgs: string[], media: Media, sharedMemory: boolean, btape: boolean): Promise<{ results: Map<string, boolean>; output: string }> {
  const g = startGuest({ script: `BTAPE=${btape ? 1 : 0}\n${SCRIPT}`, qemuArgs, sharedMemory, memoryMiB: 768, timeoutMs: 1_500_000 });
  await g.waitFor(/EJECT-NOW/, 1_400_000);
  await media.eject().catch((e) => console.log(`eject: ${(e as Error).message}`));
  await g.waitFor(/INSERT-NOW/, 60_000);
  await media.insert().catch((e) => console.log(`insert: ${(e as Error).message}`));
  const r = await g.done;
  const results = new Map<string, boolean>();
  for (const m of r.output.matchAll(/RESULT (\S+) (PASS|FAIL)/g)) results.set(m[1], m[2] === 'PASS');
  return { results, output: r.output };
}

const CHECKS = ['bind-st', 'bind-ch', 'bind-sr', 'mt', 'tar', 'mtx', 'btape-test', 'btape-fill', 'sr-mount', 'sr-eject-seen', 'sr-insert'];
const table = new Map<string, Map<string, boolean>>();

after(() => {
  const cols = [...table.keys()];
  const lines = [`| check | ${cols.join(' | ')} |`, `| --- | ${cols.map(() => '---').join(' | ')} |`];
  for (const c of CHECKS) lines.push(`| ${c} | ${cols.map((k) => (table.get(k)!.get(c) === undefined ? '—' : table.get(k)!.get(c) ? 'pass' : 'FAIL')).join(' | ')} |`);
  console.log(lines.join('\n'));
});

const LUNS = '[ { index: 1, storage_object: /backstores/tape/solo }, { index: 2, storage_object: /backstores/changer/lib }, ' +
  '{ index: 3, storage_object: /backstores/tape/drive }, { index: 4, storage_object: /backstores/optical/cd } ]';

/** tsiod serving the library on both fabrics, from fresh cartridges in tapes. */
function tsiodConfig(port: number, sock: string, tapes: string): string {
  return `storage_objects:
  - { name: solo, plugin: tape, dev: ${tapes}, cartridge: SOLO01, capacity: ${SOLO_MB}MiB }
  - { name: lib, plugin: changer, dev: ${tapes}, drives: drive, slots: 4, cartridges: "LIB001,LIB002", capacity: ${MB}MiB }
  - { name: drive, plugin: tape, dev: ${tapes} }
  - { name: cd, plugin: optical, dev: ${iso.one} }
targets:
  - fabric: iscsi
    wwn: ${IQN}
    tpgs:
      - tag: 1
        attributes: { generate_node_acls: true, demo_mode_write_protect: false, authentication: false }
        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]
        luns: ${LUNS}
  - fabric: vhost
    wwn: naa.5001405000000014
    tpgs:
      - tag: 1
        socket: ${sock}
        luns: ${LUNS}
`;
}

/** QEMU's iSCSI driver for each LUN: tapes and changer passed through as SCSI generic devices, the CD/DVD as scsi-block. */
function iscsiDevices(port: number): string[] {
  const dev = (l: number, kind: string) => [
    '-drive', `file=iscsi://127.0.0.1:${port}/${IQN}/${l},if=none,id=l${l},format=raw`,
    '-device', `${kind},drive=l${l},bus=s0.0,channel=0,scsi-id=0,lun=${l}`,
  ];
  return ['-device', 'virtio-scsi-pci,id=s0', ...dev(1, 'scsi-generic'), ...dev(2, 'scsi-generic'), ...dev(3, 'scsi-generic'), ...dev(4, 'scsi-block')];
}

/** A tsiod of its own for one run, with the disc changes of its control API. */
async function tsiod(name: string): Promise<{ d: Daemon; sock: string; media: Media }> {
  const home = join(dir, name);
  mkdirSync(join(home, 'tapes'), { recursive: true });
  const sock = join(home, 'vhost.sock');
  const d = await startTsiod((port) => tsiodConfig(port, sock, join(home, 'tapes')), { dir: home });
  const call = async (method: string, params: object) => {
    const r = await controlRpc(d.sock, method, params);
    if (r.error) throw new Error(r.error.message);
  };
  const path = '/backstores/optical/cd';
  return { d, sock, media: { eject: () => call('optical.eject', { path }), insert: () => call('optical.insert', { path, image: iso.two }) } };
}

function record(name: string, r: { results: Map<string, boolean>; output: string }): void {
  table.set(name, r.results);
  console.log(`--- ${name}\n${r.output.split('\n').filter((l) => !l.includes('Orphaned buffer')).join('\n').slice(-12000)}`);
}

/** Every check passed (btape's only where it ran: it writes 1.5 GB, once per target is enough). */
function assertAllPass(r: { results: Map<string, boolean>; output: string }, log: string, btape = true): void {
  const failed = CHECKS.filter((c) => (btape || !c.startsWith('btape')) && r.results.get(c) !== true);
  assert.deepEqual(failed, [], `${r.output.slice(-8000)}\n--- tsiod:\n${log.slice(-3000)}`);
}

test(`tsiod over iSCSI: st, ch and sr bind; mt, tar, mtx, ${SOAK ? 'btape test and fill, ' : ''}an ISO mounts, eject and insert seen`, { timeout: 1_800_000 }, async () => {
  const t = await tsiod('iscsi');
  try {
    const r = await run(iscsiDevices(t.d.port), t.media, false, SOAK);
    record('tsio iSCSI', r);
    assertAllPass(r, t.d.log(), SOAK);
  } finally {
    assert.equal(await t.d.stop(), 0);
  }
});

test(`tsiod over vhost-user-scsi: the same checks${SOAK ? '' : ' but btape'}`, { timeout: 1_800_000 }, async () => {
  const t = await tsiod('vhost');
  try {
    const r = await run(['-chardev', `socket,path=${t.sock},id=vus`, '-device', 'vhost-user-scsi-pci,chardev=vus'], t.media, true, SOAK);
    record('tsio vhost-user', r);
    assertAllPass(r, t.d.log(), SOAK);
  } finally {
    assert.equal(await t.d.stop(), 0);
  }
});

if (SOAK) test('tgtd (ssc, smc, mmc) over iSCSI: the same checks, for the table', { timeout: 1_800_000 }, async () => {
  const port = await freePort();
  const tapes = join(dir, 'tgt');
  mkdirSync(tapes);
  const t: Tgtd = await startTgtd(port, IQN);
  try {
    tgtLibrary(t, tapes, 'SOLO01', ['LIB001', 'LIB002'], iso.one, MB, SOLO_MB);
    // tgtd takes a disc out by taking the LUN offline, and puts one in with a new path, online again.
    const media: Media = {
      eject: async () => void t.adm(['--op', 'update', '--mode', 'logicalunit', '--tid', '1', '--lun', '4', '--params', 'online=0']),
      insert: async () => {
        t.adm(['--op', 'update', '--mode', 'logicalunit', '--tid', '1', '--lun', '4', '--params', `path=${iso.two}`]);
        t.adm(['--op', 'update', '--mode', 'logicalunit', '--tid', '1', '--lun', '4', '--params', 'online=1']);
      },
    };
    record('tgtd iSCSI', await run(iscsiDevices(port), media, false, true));
  } finally {
    t.stop();
  }
});
