// A Linux guest's own tool agrees with our persistent reservations: one
// rd_mcp LU exported by two vhost targets (two TPG sockets, two nexus WWNs);
// the guest sees it twice (same serial), as two I_T nexuses, and drives
// sg_persist (sg3-utils) through register, reserve, read keys / reservation /
// full status, a conflicting write, preempt, release and clear.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { runGuest } from './util/guest';
import { startTsiod, type Daemon } from './util/tsiod';

const SERIAL = '3c4d5e6f-7081-92a3-b4c5-d6e7f8091a2b';
const NEXUS_A = 'naa.5001405aaaaaaaa1';
const NEXUS_B = 'naa.5001405bbbbbbbb2';

let d: Daemon | undefined;
after(async () => {
  await d?.stop();
});

function target(wwn: string, nexus: string, sock: string): string[] {
  return [
    '  - fabric: vhost',
    `    wwn: ${wwn}`,
    '    tpgs:',
    '      - tag: 1',
    `        socket: ${sock}`,
    `        nexus: ${nexus}`,
    '        luns:',
    '          - { index: 0, storage_object: /backstores/rd_mcp/shared }',
  ];
}

/** tsiod with both targets; resolves with their sockets. */
async function startDaemon(): Promise<[string, string]> {
  d = await startTsiod((_port, dir) =>
    [
      'storage_objects:',
      `  - { name: shared, plugin: rd_mcp, size: 16MiB, wwn: ${SERIAL} }`,
      'targets:',
      ...target('naa.5001405000000a01', NEXUS_A, join(dir, 'a.sock')),
      ...target('naa.5001405000000b02', NEXUS_B, join(dir, 'b.sock')),
      '',
    ].join('\n'),
  );
  return [join(d.dir, 'a.sock'), join(d.dir, 'b.sock')];
}

/** Runs one step in the guest between markers, so the test can pick each output apart. */
const step = (name: string, cmd: string): string => `echo "== ${name}"; ${cmd} 2>&1; echo "== ${name} rc=$?"`;

function section(out: string, name: string): { text: string; rc: number } {
  const m = new RegExp(`== ${name}\\r?\\n([\\s\\S]*?)== ${name} rc=(\\d+)`).exec(out);
  assert.ok(m, `no output of step ${name}`);
  return { text: m[1].replace(/\r/g, ''), rc: Number(m[2]) };
}

