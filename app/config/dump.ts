// A TsioConfig back to the document tsiod --config reads: what saveconfig
// writes and what the control API edits. Values equal to their spec default
// are left out, so a saved file says what was chosen, not what was implied;
// parseConfig(dumpConfig(c)) gives back c.

import * as jsyaml from 'js-yaml';
import type { TsioConfig } from './config';
import { specs, type FieldSpec, type FieldValue } from './specs';
import { formatSize } from './size';

export type ConfigDocument = {
  storage_objects: Record<string, unknown>[];
  targets: Record<string, unknown>[];
  fabric_modules?: Record<string, unknown>[];
  daemon?: Record<string, unknown>;
};

/** Only the entries that differ from the fields' defaults (all of them for fields without one). */
function nonDefault(fields: readonly FieldSpec[], values: Record<string, unknown> | undefined): Record<string, FieldValue> | undefined {
  if (!values) return undefined;
  const out: Record<string, FieldValue> = {};
  for (const f of fields) {
    const v = values[f.name];
    // Sizes as people write them (64MiB), exact so they read back to the same bytes.
    if (v !== undefined && v !== f.default) out[f.name] = f.type === 'size' && typeof v === 'number' ? formatSize(v) : (v as FieldValue);
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function put(o: Record<string, unknown>, k: string, v: unknown): void {
  if (v !== undefined) o[k] = v;
}

export function configToDocument(cfg: TsioConfig): ConfigDocument {
  const s = specs();
  const storage_objects = cfg.storage_objects.map((so) => {
    const b = s.backstore(so.plugin);
    const o: Record<string, unknown> = { name: so.name, plugin: so.plugin };
    put(o, 'wwn', so.wwn);
    if (so.compat !== 'tsio') o.compat = so.compat;
    // Attribute-linked fields (write_back, readonly) are said once, as the field: its default differs per plugin.
    const own = nonDefault(b.fields, so as unknown as Record<string, unknown>);
    if (own) Object.assign(o, own);
    const linked = new Set(b.fields.map((f) => f.attribute));
    put(o, 'attributes', nonDefault(s.storageAttributes.filter((a) => !linked.has(a.name as never)), so.attributes as unknown as Record<string, unknown>));
    return o;
  });
  const targets = cfg.targets.map((t) => {
    const f = s.fabric(t.fabric);
    return {
      fabric: t.fabric,
      wwn: t.wwn,
      tpgs: t.tpgs.map((tpg) => {
        const o: Record<string, unknown> = { tag: tpg.tag };
        if (!tpg.enable) o.enable = false;
        const own = nonDefault(f.tpgFields, tpg as unknown as Record<string, unknown>);
        if (own) Object.assign(o, own);
        put(o, 'attributes', nonDefault(f.tpgAttributes, tpg.attributes));
        put(o, 'parameters', nonDefault(f.tpgParameters, tpg.parameters));
        put(o, 'auth', nonDefault(f.auth, tpg.auth as unknown as Record<string, unknown>));
        if (tpg.portals.length > 0) o.portals = tpg.portals.map((p) => ({ ip_address: p.ip_address, port: p.port }));
        if (tpg.luns.length > 0) {
          o.luns = tpg.luns.map((l) => {
            const lo: Record<string, unknown> = { index: l.index, storage_object: l.storage_object };
            put(lo, 'alias', l.alias);
            return lo;
          });
        }
        if (tpg.node_acls.length > 0) {
          o.node_acls = tpg.node_acls.map((a) => {
            const ao: Record<string, unknown> = { node_wwn: a.node_wwn };
            put(ao, 'attributes', nonDefault(f.aclAttributes, a.attributes));
            put(ao, 'auth', nonDefault(f.auth, a.auth as unknown as Record<string, unknown>));
            ao.mapped_luns = a.mapped_luns.map((m) => (m.write_protect ? { index: m.index, tpg_lun: m.tpg_lun, write_protect: true } : { index: m.index, tpg_lun: m.tpg_lun }));
            return ao;
          });
        }
        return o;
      }),
    };
  });
  // The daemon's own settings first: what follows is the objects, targets last (as people append them).
  const daemon = cfg.daemon !== undefined && Object.keys(cfg.daemon).length > 0 ? { daemon: { ...cfg.daemon } } : {};
  const doc: ConfigDocument = { ...daemon, storage_objects, targets };
  const modules = cfg.fabric_modules
    .map((m) => ({ name: m.name, discovery_auth: nonDefault(s.fabric(m.name).discoveryAuth, m.discovery_auth as unknown as Record<string, unknown>) }))
    .filter((m) => m.discovery_auth !== undefined);
  if (modules.length > 0) doc.fabric_modules = modules;
  return doc;
}

/** YAML text of a configuration, with a header saying where it came from. */
export function dumpConfig(cfg: TsioConfig, header = 'tsio configuration'): string {
  const body = jsyaml.dump(configToDocument(cfg), { lineWidth: 160, noRefs: true, flowLevel: -1 });
  return `# ${header}\n${body}`;
}
