// Sessions (I_T nexuses) and statistics per storage object, LUN and session.

import type { MethodTable } from '../context';
import { int, invalidParams, optStr, type Obj } from '../params';
import { liveSessions, sessionView } from '../views';

export const sessionMethods: MethodTable = {
  'sessions.list': { doc: 'Every session (I_T nexus) with its statistics.', params: { wwn: optStr }, run: (p, c) => liveSessions(c.live).filter((s) => p.wwn === undefined || s.tpg.target.wwn === p.wwn).map((s) => sessionView(s, false)) },
  'sessions.get': {
    doc: 'One session in detail: per-LUN state and statistics.',
    params: { id: int },
    run: (p, c) => {
      const s = liveSessions(c.live).find((x) => x.id === p.id);
      if (!s) throw invalidParams(`no session ${p.id}`);
      return sessionView(s, true);
    },
  },
  'statistics': {
    doc: 'Command counts, bytes, errors and latency percentiles per storage object, LUN and session.',
    params: {},
    run: (_p, c) => {
      const { root } = c.live;
      const luns: Obj[] = [];
      for (const t of root.targets.values()) {
        for (const tpg of t.tpgs.values()) {
          for (const l of tpg.luns.values()) luns.push({ fabric: t.fabric, target: t.wwn, tpg: tpg.tag, lun: l.index, storage_object: l.so.path, stats: l.so.lu.stats.snapshot() });
        }
      }
      const storage_objects = [...root.storageObjects.values()].map((so) => ({ path: so.path, stats: so.lu.stats.snapshot() }));
      return { storage_objects, luns, sessions: liveSessions(c.live).map((s) => sessionView(s, false)) };
    },
  },
};
