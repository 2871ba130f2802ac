// Live reconfiguration seen by an iSCSI initiator: restoreconfig of an edited
// file while a session does verified I/O leaves that session running without
// a single error; the new portal listens at once; a LUN added to the
// session's TPG is announced with REPORTED LUNS DATA HAS CHANGED.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, startTsiod, tcli, type Daemon } from './util/tsiod';
import { RawInitiator } from './util/iscsi-initiator';

const IQN = 'iqn.2026-11.org.tsio:live';
const IQN2 = 'iqn.2026-11.org.tsio:added';
let daemon: Daemon | undefined;
after(async () => {
  await daemon?.stop();
});

const cdb10 = (op: number, lba: number, blocks: number) => [op, 0, lba >>> 24, (lba >> 16) & 255, (lba >> 8) & 255, lba & 255, 0, blocks >> 8, blocks & 255, 0];

async function clearUas(ini: RawInitiator, lun = 0): Promise<void> {
  for (let i = 0; i < 8; i++) if ((await ini.command([0, 0, 0, 0, 0, 0], { lun })).status === 0) return;
  throw new Error('unit attentions do not clear');
}

test('restoreconfig while an iSCSI session does verified I/O; live portal and LUN changes', async () => {
  const port2 = await freePort();
  daemon = await startTsiod((port, dir) =>
    [
      'storage_objects:',
      '  - { name: ram0, plugin: rd_mcp, size: 64MiB }',
      `  - { name: disk0, plugin: fileio, dev: ${join(dir, 'disk0.img')}, size: 16MiB }`,
      'targets:',
      '  - fabric: iscsi',
      `    wwn: ${IQN}`,
      '    tpgs:',
      '      - tag: 1',
      '        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }',
      `        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]`,
      '        luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram0 } ]',
      '',
    ].join('\n'),
  );
  const { port, dir } = daemon;
  const ini = await RawInitiator.connect(port);
  await ini.login(IQN);
  await clearUas(ini);

  // Verified I/O: each round writes 64 KiB of a fresh pattern and reads it back.
  let rounds = 0;
  let stop = false;
  const failures: string[] = [];
  let ioError: unknown;
  // The waits below end when the I/O loop fails too, so a failure ends the test instead of hanging it.
  const waitRounds = async (n: number) => {
    while (rounds < n && ioError === undefined) await new Promise((r) => setTimeout(r, 10));
    if (ioError !== undefined) throw ioError;
  };
  const io = (async () => {
    while (!stop) {
      const lba = (rounds % 512) * 128;
      const data = Buffer.alloc(65536, (rounds * 7 + 1) & 0xff);
      data.writeUInt32BE(rounds, 0);
      const w = await ini.command(cdb10(0x2a, lba, 128), { write: data, immediate: 8192 });
      if (w.status !== 0) failures.push(`write ${rounds}: status ${w.status} sense ${w.sense.toString('hex')}`);
      const r = await ini.command(cdb10(0x28, lba, 128), { read: 65536 });
      if (r.status !== 0) failures.push(`read ${rounds}: status ${r.status} sense ${r.sense.toString('hex')}`);
      else if (!r.data.equals(data)) failures.push(`read ${rounds}: data differs`);
      rounds++;
    }
  })().catch((e) => {
    ioError = e;
  });

  try {
    await waitRounds(20);
    const saved = join(dir, 'edited.yaml');
    assert.equal(tcli(daemon.sock, ['saveconfig', saved]).status, 0);
    // The edit: a new RAM disk, a second target with its own portal, an attribute of an object no session uses.
    const text = readFileSync(saved, 'utf8')
      .replace('storage_objects:\n', 'storage_objects:\n  - { name: extra, plugin: rd_mcp, size: 8MiB }\n')
      .replace(/(  - name: disk0\n(?:    .*\n)*?)(    size: \S+\n)/, '$1$2    attributes: { emulate_tpu: true }\n') +
      `  - fabric: iscsi\n    wwn: ${IQN2}\n    tpgs:\n      - tag: 1\n        attributes: { generate_node_acls: true, authentication: false }\n        portals: [ { ip_address: 127.0.0.1, port: ${port2} } ]\n        luns: [ { index: 0, storage_object: /backstores/rd_mcp/extra } ]\n`;
    writeFileSync(saved, text);
    const before = rounds;
    const r = tcli(daemon.sock, ['restoreconfig', saved, 'clear_existing']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /2 created, 1 changed, 0 removed/);
    const until = rounds + 20;
    await waitRounds(until);
    assert.ok(rounds > before, 'I/O went on');
    assert.deepEqual(failures, [], 'the session saw no error');
    assert.match(tcli(daemon.sock, ['/backstores/fileio/disk0', 'get', 'attribute', 'emulate_tpu']).stdout, /emulate_tpu=true/);

    // The new portal listens at once, serving the new target.
    const ini2 = await RawInitiator.connect(port2);
    await ini2.login(IQN2);
    await clearUas(ini2);
    const inq = await ini2.command([0x12, 0, 0, 0, 96, 0], { read: 96 });
    assert.equal(inq.status, 0);
    await ini2.logout();
    ini2.close();
    // A portal added with tcli listens at once too.
    const port3 = await freePort();
    assert.equal(tcli(daemon.sock, [`/iscsi/${IQN2}/tpg1/portals`, 'create', '127.0.0.1', String(port3)]).status, 0);
    const ini3 = await RawInitiator.connect(port3);
    await ini3.login(IQN2);
    await ini3.logout();
    ini3.close();
  } finally {
    stop = true;
    await io;
    if (ioError !== undefined) throw ioError;
  }
  assert.deepEqual(failures, []);

  // A LUN added to the session's own TPG: the next command reports REPORTED LUNS DATA HAS CHANGED.
  assert.equal(tcli(daemon.sock, [`/iscsi/${IQN}/tpg1/luns`, 'create', '/backstores/fileio/disk0']).status, 0);
  const t = await ini.command([0, 0, 0, 0, 0, 0]);
  assert.equal(t.status, 2);
  assert.equal(t.sense[2] & 0x0f, 6, 'UNIT ATTENTION');
  assert.deepEqual([t.sense[12], t.sense[13]], [0x3f, 0x0e]);
  await clearUas(ini, 1);
  const rd = await ini.command(cdb10(0x28, 0, 8), { read: 4096, lun: 1 });
  assert.equal(rd.status, 0);
  // The session's statistics count its commands.
  const s = JSON.parse(tcli(daemon.sock, ['--json', 'sessions', 'detail']).stdout);
  assert.equal(s.length, 1);
  assert.ok(s[0].stats.commands >= rounds * 2, `${s[0].stats.commands} commands counted`);
  assert.ok(s[0].stats.bytes_written >= rounds * 65536);
  await ini.logout();
  ini.close();
});
