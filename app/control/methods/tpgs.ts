// Target portal groups: a target's TPGs, their attributes, parameters, auth
// and fabric fields.

import type { MethodTable } from '../context';
import { findTarget, findTpg, liveTarget, liveTpg } from '../lookup';
import { int, invalidParams, optBool, optObj, str, TPG, type Obj } from '../params';

export const tpgMethods: MethodTable = {
  'tpgs.create': {
    doc: 'Adds a TPG to a target; fields: the fabric TPG fields (vhost: socket), attributes, parameters, auth, enable.',
    params: { wwn: str, tag: int, fields: optObj },
    run: (p, c) =>
      c.edit((doc) => {
        const t = findTarget(doc, p.wwn);
        const tpgs = ((t.tpgs as Obj[]) ??= []);
        if (tpgs.some((x) => x.tag === p.tag)) throw invalidParams(`target ${t.wwn} already has TPG ${p.tag}`);
        tpgs.push({ tag: p.tag, ...((p.fields as Obj) ?? {}) });
      }),
  },
  'tpgs.get': {
    doc: 'One TPG, complete, with its session count and what its fabric shows of it (fabric_state; vhost: controller socket, target, front-ends).',
    params: TPG,
    run: (p, c) => {
      const t = liveTarget(c.live, p.wwn);
      const tpg = liveTpg(t, p.tag);
      const running = c.live.root.targets.get(t.wwn)?.tpgs.get(tpg.tag);
      const fabric = running ? c.live.services.get(t.wwn)?.describe?.(running) : undefined;
      return { ...tpg, sessions: running?.sessions.size ?? 0, ...(fabric ? { fabric_state: fabric } : {}) };
    },
  },
  'tpgs.set': {
    doc: 'Changes TPG attributes, parameters, auth (merged), enable, or fabric fields (vhost socket, socket_mode, socket_group, num_queues).',
    params: { ...TPG, attributes: optObj, parameters: optObj, auth: optObj, enable: optBool, fields: optObj },
    run: (p, c) =>
      c.edit((doc) => {
        const tpg = findTpg(doc, p);
        for (const g of ['attributes', 'parameters', 'auth'] as const) if (p[g]) tpg[g] = { ...((tpg[g] as Obj) ?? {}), ...(p[g] as Obj) };
        if (p.enable !== undefined) tpg.enable = p.enable;
        if (p.fields) {
          if ('tag' in (p.fields as Obj)) throw invalidParams('tag cannot be changed; delete and create instead');
          Object.assign(tpg, p.fields);
        }
      }),
  },
  'tpgs.delete': {
    doc: 'Deletes a TPG and closes its sessions.',
    params: TPG,
    run: (p, c) =>
      c.edit((doc) => {
        const t = findTarget(doc, p.wwn);
        const tpg = findTpg(doc, p);
        (t.tpgs as Obj[]).splice((t.tpgs as Obj[]).indexOf(tpg), 1);
      }),
  },
};
