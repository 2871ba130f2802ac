// The control API against a real tsiod on a temporary control socket:
// every method, and malformed requests that must change nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { mkdtempSync, writeFileSync, rmSync, statSync, readFileSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlClient, RpcFailure } from '../cli/client';
import { startTsiod, type Daemon } from './util/tsiod';

const IQN = 'iqn.2026-11.org.tsio:ctl';
const INIT = 'iqn.2026-11.org.example:host1';

let d: Daemon;
let dir: string;
let sock: string;
let c: ControlClient;

before(async () => {
  d = await startTsiod(
    ['storage_objects:', '  - { name: ram0, plugin: rd_mcp, size: 64MiB }', 'targets:', '  - fabric: loopback', '    wwn: naa.5001405000000077', '    tpgs:', '      - tag: 1', '        luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram0 } ]', ''].join('\n'),
  );
  ({ dir, sock } = d);
  c = await ControlClient.connect(sock);
});

after(async () => {
  c?.close();
  await d?.stop();
});

async function rpcError(p: Promise<unknown>): Promise<RpcFailure> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof RpcFailure, String(e));
    return e;
  }
  assert.fail('expected a JSON-RPC error');
}

/** Sends raw bytes, returns the reply lines (parsed). */
function raw(text: string, expectReplies: number): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const s = connect(sock);
    let buf = '';
    const timer = setTimeout(() => (s.destroy(), reject(new Error(`no reply to ${text}: ${buf}`))), 5000);
    s.on('data', (d) => {
      buf += d;
      const lines = buf.split('\n').filter((l) => l !== '');
      if (buf.endsWith('\n') && lines.length >= expectReplies) {
        clearTimeout(timer);
        s.destroy();
        resolve(lines.map((l) => JSON.parse(l)));
      }
    });
    s.on('error', reject);
    s.write(text);
  });
}

test('the control socket is mode 0600', () => {
  assert.equal(statSync(sock).mode & 0o777, 0o600);
  assert.match(d.log(), /control socket/);
});

