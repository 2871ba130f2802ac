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
import { configToDocument, dumpConfig, type ConfigDocument } from '../config/dump';
import { DEFAULT_SAVE_PATH, saveAtomically, listBackups } from '../config/save';
import { isLioSaveconfig, lioToDocument } from '../config/lio-import';
import { specs } from '../config/specs';
import { didYouMean } from '../config/validation';
import { absolutePaths, EMPTY_CONFIG, reconcile, soKey, type Live, type ReconcileReport } from '../daemon/reconcile';
import type { Session as CoreSession } from '../../src/core/session';
import type { Tpg } from '../../src/model/target';

type Session = CoreSession<Tpg>;
import { log } from '../../src/core/log';
import { prAdminClear, prView } from '../../src/scsi/pr';
import { DEFAULT_CONTROL_PATH, RpcCode } from './wire';
import { mediaMethods } from './media';

export { DEFAULT_CONTROL_PATH };

export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

const bad = (msg: string) => new RpcError(RpcCode.PARAMS, msg);

type ParamType = 'string' | 'int' | 'bool' | 'object' | 'size' | 'scalar';
interface ParamSpec {
  type: ParamType;
  required?: boolean;
}
type Params = Record<string, unknown>;
interface MethodDef {
  params: Record<string, ParamSpec>;
  doc: string;
  run(p: Params): Promise<unknown> | unknown;
}

type Doc = ConfigDocument;
type Obj = Record<string, unknown>;

const str = { type: 'string', required: true } as const;
const optStr = { type: 'string' } as const;
const int = { type: 'int', required: true } as const;
const optInt = { type: 'int' } as const;
const optBool = { type: 'bool' } as const;
const optObj = { type: 'object' } as const;
const TPG = { wwn: str, tag: int };
const ACL = { ...TPG, node_wwn: str };

export interface ControlOptions {
  savePath?: string;
  /** The text the live config was loaded from (the baseline for `dirty`). */
  startedFrom?: string;
}

export class Control {
  private queue: Promise<unknown> = Promise.resolve();
  private savedText: string;
  readonly savePath: string;
  private readonly startedAt = Date.now();
  readonly methods: Record<string, MethodDef>;

  constructor(
    readonly live: Live,
    opts: ControlOptions = {},
  ) {
    this.savePath = opts.savePath ?? DEFAULT_SAVE_PATH;
    this.savedText = dumpConfig(live.config);
    this.methods = this.defineMethods();
  }

