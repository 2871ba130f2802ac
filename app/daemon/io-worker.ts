// An I/O thread (io_threads > 1): an engine of its own serving the home
// groups placed on it (placement.ts): its own Root with their storage objects
// and targets, their fabric services (vhost sockets, iSCSI portals), its own
// io_uring ring. The main thread sends it its part of the configuration and
// asks it for control views and metrics (io-protocol.ts); commands never cross.

import { parentPort, workerData } from 'node:worker_threads';
import { threadId } from '../../native';
import { log, type LogLevel } from '../../src/core/log';
import { sessionIds } from '../../src/core/session';
import type { FabricService } from '../../src/core/fabric';
import { createRoot } from '../registry';
import { ControlContext } from '../control/context';
import { CONTROL_METHODS } from '../control/methods/index';
import { RpcError } from '../control/params';
import { EMPTY_CONFIG, reconcile, type Live } from './reconcile';
import { metricPart } from './metrics';
import { applyPolling } from './polling';
import type { IoHandoff, IoReconciled, IoReply, IoRequest, IoThreadData } from './io-protocol';
import { vhostEndpoint, type IscsiRoutes } from './placement';
import { adopt, setConnectionRouter } from '../../fabrics/iscsi/handoff';
import { portalKey, portalRegistry } from '../../fabrics/iscsi/portal-registry';

const data = workerData as IoThreadData;
const port = parentPort!;
log.setLevel(data.logLevel as LogLevel);
log.setPriorityPrefix(data.priorityPrefix);
// Session ids unique in the daemon: thread i of n hands out i+1, i+1+n, ...
sessionIds(data.index + 1, data.count);
applyPolling(data.pollMaxNs);

const live: Live = { root: createRoot({ stateDir: data.stateDir }), services: new Map<string, FabricService>(), config: EMPTY_CONFIG };
// Methods run against this thread's part; saving and editing stay on main.
const control = new ControlContext(live, '', CONTROL_METHODS);

/** iSCSI connections move to their target's thread at login (fabrics/iscsi/handoff.ts), through main. */
function route(r: IscsiRoutes): void {
  const self = data.index;
  const remote = r.tpgs.filter((t) => t.thread !== self);
  setConnectionRouter({
    listens: (ip, p) => (r.owners[portalKey(ip, p)] ?? self) === self,
    homeOf: (ip, p, wwn) => remote.find((t) => t.wwn === wwn && t.portals.some((x) => x.ip === ip && x.port === p))?.thread,
    send: (to, h) => port.postMessage({ handoff: { ...h, to } } satisfies IoHandoff),
    remoteTpgs: () => remote,
  });
}

/** Front-ends connected to a vhost controller served here (endpoint key `vhost WWN SOCKET`, placement.ts). */
function frontends(endpoint: string): number {
  const { wwn, socket } = vhostEndpoint(endpoint) ?? { wwn: '', socket: '' };
  const target = live.root.targets.get(wwn);
  const tpg = target && [...target.tpgs.values()].find((t) => t.attributes.socket === socket);
  const d = tpg && (live.services.get(wwn)?.describe?.(tpg) as { frontends?: unknown[] } | undefined);
  return d?.frontends?.length ?? 0;
}

async function handle(m: IoRequest): Promise<unknown> {
  switch (m.kind) {
    case 'reconcile': {
      const before = live.config;
      const carry = { out: new Set(m.handOver ?? []), handedOver: {}, adopt: m.adopt ?? {} };
      try {
        const report = await reconcile(live, m.config, { carry });
        return { report, handedOver: carry.handedOver } satisfies IoReconciled;
      } catch (e) {
        // All or nothing on this thread (units handed over come back with their state); main takes back the other threads' parts.
        const back = { out: new Set<string>(), handedOver: {}, adopt: { ...carry.adopt, ...carry.handedOver } };
        if (live.config !== before) await reconcile(live, before, { carry: back }).catch((e2) => log.warn(`I/O thread ${data.index}: could not take back a failed change: ${(e2 as Error).message}`));
        throw e;
      }
    }
    case 'frontends':
      return m.endpoints.map(frontends);
    case 'method':
      return await CONTROL_METHODS[m.method].run(m.params, control);
    case 'metrics':
      return metricPart(live.root);
    case 'routes':
      route(m.routes);
      if (m.relisten) await portalRegistry.relisten();
      return null;
    case 'adopt':
      adopt(m.handoff);
      return null;
    case 'close':
      await Promise.all([...live.services.values()].map((s) => s.close()));
      live.services.clear();
      await live.root.close();
      return null;
  }
}

port.on('message', (m: IoRequest) => {
  handle(m).then(
    (result) => port.postMessage({ id: m.id, result } satisfies IoReply),
    (e: Error) => port.postMessage({ id: m.id, error: { message: e.message ?? String(e), ...(e instanceof RpcError ? { code: e.code } : {}) } } satisfies IoReply),
  );
});
port.postMessage({ ready: true, tid: threadId() });
