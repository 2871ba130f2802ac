// Storage object attributes, named as LIO names them (configfs attrib/), so a
// targetcli saveconfig.json maps one to one. Their types, defaults, ranges and
// docs live in specs/storage-object.yaml; this interface only gives them types.

export interface StorageAttributes {
  /** Thin provisioning: UNMAP allowed (VPD B2 LBPU). */
  emulate_tpu: boolean;
  /** Thin provisioning: WRITE SAME with the UNMAP bit allowed (LBPWS, LBPWS10). */
  emulate_tpws: boolean;
  /** COMPARE AND WRITE served. */
  emulate_caw: boolean;
  /** EXTENDED COPY served. */
  emulate_3pc: boolean;
  /** Persistent reservations served. */
  emulate_pr: boolean;
  /** Write cache enabled at start (MODE page 08h WCE; MODE SELECT can change it). */
  emulate_write_cache: boolean;
  /** FUA honoured on writes (DPOFUA in MODE SENSE). */
  emulate_fua_write: boolean;
  /** TASK ABORTED status returned to other nexuses' aborted commands (control page TAS). */
  emulate_tas: boolean;
  /** UA interlock control (control page UA_INTLCK_CTRL): 0 clears a UA when reported. */
  emulate_ua_intlck_ctrl: number;
  /** INQUIRY product id is the storage object's name. */
  emulate_model_alias: boolean;
  /** VPD B1 medium rotation rate 1 (non-rotating). */
  is_nonrot: boolean;
  /** LBPRZ: unmapped blocks read as zeros. */
  unmap_zeroes_data: boolean;
  max_unmap_lba_count: number;
  max_unmap_block_desc_count: number;
  unmap_granularity: number;
  unmap_granularity_alignment: number;
  max_write_same_len: number;
  /** Largest transfer in blocks (VPD B0 MAXIMUM TRANSFER LENGTH). */
  hw_max_sectors: number;
  /** VPD B0 OPTIMAL TRANSFER LENGTH in blocks. */
  optimal_sectors: number;
  /** Commands accepted into the task set at once; beyond it TASK SET FULL. */
  queue_depth: number;
  /** Every write-class command refused with DATA PROTECT / WRITE PROTECTED. */
  readonly: boolean;
  /** Removable medium (RMB in INQUIRY; PREVENT ALLOW MEDIUM REMOVAL, eject). */
  removable: boolean;
  /** SANITIZE OVERWRITE's rate bound in MiB/s; 0: unlimited. Not LIO's: tsio's own. */
  max_sanitize_rate: number;
  /** Percent of the provisioning resource in use that raises THIN PROVISIONING SOFT THRESHOLD REACHED; 0: none. tsio's own. */
  tp_soft_threshold: number;
  /** MiB the unit may hold allocated, for the threshold and the available count; 0: the file system's free space only. */
  tp_allocation_limit: number;
}

export const ATTRIBUTE_NAMES: readonly (keyof StorageAttributes)[] = [
  'emulate_tpu', 'emulate_tpws', 'emulate_caw', 'emulate_3pc', 'emulate_pr', 'emulate_write_cache',
  'emulate_fua_write', 'emulate_tas', 'emulate_ua_intlck_ctrl', 'emulate_model_alias', 'is_nonrot',
  'unmap_zeroes_data', 'max_unmap_lba_count', 'max_unmap_block_desc_count', 'unmap_granularity',
  'unmap_granularity_alignment', 'max_write_same_len', 'hw_max_sectors', 'optimal_sectors', 'queue_depth',
  'readonly', 'removable', 'max_sanitize_rate', 'tp_soft_threshold', 'tp_allocation_limit',
];
