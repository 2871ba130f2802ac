// A config document's path ("targets[0].tpgs[0].attributes.login_timeout")
// said the way tcli shows the object ("/iscsi/IQN/tpg1: attribute
// login_timeout"), so an error about what a tcli command asked for names the
// node and parameter the user typed, not the saved file's layout.

import type { ConfigDocument } from '../config/dump';
import type { ConfigIssue } from '../config/errors';
import { isObj, type Obj } from './params';

/** tcli's settings groups, by the document key that holds them. */
const GROUPS: Record<string, string> = { attributes: 'attribute', parameters: 'parameter', auth: 'auth', discovery_auth: 'discovery_auth' };

function segments(path: string): (string | number)[] {
  const out: (string | number)[] = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : m[1]);
  return out;
}

const portalName = (p: Obj) => {
  const ip = String(p.ip_address ?? '0.0.0.0');
  return `${ip.includes(':') ? `[${ip}]` : ip}:${p.port ?? 3260}`;
};

/** "NODE: what" for a document path; undefined when the path is not inside an object tcli shows. */
export function shellPath(doc: ConfigDocument, path: string): string | undefined {
  const seg = segments(path);
  let node: string | undefined;
  let i = 0;
  const at = (v: unknown, k: string | number): unknown => (isObj(v) || Array.isArray(v) ? (v as Record<string, unknown>)[k as string] : undefined);
  if (seg[0] === 'storage_objects' && typeof seg[1] === 'number') {
    const so = at(doc.storage_objects, seg[1]);
    if (!isObj(so)) return undefined;
    node = `/backstores/${so.plugin}/${so.name}`;
    i = 2;
  } else if (seg[0] === 'fabric_modules' && typeof seg[1] === 'number') {
    const m = at(doc.fabric_modules, seg[1]);
    if (!isObj(m)) return undefined;
    node = `/${m.name}`;
    i = 2;
  } else if (seg[0] === 'targets' && typeof seg[1] === 'number') {
    const t = at(doc.targets, seg[1]);
    if (!isObj(t)) return undefined;
    node = `/${t.fabric}/${t.wwn}`;
    i = 2;
    let cur: unknown = t;
    const steps: Record<string, (o: Obj) => string> = {
      tpgs: (o) => `tpg${o.tag}`,
      luns: (o) => `luns/lun${o.index}`,
      node_acls: (o) => `acls/${o.node_wwn}`,
      mapped_luns: (o) => `mapped_lun${o.index}`,
      portals: (o) => `portals/${portalName(o)}`,
    };
    while (typeof seg[i] === 'string' && steps[seg[i] as string] && typeof seg[i + 1] === 'number') {
      const o = at(at(cur, seg[i]), seg[i + 1]);
      if (!isObj(o)) break;
      node += `/${steps[seg[i] as string](o)}`;
      cur = o;
      i += 2;
    }
  } else return undefined;
  const rest = seg.slice(i);
  if (rest.length === 0) return node;
  if (typeof rest[0] === 'string' && GROUPS[rest[0]] && rest.length > 1) return `${node}: ${GROUPS[rest[0]]} ${rest.slice(1).join('.')}`;
  return `${node}: ${rest.join('.')}`;
}

/** The issues of a refused edit, each named by tcli's node and parameter where it has one. */
export function shellMessage(doc: ConfigDocument, issues: readonly ConfigIssue[]): string {
  return issues.map((i) => `${(i.path && shellPath(doc, i.path)) || i.path}${i.path ? ': ' : ''}${i.message}`).join('; ');
}
