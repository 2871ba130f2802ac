// Live reconfiguration seen from an initiator: the control API's methods run
// in-process against a Root that a loopback nexus is using, so the unit
// attentions, LUN maps and in-flight I/O the changes cause can be observed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRoot } from '../app/registry';
import { Control } from '../app/control/server';
import { EMPTY_CONFIG, reconcile, type Live } from '../app/daemon/reconcile';
import { parseConfig } from '../app/config/config';
import { LoopbackNexus } from '../fabrics/loopback/loopback';
import { Asc, Status } from '../src/core/sense';

const WWN = 'naa.5001405000000042';
const INIT = 'naa.5001405aaaaaaaa1';
const TUR = [0, 0, 0, 0, 0, 0];
const REPORT_LUNS = [0xa0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];

async function setup(extra = ''): Promise<{ live: Live; control: Control; dir: string; call: (m: string, p?: object) => Promise<any> }> {
  const dir = mkdtempSync(join(tmpdir(), 'tsio-live-'));
  const text = [
    'storage_objects:',
    '  - { name: ram0, plugin: rd_mcp, size: 16MiB }',
    `  - { name: disk0, plugin: fileio, dev: ${join(dir, 'disk0.img')}, size: 16MiB }`,
    'targets:',
    '  - fabric: loopback',
    `    wwn: ${WWN}`,
    '    tpgs:',
    '      - tag: 1',
    '        luns:',
    '          - { index: 0, storage_object: /backstores/rd_mcp/ram0 }',
    extra,
  ].join('\n');
  const live: Live = { root: createRoot(), services: new Map(), config: EMPTY_CONFIG };
  await reconcile(live, parseConfig(text, 'live.yaml'));
  const control = new Control(live, { savePath: join(dir, 'save.yaml') });
  const call = async (method: string, params: object = {}) => {
    const r: any = await control.handle({ jsonrpc: '2.0', id: 1, method, params });
    if (r.error) throw new Error(`${method}: ${r.error.message}`);
    return r.result;
  };
  return { live, control, dir, call };
}

async function nexus(live: Live): Promise<LoopbackNexus> {
  const n = LoopbackNexus.open(live.root.targets.get(WWN)!.tpgs.get(1)!, INIT);
  for (const lun of n.session.lunNumbers()) while ((await n.command(lun, TUR)).status !== Status.GOOD);
  return n;
}

const ascOf = (r: { asc?: number; ascq?: number }) => ((r.asc ?? 0) << 8) | (r.ascq ?? 0);

test('a new LUN: REPORTED LUNS DATA HAS CHANGED, then REPORT LUNS lists it', async () => {
  const { live, call, dir } = await setup();
  const n = await nexus(live);
  await call('luns.create', { wwn: WWN, tag: 1, storage_object: '/backstores/fileio/disk0', index: 5 });
  const r = await n.command(0, TUR);
  assert.equal(r.status, Status.CHECK_CONDITION);
  assert.equal(ascOf(r), Asc.REPORTED_LUNS_DATA_CHANGED);
  // REPORT LUNS answers from the session's map (once the SPC module serves it).
  const rl = await n.command(0, REPORT_LUNS);
  if (rl.status === Status.GOOD) assert.equal(rl.data.readUInt32BE(0), 16, 'two LUNs reported');
  assert.deepEqual(n.session.lunNumbers(), [0, 5]);
  await n.close();
  await live.root.close();
  rmSync(dir, { recursive: true });
});

