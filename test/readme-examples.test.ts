// The README's examples, as written: each YAML block is started by tsiod and
// each tcli line is run, then something writes to every LUN they export (an
// iSCSI initiator, or a vhost-user front-end for a vhost TPG) and reads it
// back. Only what cannot be taken as is here is changed, and said below:
// port 3260 becomes a free port, /run/tsio/ a folder of the test's own, the
// rbd example's cluster (/tmp/ceph) the shared test cluster, its image a fresh one.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../app/config/config';
import { freePort, startTsiod, tcli, type Daemon } from './util/tsiod';
import { RawInitiator } from './util/iscsi-initiator';
import { ceph } from './util/ceph';
import { ScsiSlot, VhostUserFrontend, type DriverQueue, type ScsiResult } from '../tools/vhost-frontend/frontend';

const README = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8');
const dirs: string[] = [];
const daemons: Daemon[] = [];

after(async () => {
  for (const d of daemons) await d.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function blocks(lang: string): string[] {
  return [...README.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]);
}

/** What the test changes of an example: the port, and /run/tsio. */
function localize(text: string, port: number, dir: string): string {
  return text.replace(/\b3260\b/g, String(port)).replace(/\/run\/tsio\//g, `${dir}/`);
}

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'tsio-readme-'));
  dirs.push(d);
  return d;
}

const WRITE = (lba: number, blocks: number) => [0x2a, 0, lba >>> 24, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, 0, blocks, 0];
const READ = (lba: number, blocks: number) => [0x28, 0, lba >>> 24, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, 0, blocks, 0];

/** Logs in as initiator, and writes then reads back 8 blocks on each LUN, clearing the first unit attention. */
async function writeOverIscsi(port: number, target: string, luns: number[], initiator?: string): Promise<void> {
  const i = await RawInitiator.connect(port);
  try {
    await i.login(target, {}, initiator);
    for (const lun of luns) {
      await i.command([0, 0, 0, 0, 0, 0], { lun });
      const data = Buffer.alloc(8 * 512, 0x40 + lun);
      const w = await i.command(WRITE(8, 8), { write: data, lun });
      assert.equal(w.status, 0, `LUN ${lun}: WRITE(10) status ${w.status} sense ${w.sense?.toString('hex')}`);
      const r = await i.command(READ(8, 8), { read: data.length, lun });
      assert.equal(r.status, 0);
      assert.ok(r.data.equals(data), `LUN ${lun}: what was written reads back`);
    }
    await i.logout();
  } finally {
    i.close();
  }
}

test('the README has the examples this test runs', () => {
  assert.equal(blocks('yaml').length, 3, 'three YAML examples');
  assert.ok(blocks('sh').some((b) => b.includes('npx tcli /iscsi create')), 'the tcli example');
});

test('README: the iSCSI config example serves LUNs an initiator writes to (demo mode, as written)', async () => {
  const yaml = blocks('yaml').find((b) => b.includes('fabric: iscsi'))!;
  const dir = tmp();
  const port = await freePort();
  const cfg = parseConfig(yaml, 'README.md');
  const d = await startTsiod(localize(yaml, port, dir), { dir });
  daemons.push(d);
  const t = cfg.targets[0];
  await writeOverIscsi(port, t.wwn, t.tpgs[0].luns.map((l) => l.index));
  assert.doesNotMatch(d.log(), /demo_mode_write_protect=true/, 'no read-only warning for the README example');
});

test('README: the rbd example serves an image of the cluster an initiator writes to', async () => {
  const cluster = ceph();
  const image = cluster.imageName('readme');
  const yaml = blocks('yaml').find((b) => b.includes('plugin: rbd'))!;
  const dir = tmp();
  const port = await freePort();
  const text = localize(yaml, port, dir).replace(/conf: \/tmp\/ceph\/ceph\.conf/, `conf: ${cluster.conf}`).replace(/image: disk0\b/, `image: ${image}`);
  const cfg = parseConfig(text, 'README.md');
  const d = await startTsiod(text, { dir });
  daemons.push(d);
  try {
    await writeOverIscsi(port, cfg.targets[0].wwn, [0]);
    assert.match(cluster.rbd('info', `rbd/${image}`), /size 4 GiB/, 'the image was created at the size the example asks');
  } finally {
    await d.stop();
    cluster.rbd('rm', '--no-progress', `rbd/${image}`);
  }
});

