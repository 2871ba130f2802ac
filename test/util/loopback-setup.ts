// Builds a small live configuration for tests: RAM-backed storage objects
// exported through a loopback target, and nexuses to drive them.

import type { Root, StorageObjectSpec } from '../../src/model/root';
import { createRoot } from '../../app/registry';
import type { StorageObject } from '../../src/model/storage-object';
import type { Tpg } from '../../src/model/target';
import { LoopbackNexus } from '../../fabrics/loopback/loopback';
import { Status } from '../../src/core/sense';

export interface Rig {
  root: Root;
  tpg: Tpg;
  sos: StorageObject[];
  /** Opens a nexus; its power-on unit attentions are already cleared. */
  nexus(initiator?: string): Promise<LoopbackNexus>;
  close(): Promise<void>;
}

export const INITIATOR_A = 'naa.5001405aaaaaaaa1';
export const INITIATOR_B = 'naa.5001405bbbbbbbb2';
export const INITIATOR_C = 'naa.5001405cccccccc3';

/** One or more storage objects as LUNs 0..n-1 of a loopback TPG in demo mode. */
export async function rig(specs: Partial<StorageObjectSpec>[] = [{}]): Promise<Rig> {
  const root = createRoot();
  const sos: StorageObject[] = [];
  for (const [i, s] of specs.entries()) {
    sos.push(await root.createStorageObject({ name: `so${i}`, plugin: 'rd_mcp', size: 64 << 20, ...s } as StorageObjectSpec));
  }
  const target = root.createTarget('loopback', 'naa.5001405000000099');
  const tpg = target.addTpg(1, { generate_node_acls: true, demo_mode_write_protect: false });
  sos.forEach((so, i) => tpg.addLun(i, so));
  return {
    root,
    tpg,
    sos,
    async nexus(initiator = INITIATOR_A) {
      const n = LoopbackNexus.open(tpg, initiator);
      await clearUas(n, sos.length);
      return n;
    },
    close: () => root.close(),
  };
}

/** TEST UNIT READY until no unit attention is left on each LUN. */
export async function clearUas(n: LoopbackNexus, luns: number): Promise<void> {
  for (let lun = 0; lun < luns; lun++) {
    for (let i = 0; i < 16; i++) {
      const r = await n.command(lun, [0, 0, 0, 0, 0, 0]);
      if (r.status !== Status.CHECK_CONDITION || r.senseKey !== 6) break;
    }
  }
}
