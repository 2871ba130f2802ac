// Who may connect to a vhost TPG's socket: socket_mode and socket_group give
// the file exactly the asked permission bits and group (a QEMU that libvirt
// runs as libvirt-qemu is another user), bad values are refused with their
// YAML path, and a real non-root process connects only when the group lets it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ControlClient } from '../cli/client';
import { groupId } from '../native';
import { startTsiod, tcli, TSIOD, type Daemon } from './util/tsiod';

// 'users' (gid 100) is in every Debian base system; nobody is not a member.
const GROUP = 'users';
const GID = groupId(GROUP);

const tpg = (wwn: string, sock: string, extra: string) => `  - fabric: vhost
    wwn: ${wwn}
    tpgs:
      - { tag: 1, socket: ${sock}${extra}, luns: [ { index: 0, storage_object: /backstores/rd_mcp/r0 } ] }
`;

let d: Daemon;
const sock = (name: string) => join(d.dir, 'vhost', `${name}.sock`);

before(async () => {
  assert.ok(GID >= 0, `group ${GROUP} missing on this host`);
  d = await startTsiod((_port, dir) =>
    'storage_objects:\n  - { name: r0, plugin: rd_mcp, size: 4MiB }\ntargets:\n' +
    tpg('naa.5001405000000061', join(dir, 'vhost', 'default.sock'), '') +
    tpg('naa.5001405000000062', join(dir, 'vhost', 'group.sock'), `, socket_mode: "0660", socket_group: ${GROUP}`) +
    tpg('naa.5001405000000063', join(dir, 'vhost', 'private.sock'), ', socket_mode: "600"'),
  );
  // The daemon's folder is private (mkdtemp); the other user must be able to reach the sockets in it.
  chmodSync(d.dir, 0o711);
});
after(async () => {
  await d?.stop();
});

/** Connects as nobody with the given primary group only, sends vhost-user GET_FEATURES and prints the reply's request code. */
function connectAs(group: string, path: string): { status: number | null; out: string } {
  const script = `const s = require('net').connect(process.argv[1]);
s.on('connect', () => s.write(Buffer.from([1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0])));
s.on('data', (b) => { console.log('REPLY', b.readUInt32LE(0), b.readUInt32LE(4) & 4 ? 'reply-flag' : ''); process.exit(0); });
s.on('error', (e) => { console.log(e.code); process.exit(1); });`;
  const p = spawnSync('setpriv', ['--reuid=nobody', `--regid=${group}`, '--clear-groups', process.execPath, '-e', script, path], { encoding: 'utf8', timeout: 20_000 });
  if (p.error) throw new Error(`setpriv not runnable (scripts/install-deps --test installs util-linux): ${p.error.message}`);
  return { status: p.status, out: p.stdout + p.stderr };
}

test('the socket file has exactly the asked mode and group; the default is 0660 and the daemon\'s group', () => {
  const def = statSync(sock('default'));
  assert.ok(def.isSocket());
  assert.equal(def.mode & 0o7777, 0o660);
  assert.equal(def.gid, process.getegid!());
  const grp = statSync(sock('group'));
  assert.equal(grp.mode & 0o7777, 0o660);
  assert.equal(grp.gid, GID);
  assert.equal(statSync(sock('private')).mode & 0o7777, 0o600);
});

test('a non-root process connects when the socket\'s group is its group, and gets EACCES when not', () => {
  const ok = connectAs(GROUP, sock('group'));
  assert.equal(ok.status, 0, ok.out);
  assert.match(ok.out, /^REPLY 1 reply-flag$/m, 'tsiod answered GET_FEATURES');
  for (const name of ['group', 'default', 'private']) {
    const no = connectAs(name === 'group' ? 'nogroup' : GROUP, sock(name));
    assert.equal(no.status, 1, `${name}: ${no.out}`);
    assert.match(no.out, /^EACCES$/m, name);
  }
});

