// A targetcli saveconfig.json (rtslib's format) the tests import: fileio and
// ramdisk storage objects with their LIO unit serials, an iSCSI target with two
// LUNs, an ACL with mapped LUNs and mutual CHAP, and a fabric tsio lacks.

import { join } from 'node:path';

export const IQN = 'iqn.2003-01.org.linux-iscsi.lio.x8664:sn.0a1b2c3d4e5f';
export const INIT = 'iqn.1994-05.com.redhat:client1';

/** What targetcli 2.1 writes for this setup (abridged only where LIO repeats itself). */
export function saveconfigJson(dir: string, port: number): object {
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