test('every method: create, get, change and delete each kind of object', async () => {
  const img = join(dir, 'disk0.img');
  assert.deepEqual(await c.call('storage_objects.create', { plugin: 'fileio', name: 'disk0', fields: { dev: img, size: '16MiB', write_back: false } }), { path: '/backstores/fileio/disk0' });
  assert.equal(statSync(img).size, 16 << 20);
  await c.call('storage_objects.create', { plugin: 'rd_mcp', name: 'ram1', fields: { size: '8MiB' }, attributes: { emulate_tpu: true } });
  const list = await c.call<any[]>('storage_objects.list');
  assert.deepEqual(list.map((s) => s.path).sort(), ['/backstores/fileio/disk0', '/backstores/rd_mcp/ram0', '/backstores/rd_mcp/ram1']);
  const so = await c.call<any>('storage_objects.get', { path: '/backstores/rd_mcp/ram1' });
  assert.equal(so.attributes.emulate_tpu, true);
  assert.equal(so.runtime.size, 8 << 20);
  await c.call('storage_objects.set', { path: '/backstores/rd_mcp/ram1', attributes: { emulate_tpws: true }, fields: { size: '16MiB' } });
  assert.equal((await c.call<any>('storage_objects.get', { path: '/backstores/rd_mcp/ram1' })).runtime.size, 16 << 20);

  assert.deepEqual(await c.call('targets.create', { fabric: 'iscsi', wwn: IQN }), { wwn: IQN, tpgs: [1] });
  const gen = await c.call<any>('targets.create', { fabric: 'loopback' });
  assert.match(gen.wwn, /^naa\.[0-9a-f]{16}$/);
  assert.deepEqual((await c.call<any[]>('targets.list')).map((t) => t.wwn).sort(), [IQN, 'naa.5001405000000077', gen.wwn].sort());
  await c.call('targets.delete', { wwn: gen.wwn });
  await c.call('tpgs.create', { wwn: IQN, tag: 2, fields: { attributes: { generate_node_acls: true } } });
  await c.call('tpgs.set', { wwn: IQN, tag: 2, enable: false, attributes: { authentication: false }, parameters: { MaxBurstLength: 131072 }, auth: { userid: 'tu', password: 'tpgsecret123' } });
  const tpg2 = await c.call<any>('tpgs.get', { wwn: IQN, tag: 2 });
  assert.equal(tpg2.enable, false);
  assert.equal(tpg2.attributes.generate_node_acls, true);
  assert.equal(tpg2.parameters.MaxBurstLength, 131072);
  assert.equal(tpg2.auth.userid, 'tu');
  assert.equal(tpg2.sessions, 0);
  await c.call('tpgs.delete', { wwn: IQN, tag: 2 });

  assert.deepEqual(await c.call('luns.create', { wwn: IQN, tag: 1, storage_object: '/backstores/fileio/disk0' }), { index: 0 });
  assert.deepEqual(await c.call('luns.create', { wwn: IQN, tag: 1, storage_object: '/backstores/rd_mcp/ram1', index: 3 }), { index: 3 });
  await c.call('acls.create', { wwn: IQN, tag: 1, node_wwn: INIT, auth: { userid: 'host1', password: 'host1secret12' } });
  let acl = await c.call<any>('acls.get', { wwn: IQN, tag: 1, node_wwn: INIT });
  assert.deepEqual(acl.mapped_luns.map((m: any) => [m.index, m.tpg_lun]), [[0, 0], [3, 3]]);
  await c.call('acls.set', { wwn: IQN, tag: 1, node_wwn: INIT, attributes: { nopin_timeout: 20 } });
  await c.call('mapped_luns.delete', { wwn: IQN, tag: 1, node_wwn: INIT, index: 3 });
  await c.call('mapped_luns.create', { wwn: IQN, tag: 1, node_wwn: INIT, index: 1, tpg_lun: 3, write_protect: true });
  acl = await c.call<any>('acls.get', { wwn: IQN, tag: 1, node_wwn: INIT });
  assert.equal(acl.attributes.nopin_timeout, 20);
  assert.deepEqual(acl.mapped_luns.map((m: any) => [m.index, m.tpg_lun, m.write_protect]), [[0, 0, false], [1, 3, true]]);
  assert.deepEqual(await c.call('portals.create', { wwn: IQN, tag: 1, ip_address: '127.0.0.1', port: 3262 }), { ip_address: '127.0.0.1', port: 3262 });
  await c.call('fabric_modules.set', { name: 'iscsi', discovery_auth: { enable: true, userid: 'disc', password: 'discsecret12' } });

  const target = await c.call<any>('targets.get', { wwn: IQN });
  assert.deepEqual(target.tpgs[0].portals, [{ ip_address: '127.0.0.1', port: 3262 }]);
  assert.deepEqual(target.tpgs[0].luns.map((l: any) => l.index), [0, 3]);

  // Deleting a storage object takes its LUNs and mapped LUNs along.
  await c.call('storage_objects.delete', { path: '/backstores/rd_mcp/ram1' });
  acl = await c.call<any>('acls.get', { wwn: IQN, tag: 1, node_wwn: INIT });
  assert.deepEqual(acl.mapped_luns.map((m: any) => m.index), [0]);
  await c.call('portals.delete', { wwn: IQN, tag: 1, ip_address: '127.0.0.1', port: 3262 });
  await c.call('luns.delete', { wwn: IQN, tag: 1, index: 0 });
  await c.call('acls.delete', { wwn: IQN, tag: 1, node_wwn: INIT });
  assert.deepEqual((await c.call<any>('tpgs.get', { wwn: IQN, tag: 1 })).node_acls, []);

  assert.deepEqual(await c.call('sessions.list'), []);
  assert.match((await rpcError(c.call('sessions.get', { id: 999 }))).message, /no session 999/);
  const stats = await c.call<any>('statistics');
  assert.ok(stats.storage_objects.some((s: any) => s.path === '/backstores/rd_mcp/ram0' && s.stats.commands === 0));
  const st = await c.call<any>('status');
  assert.equal(st.pid, d.proc.pid);
  assert.equal(st.dirty, true);
  const methods = await c.call<any[]>('methods');
  assert.ok(methods.length >= 30);
  const tree = await c.call<any>('tree');
  assert.equal(tree.runtime.storage_objects['/backstores/fileio/disk0'].size, 16 << 20);
  assert.match((await c.call<any>('config.dump')).yaml, /fabric: iscsi/);
  assert.ok(Array.isArray((await c.call<any>('config.get')).storage_objects));
});

