// A targetcli saveconfig.json (rtslib's format) restored into tsiod: fileio
// and ramdisk storage objects, an iSCSI target with two LUNs, an ACL with
// mapped LUNs and mutual CHAP; what has no tsio counterpart is reported.
// Then libiscsi's iscsi-inq reaches both LUNs through CHAP.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, startTsiod, tcli, type Daemon } from './util/tsiod';
import { isLioSaveconfig, lioToDocument } from '../app/config/lio-import';
import { parseConfig } from '../app/config/config';
import { IQN, INIT, saveconfigJson } from './util/lio-saveconfig';


const daemons: Daemon[] = [];
after(async () => {
  for (const d of daemons.reverse()) await d.stop();
});

test('the converter maps rtslib names and types, and lists what it could not map', () => {
  const data = saveconfigJson('/srv', 3260);
  const text = JSON.stringify(data, null, 2);
  const lio = isLioSaveconfig(text);
  assert.ok(lio);
  assert.equal(isLioSaveconfig('storage_objects: []\n'), undefined, 'YAML is not taken for LIO');
  const { document, unmapped } = lioToDocument(lio);
  const cfg = parseConfig(JSON.stringify(document), 'converted');
  const disk = cfg.storage_objects.find((s) => s.name === 'disk1')!;
  assert.equal(disk.plugin, 'fileio');
  assert.equal(disk.size, 32 << 20);
  assert.equal(disk.write_back, false);
  assert.equal(disk.attributes.emulate_tpu, true);
  assert.equal(disk.attributes.max_unmap_lba_count, 8192);
  assert.equal(disk.wwn, '6f0e7a3c-2b1d-4e5f-9a8b-7c6d5e4f3a2b');
  const ram = cfg.storage_objects.find((s) => s.name === 'ram1')!;
  assert.equal(ram.plugin, 'rd_mcp');
  assert.equal(ram.attributes.queue_depth, 64);
  assert.equal(cfg.targets.length, 1);
  const tpg = cfg.targets[0].tpgs[0];
  assert.equal(tpg.attributes.authentication, true);
  assert.equal(tpg.parameters!.MaxBurstLength, 262144);
  assert.equal(tpg.parameters!.TargetAlias, 'LIO Target');
  assert.deepEqual(tpg.luns.map((l) => [l.index, l.storage_object]), [[0, '/backstores/fileio/disk1'], [1, '/backstores/rd_mcp/ram1']]);
  assert.deepEqual(tpg.node_acls[0].auth, { userid: 'client1', password: 'clientsecret1', mutual_userid: 'target1', mutual_password: 'targetsecret2' });
  assert.deepEqual(tpg.node_acls[0].mapped_luns.map((m) => [m.index, m.tpg_lun]), [[0, 0], [1, 1]]);
  // Only what changes meaning is reported: LIO's defaults that tsio does anyway (no protection information,
  // DPO and FUA reads as FUA writes, PR with ISIDs enforced) are not.
  assert.deepEqual(unmapped, ["qla2xxx target naa.21000024ff000001: fabric 'qla2xxx' is not served by tsio (skipped)"]);
  const changed = saveconfigJson('/srv', 3260) as { storage_objects: { attributes: Record<string, number> }[] };
  Object.assign(changed.storage_objects[0].attributes, { emulate_dpo: 0, pi_prot_type: 1, emulate_rest_reord: 1 });
  const notes = lioToDocument(changed as unknown as Record<string, unknown>).unmapped.join('\n');
  assert.match(notes, /storage object fileio\/disk1: emulate_dpo = 0 \(no tsio counterpart; dropped\)/);
  assert.match(notes, /pi_prot_type = 1/);
  assert.match(notes, /emulate_rest_reord = 1/);
  assert.doesNotMatch(notes, /emulate_fua_read|enforce_pr_isids|hw_block_size|IFMarker|fabric_prot_type|alias/, 'harmless, derived and obsolete settings are not noise');
});

test('restoreconfig of a targetcli saveconfig.json serves it: libiscsi reaches both LUNs with mutual CHAP', async () => {
  const d = await startTsiod('');
  daemons.push(d);
  const port = await freePort();
  const json = join(d.dir, 'saveconfig.json');
  writeFileSync(json, JSON.stringify(saveconfigJson(d.dir, port), null, 2));
  const r = tcli(d.sock, ['restoreconfig', json]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /Configuration restored \(targetcli saveconfig\.json\): 3 created, 0 changed, 0 removed/);
  assert.match(r.stdout, /1 settings could not be mapped:\n  qla2xxx target/);
  const ls = tcli(d.sock, ['ls']).stdout;
  assert.match(ls, /o- disk1 \.+ \[.*disk1\.img \(32\.0MiB\) write-thru activated\]/);
  assert.match(ls, /o- ram1 \.+ \[\(16\.0MiB\) activated\]/);
  assert.match(ls, /o- iqn\.1994-05\.com\.redhat:client1 \.+ \[Mapped LUNs: 2, auth\]/);

  const inq = (lun: number, cred: string) => {
    const p = spawnSync('iscsi-inq', ['-i', INIT, `iscsi://${cred}127.0.0.1:${port}/${IQN}/${lun}?target_user=target1&target_password=targetsecret2`], { encoding: 'utf8', timeout: 60_000 });
    if (p.error) throw new Error(`iscsi-inq not runnable (scripts/install-deps --test installs libiscsi-bin): ${p.error.message}`);
    return { status: p.status, out: p.stdout + p.stderr };
  };
  for (const lun of [0, 1]) {
    const x = inq(lun, 'client1%clientsecret1@');
    assert.equal(x.status, 0, x.out);
    assert.match(x.out, /DIRECT_ACCESS/);
  }
  assert.notEqual(inq(0, 'client1%wrongsecret12@').status, 0, 'a wrong CHAP secret is refused');
  const p = spawnSync('iscsi-readcapacity16', ['-i', INIT, `iscsi://client1%clientsecret1@127.0.0.1:${port}/${IQN}/1`], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(p.status, 0, p.stdout + p.stderr);
  assert.match(p.stdout, /LOGICAL BLOCK LENGTH IN BYTES:512/);
  assert.match(p.stdout, /RETURNED LOGICAL BLOCK ADDRESS:32767/);

  // tsiod also starts from the JSON file directly.
  writeFileSync(json, JSON.stringify(saveconfigJson(d.dir, await freePort()), null, 2));
  const d2 = await startTsiod({ file: json });
  daemons.push(d2);
  assert.match(d2.log(), /fabric 'qla2xxx' is not served by tsio \(skipped\)/);
  assert.match(tcli(d2.sock, ['ls']).stdout, /o- disk1/);
});
