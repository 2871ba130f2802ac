// The control API: JSON-RPC 2.0 over a unix socket (newline-delimited JSON,
// mode 0600). Every object of the configuration can be listed, created,
// changed and deleted here; tcli is a thin client of it. A change edits the
// config document, which is validated whole by parseConfig (the one set of
// rules tsiod --config obeys), then applied live by reconcile(): a malformed
// or refused request changes nothing.

import { createServer, connect, type Server, type Socket } from 'node:net';
import { chmodSync, existsSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ConfigError, formatIssue, parseConfig, type TsioConfig } from '../config/config';
import { dumpConfig } from '../config/dump';
import { DEFAULT_SAVE_PATH, saveAtomically, listBackups } from '../config/save';
import { isLioSaveconfig, lioToDocument } from '../config/lio-import';
import { specs } from '../config/specs';
import { didYouMean } from '../config/validation';
import { absolutePaths, EMPTY_CONFIG, soKey, type Live } from '../daemon/reconcile';
import { log } from '../../src/core/log';
import { prAdminClear, prView } from '../../src/scsi/pr';
import { DEFAULT_CONTROL_PATH, RpcCode } from './wire';
import { ACL, bool, decodeParams, int, invalidParams, isObj, obj, optBool, optInt, optObj, optStr, RpcError, str, TPG, type Obj, type Params } from './params';
import { ControlContext, type MethodTable } from './context';
import { findAcl, findStorageObject, findTarget, findTpg, liveStorageObject, liveTarget, liveTpg } from './lookup';
import { liveSessions, sessionView, storageObjectsRuntime } from './views';

export { DEFAULT_CONTROL_PATH };

export interface ControlOptions {
  savePath?: string;
  /** The text the live config was loaded from (the baseline for `dirty`). */
  startedFrom?: string;
}

export class Control {
  private queue: Promise<unknown> = Promise.resolve();
  readonly methods: MethodTable = METHODS;
  private readonly context: ControlContext;

  constructor(
    readonly live: Live,
    opts: ControlOptions = {},
  ) {
    this.context = new ControlContext(live, opts.savePath ?? DEFAULT_SAVE_PATH, this.methods);
  }

  get savePath(): string {
    return this.context.savePath;
  }

  /** True when the live config differs from what was last loaded or saved. */
  get dirty(): boolean {
    return this.context.dirty;
  }

  // -------------------------------------------------------------------------
  // Requests

  /** One line of input; returns the line to answer with, or undefined for notifications. */
  async handleLine(line: string): Promise<string | undefined> {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch (e) {
      return JSON.stringify(errorReply(null, RpcCode.PARSE, `parse error: ${(e as Error).message}`));
    }
    if (Array.isArray(msg)) {
      if (msg.length === 0) return JSON.stringify(errorReply(null, RpcCode.INVALID_REQUEST, 'invalid request: empty batch'));
      const replies = (await Promise.all(msg.map((m) => this.handle(m)))).filter((r) => r !== undefined);
      return replies.length > 0 ? JSON.stringify(replies) : undefined;
    }
    const r = await this.handle(msg);
    return r === undefined ? undefined : JSON.stringify(r);
  }

