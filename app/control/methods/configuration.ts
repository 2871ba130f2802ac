// The whole configuration: save it (atomically, with backups), restore it
// from YAML or a targetcli saveconfig.json (merged, or replacing), clear it.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseConfig, type TsioConfig } from '../../config/config';
import { dumpConfig } from '../../config/dump';
import { isLioSaveconfig, lioToDocument } from '../../config/lio-import';
import { listBackups, saveAtomically } from '../../config/save';
import { absolutePaths, EMPTY_CONFIG, soKey } from '../../daemon/reconcile';
import type { MethodTable } from '../context';
import { bool, invalidParams, optBool, optStr } from '../params';

export const configurationMethods: MethodTable = {
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
