// A TPG's LUNs: exporting a storage object, and taking it back with the
// mapped LUNs that reach it.

import type { MethodTable } from '../context';
import { findStorageObject, findTpg } from '../lookup';
import { int, invalidParams, optBool, optInt, optStr, str, TPG, type Obj } from '../params';

export const lunMethods: MethodTable = {
  'luns.create': {
    doc: 'Exports a storage object as a TPG LUN (index: the lowest free when absent); add_mapped_luns (default true) maps it into every ACL.',
    params: { ...TPG, storage_object: str, index: optInt, alias: optStr, add_mapped_luns: optBool },
    run: (p, c) =>
      c.edit((doc) => {
        const tpg = findTpg(doc, p);
        findStorageObject(doc, p.storage_object);
        const luns = ((tpg.luns as Obj[]) ??= []);
        const index = (p.index as number | undefined) ?? lowestFree(luns.map((l) => l.index as number));
        if (luns.some((l) => l.index === index)) throw invalidParams(`TPG ${p.tag} of ${p.wwn} already has LUN ${index}`);
        const lun: Obj = { index, storage_object: p.storage_object };
        if (p.alias !== undefined) lun.alias = p.alias;
        luns.push(lun);
        if (p.add_mapped_luns !== false) {
          for (const acl of (tpg.node_acls as Obj[]) ?? []) {
            const ml = ((acl.mapped_luns as Obj[]) ??= []);
            if (!ml.some((m) => m.index === index)) ml.push({ index, tpg_lun: index });
          }
        }
        return { index };
      }),
  },
  'luns.delete': {
    doc: 'Removes a TPG LUN and the mapped LUNs reaching it; its in-flight I/O finishes, sessions get REPORTED LUNS DATA HAS CHANGED.',
    params: { ...TPG, index: int },
    run: (p, c) =>
      c.edit((doc) => {
        const tpg = findTpg(doc, p);
        const luns = (tpg.luns as Obj[]) ?? [];
        if (!luns.some((l) => l.index === p.index)) throw invalidParams(`TPG ${p.tag} of ${p.wwn} has no LUN ${p.index}${luns.length ? ` (it has ${luns.map((l) => l.index).join(', ')})` : ''}`);
        removeLuns(tpg, [p.index as number]);
      }),
  },
};

/** Removes TPG LUNs and every mapped LUN that reaches them. */
export function removeLuns(tpg: Obj, indexes: unknown[]): void {
  if (indexes.length === 0) return;
  tpg.luns = ((tpg.luns as Obj[]) ?? []).filter((l) => !indexes.includes(l.index));
  for (const acl of (tpg.node_acls as Obj[]) ?? []) acl.mapped_luns = ((acl.mapped_luns as Obj[]) ?? []).filter((m) => !indexes.includes(m.tpg_lun));
}

function lowestFree(used: number[]): number {
  let i = 0;
  while (used.includes(i)) i++;
  return i;
}