  async handle(msg: unknown): Promise<object | undefined> {
    if (!isObj(msg)) return errorReply(null, RpcCode.INVALID_REQUEST, 'invalid request: not a JSON object');
    const id = msg.id;
    const idOk = id === undefined || id === null || typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id));
    if (!idOk) return errorReply(null, RpcCode.INVALID_REQUEST, 'invalid request: id must be a string, a number or null');
    const rid = (id ?? null) as string | number | null;
    if (msg.jsonrpc !== '2.0') return errorReply(rid, RpcCode.INVALID_REQUEST, 'invalid request: jsonrpc must be "2.0"');
    if (typeof msg.method !== 'string') return errorReply(rid, RpcCode.INVALID_REQUEST, 'invalid request: method must be a string');
    const extra = Object.keys(msg).filter((k) => !['jsonrpc', 'method', 'params', 'id'].includes(k));
    if (extra.length > 0) return errorReply(rid, RpcCode.INVALID_REQUEST, `invalid request: unknown member '${extra[0]}'`);
    const notification = !('id' in msg);
    const def = Object.prototype.hasOwnProperty.call(this.methods, msg.method) ? this.methods[msg.method] : undefined;
    let reply: object;
    if (!def) {
      const guess = didYouMean(msg.method, Object.keys(this.methods));
      reply = errorReply(rid, RpcCode.METHOD, `method not found: ${msg.method}${guess ? ` (did you mean ${guess}?)` : ''}`);
    } else {
      try {
        const p = decodeParams(msg.method, def.params, msg.params);
        // One change at a time: each sees the config the previous one left.
        const run = this.queue.then(() => def.run(p, this.context));
        this.queue = run.catch(() => {});
        reply = { jsonrpc: '2.0', id: rid, result: (await run) ?? null };
      } catch (e) {
        if (e instanceof RpcError) reply = errorReply(rid, e.code, e.message);
        else if (e instanceof ConfigError) reply = errorReply(rid, RpcCode.PARAMS, configMessage(e));
        else {
          log.warn(`control: ${msg.method} failed`, e);
          reply = errorReply(rid, RpcCode.FAILED, `${msg.method} failed: ${(e as Error).message ?? String(e)}`);
        }
      }
    }
    return notification ? undefined : reply;
  }
}

/** The whole live state: the complete config (defaults filled in) and what only the running daemon knows. */
function tree(c: ControlContext): Obj {
  const { root, config } = c.live;
  const tpgs: Obj = {};
  for (const t of root.targets.values()) {
    for (const tpg of t.tpgs.values()) tpgs[`${t.wwn}/${tpg.tag}`] = { sessions: tpg.sessions.size, served: c.live.services.has(t.wwn) };
  }
  return { config: { storage_objects: config.storage_objects, targets: config.targets, fabric_modules: config.fabric_modules }, runtime: { storage_objects: storageObjectsRuntime(c.live), tpgs }, dirty: c.dirty };
}

function statistics(c: ControlContext): Obj {
  const { root } = c.live;
  const luns: Obj[] = [];
  for (const t of root.targets.values()) {
    for (const tpg of t.tpgs.values()) {
      for (const l of tpg.luns.values()) luns.push({ fabric: t.fabric, target: t.wwn, tpg: tpg.tag, lun: l.index, storage_object: l.so.path, stats: l.so.lu.stats.snapshot() });
    }
  }
  const storage_objects = [...root.storageObjects.values()].map((so) => ({ path: so.path, stats: so.lu.stats.snapshot() }));
  return { storage_objects, luns, sessions: liveSessions(c.live).map((s) => sessionView(s, false)) };
}

function liveTpgView(c: ControlContext, p: Params): Obj {
  const t = liveTarget(c.live, p.wwn);
  const tpg = liveTpg(t, p.tag);
  return { ...tpg, sessions: c.live.root.targets.get(t.wwn)?.tpgs.get(tpg.tag)?.sessions.size ?? 0 };
}

function liveAclView(c: ControlContext, p: Params): Obj {
  const tpg = liveTpg(liveTarget(c.live, p.wwn), p.tag);
  const acl = tpg.node_acls.find((a) => a.node_wwn.toLowerCase() === String(p.node_wwn).toLowerCase());
  if (!acl) throw invalidParams(`TPG ${p.tag} of ${p.wwn} has no ACL ${p.node_wwn}`);
  const sessions = liveSessions(c.live).filter((s) => s.tpg.target.wwn === p.wwn && s.tpg.tag === p.tag && s.initiator.name === acl.node_wwn);
  return { ...acl, sessions: sessions.map((s) => s.id) };
}

