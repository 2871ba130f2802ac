// Logical block provisioning (SBC-4 4.7), derived in one place from the
// storage object's attributes and what its backstore can do. READ CAPACITY(16)
// and the VPD B0/B2 pages both read it, so they always agree.

import type { LogicalUnit } from '../core/logical-unit';

export interface Provisioning {
  /** Thin provisioned: LBPME in READ CAPACITY(16), provisioning type 2 in VPD B2. */
  thin: boolean;
  /** UNMAP served (LBPU). */
  unmap: boolean;
  /** WRITE SAME(16) and (10) with the UNMAP bit served (LBPWS, LBPWS10). */
  writeSameUnmap: boolean;
  /** Deallocated blocks read as zeros (LBPRZ). */
  readsZeros: boolean;
  /** UNMAP limits for VPD B0, in blocks and descriptors. */
  maxUnmapBlocks: number;
  maxUnmapDescriptors: number;
  granularity: number;
  granularityAlignment: number;
}

export function provisioning(lu: LogicalUnit): Provisioning {
  const a = lu.so.attributes;
  const caps = lu.backstore.caps;
  const unmap = a.emulate_tpu && caps.unmap;
  const writeSameUnmap = a.emulate_tpws && caps.unmap;
  const thin = unmap || writeSameUnmap;
  return {
    thin,
    unmap,
    writeSameUnmap,
    // Every backstore we have zeroes what it deallocates.
    readsZeros: thin,
    maxUnmapBlocks: unmap ? a.max_unmap_lba_count : 0,
    maxUnmapDescriptors: unmap ? a.max_unmap_block_desc_count : 0,
    granularity: Math.max(1, a.unmap_granularity),
    granularityAlignment: a.unmap_granularity_alignment,
  };
}