test('socket_mode and socket_group change live (tpgs.set); an unknown group is refused', async () => {
  const c = await ControlClient.connect(d.sock);
  try {
    await c.call('tpgs.set', { wwn: 'naa.5001405000000062', tag: 1, fields: { socket_mode: '0640' } });
    assert.equal(statSync(sock('group')).mode & 0o7777, 0o640);
    await c.call('tpgs.set', { wwn: 'naa.5001405000000061', tag: 1, fields: { socket_group: GROUP } });
    const st = statSync(sock('default'));
    assert.equal(st.gid, GID);
    assert.equal(st.mode & 0o7777, 0o660);
    assert.equal(connectAs(GROUP, sock('default')).status, 0, 'the new group connects');
    await assert.rejects(c.call('tpgs.set', { wwn: 'naa.5001405000000063', tag: 1, fields: { socket_group: 'no-such-group-x' } }), /\/vhost\/naa\.5001405000000063\/tpg1: socket_group: no group 'no-such-group-x' on this host/);
    assert.equal(statSync(sock('private')).gid, process.getegid!(), 'unchanged');
  } finally {
    c.close();
  }
});

test('tcli knows the settings: /vhost create with socket_mode and socket_group', () => {
  const path = sock('tcli');
  const r = tcli(d.sock, ['/vhost', 'create', 'naa.5001405000000064', `socket=${path}`, 'socket_mode=0604', `socket_group=${GROUP}`]);
  assert.equal(r.status, 0, r.stderr);
  const st = statSync(path);
  assert.equal(st.mode & 0o7777, 0o604);
  assert.equal(st.gid, GID);
  const bad = tcli(d.sock, ['/vhost', 'create', 'naa.5001405000000065', `socket=${sock('tcli2')}`, 'socket_mode=rw']);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /socket_mode: 'rw' is not an octal mode such as/);
});

test('a bad mode or an unknown group stops tsiod before anything starts, each with its YAML path', () => {
  const f = join(d.dir, 'bad.yaml');
  writeFileSync(
    f,
    'storage_objects:\n  - { name: r0, plugin: rd_mcp, size: 4MiB }\ntargets:\n' +
      tpg('naa.5001405000000071', join(d.dir, 'bad1.sock'), ', socket_mode: "0999"') +
      tpg('naa.5001405000000072', join(d.dir, 'bad2.sock'), ', socket_mode: 0660') +
      tpg('naa.5001405000000073', join(d.dir, 'bad3.sock'), ', socket_group: no-such-group-x') +
      tpg('naa.5001405000000074', join(d.dir, 'bad4.sock'), ', socket_mode: "u+rw"') +
      tpg('naa.5001405000000075', join(d.dir, 'bad5.sock'), ', socket_group: "4294967295"'),
  );
  const p = spawnSync(process.execPath, [TSIOD, '--config', f, '--check'], { encoding: 'utf8' });
  assert.equal(p.status, 1, p.stdout + p.stderr);
  assert.match(p.stderr, /bad\.yaml:7: targets\[0\]\.tpgs\[0\]\.socket_mode: '0999' is not an octal mode such as "0660"/);
  assert.match(p.stderr, /bad\.yaml:11: targets\[1\]\.tpgs\[0\]\.socket_mode: must be a string, not number 660/);
  assert.match(p.stderr, /bad\.yaml:11: targets\[1\]\.tpgs\[0\]\.socket_mode: quote it, e\.g\. socket_mode: "0660"/);
  assert.match(p.stderr, /bad\.yaml:15: targets\[2\]\.tpgs\[0\]\.socket_group: no group 'no-such-group-x' on this host/);
  assert.match(p.stderr, /bad\.yaml:19: targets\[3\]\.tpgs\[0\]\.socket_mode: 'u\+rw' is not an octal mode/);
  assert.match(p.stderr, /bad\.yaml:23: targets\[4\]\.tpgs\[0\]\.socket_group: gid 4294967295 is out of range/);
});