const METHODS: MethodTable = {
  'status': {
    doc: 'Daemon status: version, uptime, object counts, sessions, whether the config changed since it was loaded or saved.',
    params: {},
    run: (_p, c) => ({
      pid: process.pid,
      version: packageVersion(),
      uptime_s: Math.round((Date.now() - c.startedAt) / 1000),
      storage_objects: c.live.config.storage_objects.length,
      targets: c.live.config.targets.length,
      sessions: liveSessions(c.live).length,
      dirty: c.dirty,
      save_path: c.savePath,
    }),
  },
  'methods': { doc: 'Every method with its parameters.', params: {}, run: (_p, c) => Object.entries(c.methods).map(([name, d]) => ({ name, doc: d.doc, params: d.params })) },
  'tree': { doc: 'The complete live configuration with runtime data (sizes, users, sessions, statistics).', params: {}, run: (_p, c) => tree(c) },
  'config.get': { doc: 'The live configuration as saveconfig writes it.', params: {}, run: (_p, c) => c.document() },
  'config.dump': { doc: 'The live configuration as YAML text.', params: {}, run: (_p, c) => ({ yaml: dumpConfig(c.live.config) }) },

  // Storage objects
  'storage_objects.list': {
    doc: 'Storage objects, with size and users.',
    params: {},
    run: (_p, c) => Object.entries((tree(c).runtime as Obj).storage_objects as Obj).map(([path, r]) => ({ path, ...(r as Obj) })),
  },
  'storage_objects.get': {
    doc: 'One storage object: its config and runtime.',
    params: { path: str },
    run: (p, c) => {
      const so = findStorageObject(c.document(), p.path);
      const full = c.live.config.storage_objects.find((x) => soKey(x) === p.path);
      return { ...full, config: so, runtime: ((tree(c).runtime as Obj).storage_objects as Obj)[p.path as string] };
    },
  },
  'storage_objects.create': {
    doc: 'Creates a storage object: plugin, name and the plugin fields (specs/backstores/<plugin>.yaml); attributes optional.',
    params: { plugin: str, name: str, attributes: optObj, fields: optObj },
    run: (p, c) =>
      c.edit((doc) => {
        if (!specs().findBackstore(p.plugin as string)) throw invalidParams(`unknown plugin '${p.plugin}' (known: ${specs().backstores.map((b) => b.name).join(', ')})`);
        const path = `/backstores/${p.plugin}/${p.name}`;
        if (doc.storage_objects.some((x) => soKey(x as { plugin: string; name: string }) === path)) throw invalidParams(`storage object ${path} already exists`);
        const so: Obj = { name: p.name, plugin: p.plugin, ...((p.fields as Obj) ?? {}) };
        if (typeof so.dev === 'string') so.dev = resolve(so.dev);
        if (p.attributes) so.attributes = p.attributes;
        doc.storage_objects.push(so);
        return { path };
      }),
  },
  'storage_objects.set': {
    doc: 'Changes attributes (live; raises MODE PARAMETERS CHANGED or INQUIRY DATA HAS CHANGED) or fields (size resizes live; others reopen the store).',
    params: { path: str, attributes: optObj, fields: optObj },
    run: (p, c) =>
      c.edit((doc) => {
        const so = findStorageObject(doc, p.path);
        if (p.fields) {
          for (const k of ['name', 'plugin']) if (k in (p.fields as Obj)) throw invalidParams(`${k} cannot be changed; delete and create instead`);
          Object.assign(so, p.fields);
        }
        if (p.attributes) so.attributes = { ...((so.attributes as Obj) ?? {}), ...(p.attributes as Obj) };
      }),
  },
  'storage_objects.reservations': {
    doc: 'Persistent reservation state of a storage object: generation, APTPL, registrations (initiator port, target port, key, holder) and the reservation.',
    params: { path: str },
    run: (p, c) => prView(liveStorageObject(c.live, p.path).lu),
  },
  'storage_objects.clear_reservations': {
    doc: 'Admin escape hatch: drops every registration and the reservation (as PR OUT CLEAR: RESERVATIONS PREEMPTED to the registrants) and the saved APTPL state.',
    params: { path: str },
    run: async (p, c) => ({ cleared: await prAdminClear(liveStorageObject(c.live, p.path).lu) }),
  },
  'storage_objects.delete': {
    doc: 'Deletes a storage object and every LUN (and mapped LUN) using it; in-flight I/O finishes first.',
    params: { path: str },
    run: (p, c) =>
      c.edit((doc) => {
        const so = findStorageObject(doc, p.path);
        doc.storage_objects.splice(doc.storage_objects.indexOf(so), 1);
        for (const t of doc.targets) {
          for (const tpg of (t.tpgs as Obj[]) ?? []) {
            const gone = ((tpg.luns as Obj[]) ?? []).filter((l) => l.storage_object === p.path).map((l) => l.index);
            removeLuns(tpg, gone);
          }
        }
      }),
  },

  // Targets and TPGs
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
  'tpgs.get': { doc: 'One TPG, complete, with its session count.', params: TPG, run: (p, c) => liveTpgView(c, p) },
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

  // LUNs
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

  // ACLs and mapped LUNs
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
  'acls.get': { doc: 'One ACL, complete, with its sessions.', params: ACL, run: (p, c) => liveAclView(c, p) },
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

  // Portals
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

  // Fabric modules
  'fabric_modules.set': {
    doc: 'Sets a fabric module\'s discovery_auth (iscsi).',
    params: { name: str, discovery_auth: obj },
    run: (p, c) =>
      c.edit((doc) => {
        const mods = (doc.fabric_modules ??= []);
        let mod = mods.find((x) => x.name === p.name);
        if (!mod) mods.push((mod = { name: p.name }));
        mod.discovery_auth = { ...((mod.discovery_auth as Obj) ?? {}), ...(p.discovery_auth as Obj) };
      }),
  },

  // Sessions and statistics
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
  'statistics': { doc: 'Command counts, bytes, errors and latency percentiles per storage object, LUN and session.', params: {}, run: (_p, c) => statistics(c) },

  // Whole configuration
  'saveconfig': {
    doc: 'Writes the live configuration as YAML (atomically, mode 0600), keeping the last 10 versions beside it.',
    params: { path: optStr },
    run: (p, c) => {
      const path = resolve((p.path as string | undefined) ?? c.savePath);
      const text = dumpConfig(c.live.config, `tsio configuration, saved ${new Date().toISOString()}; tsiod --config reads it`);
      const backup = saveAtomically(path, text);
      c.markSaved();
      return { path, backup: backup ?? null, backups: listBackups(path).length };
    },
  },
  'restoreconfig': {
    doc: 'Loads a YAML config (or a targetcli saveconfig.json), validated whole first, and applies the difference. clear_existing: remove what the file does not name.',
    params: { path: optStr, text: optStr, clear_existing: optBool },
    run: async (p, c) => {
      if (p.path !== undefined && p.text !== undefined) throw invalidParams('restoreconfig: give path or text, not both');
      const path = p.path !== undefined ? resolve(p.path as string) : p.text === undefined ? c.savePath : undefined;
      let text: string;
      if (path !== undefined) {
        if (!existsSync(path)) throw invalidParams(`no such file: ${path}`);
        text = readFileSync(path, 'utf8');
      } else text = p.text as string;
      const source = path ?? '<text>';
      const baseDir = path !== undefined ? dirname(path) : process.cwd();
      let notes: string[] = [];
      let incoming: TsioConfig;
      const lio = isLioSaveconfig(text);
      if (lio) {
        const conv = lioToDocument(lio);
        notes = conv.unmapped;
        incoming = parseConfig(JSON.stringify(conv.document), `${source} (converted from targetcli saveconfig.json)`);
      } else {
        incoming = parseConfig(text, source);
      }
      incoming = absolutePaths(incoming, baseDir);
      const next = p.clear_existing ? incoming : merge(c.live.config, incoming);
      const report = await c.apply(next);
      if (path !== undefined && p.clear_existing) c.markSaved();
      return { ...report, unmapped: notes, format: lio ? 'targetcli saveconfig.json' : 'tsio yaml' };
    },
  },
  'clearconfig': {
    doc: 'Removes every target and storage object (needs confirm: true).',
    params: { confirm: bool },
    run: (p, c) => {
      if (p.confirm !== true) throw invalidParams('clearconfig needs confirm: true');
      return c.apply(EMPTY_CONFIG);
    },
  },
};

