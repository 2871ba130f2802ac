// targetcli's saveconfig.json (rtslib's format) to a tsio config document.
// The shapes are close by design; what differs: the ramdisk plugin is rd_mcp
// here, CHAP settings are chap_* keys on TPGs and ACLs there, discovery auth
// is discovery_* keys on fabric modules, iSCSI parameters are strings, and
// LIO has attributes tsio derives itself (hw_*) or does not have. Whatever
// cannot be carried over is listed in `unmapped`, one line each, never
// silently dropped.

import { specs, type FieldSpec } from './specs';
import type { ConfigDocument } from './dump';

type Obj = Record<string, unknown>;

export interface LioConversion {
  document: ConfigDocument;
  /** One line per setting or object that has no tsio counterpart. */
  unmapped: string[];
}

const PLUGIN: Record<string, string> = { fileio: 'fileio', block: 'block', iblock: 'block', ramdisk: 'rd_mcp', rd_mcp: 'rd_mcp', pscsi: 'pscsi' };
// LIO attributes tsio derives from the store itself: not settings, so not worth a note.
const DERIVED = new Set(['hw_block_size', 'hw_max_sectors_hw', 'hw_pi_prot_type', 'hw_queue_depth', 'block_size']);

/**
 * LIO attributes tsio has no setting for, at values that mean what tsio does anyway: no protection
 * information, unrestricted reordering off, persistent reservations on with ISIDs enforced, and DPO and FUA on
 * reads served exactly when FUA on writes is (tsio ties them to emulate_fua_write). Only other values change
 * what an initiator sees, and only those are reported.
 */
const SAME_AS_TSIO: Record<string, (v: number, attrs: Obj) => boolean> = {
  pi_prot_type: (v) => v === 0,
  pi_prot_format: (v) => v === 0,
  pi_prot_verify: (v) => v === 0,
  emulate_rest_reord: (v) => v === 0,
  force_pr_aptpl: (v) => v === 0,
  emulate_pr: (v) => v === 1,
  enforce_pr_isids: (v) => v === 1,
  alua_support: (v) => v === 1,
  pgr_support: (v) => v === 1,
  emulate_dpo: (v, a) => v === Number(a.emulate_fua_write ?? 1),
  emulate_fua_read: (v, a) => v === Number(a.emulate_fua_write ?? 1),
};

/** Attributes without a tsio counterpart whose value is what tsio does anyway (not worth a note). */
function harmless(attrs: Obj): Set<string> {
  const out = new Set(DERIVED);
  for (const [k, same] of Object.entries(SAME_AS_TSIO)) if (k in attrs && same(Number(attrs[k]), attrs)) out.add(k);
  return out;
}
const AUTH = ['userid', 'password', 'mutual_userid', 'mutual_password'];

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const list = (v: unknown): Obj[] => (Array.isArray(v) ? v.filter(isObj) : []);

/** The parsed saveconfig.json when text is one (JSON naming rtslib plugins, chap_ keys or targetcli fabrics), else undefined. */
export function isLioSaveconfig(text: string): Obj | undefined {
  const t = text.trimStart();
  if (!t.startsWith('{')) return undefined;
  let data: unknown;
  try {
    data = JSON.parse(t);
  } catch {
    return undefined;
  }
  if (!isObj(data)) return undefined;
  const sos = list(data.storage_objects);
  const lioish =
    sos.some((so) => so.plugin === 'ramdisk' || 'aio' in so || 'alua_tpgs' in so) ||
    list(data.targets).some((t) => list(t.tpgs).some((tpg) => Object.keys(tpg).some((k) => k.startsWith('chap_')) || list(tpg.portals).some((p) => 'iser' in p))) ||
    list(data.fabric_modules).some((m) => Object.keys(m).some((k) => k.startsWith('discovery_')));
  // A JSON file without those marks is still fine to convert: the shapes match.
  return lioish || 'targets' in data || 'storage_objects' in data ? data : undefined;
}

/** Converts fields by the spec: known names kept (strings coerced to the spec's type), others noted. */
function fields(specFields: readonly FieldSpec[], given: unknown, where: string, unmapped: string[], skip: Set<string> = new Set()): Obj | undefined {
  if (!isObj(given)) return undefined;
  const out: Obj = {};
  for (const [k, v] of Object.entries(given)) {
    const f = specFields.find((x) => x.name === k);
    if (!f) {
      if (!skip.has(k)) unmapped.push(`${where}: ${k} = ${JSON.stringify(v)} (no tsio counterpart; dropped)`);
      continue;
    }
    out[k] = coerce(f, v);
  }
  return Object.keys(out).length ? out : undefined;
}

