// Attribute defaults. TEMPORARY: replaced by the values read from specs/.
import type { StorageAttributes } from './attributes';

export function storageAttributeDefaults(): StorageAttributes {
  return {
    emulate_tpu: false, emulate_tpws: false, emulate_caw: true, emulate_3pc: true, emulate_pr: true,
    emulate_write_cache: false, emulate_fua_write: true, emulate_tas: true, emulate_ua_intlck_ctrl: 0,
    emulate_model_alias: false, is_nonrot: false, unmap_zeroes_data: false, max_unmap_lba_count: 8388608,
    max_unmap_block_desc_count: 256, unmap_granularity: 1, unmap_granularity_alignment: 0, max_write_same_len: 65535,
    hw_max_sectors: 16384, optimal_sectors: 16384, queue_depth: 128, readonly: false, removable: false,
  };
}