test('an attribute change raises MODE PARAMETERS CHANGED and takes effect; a resize raises CAPACITY DATA HAS CHANGED', async () => {
  const { live, call, dir } = await setup();
  const n = await nexus(live);
  await call('storage_objects.set', { path: '/backstores/rd_mcp/ram0', attributes: { emulate_write_cache: true } });
  let r = await n.command(0, TUR);
  assert.equal(ascOf(r), Asc.MODE_PARAMETERS_CHANGED);
  assert.equal(live.root.storageObject('/backstores/rd_mcp/ram0').lu.mode.wce, true);
  await call('storage_objects.set', { path: '/backstores/rd_mcp/ram0', fields: { size: '32MiB' } });
  r = await n.command(0, TUR);
  assert.equal(ascOf(r), Asc.CAPACITY_DATA_CHANGED);
  const cap = await n.command(0, [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  if (cap.status === Status.GOOD) assert.equal(cap.data.readUInt32BE(0), (32 << 20) / 512 - 1);
  assert.equal(live.root.storageObject('/backstores/rd_mcp/ram0').backstore.size, 32 << 20);
  // An unrelated change leaves the session's other state alone: no UA for a new, unmapped storage object.
  await call('storage_objects.create', { plugin: 'rd_mcp', name: 'ram9', fields: { size: '1MiB' } });
  assert.equal((await n.command(0, TUR)).status, Status.GOOD);
  await n.close();
  await live.root.close();
  rmSync(dir, { recursive: true });
});

test('removing a LUN and its storage object with I/O in flight: every command finishes, then the store closes', async () => {
  const { live, call, dir } = await setup();
  await call('luns.create', { wwn: WWN, tag: 1, storage_object: '/backstores/fileio/disk0', index: 1 });
  const n = await nexus(live);
  const buf = Buffer.alloc(64 * 1024, 0xa5);
  const writes: Promise<{ status: number }>[] = [];
  for (let i = 0; i < 64; i++) {
    const lba = i * 128;
    writes.push(n.command(1, [0x2a, 0, lba >>> 24, (lba >> 16) & 255, (lba >> 8) & 255, lba & 255, 0, 0, 128, 0], { dataOut: buf }));
  }
  const so = live.root.storageObject('/backstores/fileio/disk0');
  assert.ok(so.lu.active > 0, 'writes are in flight');
  await call('storage_objects.delete', { path: '/backstores/fileio/disk0' });
  const results = await Promise.all(writes);
  for (const r of results) assert.equal(r.status, Status.GOOD);
  assert.equal(so.lu.active, 0);
  assert.ok(!live.root.storageObjects.has('/backstores/fileio/disk0'));
  // The nexus now sees only LUN 0, and is told so.
  assert.deepEqual(n.session.lunNumbers(), [0]);
  assert.equal(ascOf(await n.command(0, TUR)), Asc.REPORTED_LUNS_DATA_CHANGED);
  assert.equal((await n.command(1, TUR)).status, Status.CHECK_CONDITION);
  await n.close();
  await live.root.close();
  rmSync(dir, { recursive: true });
});

test('restoreconfig of an edited file leaves untouched objects and their sessions alone', async () => {
  const { live, call, control, dir } = await setup();
  const n = await nexus(live);
  const session = n.session;
  const ramLu = live.root.storageObject('/backstores/rd_mcp/ram0').lu;
  await call('saveconfig');
  const saved = join(dir, 'save.yaml');
  // The edit: a new RAM disk and a second TPG; the LUN the session uses is unchanged.
  const edited = (await call('config.dump')).yaml.replace('storage_objects:\n', 'storage_objects:\n  - { name: extra, plugin: rd_mcp, size: 4MiB }\n') +
    '  - fabric: loopback\n    wwn: naa.5001405000000043\n    tpgs:\n      - tag: 1\n        luns: [ { index: 0, storage_object: /backstores/rd_mcp/extra } ]\n';
  writeFileSync(saved, edited);
  const rep = await call('restoreconfig', { path: saved, clear_existing: true });
  assert.deepEqual(rep.removed, []);
  assert.ok(rep.created.includes('/backstores/rd_mcp/extra'));
  assert.equal(live.root.storageObject('/backstores/rd_mcp/ram0').lu, ramLu, 'the same live unit');
  assert.ok(live.root.targets.get(WWN)!.tpgs.get(1)!.sessions.has(session), 'the session survives');
  assert.equal((await n.command(0, TUR)).status, Status.GOOD, 'no unit attention for an unchanged LUN');
  assert.equal(control.dirty, false);
  await n.close();
  await live.root.close();
  rmSync(dir, { recursive: true });
});

test('statistics count commands, bytes and errors per LUN and per session', async () => {
  const { live, call, dir } = await setup();
  const n = await nexus(live);
  const before = (await call('sessions.get', { id: n.session.id })).stats;
  const data = Buffer.alloc(4096, 1);
  for (let i = 0; i < 10; i++) assert.equal((await n.command(0, [0x2a, 0, 0, 0, 0, i * 8, 0, 0, 8, 0], { dataOut: data })).status, Status.GOOD);
  for (let i = 0; i < 5; i++) assert.equal((await n.command(0, [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0])).status, Status.GOOD);
  assert.equal((await n.command(0, [0x28, 0, 0xff, 0xff, 0xff, 0, 0, 0, 8, 0])).status, Status.CHECK_CONDITION);
  const s = (await call('sessions.get', { id: n.session.id }));
  assert.equal(s.stats.commands - before.commands, 16);
  assert.equal(s.stats.bytes_written - before.bytes_written, 10 * 4096);
  assert.equal(s.stats.bytes_read - before.bytes_read, 5 * 4096);
  assert.equal(s.stats.errors - before.errors, 1);
  assert.ok(s.stats.latency_us.p99 >= s.stats.latency_us.p50);
  assert.deepEqual(s.lun_detail.map((l: any) => l.storage_object), ['/backstores/rd_mcp/ram0']);
  const st = await call('statistics');
  const lun0 = st.luns.find((l: any) => l.lun === 0 && l.target === WWN);
  assert.equal(lun0.stats.writes, 10);
  assert.equal(lun0.stats.bytes_read, 5 * 4096);
  await n.close();
  await live.root.close();
  rmSync(dir, { recursive: true });
});