test('README: the vhost example serves a LUN a vhost-user front-end writes to', async () => {
  const yaml = blocks('yaml').find((b) => b.includes('fabric: vhost'))!;
  const dir = tmp();
  const d = await startTsiod(localize(yaml, 0, dir), { dir });
  daemons.push(d);
  const socket = localize(parseConfig(yaml, 'README.md').targets[0].tpgs[0].socket!, 0, dir);
  const fe = new VhostUserFrontend(socket, { memory: 16 * 1024 * 1024 });
  try {
    // control, event and one request queue
    fe.negotiate(3);
    fe.start(16);
    for (const q of fe.queues) q.watch();
    const q = fe.queues[2];
    const slot = new ScsiSlot(fe.ram, 4096);
    let id = 1n;
    const scsi = (cdb: number[], len: number, write = false) =>
      new Promise<ScsiResult>((resolve) => {
        slot.post(q as DriverQueue, 0, cdb, len, write, id++, resolve, 0);
        q.kick();
      });
    await scsi([0, 0, 0, 0, 0, 0], 0);
    slot.data.fill(0x5a, 0, 4096);
    assert.equal((await scsi(WRITE(0, 8), 4096, true)).status, 0, 'WRITE(10)');
    slot.data.fill(0, 0, 4096);
    const r = await scsi(READ(0, 8), 4096);
    assert.equal(r.status, 0);
    assert.ok(slot.data.subarray(0, 4096).every((b) => b === 0x5a), 'read back');
  } finally {
    fe.close();
  }
});

test('README: the tcli example builds a target an initiator logs in to and writes to', async () => {
  const sh = blocks('sh').find((b) => b.includes('npx tcli /iscsi create'))!;
  const dir = tmp();
  const port = await freePort();
  const d = await startTsiod('', { dir });
  daemons.push(d);
  const lines = sh
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l.startsWith('npx tcli '))
    .map((l) => l.slice('npx tcli '.length));
  // Left out: the bare `npx tcli` (the interactive shell) and restoreconfig of a file the README does not give.
  const run = lines.filter((l) => l !== '' && !l.startsWith('restoreconfig'));
  assert.ok(run.length >= 7, run.join('\n'));
  for (const l of run) {
    const r = tcli(d.sock, localize(l, port, dir).split(/\s+/), { env: { TCLI_HOME: join(dir, 'home') } });
    assert.equal(r.status, 0, `tcli ${l}: ${r.stderr}`);
  }
  const acl = /acls create (\S+)/.exec(sh)![1];
  const target = /\/iscsi create (\S+)/.exec(sh)![1];
  await writeOverIscsi(port, target, [0], acl);
  writeFileSync(join(dir, 'done'), '');
});

test('a TPG in demo mode that serves write-protected LUNs is said at startup and by tcli info, naming the attribute', async () => {
  const dir = tmp();
  const port = await freePort();
  const iqn = 'iqn.2026-11.org.tsio:readonly-demo';
  const d = await startTsiod(
    [
      'storage_objects: [ { name: ram0, plugin: rd_mcp, size: 1MiB } ]',
      'targets:',
      `  - { fabric: iscsi, wwn: ${iqn}, tpgs: [ { tag: 1, attributes: { generate_node_acls: true, authentication: false }, portals: [ { ip_address: 127.0.0.1, port: ${port} } ], luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram0 } ] } ] }`,
      '',
    ].join('\n'),
    { dir },
  );
  daemons.push(d);
  assert.match(d.log(), new RegExp(`tsio warn: /iscsi/${iqn.replace(/\./g, '\\.')}/tpg1 is in demo mode \\(generate_node_acls=true\\) with demo_mode_write_protect=true: initiators without an ACL get its 1 LUNs read-only; to let them write: set attribute demo_mode_write_protect=false`));
  const info = tcli(d.sock, [`/iscsi/${iqn}/tpg1`, 'info']);
  assert.match(info.stdout, /warning: .*demo_mode_write_protect=true.*set attribute demo_mode_write_protect=false/);
  // And it is so: the write is refused (DATA PROTECT) until the attribute changes.
  const i = await RawInitiator.connect(port);
  try {
    await i.login(iqn);
    await i.command([0, 0, 0, 0, 0, 0]);
    const w = await i.command(WRITE(0, 1), { write: Buffer.alloc(512) });
    assert.equal(w.status, 2);
    assert.equal(w.sense![2] & 0x0f, 0x07, 'DATA PROTECT');
  } finally {
    i.close();
  }
  assert.equal(tcli(d.sock, [`/iscsi/${iqn}/tpg1`, 'set', 'attribute', 'demo_mode_write_protect=false']).status, 0);
  assert.doesNotMatch(tcli(d.sock, [`/iscsi/${iqn}/tpg1`, 'info']).stdout, /warning/);
});
