// Live reconfiguration: brings the running objects from one validated
// configuration to another by applying only the difference. Whatever is
// equal in both is left alone, sessions included; a removed LUN is dropped
// from every nexus (REPORTED LUNS DATA HAS CHANGED), a changed attribute
// raises its unit attention, and each touched target's fabric service is
// told to refresh (portals start listening, vhost sends hot-plug events).
// Every change the control API makes goes through here, as does startup.

import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { NodeAclConfig, StorageObjectConfig, TpgConfig, TsioConfig } from '../config/config';
import type { Root, StorageObjectSpec } from '../../src/model/root';
import type { StorageObject } from '../../src/model/storage-object';
import type { StorageAttributes } from '../../src/core/attributes';
import { NodeAcl, type Tpg } from '../../src/model/target';
import type { LogicalUnit } from '../../src/core/logical-unit';
import { Asc } from '../../src/core/sense';
import { log } from '../../src/core/log';
import type { FabricService } from '../../src/core/fabric';
import { fabricModule } from '../registry';
import { fieldDefaults, specs } from '../config/specs';
import { carryIn, carryOut, type CarriedUnit } from './carry';

/** The running configuration: live objects, the services serving targets, and the config they match. */
export interface Live {
  root: Root;
  /** Target WWN -> its fabric's service. */
  services: Map<string, FabricService>;
  config: TsioConfig;
  /** With io_threads > 1: the I/O threads that hold the live objects (root and services here stay empty). */
  threads?: Dataplane;
}

/** The I/O threads, as reconcile and the control API reach them (io-threads.ts). */
export interface Dataplane {
  /** Brings every thread's part to next, all or nothing. */
  reconcile(cur: TsioConfig, next: TsioConfig): Promise<ReconcileReport>;
  /** A control method run on every thread's part, or only on thread `only`. */
  invoke(method: string, params: Record<string, unknown>, only?: number): Promise<ThreadAnswer[]>;
  /** The thread holding what params name (a storage object path, a target's TPG, a session id), if any does. */
  owner(params: Record<string, unknown>): number | undefined;
  /** Each thread: its kernel thread id and what it serves. */
  describe(): { index: number; tid: number; storage_objects: string[]; targets: string[] }[];
}

/** One thread's answer to a control method: its result, or its error (code: the RpcError's, if it was one). */
export interface ThreadAnswer {
  result?: unknown;
  error?: { message: string; code?: number };
}

export interface ReconcileReport {
  created: string[];
  changed: string[];
  removed: string[];
  warnings: string[];
}

export const EMPTY_CONFIG: TsioConfig = Object.freeze({ source: '<empty>', storage_objects: [], targets: [], fabric_modules: [] }) as TsioConfig;

export const soKey = (so: { plugin: string; name: string }): string => `/backstores/${so.plugin}/${so.name}`;
const tgtKey = (t: { fabric: string; wwn: string }): string => `${t.fabric} ${t.wwn}`;
const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** Resolves relative path fields (fileio/block/pscsi dev, rbd conf and keyring) against the config file's directory, so the live config is place-free. */
export function absolutePaths(cfg: TsioConfig, baseDir: string): TsioConfig {
  return {
    ...cfg,
    storage_objects: cfg.storage_objects.map((so) => {
      const out: Record<string, unknown> = { ...so };
      for (const f of specs().backstore(so.plugin).fields) if (f.type === 'path' && typeof out[f.name] === 'string') out[f.name] = resolve(baseDir, out[f.name] as string);
      return out as unknown as StorageObjectConfig;
    }),
  };
}

/** The plugin's own fields by spec name, for plugins that read more than BackstoreOptions names (rbd). */
function pluginParams(so: StorageObjectConfig): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const f of specs().backstore(so.plugin).fields) {
    const v = (so as unknown as Record<string, unknown>)[f.name];
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') out[f.name] = v;
  }
  return out;
}

/** Fields whose change needs the store reopened (size alone is a resize where the plugin can). */
function identity(so: StorageObjectConfig): unknown {
  const b = specs().backstore(so.plugin);
  const o: Record<string, unknown> = { wwn: so.wwn, compat: so.compat };
  for (const f of b.fields) if (f.attribute === undefined && f.name !== 'size') o[f.name] = (so as unknown as Record<string, unknown>)[f.name];
  return o;
}

/** How long a removed storage object's in-flight commands may take before its store is closed anyway. */
const DRAIN_MS = 10_000;

