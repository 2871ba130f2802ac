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

const IQN = 'iqn.2003-01.org.linux-iscsi.lio.x8664:sn.0a1b2c3d4e5f';
const INIT = 'iqn.1994-05.com.redhat:client1';

/** What targetcli 2.1 writes for this setup (abridged only where LIO repeats itself). */
function saveconfigJson(dir: string, port: number): object {
  return {
    fabric_modules: [
      { discovery_enable_auth: false, discovery_mutual_password: '', discovery_mutual_userid: '', discovery_password: '', discovery_userid: '', name: 'iscsi' },
    ],
    storage_objects: [
      {
        aio: false,
        alua_tpgs: [{ alua_access_state: 0, alua_access_status: 0, alua_access_type: 3, name: 'default_tg_pt_gp', tg_pt_gp_id: 0 }],
        attributes: {
          block_size: 512, emulate_3pc: 1, emulate_caw: 1, emulate_dpo: 1, emulate_fua_read: 1, emulate_fua_write: 1, emulate_model_alias: 1,
          emulate_pr: 1, emulate_rest_reord: 0, emulate_tas: 1, emulate_tpu: 1, emulate_tpws: 0, emulate_ua_intlck_ctrl: 0, emulate_write_cache: 0,
          enforce_pr_isids: 1, force_pr_aptpl: 0, hw_block_size: 512, hw_max_sectors: 16384, hw_pi_prot_type: 0, hw_queue_depth: 128,
          is_nonrot: 0, max_unmap_block_desc_count: 1, max_unmap_lba_count: 8192, max_write_same_len: 4096, optimal_sectors: 16384,
          pi_prot_format: 0, pi_prot_type: 0, queue_depth: 128, unmap_granularity: 1, unmap_granularity_alignment: 0, unmap_zeroes_data: 0,
        },
        dev: join(dir, 'disk1.img'),
        name: 'disk1',
        plugin: 'fileio',
        size: 33554432,
        write_back: false,
        wwn: '6f0e7a3c-2b1d-4e5f-9a8b-7c6d5e4f3a2b',
      },
      {
        alua_tpgs: [{ alua_access_state: 0, name: 'default_tg_pt_gp', tg_pt_gp_id: 0 }],
        attributes: { block_size: 512, emulate_tpu: 0, hw_block_size: 512, queue_depth: 64 },
        name: 'ram1',
        nullio: false,
        plugin: 'ramdisk',
        size: 16777216,
        wwn: '1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d',
      },
    ],
    targets: [
      {
        fabric: 'iscsi',
        tpgs: [
          {
            attributes: {
              authentication: 1, cache_dynamic_acls: 0, default_cmdsn_depth: 64, default_erl: 0, demo_mode_discovery: 1, demo_mode_write_protect: 1,
              fabric_prot_type: 0, generate_node_acls: 0, login_keys_offload: 0, login_timeout: 15, netif_timeout: 2, prod_mode_write_protect: 0,
              t10_pi: 0, tpg_enabled_sendtargets: 1,
            },
            enable: true,
            luns: [
              { alias: 'c8a1e4f2b3', alua_tg_pt_gp_name: 'default_tg_pt_gp', index: 0, storage_object: '/backstores/fileio/disk1' },
              { alias: '9d7e6f5a4b', alua_tg_pt_gp_name: 'default_tg_pt_gp', index: 1, storage_object: '/backstores/ramdisk/ram1' },
            ],
            node_acls: [
              {
                attributes: { dataout_timeout: 3, dataout_timeout_retries: 5, default_erl: 0, nopin_response_timeout: 30, nopin_timeout: 15, random_datain_pdu_offsets: 0, random_datain_seq_offsets: 0, random_r2t_offsets: 0 },
                chap_mutual_password: 'targetsecret2', chap_mutual_userid: 'target1', chap_password: 'clientsecret1', chap_userid: 'client1',
                mapped_luns: [
                  { alias: 'e1f2a3b4c5', index: 0, tpg_lun: 0, write_protect: false },
                  { alias: 'a5b4c3d2e1', index: 1, tpg_lun: 1, write_protect: false },
                ],
                node_wwn: INIT,
              },
            ],
            parameters: {
              AuthMethod: 'CHAP,None', DataDigest: 'CRC32C,None', DataPDUInOrder: 'Yes', DataSequenceInOrder: 'Yes', DefaultTime2Retain: '20',
              DefaultTime2Wait: '2', ErrorRecoveryLevel: '0', FirstBurstLength: '65536', HeaderDigest: 'CRC32C,None', IFMarkInt: '2048~65535',
              IFMarker: 'No', ImmediateData: 'Yes', InitialR2T: 'Yes', MaxBurstLength: '262144', MaxConnections: '1', MaxOutstandingR2T: '1',
              MaxRecvDataSegmentLength: '8192', MaxXmitDataSegmentLength: '262144', OFMarkInt: '2048~65535', OFMarker: 'No', TargetAlias: 'LIO Target',
            },
            portals: [{ ip_address: '127.0.0.1', iser: false, offload: false, port }],
            tag: 1,
          },
        ],
        wwn: IQN,
      },
      { fabric: 'qla2xxx', tpgs: [{ tag: 1, luns: [] }], wwn: 'naa.21000024ff000001' },
    ],
  };
}

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
  const notes = unmapped.join('\n');
  assert.match(notes, /storage object fileio\/disk1: emulate_dpo = 1 \(no tsio counterpart; dropped\)/);
  assert.match(notes, /emulate_fua_read/);
  assert.match(notes, /pi_prot_type/);
  assert.match(notes, /qla2xxx target naa\.21000024ff000001: fabric 'qla2xxx' is not served by tsio \(skipped\)/);
  assert.doesNotMatch(notes, /hw_block_size|IFMarker|fabric_prot_type|alias/, 'derived and obsolete settings are not noise');
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
  assert.match(r.stdout, /settings could not be mapped:/);
  assert.match(r.stdout, /emulate_dpo/);
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
  assert.match(d2.log(), /emulate_dpo = 1 \(no tsio counterpart; dropped\)/);
  assert.match(tcli(d2.sock, ['ls']).stdout, /o- disk1/);
});
