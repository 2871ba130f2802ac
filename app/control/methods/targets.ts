// Targets: one per fabric WWN, created with a TPG 1 unless asked otherwise.

import { specs } from '../../config/specs';
import type { MethodTable } from '../context';
import { findTarget, liveTarget } from '../lookup';
import { invalidParams, optBool, optObj, optStr, str, type Obj } from '../params';

export const targetMethods: MethodTable = {
  'targets.list': { doc: 'Targets with their TPGs.', params: {}, run: (_p, c) => c.live.config.targets.map((t) => ({ fabric: t.fabric, wwn: t.wwn, tpgs: t.tpgs.map((x) => x.tag) })) },
  'targets.get': { doc: 'One target, complete.', params: { wwn: str }, run: (p, c) => liveTarget(c.live, p.wwn) },
  'targets.create': {
    doc: 'Creates a target of a fabric; a TPG 1 comes with it unless tpg=false. wwn absent: one is generated.',
    params: { fabric: str, wwn: optStr, tpg: optBool, tpg_fields: optObj },
    run: (p, c) =>
      c.edit((doc) => {
        const f = specs().findFabric(p.fabric as string);
        if (!f) throw invalidParams(`unknown fabric '${p.fabric}' (known: ${specs().fabrics.map((x) => x.name).join(', ')})`);
        const wwn = (p.wwn as string | undefined) ?? generateWwn(f.name);
        if (doc.targets.some((t) => t.fabric === f.name && String(t.wwn).toLowerCase() === wwn.toLowerCase())) throw invalidParams(`${f.name} target ${wwn} already exists`);
        const tpgs = p.tpg === false ? [] : [{ tag: 1, ...((p.tpg_fields as Obj) ?? {}) }];
        doc.targets.push({ fabric: f.name, wwn, tpgs });
        return { wwn, tpgs: tpgs.map((t) => t.tag) };
      }),
  },
  'targets.delete': {
    doc: 'Deletes a target: its sessions are closed, its portals and sockets stop.',
    params: { wwn: str },
    run: (p, c) =>
      c.edit((doc) => {
        const t = findTarget(doc, p.wwn);
        doc.targets.splice(doc.targets.indexOf(t), 1);
      }),
  },
};

/** A target WWN in the fabric's first format, unique enough to never collide in practice. */
export function generateWwn(fabric: string): string {
  const hex = (n: number) => [...crypto.getRandomValues(new Uint8Array(n))].map((b) => b.toString(16).padStart(2, '0')).join('');
  if (fabric === 'iscsi') return `iqn.2026-11.org.tsio:${hex(6)}`;
  return `naa.5001405${hex(5).slice(0, 9)}`;
}
