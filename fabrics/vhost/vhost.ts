// The vhost fabric: each TPG with a `socket` attribute listens there for
// vhost-user-scsi front-ends (tpg-listener.ts). On refresh() a new TPG starts
// listening, a removed one stops, and the others apply their socket ownership
// and tell their guests what changed in their LUNs.

import type { FabricModule, FabricService } from '../../src/core/fabric';
import type { Target, Tpg } from '../../src/model/target';
import { TpgListener } from './tpg-listener';

export const vhostFabric: FabricModule = {
  name: 'vhost',
  async serve(target: Target): Promise<FabricService> {
    const listeners = new Map<Tpg, TpgListener>();
    const sync = (): void => {
      for (const tpg of target.tpgs.values()) {
        const path = tpg.attributes.socket;
        if (typeof path !== 'string' || listeners.has(tpg)) continue;
        listeners.set(tpg, new TpgListener(tpg, path));
      }
    };
    sync();
    return {
      async refresh() {
        sync();
        for (const [tpg, l] of listeners) {
          if (!target.tpgs.has(tpg.tag) || target.tpgs.get(tpg.tag) !== tpg) {
            listeners.delete(tpg);
            await l.close();
          } else {
            l.refresh();
          }
        }
      },
      async close() {
        await Promise.all([...listeners.values()].map((l) => l.close()));
        listeners.clear();
      },
    };
  },
};
