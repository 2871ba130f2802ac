// tcli in batch use against a real tsiod: a script builds a configuration,
// saveconfig + restart from the saved file gives an identical `ls`, errors are
// one line with a non-zero exit.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTsiod, tcli, type Daemon } from './util/tsiod';
import { VhostUserFrontend } from '../tools/vhost-frontend/frontend';

const IQN = 'iqn.2026-11.org.tsio:batch';
const INIT = 'iqn.2026-11.org.example:host1';
const dirs: string[] = [];
const daemons: Daemon[] = [];

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'tsio-tcli-'));
  dirs.push(d);
  return d;
}

after(async () => {
  for (const d of daemons) await d.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The script the interactive test types too. */
export function buildScript(dir: string, port: number): string {
  return [
    '# a RAM disk and a file, exported over iSCSI to one initiator',
    '/backstores/rd_mcp create ram0 64MiB',
    `/backstores/fileio create name=disk0 file_or_dev=${join(dir, 'disk0.img')} size=16MiB write_back=false`,
    `/iscsi create ${IQN}`,
    `cd /iscsi/${IQN}/tpg1`,
    'luns/ create /backstores/rd_mcp/ram0',
    'luns create /backstores/fileio/disk0 lun=1',
    `acls create ${INIT}`,
    `acls/${INIT} set auth userid=host1 password=host1secret12`,
    `portals create 127.0.0.1 ${port}`,
    'set attribute authentication=true',
    'set parameter MaxBurstLength=131072',
    '/backstores/rd_mcp/ram0 set attribute emulate_tpu=true',
    'cd /',
    '',
  ].join('\n');
}

test('batch: a script builds the configuration; ls shows it; saveconfig, restart from the file, ls is identical', async () => {
  const dir = tmp();
  const d = await startTsiod('', { dir });
  daemons.push(d);
  const port = 23000 + (process.pid % 10000);
  const script = join(dir, 'build.tcli');
  writeFileSync(script, buildScript(dir, port));
  let r = tcli(d.sock, ['-f', script]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /Created rd_mcp storage object ram0\./);
  assert.match(r.stdout, /Created LUN 1\./);
  assert.match(r.stdout, /Created network portal 127\.0\.0\.1:\d+\./);
  const ls1 = tcli(d.sock, ['ls']);
  assert.equal(ls1.status, 0, ls1.stderr);
  assert.match(ls1.stdout, /^o- \/ \.+ \[\.\.\.\]$/m);
  assert.match(ls1.stdout, /o- ram0 \.+ \[\(64\.0MiB\) activated\]/);
  assert.match(ls1.stdout, /o- disk0 \.+ \[.*disk0\.img \(16\.0MiB\) write-thru activated\]/);
  assert.match(ls1.stdout, new RegExp(`o- ${IQN.replace(/\./g, '\\.')} \\.+ \\[TPGs: 1\\]`));
  assert.match(ls1.stdout, /o- tpg1 \.+ \[no-gen-acls, auth per-acl, sessions: 0\]/);
  assert.match(ls1.stdout, /o- mapped_lun1 \.+ \[lun1 fileio\/disk0 \(rw\)\]/);
  assert.match(ls1.stdout, new RegExp(`o- 127\\.0\\.0\\.1:${port} \\.+ \\[OK\\]`));
  // The values reached the daemon.
  r = tcli(d.sock, [`/iscsi/${IQN}/tpg1`, 'get', 'parameter', 'MaxBurstLength']);
  assert.equal(r.stdout.trim(), 'MaxBurstLength=131072');
  r = tcli(d.sock, ['--json', `/iscsi/${IQN}/tpg1/acls/${INIT}`, 'get', 'auth', 'userid']);
  assert.deepEqual(JSON.parse(r.stdout), { userid: 'host1' });

  const saved = join(dir, 'saved.yaml');
  r = tcli(d.sock, ['saveconfig', saved]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(statSync(saved).mode & 0o777, 0o600);
  assert.match(readFileSync(saved, 'utf8'), /password: host1secret12/);
  await d.stop();

  const d2 = await startTsiod({ file: saved });
  daemons.push(d2);
  const ls2 = tcli(d2.sock, ['ls']);
  assert.equal(ls2.stdout, ls1.stdout);
  // Started from saved.yaml, its own saveconfig file does not exist yet: status says so, never "saved".
  r = tcli(d2.sock, ['status']);
  assert.match(r.stdout, /config not saved: .*etc\/saveconfig\.yaml does not exist yet/);
  assert.equal(tcli(d2.sock, ['saveconfig']).status, 0);
  assert.match(tcli(d2.sock, ['status']).stdout, /config saved: .*etc\/saveconfig\.yaml holds the running configuration/);
});

test('batch: errors are one line on stderr with a non-zero exit; a script stops at its first error', async () => {
  const dir = tmp();
  const d = await startTsiod('storage_objects:\n  - { name: ram0, plugin: rd_mcp, size: 1MiB }\ntargets: []\n', { dir });
  daemons.push(d);
  const cases: [string[], RegExp][] = [
    [['lsx'], /^tcli: command not found: lsx \(did you mean ls\?\)\n$/],
    [['/nowhere', 'ls'], /^tcli: no such path \/nowhere\n$/],
    [['/backstores/rd_mcp/ram0', 'set', 'attribute', 'queue_depth=0'], /^tcli: \/backstores\/rd_mcp\/ram0: attribute queue_depth: must be between 1 and 65535, not 0\n$/],
    [['/backstores/rd_mcp/ram0', 'set', 'attribute', 'queue_dept=4'], /^tcli: unknown parameter queue_dept in group 'attribute' \(did you mean queue_depth\?\)\n$/],
    [['/backstores/rd_mcp', 'create', 'ram0', '1MiB'], /^tcli: storage object \/backstores\/rd_mcp\/ram0 already exists\n$/],
    [['/iscsi', 'create', 'iqn.bad'], /^tcli: \/iscsi\/iqn\.bad: wwn: .*\n$/],
    [['clearconfig'], /^tcli: clearconfig removes everything: run it as clearconfig confirm=true\n$/],
    [['/backstores', 'create', 'x'], /^tcli: create is not available at \/backstores/],
  ];
  for (const [args, re] of cases) {
    const r = tcli(d.sock, args);
    assert.equal(r.status, 1, args.join(' '));
    assert.match(r.stderr, re, args.join(' '));
    assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
  }
  const script = join(dir, 's.tcli');
  writeFileSync(script, '/backstores/rd_mcp create ram1 1MiB\n/backstores/rd_mcp crate ram2 1MiB\n/backstores/rd_mcp create ram3 1MiB\n');
  const r = tcli(d.sock, ['-f', script]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /s\.tcli:2: command not found: crate \(did you mean create\?\)/);
  const ls = tcli(d.sock, ['/backstores/rd_mcp', 'ls']).stdout;
  assert.match(ls, /ram1/);
  assert.doesNotMatch(ls, /ram3/, 'the script stopped at its error');
  // Commands on stdin are a script too.
  const s = tcli(d.sock, [], { input: 'cd /backstores/rd_mcp\npwd\n' });
  assert.equal(s.status, 0, s.stderr);
  assert.equal(s.stdout.trim(), '/backstores/rd_mcp');
  // Bookmarks persist in TCLI_HOME and stand for paths in later runs.
  const env = { TCLI_HOME: join(dir, 'home') };
  assert.equal(tcli(d.sock, ['/backstores/rd_mcp', 'bookmarks', 'add', 'rd'], { env }).status, 0);
  assert.equal(tcli(d.sock, ['@rd', 'pwd'], { env }).stdout.trim(), '/backstores/rd_mcp');
  assert.match(tcli(d.sock, ['bookmarks', 'show'], { env }).stdout, /@rd: \/backstores\/rd_mcp/);
  assert.match(tcli(d.sock, ['cd', '@rdx'], { env }).stderr, /^tcli: no bookmark @rdx \(did you mean @rd\?\)/);
  assert.equal(tcli(d.sock, ['sessions'], { env }).stdout.trim(), '(no open sessions)');
  // No daemon: one line, exit 1.
  const none = tcli(join(dir, 'absent.sock'), ['ls']);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /^tcli: cannot reach tsiod at .*absent\.sock: no such socket/);
});

test('tcli help prints the manual, its parameter texts from the spec files; --json ls is JSON', async () => {
  const r = tcli('/nonexistent', ['help']);
  assert.equal(r.status, 0);
  assert.match(r.stdout, /^TCLI\(8\)/);
  assert.match(r.stdout, /emulate_tpu +bool default false\n +Thin provisioning: UNMAP allowed \(VPD B2 LBPU\)\./);
  assert.match(r.stdout, /MaxBurstLength +int \[512\.\.16777215\] default 262144/);
  assert.match(r.stdout, /\/backstores\/rd_mcp create name size \[nullio\] \[block_size\] \[physical_block_size\] \[wwn\]/);
  const dir = tmp();
  const d = await startTsiod('storage_objects:\n  - { name: ram0, plugin: rd_mcp, size: 1MiB }\ntargets: []\n', { dir });
  daemons.push(d);
  const j = tcli(d.sock, ['--json', 'ls', '/backstores']);
  const tree = JSON.parse(j.stdout);
  assert.equal(tree.path, '/backstores');
  assert.equal(tree.children[0].children[0].path, '/backstores/rd_mcp/ram0');
  const info = tcli(d.sock, ['/backstores/rd_mcp/ram0', 'info']);
  assert.match(info.stdout, /size: 1\.0MiB \(1048576 bytes\), block size 512/);
  assert.match(info.stdout, /commands: 0 \(reads 0, writes 0, errors 0\)/);
  assert.match(info.stdout, /latency µs: avg 0, p50 0/);
  const h = tcli(d.sock, ['/backstores/rd_mcp/ram0', 'help', 'attribute']);
  assert.match(h.stdout, /queue_depth +int \[1\.\.65535\] default 128/);
});

test('vhost: ls shows a WWN as one controller (its socket), each TPG a virtio target, LUNs at H:0:T:L; info shows socket, target, device, num_queues and the front-end with what it negotiated', async () => {
  const dir = tmp();
  const sock = join(dir, 'vm.sock');
  const blkSock = join(dir, 'blk.sock');
  const WWN = 'naa.5001405000000071';
  const d = await startTsiod(
    [
      'storage_objects:',
      '  - { name: a, plugin: rd_mcp, size: 4MiB }',
      '  - { name: b, plugin: rd_mcp, size: 4MiB }',
      'targets:',
      '  - fabric: vhost',
      `    wwn: ${WWN}`,
      '    tpgs:',
      `      - { tag: 1, socket: ${sock}, num_queues: 1, luns: [ { index: 0, storage_object: /backstores/rd_mcp/a } ] }`,
      `      - { tag: 2, socket: ${sock}, num_queues: 1, target: 3, luns: [ { index: 5, storage_object: /backstores/rd_mcp/b } ] }`,
      '  - fabric: vhost',
      '    wwn: naa.5001405000000072',
      `    tpgs: [ { tag: 1, socket: ${blkSock}, device: blk, num_queues: 2, luns: [ { index: 0, storage_object: /backstores/rd_mcp/a } ] } ]`,
      '',
    ].join('\n'),
    { dir },
  );
  daemons.push(d);
  const before = tcli(d.sock, ['ls', `/vhost/${WWN}`]);
  assert.equal(before.status, 0, before.stderr);
  assert.match(before.stdout, new RegExp(`o- ${WWN} \\.+ \\[TPGs: 2, controller ${sock.replace(/[.]/g, '\\.')}\\]`));
  assert.match(before.stdout, /o- tpg1 \.+ \[gen-acls, target 0, no front-end, sessions: 0\]/);
  assert.match(before.stdout, /o- tpg2 \.+ \[gen-acls, target 3, no front-end, sessions: 0\]/);
  assert.match(before.stdout, /o- lun0 \.+ \[H:0:0:0 rd_mcp\/a\]/);
  assert.match(before.stdout, /o- lun5 \.+ \[H:0:3:5 rd_mcp\/b\]/);
  assert.match(tcli(d.sock, ['ls', '/vhost/naa.5001405000000072']).stdout, /o- lun0 \.+ \[virtio-blk disk rd_mcp\/a\]/);
  // A front-end negotiating as QEMU 7.2's vhost-user-scsi: INFLIGHT_SHMFD acked, no records kept.
  const fe = new VhostUserFrontend(sock, { memory: 8 * 1024 * 1024, inflight: 'acked' });
  try {
    fe.negotiate(3);
    fe.start(64);
    const ls = tcli(d.sock, ['ls', `/vhost/${WWN}`]);
    assert.match(ls.stdout, /o- tpg2 \.+ \[gen-acls, target 3, front-end cannot reconnect, sessions: 1\]/);
    const info = tcli(d.sock, [`/vhost/${WWN}/tpg2`, 'info']);
    assert.equal(info.status, 0, info.stderr);
    assert.match(info.stdout, new RegExp(`socket: ${sock.replace(/[.]/g, '\\.')} \\(one virtio-scsi controller\\)`));
    assert.match(info.stdout, /target: 3 \(the guest's H:0:3:LUN\)\n/);
    assert.match(info.stdout, /device: scsi\n/);
    assert.match(info.stdout, /num_queues: 1\n/);
    assert.match(info.stdout, /front-ends: 1\n +connection \d+ since [0-9T:.-]+Z: 3 queues running/);
    assert.match(info.stdout, /protocol features: MQ, REPLY_ACK, INFLIGHT_SHMFD, RESET_DEVICE, CONFIGURE_MEM_SLOTS\n/);
    assert.match(info.stdout, /inflight: no, cannot reconnect \(if tsiod stops/);
    assert.match(info.stdout, /\n {4}requests: 0, kicks: 0, calls: 0\n/, 'a front-end that sent nothing yet');
    const j = JSON.parse(tcli(d.sock, ['--json', `/vhost/${WWN}/tpg1`, 'info']).stdout);
    assert.equal(j.vhost.target, 0);
    assert.equal(j.vhost.serving, true);
    assert.equal(j.vhost.frontends[0].inflight, false);
    assert.equal(j.vhost.frontends[0].reconnects, 'no');
  } finally {
    fe.close();
  }
  // A front-end keeping in-flight records (QEMU 7.2's vhost-user-blk) can reconnect.
  const blk = new VhostUserFrontend(blkSock, { memory: 8 * 1024 * 1024, inflight: 'kept' });
  try {
    blk.negotiate(2);
    blk.start(64);
    const info = tcli(d.sock, ['/vhost/naa.5001405000000072/tpg1', 'info']);
    assert.match(info.stdout, /device: blk\n/);
    assert.match(info.stdout, /num_queues: 2\n/);
    assert.match(info.stdout, /inflight: yes, can reconnect \(survives/);
    assert.match(tcli(d.sock, ['ls', '/vhost/naa.5001405000000072']).stdout, /o- tpg1 \.+ \[gen-acls, virtio-blk, front-end can reconnect, sessions: 1\]/);
    assert.doesNotMatch(info.stdout, /^target:/m, 'a virtio-blk disk has no target');
  } finally {
    blk.close();
  }
});
