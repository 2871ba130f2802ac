// tcli's view of the daemon: the node tree targetcli users know
// (/backstores/<plugin>/<name>, /<fabric>/<wwn>/tpg<N>/{luns,acls,portals}),
// built from one `tree` call, with a one-line summary per node.

import type { StorageObjectConfig, TargetConfig, TpgConfig, NodeAclConfig, TsioConfig, IoStatsSnapshot, VhostTpgState } from '../app/control/wire';
import { specs, type FabricSpec } from '../app/config/specs';
import { formatSizeHuman } from '../app/config/size';

export type NodeKind =
  | 'root' | 'backstores' | 'plugin' | 'so' | 'fabric' | 'target' | 'tpg' | 'luns' | 'lun' | 'acls' | 'acl' | 'mapped_lun' | 'portals' | 'portal';

export interface TreeData {
  config: Pick<TsioConfig, 'storage_objects' | 'targets' | 'fabric_modules'>;
  runtime: {
    storage_objects: Record<string, {
      size: number; block_size: number; serial: string; used_by: string[]; health?: string; stats: StatsView;
      /** Shared storage (rbd): this gateway's client and the image's lock; its ALUA state. */
      cluster?: Record<string, string | number | boolean>;
      alua?: { group: number; state: string; owner: number; fenced: boolean; moving?: string };
    }>;
    /** fabric: what the fabric shows of the TPG (vhost: VhostTpgState). */
    tpgs: Record<string, { sessions: number; served: boolean; fabric?: VhostTpgState }>;
  };
  dirty: boolean;
}

export type StatsView = IoStatsSnapshot;

export interface Node {
  name: string;
  path: string;
  kind: NodeKind;
  parent?: Node;
  children: Node[];
  summary: string;
  /** Healthy (true), not (false), unknown (undefined): colours the summary. */
  ok?: boolean;
  plugin?: string;
  so?: StorageObjectConfig;
  fabric?: FabricSpec;
  target?: TargetConfig;
  tpg?: TpgConfig;
  lunIndex?: number;
  acl?: NodeAclConfig;
  mappedIndex?: number;
  portal?: { ip_address: string; port: number };
  /** A vhost TPG's controller, target and front-ends (runtime). */
  vhost?: VhostTpgState;
}

export const FABRICS = ['iscsi', 'vhost', 'loopback'] as const;
export const PLUGINS = ['rd_mcp', 'fileio', 'block', 'pscsi', 'rbd'] as const;

export const formatSize = formatSizeHuman;

function node(parent: Node | undefined, name: string, kind: NodeKind, summary: string, extra: Partial<Node> = {}): Node {
  const path = parent === undefined ? '/' : parent.path === '/' ? `/${name}` : `${parent.path}/${name}`;
  const n: Node = { name, path, kind, parent, children: [], summary, ...extra };
  parent?.children.push(n);
  return n;
}

/** Natural order: lun2 before lun10. */
const natural = (a: Node, b: Node) => a.name.localeCompare(b.name, 'en', { numeric: true });

