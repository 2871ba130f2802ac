// The vhost fabric: each socket named by a target's TPGs listens there for
// vhost-user front-ends (tpg-listener.ts); the TPGs naming one socket are the
// virtio targets of that controller. On refresh() a new socket starts
// listening, one no TPG names any more stops, and the others apply their socket
// ownership and tell their guests what changed in their targets and LUNs.

import type { FabricModule, FabricService } from '../../src/core/fabric';
import type { Target, Tpg } from '../../src/model/target';
import { TpgListener } from './tpg-listener';
import { vhostPolling } from './vhost-user-backend';

/** Longest poll of a connection's rings before it sleeps on its kicks, in ns (0: never poll); see vhostPolling. */
export function setVhostPollMaxNs(ns: number): void {
  if (!Number.isInteger(ns) || ns < 0 || ns > MAX_POLL_NS) throw new RangeError(`poll_max_ns ${ns}: an integer from 0 to ${MAX_POLL_NS}`);
  vhostPolling.maxNs = ns;
}
/** 10 ms: a poll longer than that is a busy loop, not a poll. */
export const MAX_POLL_NS = 10_000_000;

/** The target's TPGs by the socket they name, lowest tag first. */
function bySocket(target: Target): Map<string, Tpg[]> {
  const m = new Map<string, Tpg[]>();
  for (const tpg of [...target.tpgs.values()].sort((a, b) => a.tag - b.tag)) {
    const path = tpg.attributes.socket;
    if (typeof path !== 'string') continue;
    const list = m.get(path);
    if (list) list.push(tpg);
    else m.set(path, [tpg]);
  }
  return m;
}

export const vhostFabric: FabricModule = {
  name: 'vhost',
  async serve(target: Target): Promise<FabricService> {
    const listeners = new Map<string, TpgListener>();
    const sync = async (): Promise<void> => {
      const want = bySocket(target);
      for (const [path, l] of listeners) {
        if (want.has(path)) continue;
        listeners.delete(path);
        await l.close();
      }
      for (const [path, tpgs] of want) {
        const l = listeners.get(path);
        if (l) {
          l.tpgs = tpgs;
          l.refresh();
        } else listeners.set(path, new TpgListener(tpgs, path));
      }
    };
    await sync();
    return {
      refresh: sync,
      async close() {
        await Promise.all([...listeners.values()].map((l) => l.close()));
        listeners.clear();
      },
    };
  },
};
