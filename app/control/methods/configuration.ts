// The whole configuration: save it (atomically, with backups), restore it
// from YAML or a targetcli saveconfig.json (merged, or replacing), clear it.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { TsioConfig } from '../../config/config';
import { readConfigText } from '../../config/read';
import { dumpConfig } from '../../config/dump';
import { listBackups, saveAtomically } from '../../config/save';
import { EMPTY_CONFIG, soKey } from '../../daemon/reconcile';
import type { MethodTable } from '../context';
import { hint } from '../lookup';
import { bool, invalidParams, optBool, optInt, optStr } from '../params';

export const configurationMethods: MethodTable = {
  'saveconfig': {
    doc: 'Writes the live configuration as YAML (atomically, mode 0600); a changed file keeps its previous version as a backup (the newest max_backup_files, default 10).',
    params: { path: optStr, max_backup_files: optInt },
    audit: true,
    run: (p, c) => {
      const path = resolve((p.path as string | undefined) ?? c.savePath);
      const text = dumpConfig(c.live.config, `tsio configuration, saved ${new Date().toISOString()}; tsiod --config reads it`);
      const r = saveAtomically(path, text, { backups: p.max_backup_files as number | undefined });
      return { path, changed: r.changed, backup: r.backup ?? null, backups: listBackups(path).length };
    },
  },
  'restoreconfig': {
    doc: 'Loads a YAML config (or a targetcli saveconfig.json), validated whole first, and applies the difference. clear_existing: remove what the file does not name. target / storage_object: restore only that target (with the storage objects its LUNs need) or that storage object.',
    params: { path: optStr, text: optStr, clear_existing: optBool, target: optStr, storage_object: optStr },
    run: async (p, c) => {
      if (p.path !== undefined && p.text !== undefined) throw invalidParams('restoreconfig: give path or text, not both');
      const path = p.path !== undefined ? resolve(p.path as string) : p.text === undefined ? c.savePath : undefined;
      if (path !== undefined && !existsSync(path)) throw invalidParams(`no such file: ${path}`);
      const text = path !== undefined ? readFileSync(path, 'utf8') : (p.text as string);
      const { cfg, notes, lio } = readConfigText(text, path ?? '<text>', path !== undefined ? dirname(path) : process.cwd());
      const only = p.target !== undefined || p.storage_object !== undefined;
      const incoming = only ? pick(cfg, c.live.config, p.target as string | undefined, p.storage_object as string | undefined, path ?? 'the text') : cfg;
      const next = p.clear_existing && !only ? incoming : merge(c.live.config, incoming);
      const report = await c.apply(next);
      return { ...report, unmapped: notes, format: lio ? 'targetcli saveconfig.json' : 'tsio yaml' };
    },
  },
  'reload': {
    doc: 'Applies the saved configuration (the saveconfig file) live, as restoreconfig clear_existing does: only differences, unchanged targets keep their sessions (tsiod does this on SIGHUP).',
    params: {},
    run: async (_p, c) => {
      if (!existsSync(c.savePath)) throw invalidParams(`no saved configuration at ${c.savePath}`);
      const { cfg, notes } = readConfigText(readFileSync(c.savePath, 'utf8'), c.savePath, dirname(c.savePath));
      const report = await c.apply(cfg);
      return { path: c.savePath, ...report, unmapped: notes };
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

/**
 * restoreconfig target=WWN / storage_object=NAME, as targetcli's: just that target, with the storage objects its
 * LUNs use that are not running yet; or just that storage object (a name, or its /backstores/PLUGIN/NAME path).
 */
function pick(file: TsioConfig, live: TsioConfig, target: string | undefined, so: string | undefined, where: string): TsioConfig {
  const out: TsioConfig = { source: file.source, storage_objects: [], targets: [], fabric_modules: [] };
  if (so !== undefined) {
    const found = file.storage_objects.filter((x) => x.name === so || soKey(x) === so);
    if (found.length === 0) throw invalidParams(`storage_object=${so}: ${where} has no such storage object${hint(so, file.storage_objects.map((x) => x.name))}`);
    if (found.length > 1) throw invalidParams(`storage_object=${so}: ${where} has ${found.map(soKey).join(' and ')}; give the path`);
    out.storage_objects.push(found[0]);
  }
  if (target !== undefined) {
    const t = file.targets.find((x) => x.wwn.toLowerCase() === target.toLowerCase());
    if (!t) throw invalidParams(`target=${target}: ${where} has no such target${hint(target, file.targets.map((x) => x.wwn))}`);
    out.targets.push(t);
    const running = new Set(live.storage_objects.map(soKey));
    for (const path of new Set(t.tpgs.flatMap((tpg) => tpg.luns.map((l) => l.storage_object)))) {
      const need = file.storage_objects.find((x) => soKey(x) === path);
      if (need && !running.has(path) && !out.storage_objects.includes(need)) out.storage_objects.push(need);
    }
  }
  return out;
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
  const daemon = incoming.daemon ?? cur.daemon;
  return { source: incoming.source, storage_objects: [...sos.values()], targets: [...targets.values()], fabric_modules: [...mods.values()], ...(daemon ? { daemon } : {}) };
}
