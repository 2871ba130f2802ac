// The vhost fabric: each socket named by a target's TPGs listens there for
// vhost-user front-ends (tpg-listener.ts); the TPGs naming one socket are the
// virtio targets of that controller. On refresh() a new socket starts
// listening, one no TPG names any more stops, and the others apply their socket
// ownership and tell their guests what changed in their targets and LUNs.

import type { FabricModule, FabricService } from '../../src/core/fabric';
import type { Target, Tpg } from '../../src/model/target';
import { vhostPolling, type FrontendInfo } from './vhost-user-backend';
import { TpgListener, virtioTarget } from './tpg-listener';

/** A vhost TPG as the control API shows it: the controller it is a target of, and who is connected. */
export interface VhostTpgState {
  /** The controller's socket. */
  socket: string;
  /** Its virtio-scsi target on that controller (the guest's H:0:T:L). */
  target: number;
  /** The guest sees this TPG there (enabled, and no TPG before it on the socket claims the same target). */
  serving: boolean;
  device: 'scsi' | 'blk';
  /** Most request queues a front-end may set up. */
  num_queues: number;
  /** Front-ends connected to the controller now. */
  frontends: FrontendInfo[];
}

function describe(l: TpgListener, tpg: Tpg): VhostTpgState {
  const blk = l.tpgs[0].attributes.device === 'blk';
  return {
    socket: l.path,
    target: virtioTarget(tpg),
    serving: blk ? l.tpgs[0] === tpg && tpg.enabled : l.targets().get(virtioTarget(tpg)) === tpg,
    device: blk ? 'blk' : 'scsi',
    num_queues: l.numQueues,
    frontends: [...l.devices].map((d) => d.backend.frontend()),
  };
}

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
      describe(tpg: Tpg): VhostTpgState | undefined {
        for (const l of listeners.values()) if (l.tpgs.includes(tpg)) return describe(l, tpg);
        return undefined;
      },
    };
  },
};