export function buildTree(data: TreeData): Node {
  const s = specs();
  const root = node(undefined, '/', 'root', '...');
  const bs = node(root, 'backstores', 'backstores', '...');
  for (const plugin of PLUGINS) {
    const sos = data.config.storage_objects.filter((x) => x.plugin === plugin);
    const p = node(bs, plugin, 'plugin', `Storage Objects: ${sos.length}`, { plugin });
    for (const so of sos) {
      const rt = data.runtime.storage_objects[`/backstores/${plugin}/${so.name}`];
      const parts: string[] = [];
      if (so.dev !== undefined) parts.push(so.dev);
      parts.push(`(${formatSize(rt?.size ?? so.size ?? 0)})`);
      if (so.plugin === 'fileio' || so.plugin === 'block') parts.push(so.attributes.emulate_write_cache ? 'write-back' : 'write-thru');
      if (so.nullio) parts.push('nullio');
      if (so.attributes.readonly) parts.push('read-only');
      const used = rt?.used_by.length ?? 0;
      parts.push(used > 0 ? 'activated' : 'deactivated');
      node(p, so.name, 'so', parts.join(' '), { plugin, so, ok: rt !== undefined });
    }
  }
  for (const fname of FABRICS) {
    const f = s.fabric(fname);
    const targets = data.config.targets.filter((t) => t.fabric === fname);
    const fn = node(root, fname, 'fabric', `Targets: ${targets.length}`, { fabric: f });
    for (const t of targets) {
      // vhost: a socket is one controller, its TPGs the controller's virtio targets.
      const sockets = [...new Set(t.tpgs.map((x) => x.socket).filter((x) => x !== undefined))];
      const controllers = sockets.length === 0 ? '' : sockets.length === 1 ? `, controller ${sockets[0]}` : `, controllers: ${sockets.join(' ')}`;
      const tn = node(fn, t.wwn, 'target', `TPGs: ${t.tpgs.length}${controllers}`, { fabric: f, target: t });
      for (const tpg of t.tpgs) {
        const rt = data.runtime.tpgs[`${t.wwn}/${tpg.tag}`];
        const blk = tpg.device === 'blk';
        const bits: string[] = [];
        if (tpg.attributes.generate_node_acls === true) bits.push('gen-acls');
        else if (f.hasFeature('acls')) bits.push('no-gen-acls');
        if (f.hasFeature('auth')) {
          const tpgAuth = tpg.auth?.userid ? 'tpg-auth' : tpg.attributes.authentication === false ? 'no-auth' : 'auth per-acl';
          bits.push(tpgAuth);
        }
        if (tpg.socket !== undefined) {
          bits.push(blk ? 'virtio-blk' : `target ${tpg.target ?? 0}`);
          if (sockets.length > 1) bits.push(tpg.socket);
          const fes = rt?.fabric?.frontends ?? [];
          if (fes.length === 0) bits.push('no front-end');
          else {
            const can = fes.some((x) => x.reconnects === 'no') ? 'cannot' : fes.every((x) => x.reconnects === 'yes') ? 'can' : 'may not';
            bits.push(`front-end${fes.length > 1 ? `s: ${fes.length}` : ''} ${can} reconnect`);
          }
        }
        if (!tpg.enable) bits.push('disabled');
        bits.push(`sessions: ${rt?.sessions ?? 0}`);
        const tp = node(tn, `tpg${tpg.tag}`, 'tpg', bits.join(', '), { fabric: f, target: t, tpg, ok: tpg.enable && (rt?.served ?? false), vhost: rt?.fabric });
        const luns = node(tp, 'luns', 'luns', `LUNs: ${tpg.luns.length}`, { fabric: f, target: t, tpg });
        for (const l of tpg.luns) {
          const so = data.config.storage_objects.find((x) => `/backstores/${x.plugin}/${x.name}` === l.storage_object);
          const where = so?.dev !== undefined ? ` (${so.dev})` : '';
          // vhost: where the guest finds it (H, the guest's SCSI host number, is the guest's to choose).
          const at = tpg.socket === undefined ? '' : blk ? 'virtio-blk disk ' : `H:0:${tpg.target ?? 0}:${l.index} `;
          node(luns, `lun${l.index}`, 'lun', `${at}${l.storage_object.replace('/backstores/', '')}${where}${l.alias ? ` alias ${l.alias}` : ''}`, { fabric: f, target: t, tpg, lunIndex: l.index, ok: so !== undefined });
        }
        luns.children.sort(natural);
        if (f.hasFeature('acls')) {
          const acls = node(tp, 'acls', 'acls', `ACLs: ${tpg.node_acls.length}`, { fabric: f, target: t, tpg });
          for (const a of tpg.node_acls) {
            const an = node(acls, a.node_wwn, 'acl', `Mapped LUNs: ${a.mapped_luns.length}${a.auth?.userid ? ', auth' : ''}`, { fabric: f, target: t, tpg, acl: a });
            for (const m of a.mapped_luns) {
              const l = tpg.luns.find((x) => x.index === m.tpg_lun);
              node(an, `mapped_lun${m.index}`, 'mapped_lun', `lun${m.tpg_lun} ${l ? l.storage_object.replace('/backstores/', '') : '?'} (${m.write_protect ? 'ro' : 'rw'})`, { fabric: f, target: t, tpg, acl: a, mappedIndex: m.index });
            }
            an.children.sort(natural);
          }
        }
        if (f.hasFeature('nps')) {
          const ps = node(tp, 'portals', 'portals', `Portals: ${tpg.portals.length}`, { fabric: f, target: t, tpg });
          for (const p of tpg.portals) node(ps, portalName(p), 'portal', 'OK', { fabric: f, target: t, tpg, portal: p, ok: true });
        }
      }
      tn.children.sort(natural);
    }
  }
  return root;
}

export function portalName(p: { ip_address: string; port: number }): string {
  return p.ip_address.includes(':') ? `[${p.ip_address}]:${p.port}` : `${p.ip_address}:${p.port}`;
}

/** The node at an absolute path, or undefined. */
export function find(root: Node, path: string): Node | undefined {
  let n: Node | undefined = root;
  for (const part of path.split('/').filter((x) => x !== '')) {
    n = n.children.find((c) => c.name === part) ?? n.children.find((c) => c.name.toLowerCase() === part.toLowerCase());
    if (!n) return undefined;
  }
  return n;
}

/** Joins a path typed by the user onto the current one (., .., absolute); no lookup. */
export function joinPath(cwd: string, typed: string): string {
  const parts = typed.startsWith('/') ? [] : cwd.split('/').filter((x) => x !== '');
  for (const p of typed.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') parts.pop();
    else parts.push(p);
  }
  return '/' + parts.join('/');
}

/** targetcli's tree drawing: "o- name ....... [summary]", children indented with "|" for open columns. */
export function renderTree(n: Node, opts: { width?: number; depth?: number; color?: boolean } = {}): string {
  const width = Math.max(60, opts.width ?? 80);
  const maxDepth = opts.depth ?? Infinity;
  const lines: string[] = [];
  const colors = ['', '\x1b[34m', '\x1b[35m'];
  const walk = (x: Node, prefix: string, last: boolean, depth: number) => {
    const lead = depth === 0 ? 'o- ' : `${prefix}o- `;
    const name = x.kind === 'root' ? '/' : x.name;
    const summary = `[${x.summary}]`;
    const fill = Math.max(1, width - lead.length - name.length - summary.length - 2);
    let shownName = name;
    let shownSummary = summary;
    if (opts.color) {
      shownName = `${colors[depth % 3]}${name}${colors[depth % 3] ? '\x1b[0m' : ''}`;
      shownSummary = x.ok === true ? `\x1b[32m${summary}\x1b[0m` : x.ok === false ? `\x1b[1;31m${summary}\x1b[0m` : summary;
    }
    lines.push(`${lead}${shownName} ${'.'.repeat(fill)} ${shownSummary}`);
    if (depth >= maxDepth) return;
    const kids = x.children;
    kids.forEach((k, i) => {
      const childPrefix = depth === 0 ? '  ' : prefix + (last ? '  ' : '| ');
      walk(k, childPrefix, i === kids.length - 1, depth + 1);
    });
  };
  walk(n, '', true, 0);
  return lines.join('\n');
}