// ---------------------------------------------------------------------------

function errorReply(id: string | number | null, code: number, message: string): object {
  return { jsonrpc: '2.0', id, error: { code, message } };
}

/** A request's own edits are named by path; a file's problems by FILE:LINE too. */
function configMessage(e: ConfigError): string {
  if (e.source !== '<control>') return e.errors.map((i) => formatIssue(e.source, i)).join('; ');
  return e.errors.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ');
}

function removeLuns(tpg: Obj, indexes: unknown[]): void {
  if (indexes.length === 0) return;
  tpg.luns = ((tpg.luns as Obj[]) ?? []).filter((l) => !indexes.includes(l.index));
  for (const acl of (tpg.node_acls as Obj[]) ?? []) acl.mapped_luns = ((acl.mapped_luns as Obj[]) ?? []).filter((m) => !indexes.includes(m.tpg_lun));
}

function lowestFree(used: number[]): number {
  let i = 0;
  while (used.includes(i)) i++;
  return i;
}

/** A target WWN in the fabric's first format, unique enough to never collide in practice. */
export function generateWwn(fabric: string): string {
  const hex = (n: number) => [...crypto.getRandomValues(new Uint8Array(n))].map((b) => b.toString(16).padStart(2, '0')).join('');
  if (fabric === 'iscsi') return `iqn.2026-11.org.tsio:${hex(6)}`;
  return `naa.5001405${hex(5).slice(0, 9)}`;
}