test('sg_persist in a guest: register, reserve, keys, full status, conflict, preempt, release, clear', { timeout: 150_000 }, async () => {
  const [sockA, sockB] = await startDaemon();
  const r = await runGuest({
    sharedMemory: true,
    memoryMiB: 512,
    timeoutMs: 100_000,
    qemuArgs: [
      '-chardev', `socket,path=${sockA},id=va`, '-device', 'vhost-user-scsi-pci,chardev=va',
      '-chardev', `socket,path=${sockB},id=vb`, '-device', 'vhost-user-scsi-pci,chardev=vb',
    ],
    script: [
      // The refused write logs a kernel error; off the console, it cannot land inside sg_persist's output.
      'echo 1 > /proc/sys/kernel/printk',
      'echo GUEST-UP; ls /sys/block',
      'for i in $(seq 100); do [ "$(ls /sys/block | grep -c "^sd")" -ge 2 ] && break; sleep 0.1; done',
      // Tell the two paths apart by the target port each one reports.
      'for d in /sys/block/sd*; do n=/dev/$(basename $d); p=$(sg_vpd -p di $n | grep -o "naa\\.5001405000000[ab]0[12]"); echo "PATH $n $p";',
      '  case $p in *a01) A=$n;; *b02) B=$n;; esac; done',
      'echo "SERIALS $(sg_vpd -p sn $A | grep -o "[0-9a-f-]\\{36\\}") $(sg_vpd -p sn $B | grep -o "[0-9a-f-]\\{36\\}")"',
      step('regA', 'sg_persist --out --register --param-sark=0xaaaa $A'),
      step('regB', 'sg_persist --out --register --param-sark=0xbbbb $B'),
      step('keys', 'sg_persist --in -k $A'),
      step('reserve', 'sg_persist --out --reserve --param-rk=0xaaaa --prout-type=1 $A'),
      step('resv', 'sg_persist --in -r $B'),
      step('status', 'sg_persist --in -s $A'),
      step('writeB', 'dd if=/dev/zero of=$B bs=4096 count=1 oflag=direct status=none'),
      step('readB', 'dd if=$B of=/dev/null bs=4096 count=1 iflag=direct status=none'),
      step('writeA', 'dd if=/dev/zero of=$A bs=4096 count=1 oflag=direct status=none'),
      step('preempt', 'sg_persist --out --preempt --param-rk=0xbbbb --param-sark=0xaaaa --prout-type=1 $B'),
      step('keys2', 'sg_persist --in -k $B'),
      // A's registration was preempted: its next command reports that first.
      step('ua', 'sg_persist --in -r $A'),
      step('resv2', 'sg_persist --in -r $A'),
      step('writeA2', 'dd if=/dev/zero of=$A bs=4096 count=1 oflag=direct status=none'),
      step('release', 'sg_persist --out --release --param-rk=0xbbbb --prout-type=1 $B'),
      step('resv3', 'sg_persist --in -r $B'),
      step('clear', 'sg_persist --out --clear --param-rk=0xbbbb $B'),
      step('keys3', 'sg_persist --in -k $A'),
      'echo PR-GUEST-DONE',
    ].join('\n'),
  });
  const out = r.output;
  const ctx = `${out.slice(-6000)}\n--- tsiod:\n${d!.log().slice(-2000)}`;
  assert.equal(r.exitCode, 0, ctx);
  assert.match(out, /PR-GUEST-DONE/, ctx);
  assert.match(out, new RegExp(`SERIALS ${SERIAL} ${SERIAL}`), `one LU on both paths\n${ctx}`);
  const ok = (name: string): string => {
    const s = section(out, name);
    assert.equal(s.rc, 0, `${name}:\n${s.text}`);
    return s.text;
  };
  const lines = (text: string): string[] => text.split('\n').map((l) => l.trim()).filter((l) => l && !/TSIO|Peripheral device type/.test(l));
  ok('regA');
  ok('regB');
  assert.deepEqual(lines(ok('keys')), ['PR generation=0x2, 2 registered reservation keys follow:', '0xaaaa', '0xbbbb']);
  ok('reserve');
  // RESERVE does not bump the generation (SPC-5 6.16.2).
  assert.deepEqual(lines(ok('resv')), ['PR generation=0x2, Reservation follows:', 'Key=0xaaaa', 'scope: LU_SCOPE,  type: Write Exclusive']);
  assert.deepEqual(lines(ok('status')), [
    'PR generation=0x2',
    'Key=0xaaaa', 'All target ports bit clear', 'Relative port address: 0x1', '<< Reservation holder >>',
    'scope: LU_SCOPE,  type: Write Exclusive', 'Transport Id of initiator:', `SAS address: 0x${NEXUS_A.slice(4)}`,
    'Key=0xbbbb', 'All target ports bit clear', 'Relative port address: 0x1', 'not reservation holder',
    'Transport Id of initiator:', `SAS address: 0x${NEXUS_B.slice(4)}`,
  ]);
  // Write Exclusive: the registered non-holder may read but not write; Linux
  // maps RESERVATION CONFLICT to EBADE ("Invalid exchange").
  const wb = section(out, 'writeB');
  assert.notEqual(wb.rc, 0, 'write from the non-holder must fail');
  assert.match(wb.text, /Invalid exchange/, wb.text);
  assert.equal(section(out, 'readB').rc, 0, 'read from the non-holder');
  assert.equal(section(out, 'writeA').rc, 0, 'write from the holder');
  ok('preempt');
  assert.deepEqual(lines(ok('keys2')), ['PR generation=0x3, 1 registered reservation key follows:', '0xbbbb']);
  const ua = section(out, 'ua');
  assert.notEqual(ua.rc, 0);
  assert.match(ua.text, /Sense key: Unit Attention\s*\nAdditional sense: Registrations preempted/, ua.text);
  assert.deepEqual(lines(ok('resv2')), ['PR generation=0x3, Reservation follows:', 'Key=0xbbbb', 'scope: LU_SCOPE,  type: Write Exclusive']);
  const wa2 = section(out, 'writeA2');
  assert.notEqual(wa2.rc, 0, 'the preempted initiator may no longer write');
  assert.match(wa2.text, /Invalid exchange/, wa2.text);
  ok('release');
  // RELEASE keeps the generation; CLEAR bumps it and drops every key.
  assert.deepEqual(lines(ok('resv3')), ['PR generation=0x3, there is NO reservation held']);
  ok('clear');
  assert.deepEqual(lines(ok('keys3')), ['PR generation=0x4, there are NO registered reservation keys']);
});