test('saveconfig writes 0600 YAML atomically and keeps 10 backups; restoreconfig applies it back', async () => {
  const path = join(dir, 'etc', 'saveconfig.yaml');
  const r = await c.call<any>('saveconfig');
  assert.equal(r.path, path);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal((await c.call<any>('status')).dirty, false);
  const saved = readFileSync(path, 'utf8');
  assert.match(saved, /password: discsecret12/);
  // Twelve more saves, each of a different config: only ten backups stay.
  for (let i = 0; i < 12; i++) {
    await c.call('storage_objects.set', { path: '/backstores/rd_mcp/ram0', attributes: { queue_depth: 10 + i } });
    await c.call('saveconfig');
  }
  const backups = readdirSync(join(dir, 'etc')).filter((f) => f.startsWith('saveconfig.yaml.backup-'));
  assert.equal(backups.length, 10);
  for (const b of backups) assert.equal(statSync(join(dir, 'etc', b)).mode & 0o777, 0o600);
  assert.ok(!readdirSync(join(dir, 'etc')).some((f) => f.includes('.tmp-')), 'no temporary file left');

  const before = (await c.call<any>('config.dump')).yaml;
  await c.call('clearconfig', { confirm: true });
  assert.deepEqual(await c.call('targets.list'), []);
  const rep = await c.call<any>('restoreconfig', { path, clear_existing: true });
  assert.equal(rep.format, 'tsio yaml');
  assert.equal((await c.call<any>('config.dump')).yaml, before);
  // Restoring the same file again changes nothing.
  const again = await c.call<any>('restoreconfig', { path });
  assert.deepEqual([again.created, again.changed, again.removed], [[], [], []]);
});

test('a bad restoreconfig file is refused whole, naming its line, and changes nothing', async () => {
  const before = (await c.call<any>('config.dump')).yaml;
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, ['storage_objects:', '  - { name: ramX, plugin: rd_mcp, size: 8MiB }', '  - { name: ramY, plugin: rd_mcp, size: huge }', 'targets: []', ''].join('\n'));
  const e = await rpcError(c.call('restoreconfig', { path: bad, clear_existing: true }));
  assert.equal(e.code, -32602);
  assert.match(e.message, /bad\.yaml:3: storage_objects\[1\]\.size/);
  assert.equal((await c.call<any>('config.dump')).yaml, before);
  assert.match((await rpcError(c.call('clearconfig', { confirm: false }))).message, /confirm: true/);
  assert.match((await rpcError(c.call('restoreconfig', { path: join(dir, 'nope.yaml') }))).message, /no such file/);
});

