// Network portals of a TPG: the fabric listens on each as soon as it is added.

import { specs } from '../../config/specs';
import type { MethodTable } from '../context';
import { findTarget, findTpg } from '../lookup';
import { int, invalidParams, optInt, str, TPG, type Obj } from '../params';

export const portalMethods: MethodTable = {
  'portals.create': {
    doc: 'Adds a network portal (ip_address, port default 3260); the fabric listens on it at once.',
    params: { ...TPG, ip_address: str, port: optInt },
    run: (p, c) =>
      c.edit((doc) => {
        const tpg = findTpg(doc, p);
        const portals = ((tpg.portals as Obj[]) ??= []);
        const port = (p.port as number | undefined) ?? (specs().fabric(String(findTarget(doc, p.wwn).fabric)).portal.find((f) => f.name === 'port')?.default as number);
        portals.push({ ip_address: p.ip_address, port });
        return { ip_address: p.ip_address, port };
      }),
  },
  'portals.delete': {
    doc: 'Removes a network portal; the fabric stops listening on it.',
    params: { ...TPG, ip_address: str, port: int },
    run: (p, c) =>
      c.edit((doc) => {
        const tpg = findTpg(doc, p);
        const portals = (tpg.portals as Obj[]) ?? [];
        const i = portals.findIndex((x) => x.ip_address === p.ip_address && x.port === p.port);
        if (i < 0) throw invalidParams(`TPG ${p.tag} of ${p.wwn} has no portal ${p.ip_address}:${p.port}`);
        portals.splice(i, 1);
      }),
  },
};