/** Without clear_existing: the file's objects replace or join the live ones; the rest stays. */
function merge(cur: TsioConfig, incoming: TsioConfig): TsioConfig {
  const key = (so: { plugin: string; name: string }) => soKey(so);
  const sos = new Map(cur.storage_objects.map((so) => [key(so), so]));
  for (const so of incoming.storage_objects) sos.set(key(so), so);
  const targets = new Map(cur.targets.map((t) => [`${t.fabric} ${t.wwn}`, t]));
  for (const t of incoming.targets) targets.set(`${t.fabric} ${t.wwn}`, t);
  const mods = new Map(cur.fabric_modules.map((m) => [m.name, m]));
  for (const m of incoming.fabric_modules) mods.set(m.name, m);
  return { source: incoming.source, storage_objects: [...sos.values()], targets: [...targets.values()], fabric_modules: [...mods.values()] };
}

let version: string | undefined;
function packageVersion(): string {
  if (version === undefined) {
    try {
      version = (JSON.parse(readFileSync(resolve(specs().dir, '..', 'package.json'), 'utf8')) as { version: string }).version;
    } catch {
      version = 'unknown';
    }
  }
  return version;
}

// ---------------------------------------------------------------------------
// The socket

/** Listens on a unix socket (mode 0600); a stale socket file is replaced, a live one refused. */
export async function listenControl(control: Control, path: string): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  if (existsSync(path)) {
    const alive = await new Promise<boolean>((res) => {
      const c = connect(path);
      c.once('connect', () => (c.destroy(), res(true)));
      c.once('error', () => res(false));
    });
    if (alive) throw new Error(`${path}: another tsiod is listening there`);
    unlinkSync(path);
  }
  const server = createServer((sock) => serveConnection(control, sock));
  // The socket is created under a 0077 umask so no other user can race the chmod.
  const old = process.umask(0o077);
  try {
    await new Promise<void>((res, rej) => {
      server.once('error', rej);
      server.listen(path, () => res());
    });
  } finally {
    process.umask(old);
  }
  chmodSync(path, 0o600);
  server.on('error', (e) => log.warn(`control socket: ${e.message}`));
  return server;
}

const MAX_LINE = 16 << 20;

function serveConnection(control: Control, sock: Socket): void {
  let buf = '';
  let chain = Promise.resolve();
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    buf += chunk;
    if (buf.length > MAX_LINE && !buf.includes('\n')) {
      sock.end(JSON.stringify(errorReply(null, RpcCode.INVALID_REQUEST, `invalid request: line longer than ${MAX_LINE} bytes`)) + '\n');
      buf = '';
      return;
    }
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line === '') continue;
      // Replies leave in request order.
      chain = chain.then(async () => {
        const reply = await control.handleLine(line);
        if (reply !== undefined && !sock.destroyed) sock.write(reply + '\n');
      });
    }
  });
  sock.on('error', () => sock.destroy());
}
