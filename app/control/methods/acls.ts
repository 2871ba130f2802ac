// Node ACLs (which initiators a TPG admits, with what auth) and their mapped
// LUNs (which TPG LUN an initiator sees at which number).

import type { MethodTable } from '../context';
import { findAcl, findTpg, liveTarget, liveTpg } from '../lookup';
import { ACL, int, invalidParams, optBool, optObj, type Obj } from '../params';
import { liveSessions } from '../views';

export const aclMethods: MethodTable = {
  'acls.create': {
    doc: 'Adds a node ACL for an initiator; add_mapped_luns (default true) maps every TPG LUN at its own number.',
    params: { ...ACL, attributes: optObj, auth: optObj, add_mapped_luns: optBool },
    run: (p, c) =>
      c.edit((doc) => {
        const tpg = findTpg(doc, p);
        const acls = ((tpg.node_acls as Obj[]) ??= []);
        if (acls.some((a) => String(a.node_wwn).toLowerCase() === String(p.node_wwn).toLowerCase())) throw invalidParams(`ACL ${p.node_wwn} already exists`);
        const acl: Obj = { node_wwn: p.node_wwn, mapped_luns: [] };
        if (p.attributes) acl.attributes = p.attributes;
        if (p.auth) acl.auth = p.auth;
        if (p.add_mapped_luns !== false) acl.mapped_luns = ((tpg.luns as Obj[]) ?? []).map((l) => ({ index: l.index, tpg_lun: l.index }));
        acls.push(acl);
      }),
  },
  'acls.get': {
    doc: 'One ACL, complete, with its sessions.',
    params: ACL,
    run: (p, c) => {
      const tpg = liveTpg(liveTarget(c.live, p.wwn), p.tag);
      const acl = tpg.node_acls.find((a) => a.node_wwn.toLowerCase() === String(p.node_wwn).toLowerCase());
      if (!acl) throw invalidParams(`TPG ${p.tag} of ${p.wwn} has no ACL ${p.node_wwn}`);
      const sessions = liveSessions(c.live).filter((s) => s.tpg.target.wwn === p.wwn && s.tpg.tag === p.tag && s.initiator.name === acl.node_wwn);
      return { ...acl, sessions: sessions.map((s) => s.id) };
    },
  },
  'acls.set': {
    doc: 'Changes an ACL\'s attributes or auth (merged).',
    params: { ...ACL, attributes: optObj, auth: optObj },
    run: (p, c) =>
      c.edit((doc) => {
        const acl = findAcl(doc, p);
        for (const g of ['attributes', 'auth'] as const) if (p[g]) acl[g] = { ...((acl[g] as Obj) ?? {}), ...(p[g] as Obj) };
      }),
  },
  'acls.delete': {
    doc: 'Deletes an ACL; its sessions are closed unless demo mode still admits the initiator.',
    params: ACL,
    run: (p, c) =>
      c.edit((doc) => {
        const tpg = findTpg(doc, p);
        const acl = findAcl(doc, p);
        (tpg.node_acls as Obj[]).splice((tpg.node_acls as Obj[]).indexOf(acl), 1);
      }),
  },
  'mapped_luns.create': {
    doc: 'Maps TPG LUN tpg_lun as LUN index for one initiator.',
    params: { ...ACL, index: int, tpg_lun: int, write_protect: optBool },
    run: (p, c) =>
      c.edit((doc) => {
        const acl = findAcl(doc, p);
        const ml = ((acl.mapped_luns as Obj[]) ??= []);
        if (ml.some((m) => m.index === p.index)) throw invalidParams(`ACL ${p.node_wwn} already maps LUN ${p.index}`);
        ml.push({ index: p.index, tpg_lun: p.tpg_lun, ...(p.write_protect ? { write_protect: true } : {}) });
      }),
  },
  'mapped_luns.delete': {
    doc: 'Unmaps one mapped LUN of an ACL.',
    params: { ...ACL, index: int },
    run: (p, c) =>
      c.edit((doc) => {
        const acl = findAcl(doc, p);
        const ml = (acl.mapped_luns as Obj[]) ?? [];
        const i = ml.findIndex((m) => m.index === p.index);
        if (i < 0) throw invalidParams(`ACL ${p.node_wwn} maps no LUN ${p.index}`);
        ml.splice(i, 1);
      }),
  },
};