async function drain(lu: LogicalUnit): Promise<void> {
  const until = Date.now() + DRAIN_MS;
  while (lu.active > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
  if (lu.active > 0) log.warn(`closing a storage object with ${lu.active} commands still in flight`);
}

export interface ReconcileOptions {
  /** false: build the objects only, leaving fabric services alone (embedding programs, tests). */
  serve?: boolean;
  /**
   * io_threads > 1, units re-homed live (carry.ts): `out` names those whose state goes to `handedOver` as they
   * close here; `adopt` holds what units opened here take over.
   */
  carry?: { out: ReadonlySet<string>; handedOver: Record<string, CarriedUnit>; adopt: Readonly<Record<string, CarriedUnit>> };
}

export async function reconcile(live: Live, next: TsioConfig, opts: ReconcileOptions = {}): Promise<ReconcileReport> {
  // The threads are started with tsiod: a new count is for its next start.
  const restartNote = live.config !== EMPTY_CONFIG && !same(live.config.daemon ?? {}, next.daemon ?? {}) ? ['daemon settings (io_threads) take effect when tsiod restarts'] : [];
  if (live.threads) {
    const r = await live.threads.reconcile(live.config, next);
    live.config = next;
    for (const w of restartNote) log.warn(w);
    r.warnings.push(...restartNote);
    return r;
  }
  const report: ReconcileReport = { created: [], changed: [], removed: [], warnings: [...restartNote] };
  const { root } = live;
  const cur = live.config;
  const curSo = new Map(cur.storage_objects.map((so) => [soKey(so), so]));
  const nextSo = new Map(next.storage_objects.map((so) => [soKey(so), so]));
  const nextTargets = new Map(next.targets.map((t) => [tgtKey(t), t]));

  // Storage objects to reopen: gone, or a field that needs the store reopened changed.
  const reopen = new Set<string>();
  for (const [k, c] of curSo) {
    const n = nextSo.get(k);
    if (!n || !same(identity(c), identity(n))) reopen.add(k);
    else if (n.size !== undefined && n.size !== c.size && root.storageObjects.get(k)?.backstore.resize === undefined) reopen.add(k);
  }

  // 0. What can be known to fail is refused before anything changes.
  for (const [k, n] of nextSo) if (!curSo.has(k) || reopen.has(k)) preflight(n);

  // 1. New storage objects first: if one cannot open, nothing else has changed yet.
  const opened: string[] = [];
  try {
    for (const [k, n] of nextSo) {
      if (curSo.has(k)) continue;
      await createStorageObject(root, n, opts.carry?.adopt[k]);
      opened.push(k);
      report.created.push(k);
    }
  } catch (e) {
    for (const k of opened) await root.deleteStorageObject(k).catch(() => {});
    throw e;
  }

  // 2. Removals: targets, TPGs, LUNs and ACLs that go, and LUNs whose storage object is reopened.
  const touched = new Set<string>();
  for (const t of cur.targets) {
    const nt = nextTargets.get(tgtKey(t));
    const target = root.targets.get(t.wwn);
    if (!target) continue;
    if (!nt) {
      await live.services.get(t.wwn)?.close();
      live.services.delete(t.wwn);
      await root.deleteTarget(t.wwn);
      report.removed.push(`${t.fabric}/${t.wwn}`);
      continue;
    }
    for (const tp of t.tpgs) {
      const tpg = target.tpgs.get(tp.tag);
      if (!tpg) continue;
      const ntp = nt.tpgs.find((x) => x.tag === tp.tag);
      const where = `${t.fabric}/${t.wwn}/tpg${tp.tag}`;
      if (!ntp) {
        target.tpgs.delete(tp.tag);
        await Promise.all([...tpg.sessions].map((s) => s.close()));
        touched.add(t.wwn);
        report.removed.push(where);
        continue;
      }
      for (const l of tp.luns) {
        const nl = ntp.luns.find((x) => x.index === l.index);
        if (!nl || nl.storage_object !== l.storage_object || reopen.has(l.storage_object)) {
          if (tpg.luns.has(l.index)) tpg.removeLun(l.index);
          touched.add(t.wwn);
          report.removed.push(`${where}/lun${l.index}`);
        }
      }
      for (const a of tp.node_acls) {
        if (ntp.node_acls.some((x) => x.node_wwn === a.node_wwn)) continue;
        tpg.acls.delete(a.node_wwn);
        // Its sessions go with it unless demo mode still admits the initiator.
        if (!tpg.demoMode) await Promise.all([...tpg.sessions].filter((s) => s.initiator.name === a.node_wwn).map((s) => s.close()));
        tpg.refreshSessions();
        touched.add(t.wwn);
        report.removed.push(`${where}/acls/${a.node_wwn}`);
      }
    }
  }

  // 3. Storage objects that go or are reopened: their in-flight I/O finishes first.
  for (const k of reopen) {
    const so = root.storageObjects.get(k);
    if (!so) continue;
    await drain(so.lu);
    if (opts.carry?.out.has(k) && !nextSo.has(k)) opts.carry.handedOver[k] = carryOut(so);
    await root.deleteStorageObject(k);
    if (nextSo.has(k)) {
      await createStorageObject(root, nextSo.get(k)!);
      report.changed.push(`${k} (reopened)`);
    } else {
      report.removed.push(k);
    }
  }

  // 4. Kept storage objects: attributes and size, live.
  for (const [k, n] of nextSo) {
    const c = curSo.get(k);
    if (!c || reopen.has(k)) continue;
    const so = root.storageObjects.get(k)!;
    const changed = updateAttributes(so, c.attributes, n.attributes);
    if (n.size !== undefined && n.size !== c.size && n.size !== so.backstore.size) {
      await so.backstore.resize!(n.size);
      so.lu.capacityChanged();
      changed.push('size');
    }
    if (changed.length > 0) report.changed.push(`${k} (${changed.join(', ')})`);
  }

  // 5. Targets, TPGs, LUNs, ACLs and portals: created or brought up to date.
  const created: string[] = [];
  for (const nt of next.targets) {
    let target = root.targets.get(nt.wwn);
    if (!target) {
      target = root.createTarget(nt.fabric, nt.wwn);
      created.push(nt.wwn);
      report.created.push(`${nt.fabric}/${nt.wwn}`);
    }
    const ct = cur.targets.find((t) => tgtKey(t) === tgtKey(nt));
    for (const ntp of nt.tpgs) {
      const where = `${nt.fabric}/${nt.wwn}/tpg${ntp.tag}`;
      let tpg = target.tpgs.get(ntp.tag);
      const ctp = ct?.tpgs.find((x) => x.tag === ntp.tag);
      if (!tpg) {
        tpg = target.addTpg(ntp.tag, { ...ntp.attributes }, { ...(ntp.parameters ?? {}) });
        if (!created.includes(nt.wwn)) report.created.push(where);
      }
      if (updateTpg(tpg, ctp, ntp)) report.changed.push(where);
      for (const l of ntp.luns) {
        const lun = tpg.luns.get(l.index);
        if (!lun) {
          tpg.addLun(l.index, root.storageObject(l.storage_object), l.alias);
          if (ctp) report.created.push(`${where}/lun${l.index}`);
        } else if (lun.alias !== l.alias) {
          lun.alias = l.alias;
        }
      }
      for (const a of ntp.node_acls) {
        const ca = ctp?.node_acls.find((x) => x.node_wwn === a.node_wwn);
        let acl = tpg.acls.get(a.node_wwn);
        if (!acl) {
          acl = new NodeAcl(tpg, a.node_wwn);
          tpg.acls.set(a.node_wwn, acl);
          if (ctp) report.created.push(`${where}/acls/${a.node_wwn}`);
        } else if (ca && !same(ca, a)) {
          report.changed.push(`${where}/acls/${a.node_wwn}`);
        }
        updateAcl(acl, a);
      }
      tpg.refreshSessions();
      if (!ctp || !same(ctp, ntp)) touched.add(nt.wwn);
    }
  }

  // Fabric-wide settings (iSCSI discovery CHAP): read by the fabric at each discovery login.
  root.fabricSettings.clear();
  for (const m of next.fabric_modules) root.fabricSettings.set(m.name, { discovery_auth: { ...m.discovery_auth } });

  // The objects now match next; if a fabric cannot serve it (a port in use), the caller may reconcile back.
  live.config = next;

  // 6. Fabric services: new targets served, touched ones refreshed.
  for (const nt of next.targets) {
    const target = root.targets.get(nt.wwn)!;
    if (opts.serve === false) continue;
    if (created.includes(nt.wwn)) {
      const m = fabricModule(nt.fabric);
      if (!m) {
        report.warnings.push(`target ${nt.wwn}: the ${nt.fabric} fabric is not in this build; configured but not served`);
        continue;
      }
      live.services.set(nt.wwn, await m.serve(target, root));
    } else if (touched.has(nt.wwn)) {
      await live.services.get(nt.wwn)?.refresh?.();
    }
  }
  for (const w of report.warnings) log.warn(w);
  return report;
}

/** The usual reasons a store cannot open (a missing device, a file without a size), found before any change. */
function preflight(so: StorageObjectConfig): void {
  if (so.dev === undefined) return;
  const where = `${soKey(so)}: dev ${so.dev}`;
  if (so.plugin === 'fileio') {
    if (!existsSync(dirname(so.dev))) throw new Error(`${where}: directory ${dirname(so.dev)} does not exist`);
    if (!existsSync(so.dev) && so.size === undefined) throw new Error(`${where} does not exist and no size was given to create it`);
  } else if (!existsSync(so.dev)) {
    throw new Error(`${where}: no such device`);
  }
}

async function createStorageObject(root: Root, so: StorageObjectConfig, carried?: CarriedUnit): Promise<StorageObject> {
  const created = await root.createStorageObject({
    name: so.name,
    plugin: so.plugin,
    size: so.size,
    blockSize: so.block_size,
    physicalBlockSize: so.physical_block_size,
    dev: so.dev,
    nullio: so.nullio,
    direct: so.direct,
    readonly: so.readonly,
    params: pluginParams(so),
    serial: so.wwn,
    compat: so.compat,
    attributes: { ...so.attributes },
    // Tape drives and media changers (backstores/tape.ts).
    cartridge: so.cartridge,
    cartridges: so.cartridges,
    capacity: so.capacity,
    drives: so.drives,
    slots: so.slots,
    import_export: so.import_export,
    adopt: carried?.store,
  } as StorageObjectSpec);
  if (carried) carryIn(created, carried);
  return created;
}

// Attributes the mode pages report: a change is MODE PARAMETERS CHANGED; the rest show in VPD pages.
const MODE_ATTRIBUTES: ReadonlySet<string> = new Set(['emulate_write_cache', 'emulate_tas', 'emulate_ua_intlck_ctrl', 'emulate_fua_write', 'readonly']);
// Attributes nothing an initiator reads reports: a change raises no unit attention.
const UNSEEN_ATTRIBUTES: ReadonlySet<string> = new Set(['max_sanitize_rate', 'tp_soft_threshold', 'tp_allocation_limit']);

function updateAttributes(so: StorageObject, cur: StorageAttributes, next: StorageAttributes): string[] {
  const changed = (Object.keys(next) as (keyof StorageAttributes)[]).filter((k) => cur[k] !== next[k]);
  if (changed.length === 0) return changed;
  Object.assign(so.attributes, next);
  // Only what the admin changed: an initiator's own MODE SELECT choices stay otherwise.
  const mode = so.lu.mode;
  if (changed.includes('emulate_write_cache')) mode.wce = next.emulate_write_cache;
  if (changed.includes('emulate_tas')) mode.tas = next.emulate_tas;
  if (changed.includes('emulate_ua_intlck_ctrl')) mode.uaIntlckCtrl = next.emulate_ua_intlck_ctrl;
  if (changed.some((k) => MODE_ATTRIBUTES.has(k))) so.lu.raiseUa(Asc.MODE_PARAMETERS_CHANGED);
  if (changed.some((k) => !MODE_ATTRIBUTES.has(k) && !UNSEEN_ATTRIBUTES.has(k))) so.lu.raiseUa(Asc.INQUIRY_DATA_CHANGED);
  return changed;
}

const vhostSocketModeDefault = () => fieldDefaults(specs().fabric('vhost').tpgFields).socket_mode;

/** TPG settings in place; true when something changed. */
function updateTpg(tpg: Tpg, cur: TpgConfig | undefined, next: TpgConfig): boolean {
  const attributes: Record<string, unknown> = { ...next.attributes };
  // vhost keeps its socket and queue count beside the attributes (see fabrics/vhost).
  if (next.socket !== undefined) attributes.socket = next.socket;
  if (next.socket !== undefined) attributes.socket_mode = next.socket_mode ?? vhostSocketModeDefault();
  if (next.socket_group !== undefined) attributes.socket_group = next.socket_group;
  if (next.num_queues !== undefined) attributes.num_queues = next.num_queues;
  if (next.target !== undefined) attributes.target = next.target;
  if (next.device !== undefined) attributes.device = next.device;
  if (next.nexus !== undefined) attributes.nexus = next.nexus;
  const before = JSON.stringify([tpg.attributes, tpg.parameters, tpg.auth, tpg.enabled, tpg.portals]);
  Object.keys(tpg.attributes).forEach((k) => attributes[k] === undefined && delete tpg.attributes[k]);
  Object.assign(tpg.attributes, attributes);
  tpg.parameters = { ...(next.parameters ?? {}) };
  tpg.auth = next.auth ? { ...next.auth } : {};
  tpg.enabled = next.enable;
  tpg.portals.splice(0, tpg.portals.length, ...next.portals.map((p) => ({ ...p })));
  return cur !== undefined && before !== JSON.stringify([tpg.attributes, tpg.parameters, tpg.auth, tpg.enabled, tpg.portals]);
}

function updateAcl(acl: NodeAcl, a: NodeAclConfig): void {
  acl.attributes = { ...a.attributes };
  acl.auth = a.auth ? { ...a.auth } : {};
  acl.mapped.clear();
  for (const m of a.mapped_luns) acl.mapped.set(m.index, { index: m.index, tpgLun: m.tpg_lun, writeProtect: m.write_protect });
}
