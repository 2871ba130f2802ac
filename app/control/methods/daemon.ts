// The daemon as a whole: its status, the methods it serves, the live tree
// (configuration and runtime), and the configuration as a document or YAML.

import { dumpConfig } from '../../config/dump';
import { soKey } from '../../daemon/reconcile';
import { tsioVersion } from '../../config/version';
import type { MethodTable } from '../context';
import type { Obj } from '../params';
import { liveSessions, storageObjectsRuntime } from '../views';

export const daemonMethods: MethodTable = {
  'status': {
    doc: 'Daemon status: version, uptime, object counts, sessions, and how the running config stands against the saveconfig file (save_state: saved, differs, absent, unreadable).',
    params: {},
    run: (_p, c) => {
      const saved = c.saveState();
      return {
        pid: process.pid,
        version: tsioVersion(),
        uptime_s: Math.round((Date.now() - c.startedAt) / 1000),
        storage_objects: c.live.config.storage_objects.length,
        targets: c.live.config.targets.length,
        sessions: liveSessions(c.live).length,
        dirty: c.dirty,
        save_path: c.savePath,
        save_state: saved.state,
        ...(saved.detail ? { save_detail: saved.detail } : {}),
      };
    },
  },
  'methods': { doc: 'Every method with its parameters.', params: {}, run: (_p, c) => Object.entries(c.methods).map(([name, d]) => ({ name, doc: d.doc, params: d.params })) },
  'tree': {
    doc: 'The complete live configuration with runtime data (sizes, users, sessions, statistics).',
    params: {},
    run: async (_p, c) => {
      const { root, config } = c.live;
      const tpgs: Obj = {};
      for (const t of root.targets.values()) {
        for (const tpg of t.tpgs.values()) {
          const fabric = c.live.services.get(t.wwn)?.describe?.(tpg);
          tpgs[`${t.wwn}/${tpg.tag}`] = { sessions: tpg.sessions.size, served: c.live.services.has(t.wwn), ...(fabric ? { fabric } : {}) };
        }
      }
      return { config: { storage_objects: config.storage_objects, targets: config.targets, fabric_modules: config.fabric_modules }, runtime: { storage_objects: await storageObjectsRuntime(c.live), tpgs }, dirty: c.dirty };
    },
  },
  'threads': {
    doc: 'The event loops serving the data path: with io_threads > 1, each I/O thread\'s kernel thread id and the TPGs and storage objects homed on it; else the main thread alone.',
    params: {},
    run: (_p, c) => c.live.threads?.describe() ?? [{ index: 0, tid: process.pid, storage_objects: c.live.config.storage_objects.map(soKey), targets: c.live.config.targets.flatMap((t) => t.tpgs.map((tpg) => `${t.fabric}/${t.wwn}/tpg${tpg.tag}`)) }],
  },
  'config.get': { doc: 'The live configuration as saveconfig writes it.', params: {}, run: (_p, c) => c.document() },
  'config.dump': { doc: 'The live configuration as YAML text.', params: {}, run: (_p, c) => ({ yaml: dumpConfig(c.live.config) }) },
};