test('every malformed request gets its JSON-RPC error, changes nothing, and the daemon keeps serving', async () => {
  const before = (await c.call<any>('config.dump')).yaml;
  const cases: [string, number, RegExp][] = [
    ['{"jsonrpc":"2.0","method":"status","id":1', -32700, /parse error/],
    ['not json at all', -32700, /parse error/],
    ['[]', -32600, /empty batch/],
    ['42', -32600, /not a JSON object/],
    ['{"method":"status","id":2}', -32600, /jsonrpc must be "2.0"/],
    ['{"jsonrpc":"2.0","id":3}', -32600, /method must be a string/],
    ['{"jsonrpc":"2.0","method":"status","id":{"x":1}}', -32600, /id must be/],
    ['{"jsonrpc":"2.0","method":"status","id":4,"extra":1}', -32600, /unknown member 'extra'/],
    ['{"jsonrpc":"2.0","method":"no.such","id":5}', -32601, /method not found: no\.such/],
    ['{"jsonrpc":"2.0","method":"targets.crate","id":6}', -32601, /did you mean targets\.create/],
    ['{"jsonrpc":"2.0","method":"targets.create","params":[1,2],"id":7}', -32602, /params must be an object/],
    ['{"jsonrpc":"2.0","method":"targets.create","params":{},"id":8}', -32602, /missing parameter 'fabric'/],
    ['{"jsonrpc":"2.0","method":"targets.create","params":{"fabric":"iscsi","wwn":"iqn.bad name"},"id":9}', -32602, /wwn/],
    ['{"jsonrpc":"2.0","method":"targets.create","params":{"fabric":"fc"},"id":10}', -32602, /unknown fabric 'fc'/],
    ['{"jsonrpc":"2.0","method":"targets.create","params":{"fabirc":"iscsi"},"id":11}', -32602, /unknown parameter 'fabirc' \(did you mean fabric\?\)/],
    ['{"jsonrpc":"2.0","method":"luns.create","params":{"wwn":"naa.5001405000000077","tag":"1","storage_object":"/backstores/rd_mcp/ram0"},"id":12}', -32602, /'tag' must be a non-negative whole number/],
    ['{"jsonrpc":"2.0","method":"luns.create","params":{"wwn":"naa.5001405000000077","tag":1,"storage_object":"/backstores/rd_mcp/ram9"},"id":13}', -32602, /no storage object \/backstores\/rd_mcp\/ram9/],
    ['{"jsonrpc":"2.0","method":"luns.create","params":{"wwn":"naa.5001405000000077","tag":1,"storage_object":"/backstores/rd_mcp/ram0","index":0},"id":14}', -32602, /already has LUN 0/],
    ['{"jsonrpc":"2.0","method":"storage_objects.set","params":{"path":"/backstores/rd_mcp/ram0","attributes":{"queue_depth":0}},"id":15}', -32602, /queue_depth/],
    ['{"jsonrpc":"2.0","method":"storage_objects.set","params":{"path":"/backstores/rd_mcp/ram0","attributes":{"emulate_tpux":true}},"id":16}', -32602, /emulate_tpux/],
    ['{"jsonrpc":"2.0","method":"storage_objects.create","params":{"plugin":"fileio","name":"f","fields":{"dev":"/nonexistent-dir/x.img","size":"1MiB"}},"id":17}', -32000, /storage_objects\.create failed/],
    ['{"jsonrpc":"2.0","method":"storage_objects.set","params":{"path":"/backstores/fileio/disk0","fields":{"dev":"/nonexistent-dir/y.img"}},"id":21}', -32000, /directory \/nonexistent-dir does not exist/],
    ['{"jsonrpc":"2.0","method":"storage_objects.create","params":{"plugin":"block","name":"b","fields":{"dev":"/dev/no-such-disk"}},"id":22}', -32000, /no such device/],
    ['{"jsonrpc":"2.0","method":"tpgs.set","params":{"wwn":"naa.5001405000000077","tag":1,"parameters":{"MaxBurstLength":1}},"id":18}', -32602, /parameters/],
    ['{"jsonrpc":"2.0","method":"portals.create","params":{"wwn":"naa.5001405000000077","tag":1,"ip_address":"127.0.0.1"},"id":19}', -32602, /portals/],
    ['{"jsonrpc":"2.0","method":"clearconfig","params":{"confirm":"yes"},"id":20}', -32602, /'confirm' must be true or false/],
  ];
  for (const [text, code, msg] of cases) {
    const [reply] = await raw(text + '\n', 1);
    assert.equal(reply.jsonrpc, '2.0', text);
    assert.ok(reply.error, `${text}: ${JSON.stringify(reply)}`);
    assert.equal(reply.error.code, code, `${text}: ${reply.error.message}`);
    assert.match(reply.error.message, msg, text);
    assert.equal((await c.call<any>('config.dump')).yaml, before, `${text} changed the config`);
  }
  // A batch answers each member; notifications get no reply.
  const [batch] = await raw('[{"jsonrpc":"2.0","method":"status","id":"a"},{"jsonrpc":"2.0","method":"nope","id":"b"},{"jsonrpc":"2.0","method":"status"}]\n', 1);
  assert.equal(batch.length, 2);
  assert.equal(batch[0].result.pid, d.proc.pid);
  assert.equal(batch[1].error.code, -32601);
  // Several requests on one line-stream, answered in order.
  const replies = await raw('{"jsonrpc":"2.0","method":"status","id":1}\n{"jsonrpc":"2.0","method":"targets.list","id":2}\n', 2);
  assert.deepEqual(replies.map((r) => r.id), [1, 2]);
  assert.equal(d.proc.exitCode, null, 'tsiod still runs');
  assert.equal((await c.call<any>('status')).pid, d.proc.pid);
});