  /** True when the live config differs from what was last loaded or saved. */
  get dirty(): boolean {
    return dumpConfig(this.live.config) !== this.savedText;
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
        const p = checkParams(msg.method, def, msg.params);
        // One change at a time: each sees the config the previous one left.
        const run = this.queue.then(() => def.run(p));
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

  // -------------------------------------------------------------------------
  // Changes: edit the document, validate it whole, reconcile.

  private doc(): Doc {
    return structuredClone(configToDocument(this.live.config));
  }

  private async apply(next: Doc | TsioConfig, source = '<control>'): Promise<ReconcileReport> {
    const cfg = 'source' in next ? next : absolutePaths(parseConfig(JSON.stringify(next), source), process.cwd());
    const before = this.live.config;
    try {
      return await reconcile(this.live, cfg);
    } catch (e) {
      // A request that fails changes nothing: what was applied before the failure is taken back.
      if (this.live.config !== before) {
        await reconcile(this.live, before).catch((e2) => log.warn(`control: could not take back a failed change: ${(e2 as Error).message}`));
      }
      throw e;
    }
  }

  private async edit(fn: (doc: Doc) => unknown): Promise<unknown> {
    const doc = this.doc();
    const result = fn(doc);
    await this.apply(doc);
    return result ?? { ok: true };
  }

  private target(doc: Doc, wwn: unknown): Obj {
    const t = doc.targets.find((x) => String(x.wwn).toLowerCase() === String(wwn).toLowerCase());
    if (!t) throw bad(`no target ${wwn}${hint(String(wwn), doc.targets.map((x) => String(x.wwn)))}`);
    return t;
  }

  private tpg(doc: Doc, p: Params): Obj {
    const t = this.target(doc, p.wwn);
    const tpgs = (t.tpgs as Obj[]) ?? [];
    const tpg = tpgs.find((x) => x.tag === p.tag);
    if (!tpg) throw bad(`target ${t.wwn} has no TPG ${p.tag}${tpgs.length ? ` (it has ${tpgs.map((x) => x.tag).join(', ')})` : ''}`);
    return tpg;
  }

  private acl(doc: Doc, p: Params): Obj {
    const tpg = this.tpg(doc, p);
    const acls = (tpg.node_acls as Obj[]) ?? [];
    const acl = acls.find((a) => String(a.node_wwn).toLowerCase() === String(p.node_wwn).toLowerCase());
    if (!acl) throw bad(`TPG ${p.tag} of ${p.wwn} has no ACL ${p.node_wwn}${hint(String(p.node_wwn), acls.map((a) => String(a.node_wwn)))}`);
    return acl;
  }

  private storageObject(doc: Doc, path: unknown): Obj {
    const so = doc.storage_objects.find((x) => soKey(x as { plugin: string; name: string }) === path);
    if (!so) throw bad(`no storage object ${path}${hint(String(path), doc.storage_objects.map((x) => soKey(x as { plugin: string; name: string })))}`);
    return so;
  }

  private liveStorageObject(path: unknown) {
    const so = this.live.root.storageObjects.get(String(path));
    if (!so) throw bad(`no storage object ${path}${hint(String(path), [...this.live.root.storageObjects.keys()])}`);
    return so;
  }

  // -------------------------------------------------------------------------
  // Views

  private sessionView(s: Session, detail: boolean): Obj {
    const tpg = s.tpg;
    const v: Obj = {
      id: s.id,
      initiator: s.initiator.name,
      initiator_port: s.initiatorPort,
      fabric: tpg.target.fabric,
      target: tpg.target.wwn,
      tpg: tpg.tag,
      luns: s.lunNumbers(),
      since: new Date(s.createdAt).toISOString(),
      stats: s.stats.snapshot(),
    };
    if (detail) {
      v.lun_detail = s.lunNumbers().map((n) => {
        const itl = s.itls.get(n)!;
        return { lun: n, storage_object: itl.lu.so.path, write_protect: itl.writeProtect, pending_unit_attentions: itl.uas.length, tasks: itl.tasks.size };
      });
    }
    return v;
  }

  private sessions(): Session[] {
    const out: Session[] = [];
    for (const t of this.live.root.targets.values()) for (const tpg of t.tpgs.values()) out.push(...tpg.sessions);
    return out.sort((a, b) => a.id - b.id);
  }

  /** The whole live state: the complete config (defaults filled in) and what only the running daemon knows. */
  tree(): Obj {
    const { root, config } = this.live;
    const storage: Obj = {};
    for (const [k, so] of root.storageObjects) {
      const users: string[] = [];
      for (const t of root.targets.values()) {
        for (const tpg of t.tpgs.values()) for (const l of tpg.luns.values()) if (l.so === so) users.push(`${t.fabric}/${t.wwn}/tpg${tpg.tag}/lun${l.index}`);
      }
      storage[k] = { size: so.backstore.size, block_size: so.backstore.blockSize, serial: so.serial, used_by: users, stats: so.lu.stats.snapshot() };
    }
    const tpgs: Obj = {};
    for (const t of root.targets.values()) {
      for (const tpg of t.tpgs.values()) tpgs[`${t.wwn}/${tpg.tag}`] = { sessions: tpg.sessions.size, served: this.live.services.has(t.wwn) };
    }
    return { config: { storage_objects: config.storage_objects, targets: config.targets, fabric_modules: config.fabric_modules }, runtime: { storage_objects: storage, tpgs }, dirty: this.dirty };
  }

  statistics(): Obj {
    const { root } = this.live;
    const luns: Obj[] = [];
    for (const t of root.targets.values()) {
      for (const tpg of t.tpgs.values()) {
        for (const l of tpg.luns.values()) luns.push({ fabric: t.fabric, target: t.wwn, tpg: tpg.tag, lun: l.index, storage_object: l.so.path, stats: l.so.lu.stats.snapshot() });
      }
    }
    const storage_objects = [...root.storageObjects.values()].map((so) => ({ path: so.path, stats: so.lu.stats.snapshot() }));
    return { storage_objects, luns, sessions: this.sessions().map((s) => this.sessionView(s, false)) };
  }

  // -------------------------------------------------------------------------
  // The methods

  private defineMethods(): Record<string, MethodDef> {
    const m: Record<string, MethodDef> = {
      'status': {
        doc: 'Daemon status: version, uptime, object counts, sessions, whether the config changed since it was loaded or saved.',
        params: {},
        run: () => ({
          pid: process.pid,
          version: packageVersion(),
          uptime_s: Math.round((Date.now() - this.startedAt) / 1000),
          storage_objects: this.live.config.storage_objects.length,
          targets: this.live.config.targets.length,
          sessions: this.sessions().length,
          dirty: this.dirty,
          save_path: this.savePath,
        }),
      },
      'methods': { doc: 'Every method with its parameters.', params: {}, run: () => Object.entries(this.methods).map(([name, d]) => ({ name, doc: d.doc, params: d.params })) },
      'tree': { doc: 'The complete live configuration with runtime data (sizes, users, sessions, statistics).', params: {}, run: () => this.tree() },
      'config.get': { doc: 'The live configuration as saveconfig writes it.', params: {}, run: () => this.doc() },
      'config.dump': { doc: 'The live configuration as YAML text.', params: {}, run: () => ({ yaml: dumpConfig(this.live.config) }) },

      // Storage objects
      'storage_objects.list': {
        doc: 'Storage objects, with size and users.',
        params: {},
        run: () => Object.entries((this.tree().runtime as Obj).storage_objects as Obj).map(([path, r]) => ({ path, ...(r as Obj) })),
      },
      'storage_objects.get': {
        doc: 'One storage object: its config and runtime.',
        params: { path: str },
        run: (p) => {
          const so = this.storageObject(this.doc(), p.path);
          const full = this.live.config.storage_objects.find((x) => soKey(x) === p.path);
          return { ...full, config: so, runtime: ((this.tree().runtime as Obj).storage_objects as Obj)[p.path as string] };
        },
      },
      'storage_objects.create': {
        doc: 'Creates a storage object: plugin, name and the plugin fields (specs/backstores/<plugin>.yaml); attributes optional.',
        params: { plugin: str, name: str, attributes: optObj, fields: optObj },
        run: (p) =>
          this.edit((doc) => {
            if (!specs().findBackstore(p.plugin as string)) throw bad(`unknown plugin '${p.plugin}' (known: ${specs().backstores.map((b) => b.name).join(', ')})`);
            const path = `/backstores/${p.plugin}/${p.name}`;
            if (doc.storage_objects.some((x) => soKey(x as { plugin: string; name: string }) === path)) throw bad(`storage object ${path} already exists`);
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
        run: (p) =>
          this.edit((doc) => {
            const so = this.storageObject(doc, p.path);
            if (p.fields) {
              for (const k of ['name', 'plugin']) if (k in (p.fields as Obj)) throw bad(`${k} cannot be changed; delete and create instead`);
              Object.assign(so, p.fields);
            }
            if (p.attributes) so.attributes = { ...((so.attributes as Obj) ?? {}), ...(p.attributes as Obj) };
          }),
      },
      'storage_objects.reservations': {
        doc: 'Persistent reservation state of a storage object: generation, APTPL, registrations (initiator port, target port, key, holder) and the reservation.',
        params: { path: str },
        run: (p) => prView(this.liveStorageObject(p.path).lu),
      },
      'storage_objects.clear_reservations': {
        doc: 'Admin escape hatch: drops every registration and the reservation (as PR OUT CLEAR: RESERVATIONS PREEMPTED to the registrants) and the saved APTPL state.',
        params: { path: str },
        run: async (p) => ({ cleared: await prAdminClear(this.liveStorageObject(p.path).lu) }),
      },
      // Removable media: cartridges, libraries, discs (media.ts).
      ...mediaMethods((path) => this.liveStorageObject(path)),
      'storage_objects.delete': {
        doc: 'Deletes a storage object and every LUN (and mapped LUN) using it; in-flight I/O finishes first.',
        params: { path: str },
        run: (p) =>
          this.edit((doc) => {
            const so = this.storageObject(doc, p.path);
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
      'targets.list': { doc: 'Targets with their TPGs.', params: {}, run: () => this.live.config.targets.map((t) => ({ fabric: t.fabric, wwn: t.wwn, tpgs: t.tpgs.map((x) => x.tag) })) },
      'targets.get': { doc: 'One target, complete.', params: { wwn: str }, run: (p) => this.liveTarget(p.wwn) },
      'targets.create': {
        doc: 'Creates a target of a fabric; a TPG 1 comes with it unless tpg=false. wwn absent: one is generated.',
        params: { fabric: str, wwn: optStr, tpg: optBool, tpg_fields: optObj },
        run: (p) =>
          this.edit((doc) => {
            const f = specs().findFabric(p.fabric as string);
            if (!f) throw bad(`unknown fabric '${p.fabric}' (known: ${specs().fabrics.map((x) => x.name).join(', ')})`);
            const wwn = (p.wwn as string | undefined) ?? generateWwn(f.name);
            if (doc.targets.some((t) => t.fabric === f.name && String(t.wwn).toLowerCase() === wwn.toLowerCase())) throw bad(`${f.name} target ${wwn} already exists`);
            const tpgs = p.tpg === false ? [] : [{ tag: 1, ...((p.tpg_fields as Obj) ?? {}) }];
            doc.targets.push({ fabric: f.name, wwn, tpgs });
            return { wwn, tpgs: tpgs.map((t) => t.tag) };
          }),
      },
      'targets.delete': {
        doc: 'Deletes a target: its sessions are closed, its portals and sockets stop.',
        params: { wwn: str },
        run: (p) =>
          this.edit((doc) => {
            const t = this.target(doc, p.wwn);
            doc.targets.splice(doc.targets.indexOf(t), 1);
          }),
      },
      'tpgs.create': {
        doc: 'Adds a TPG to a target; fields: the fabric TPG fields (vhost: socket), attributes, parameters, auth, enable.',
        params: { wwn: str, tag: int, fields: optObj },
        run: (p) =>
          this.edit((doc) => {
            const t = this.target(doc, p.wwn);
            const tpgs = ((t.tpgs as Obj[]) ??= []);
            if (tpgs.some((x) => x.tag === p.tag)) throw bad(`target ${t.wwn} already has TPG ${p.tag}`);
            tpgs.push({ tag: p.tag, ...((p.fields as Obj) ?? {}) });
          }),
      },
      'tpgs.get': { doc: 'One TPG, complete, with its session count.', params: TPG, run: (p) => this.liveTpg(p) },
      'tpgs.set': {
        doc: 'Changes TPG attributes, parameters, auth (merged), enable, or fabric fields (vhost socket, socket_mode, socket_group, num_queues).',
        params: { ...TPG, attributes: optObj, parameters: optObj, auth: optObj, enable: optBool, fields: optObj },
        run: (p) =>
          this.edit((doc) => {
            const tpg = this.tpg(doc, p);
            for (const g of ['attributes', 'parameters', 'auth'] as const) if (p[g]) tpg[g] = { ...((tpg[g] as Obj) ?? {}), ...(p[g] as Obj) };
            if (p.enable !== undefined) tpg.enable = p.enable;
            if (p.fields) {
              if ('tag' in (p.fields as Obj)) throw bad('tag cannot be changed; delete and create instead');
              Object.assign(tpg, p.fields);
            }
          }),
      },
      'tpgs.delete': {
        doc: 'Deletes a TPG and closes its sessions.',
        params: TPG,
        run: (p) =>
          this.edit((doc) => {
            const t = this.target(doc, p.wwn);
            const tpg = this.tpg(doc, p);
            (t.tpgs as Obj[]).splice((t.tpgs as Obj[]).indexOf(tpg), 1);
          }),
      },

      // LUNs
      'luns.create': {
        doc: 'Exports a storage object as a TPG LUN (index: the lowest free when absent); add_mapped_luns (default true) maps it into every ACL.',
        params: { ...TPG, storage_object: str, index: optInt, alias: optStr, add_mapped_luns: optBool },
        run: (p) =>
          this.edit((doc) => {
            const tpg = this.tpg(doc, p);
            this.storageObject(doc, p.storage_object);
            const luns = ((tpg.luns as Obj[]) ??= []);
            const index = (p.index as number | undefined) ?? lowestFree(luns.map((l) => l.index as number));
            if (luns.some((l) => l.index === index)) throw bad(`TPG ${p.tag} of ${p.wwn} already has LUN ${index}`);
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
        run: (p) =>
          this.edit((doc) => {
            const tpg = this.tpg(doc, p);
            const luns = (tpg.luns as Obj[]) ?? [];
            if (!luns.some((l) => l.index === p.index)) throw bad(`TPG ${p.tag} of ${p.wwn} has no LUN ${p.index}${luns.length ? ` (it has ${luns.map((l) => l.index).join(', ')})` : ''}`);
            removeLuns(tpg, [p.index as number]);
          }),
      },

      // ACLs and mapped LUNs
      'acls.create': {
        doc: 'Adds a node ACL for an initiator; add_mapped_luns (default true) maps every TPG LUN at its own number.',
        params: { ...ACL, attributes: optObj, auth: optObj, add_mapped_luns: optBool },
        run: (p) =>
          this.edit((doc) => {
            const tpg = this.tpg(doc, p);
            const acls = ((tpg.node_acls as Obj[]) ??= []);
            if (acls.some((a) => String(a.node_wwn).toLowerCase() === String(p.node_wwn).toLowerCase())) throw bad(`ACL ${p.node_wwn} already exists`);
            const acl: Obj = { node_wwn: p.node_wwn, mapped_luns: [] };
            if (p.attributes) acl.attributes = p.attributes;
            if (p.auth) acl.auth = p.auth;
            if (p.add_mapped_luns !== false) acl.mapped_luns = ((tpg.luns as Obj[]) ?? []).map((l) => ({ index: l.index, tpg_lun: l.index }));
            acls.push(acl);
          }),
      },
      'acls.get': { doc: 'One ACL, complete, with its sessions.', params: ACL, run: (p) => this.liveAcl(p) },
      'acls.set': {
        doc: 'Changes an ACL\'s attributes or auth (merged).',
        params: { ...ACL, attributes: optObj, auth: optObj },
        run: (p) =>
          this.edit((doc) => {
            const acl = this.acl(doc, p);
            for (const g of ['attributes', 'auth'] as const) if (p[g]) acl[g] = { ...((acl[g] as Obj) ?? {}), ...(p[g] as Obj) };
          }),
      },
      'acls.delete': {
        doc: 'Deletes an ACL; its sessions are closed unless demo mode still admits the initiator.',
        params: ACL,
        run: (p) =>
          this.edit((doc) => {
            const tpg = this.tpg(doc, p);
            const acl = this.acl(doc, p);
            (tpg.node_acls as Obj[]).splice((tpg.node_acls as Obj[]).indexOf(acl), 1);
          }),
      },
      'mapped_luns.create': {
        doc: 'Maps TPG LUN tpg_lun as LUN index for one initiator.',
        params: { ...ACL, index: int, tpg_lun: int, write_protect: optBool },
        run: (p) =>
          this.edit((doc) => {
            const acl = this.acl(doc, p);
            const ml = ((acl.mapped_luns as Obj[]) ??= []);
            if (ml.some((m) => m.index === p.index)) throw bad(`ACL ${p.node_wwn} already maps LUN ${p.index}`);
            ml.push({ index: p.index, tpg_lun: p.tpg_lun, ...(p.write_protect ? { write_protect: true } : {}) });
          }),
      },
      'mapped_luns.delete': {
        doc: 'Unmaps one mapped LUN of an ACL.',
        params: { ...ACL, index: int },
        run: (p) =>
          this.edit((doc) => {
            const acl = this.acl(doc, p);
            const ml = (acl.mapped_luns as Obj[]) ?? [];
            const i = ml.findIndex((m) => m.index === p.index);
            if (i < 0) throw bad(`ACL ${p.node_wwn} maps no LUN ${p.index}`);
            ml.splice(i, 1);
          }),
      },

      // Portals
      'portals.create': {
        doc: 'Adds a network portal (ip_address, port default 3260); the fabric listens on it at once.',
        params: { ...TPG, ip_address: str, port: optInt },
        run: (p) =>
          this.edit((doc) => {
            const tpg = this.tpg(doc, p);
            const portals = ((tpg.portals as Obj[]) ??= []);
            const port = (p.port as number | undefined) ?? (specs().fabric(String(this.target(doc, p.wwn).fabric)).portal.find((f) => f.name === 'port')?.default as number);
            portals.push({ ip_address: p.ip_address, port });
            return { ip_address: p.ip_address, port };
          }),
      },
      'portals.delete': {
        doc: 'Removes a network portal; the fabric stops listening on it.',
        params: { ...TPG, ip_address: str, port: int },
        run: (p) =>
          this.edit((doc) => {
            const tpg = this.tpg(doc, p);
            const portals = (tpg.portals as Obj[]) ?? [];
            const i = portals.findIndex((x) => x.ip_address === p.ip_address && x.port === p.port);
            if (i < 0) throw bad(`TPG ${p.tag} of ${p.wwn} has no portal ${p.ip_address}:${p.port}`);
            portals.splice(i, 1);
          }),
      },

      // Fabric modules
      'fabric_modules.set': {
        doc: 'Sets a fabric module\'s discovery_auth (iscsi).',
        params: { name: str, discovery_auth: { type: 'object', required: true } },
        run: (p) =>
          this.edit((doc) => {
            const mods = (doc.fabric_modules ??= []);
            let mod = mods.find((x) => x.name === p.name);
            if (!mod) mods.push((mod = { name: p.name }));
            mod.discovery_auth = { ...((mod.discovery_auth as Obj) ?? {}), ...(p.discovery_auth as Obj) };
          }),
      },

      // Sessions and statistics
      'sessions.list': { doc: 'Every session (I_T nexus) with its statistics.', params: { wwn: optStr }, run: (p) => this.sessions().filter((s) => p.wwn === undefined || s.tpg.target.wwn === p.wwn).map((s) => this.sessionView(s, false)) },
      'sessions.get': {
        doc: 'One session in detail: per-LUN state and statistics.',
        params: { id: int },
        run: (p) => {
          const s = this.sessions().find((x) => x.id === p.id);
          if (!s) throw bad(`no session ${p.id}`);
          return this.sessionView(s, true);
        },
      },
      'statistics': { doc: 'Command counts, bytes, errors and latency percentiles per storage object, LUN and session.', params: {}, run: () => this.statistics() },

      // Whole configuration
      'saveconfig': {
        doc: 'Writes the live configuration as YAML (atomically, mode 0600), keeping the last 10 versions beside it.',
        params: { path: optStr },
        run: (p) => {
          const path = resolve((p.path as string | undefined) ?? this.savePath);
          const text = dumpConfig(this.live.config, `tsio configuration, saved ${new Date().toISOString()}; tsiod --config reads it`);
          const backup = saveAtomically(path, text);
          this.savedText = dumpConfig(this.live.config);
          return { path, backup: backup ?? null, backups: listBackups(path).length };
        },
      },
      'restoreconfig': {
        doc: 'Loads a YAML config (or a targetcli saveconfig.json), validated whole first, and applies the difference. clear_existing: remove what the file does not name.',
        params: { path: optStr, text: optStr, clear_existing: optBool },
        run: async (p) => {
          if (p.path !== undefined && p.text !== undefined) throw bad('restoreconfig: give path or text, not both');
          const path = p.path !== undefined ? resolve(p.path as string) : p.text === undefined ? this.savePath : undefined;
          let text: string;
          if (path !== undefined) {
            if (!existsSync(path)) throw bad(`no such file: ${path}`);
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
          const next = p.clear_existing ? incoming : merge(this.live.config, incoming);
          const report = await this.apply(next);
          if (path !== undefined && p.clear_existing) this.savedText = dumpConfig(this.live.config);
          return { ...report, unmapped: notes, format: lio ? 'targetcli saveconfig.json' : 'tsio yaml' };
        },
      },
      'clearconfig': {
        doc: 'Removes every target and storage object (needs confirm: true).',
        params: { confirm: { type: 'bool', required: true } },
        run: (p) => {
          if (p.confirm !== true) throw bad('clearconfig needs confirm: true');
          return this.apply(EMPTY_CONFIG);
        },
      },
    };
    return m;
  }

  private liveTarget(wwn: unknown): Obj {
    const t = this.live.config.targets.find((x) => x.wwn.toLowerCase() === String(wwn).toLowerCase());
    if (!t) throw bad(`no target ${wwn}${hint(String(wwn), this.live.config.targets.map((x) => x.wwn))}`);
    return t as unknown as Obj;
  }

  private liveTpg(p: Params): Obj {
    const t = this.liveTarget(p.wwn) as unknown as TsioConfig['targets'][number];
    const tpg = t.tpgs.find((x) => x.tag === p.tag);
    if (!tpg) throw bad(`target ${t.wwn} has no TPG ${p.tag}`);
    return { ...tpg, sessions: this.live.root.targets.get(t.wwn)?.tpgs.get(tpg.tag)?.sessions.size ?? 0 };
  }

  private liveAcl(p: Params): Obj {
    const tpg = this.liveTpg(p) as unknown as TsioConfig['targets'][number]['tpgs'][number];
    const acl = tpg.node_acls.find((a) => a.node_wwn.toLowerCase() === String(p.node_wwn).toLowerCase());
    if (!acl) throw bad(`TPG ${p.tag} of ${p.wwn} has no ACL ${p.node_wwn}`);
    const sessions = this.sessions().filter((s) => s.tpg.target.wwn === p.wwn && s.tpg.tag === p.tag && s.initiator.name === acl.node_wwn);
    return { ...acl, sessions: sessions.map((s) => s.id) };
  }
}

// ---------------------------------------------------------------------------

function isObj(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function errorReply(id: string | number | null, code: number, message: string): object {
  return { jsonrpc: '2.0', id, error: { code, message } };
}

function hint(v: string, known: string[]): string {
  const g = didYouMean(v, known);
  return g ? ` (did you mean ${g}?)` : known.length === 0 ? ' (there are none)' : '';
}

/** A request's own edits are named by path; a file's problems by FILE:LINE too. */
function configMessage(e: ConfigError): string {
  if (e.source !== '<control>') return e.errors.map((i) => formatIssue(e.source, i)).join('; ');
  return e.errors.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ');
}

/** Checks a request's params against the method's declaration: names, presence and types. */
function checkParams(method: string, def: MethodDef, params: unknown): Params {
  if (params === undefined) params = {};
  if (!isObj(params)) throw bad(`${method}: params must be an object (by-name parameters)`);
  for (const k of Object.keys(params)) {
    if (!(k in def.params)) {
      const known = Object.keys(def.params);
      const g = didYouMean(k, known);
      throw bad(`${method}: unknown parameter '${k}'${g ? ` (did you mean ${g}?)` : known.length ? ` (known: ${known.join(', ')})` : ' (it takes none)'}`);
    }
  }
  for (const [k, spec] of Object.entries(def.params)) {
    const v = params[k];
    if (v === undefined || v === null) {
      if (spec.required) throw bad(`${method}: missing parameter '${k}' (${spec.type})`);
      delete params[k];
      continue;
    }
    const ok =
      spec.type === 'string' ? typeof v === 'string' && v !== ''
      : spec.type === 'int' ? typeof v === 'number' && Number.isInteger(v) && v >= 0
      : spec.type === 'bool' ? typeof v === 'boolean'
      : spec.type === 'object' ? isObj(v)
      : spec.type === 'size' ? typeof v === 'number' || typeof v === 'string'
      : ['string', 'number', 'boolean'].includes(typeof v);
    if (!ok) {
      const what = spec.type === 'int' ? 'a non-negative whole number' : spec.type === 'string' ? 'a non-empty string' : spec.type === 'bool' ? 'true or false' : `an ${spec.type}`;
      throw bad(`${method}: parameter '${k}' must be ${what}, not ${JSON.stringify(v)}`);
    }
  }
  return params;
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