function coerce(f: FieldSpec, v: unknown): unknown {
  if (typeof v !== 'string') {
    if (f.type === 'bool' && typeof v === 'number') return v !== 0;
    if (f.type === 'enum' && typeof v === 'boolean') return v ? 'Yes' : 'No';
    return v;
  }
  switch (f.type) {
    case 'int':
      return /^-?\d+$/.test(v) ? Number(v) : v;
    case 'bool':
      return ['1', 'yes', 'true', 'on'].includes(v.toLowerCase()) ? true : ['0', 'no', 'false', 'off'].includes(v.toLowerCase()) ? false : v;
    case 'enum':
      return f.values?.some((x) => typeof x === 'number') && /^\d+$/.test(v) ? Number(v) : v;
    default:
      return v;
  }
}

function chap(o: Obj, prefix: string): Obj | undefined {
  const out: Obj = {};
  for (const k of AUTH) if (typeof o[`${prefix}${k}`] === 'string' && o[`${prefix}${k}`] !== '') out[k] = o[`${prefix}${k}`];
  // Also the nested form some tools write.
  if (isObj(o.auth)) for (const k of AUTH) if (typeof o.auth[k] === 'string' && o.auth[k] !== '') out[k] = o.auth[k];
  return Object.keys(out).length ? out : undefined;
}