test('a vhost target created live gets its socket at once; deleting it removes the socket', async () => {
  const path = join(dir, 'vhost0.sock');
  await c.call('targets.create', { fabric: 'vhost', wwn: 'naa.5001405000000abc', tpg_fields: { socket: path } });
  await c.call('luns.create', { wwn: 'naa.5001405000000abc', tag: 1, storage_object: '/backstores/rd_mcp/ram0' });
  assert.ok(statSync(path).isSocket());
  await c.call('targets.delete', { wwn: 'naa.5001405000000abc' });
  assert.ok(!existsSync(path), 'the socket went with the target');
});

test('a portal on a port in use is refused and taken back; the daemon keeps serving', async () => {
  const { createServer } = await import('node:net');
  const busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  const port = (busy.address() as { port: number }).port;
  try {
    const before = (await c.call<any>('config.dump')).yaml;
    const e = await rpcError(c.call('portals.create', { wwn: IQN, tag: 1, ip_address: '127.0.0.1', port }));
    assert.equal(e.code, -32000);
    assert.match(e.message, /EADDRINUSE|in use/i);
    assert.equal((await c.call<any>('config.dump')).yaml, before);
    assert.deepEqual((await c.call<any>('tpgs.get', { wwn: IQN, tag: 1 })).portals, []);
  } finally {
    busy.close();
  }
});

test('--metrics serves Prometheus text on a loopback port only', async () => {
  const d2 = mkdtempSync(join(tmpdir(), 'tsio-metrics-'));
  const port = 20000 + (process.pid % 20000);
  const m = await startTsiod('storage_objects:\n  - { name: ram0, plugin: rd_mcp, size: 1MiB }\ntargets: []\n', { dir: d2, args: ['--metrics', `127.0.0.1:${port}`] });
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /version=0\.0\.4/);
    const text = await res.text();
    assert.match(text, /# TYPE tsio_lu_commands_total counter/);
    assert.match(text, /tsio_lu_commands_total\{storage_object="\/backstores\/rd_mcp\/ram0"\} 0/);
    assert.match(text, /tsio_lu_latency_seconds_bucket\{storage_object="\/backstores\/rd_mcp\/ram0",le="\+Inf"\} 0/);
    assert.equal((await fetch(`http://127.0.0.1:${port}/other`)).status, 404);
  } finally {
    await m.stop();
    rmSync(d2, { recursive: true, force: true });
  }
  assert.ok(!existsSync(join(d2, 'control.sock')));
});