export function lioToDocument(data: Obj): LioConversion {
  const s = specs();
  const unmapped: string[] = [];
  const storage_objects: Obj[] = [];
  const soPaths = new Map<string, string>();

  for (const so of list(data.storage_objects)) {
    const where = `storage object ${String(so.plugin)}/${String(so.name)}`;
    const plugin = PLUGIN[String(so.plugin)];
    if (!plugin) {
      unmapped.push(`${where}: plugin '${so.plugin}' has no tsio backstore (skipped, with its LUNs)`);
      continue;
    }
    const b = s.backstore(plugin);
    const out: Obj = { name: so.name, plugin };
    if (typeof so.wwn === 'string') out.wwn = so.wwn;
    // What LIO reported for it (vendor, NAA, VPD 83h designators) is what initiators know the disk by.
    out.compat = 'lio';
    for (const f of b.fields) if (so[f.name] !== undefined && so[f.name] !== null) out[f.name] = coerce(f, so[f.name]);
    const attrs = isObj(so.attributes) ? so.attributes : {};
    // LIO keeps the logical block size as an attribute; tsio as a field where the plugin has one.
    if (attrs.block_size !== undefined && b.fields.some((f) => f.name === 'block_size')) out.block_size = Number(attrs.block_size);
    const a = fields(s.storageAttributes, attrs, where, unmapped, harmless(attrs));
    if (a) {
      // Linked fields (write_back, readonly) and their attribute must agree; the attribute wins, as in LIO.
      for (const f of b.fields) if (f.attribute !== undefined && a[f.attribute] !== undefined) delete out[f.name];
      out.attributes = a;
    }
    if (so.aio === true) unmapped.push(`${where}: aio = true (tsio's fileio I/O is always asynchronous; ignored)`);
    if (list(so.alua_tpgs).some((g) => g.name !== 'default_tg_pt_gp')) unmapped.push(`${where}: ALUA target port groups (not supported; dropped)`);
    const known = new Set(['name', 'plugin', 'wwn', 'compat', 'attributes', 'alua_tpgs', 'aio', ...b.fields.map((f) => f.name)]);
    for (const k of Object.keys(so)) if (!known.has(k)) unmapped.push(`${where}: ${k} = ${JSON.stringify(so[k])} (no tsio counterpart; dropped)`);
    storage_objects.push(out);
    soPaths.set(`/backstores/${String(so.plugin)}/${String(so.name)}`, `/backstores/${plugin}/${String(so.name)}`);
  }

  const targets: Obj[] = [];
  for (const t of list(data.targets)) {
    const fabricName = String(t.fabric);
    const f = s.findFabric(fabricName);
    const where = `${fabricName} target ${String(t.wwn)}`;
    if (!f) {
      unmapped.push(`${where}: fabric '${fabricName}' is not served by tsio (skipped)`);
      continue;
    }
    if (f.tpgFields.some((x) => x.required)) {
      unmapped.push(`${where}: LIO's kernel ${fabricName} has no ${f.tpgFields.filter((x) => x.required).map((x) => x.name).join(', ')}; set it and restore again (skipped)`);
      continue;
    }
    const tpgs: Obj[] = [];
    for (const tpg of list(t.tpgs)) {
      const tw = `${where} tpg ${String(tpg.tag)}`;
      const o: Obj = { tag: tpg.tag };
      if (tpg.enable === false || tpg.enable === 0) o.enable = false;
      for (const tf of f.tpgFields) if (tpg[tf.name] !== undefined) o[tf.name] = tpg[tf.name];
      const attrs = fields(f.tpgAttributes, tpg.attributes, `${tw} attribute`, unmapped, new Set(['fabric_prot_type', 't10_pi', 'tpg_enabled_sendtargets', 'login_keys_offload']));
      if (attrs) o.attributes = attrs;
      if (f.tpgParameters.length > 0) {
        const params = fields(f.tpgParameters, tpg.parameters, `${tw} parameter`, unmapped, new Set(['IFMarker', 'OFMarker', 'IFMarkInt', 'OFMarkInt']));
        if (params) o.parameters = params;
      }
      const auth = chap(tpg, 'chap_');
      if (auth && f.hasFeature('auth')) o.auth = auth;
      else if (auth) unmapped.push(`${tw}: CHAP settings (the ${fabricName} fabric has no auth; dropped)`);
      const portals = list(tpg.portals).map((p) => {
        if (p.iser === true || p.offload === true) unmapped.push(`${tw} portal ${String(p.ip_address)}:${String(p.port)}: iSER/offload (TCP only here; kept as TCP)`);
        return { ip_address: p.ip_address, port: typeof p.port === 'string' ? Number(p.port) : p.port };
      });
      if (portals.length && f.hasFeature('nps')) o.portals = portals;
      else if (portals.length) unmapped.push(`${tw}: portals (the ${fabricName} fabric has none; dropped)`);
      const luns: Obj[] = [];
      for (const l of list(tpg.luns)) {
        const so = soPaths.get(String(l.storage_object));
        if (!so) {
          unmapped.push(`${tw} lun ${String(l.index)}: its storage object ${String(l.storage_object)} was not imported (skipped)`);
          continue;
        }
        const lo: Obj = { index: l.index, storage_object: so };
        // LIO's aliases are random link names; only a meaningful one is worth keeping.
        if (typeof l.alias === 'string' && /^[A-Za-z0-9_.-]+$/.test(l.alias) && !/^[0-9a-f]{10}$/.test(l.alias)) lo.alias = l.alias;
        if (typeof l.alua_tg_pt_gp_name === 'string' && l.alua_tg_pt_gp_name !== 'default_tg_pt_gp') unmapped.push(`${tw} lun ${String(l.index)}: ALUA group ${l.alua_tg_pt_gp_name} (dropped)`);
        luns.push(lo);
      }
      if (luns.length) o.luns = luns;
      const lunIdx = new Set(luns.map((l) => l.index));
      const acls: Obj[] = [];
      for (const a of list(tpg.node_acls)) {
        const aw = `${tw} acl ${String(a.node_wwn)}`;
        const ao: Obj = { node_wwn: a.node_wwn };
        const aa = fields(f.aclAttributes, a.attributes, `${aw} attribute`, unmapped);
        if (aa) ao.attributes = aa;
        const aauth = chap(a, 'chap_');
        if (aauth && (f.hasFeature('auth') || f.hasFeature('acls_auth'))) ao.auth = aauth;
        if (typeof a.tag === 'string' && a.tag !== '') unmapped.push(`${aw}: tag ${a.tag} (ACL tags are not kept)`);
        ao.mapped_luns = list(a.mapped_luns)
          .filter((m) => {
            if (lunIdx.has(m.tpg_lun)) return true;
            unmapped.push(`${aw} mapped lun ${String(m.index)}: TPG LUN ${String(m.tpg_lun)} was not imported (skipped)`);
            return false;
          })
          .map((m) => (m.write_protect === true || m.write_protect === 1 ? { index: m.index, tpg_lun: m.tpg_lun, write_protect: true } : { index: m.index, tpg_lun: m.tpg_lun }));
        acls.push(ao);
      }
      if (acls.length && f.hasFeature('acls')) o.node_acls = acls;
      else if (acls.length) unmapped.push(`${tw}: node ACLs (the ${fabricName} fabric has none here; dropped)`);
      tpgs.push(o);
    }
    targets.push({ fabric: f.name, wwn: t.wwn, tpgs });
  }

  const fabric_modules: Obj[] = [];
  for (const m of list(data.fabric_modules)) {
    const f = s.findFabric(String(m.name));
    const auth = chap(m, 'discovery_');
    const enable = m.discovery_enable_auth === true || m.discovery_enable_auth === 1 || m.discovery_enable_auth === '1';
    if (!f || !f.hasFeature('discovery_auth')) {
      if (auth || enable) unmapped.push(`fabric module ${String(m.name)}: discovery auth (not supported for it; dropped)`);
      continue;
    }
    if (auth || enable) fabric_modules.push({ name: f.name, discovery_auth: { ...(auth ?? {}), ...(enable ? { enable: true } : {}) } });
  }

  const document: ConfigDocument = { storage_objects, targets };
  if (fabric_modules.length) document.fabric_modules = fabric_modules;
  return { document, unmapped };
}
