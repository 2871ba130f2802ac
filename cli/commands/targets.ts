// /FABRIC: create and delete targets (and the fabric's discovery_auth);
// /FABRIC/WWN: create and delete its TPGs. TPG fields come from the fabric's
// spec.

import { fieldDefaults, type FieldSpec } from '../../app/config/specs';
import { fieldValues, hintName, intArg, ShellError } from '../args';
import type { NodeType, Param, Settings } from '../command';
import type { Node } from '../tree';
import { confirmDelete, createCommand, deleteCommand } from './common';
import { infoCommand } from './info';

const tpgParams = (n: Node): Param[] => n.fabric!.tpgFields.map((f) => ({ name: f.name, doc: f.doc, field: f }));

const createTarget = createCommand(
  (n) => [{ name: 'wwn', doc: `Target name: ${n.fabric!.wwnExpect}; generated when absent.` }, ...tpgParams(n)],
  async (ctx, n, p) => {
    const prefs = ctx.prefs.values;
    const tpgFields: Record<string, unknown> = { ...fieldValues(n.fabric!.tpgFields, p), ...(prefs.auto_enable_tpgt ? {} : { enable: false }) };
    const r = await ctx.client.call<{ wwn: string; tpgs: number[] }>('targets.create', { fabric: n.name, ...(p.wwn ? { wwn: p.wwn } : {}), ...(Object.keys(tpgFields).length ? { tpg_fields: tpgFields } : {}) });
    const lines = [`Created target ${r.wwn}.`];
    if (r.tpgs.length) lines.push(`Created TPG ${r.tpgs[0]}${prefs.auto_enable_tpgt ? '' : ' (disabled: global auto_enable_tpgt is false)'}.`);
    if (r.tpgs.length && n.fabric!.hasFeature('nps')) {
      const tpgPath = `${n.path}/${r.wwn}/tpg${r.tpgs[0]}`;
      if (prefs.auto_add_default_portal) {
        const def = fieldDefaults(n.fabric!.portal);
        await ctx.client.call('portals.create', { wwn: r.wwn, tag: r.tpgs[0], ip_address: def.ip_address, port: def.port });
        lines.push(`Created default portal ${def.ip_address}:${def.port} (global auto_add_default_portal); it listens on every address of this host.`);
      } else {
        lines.push(`The target has no portal yet, so no initiator can reach it: ${tpgPath}/portals create IP [PORT]`);
      }
    }
    return { msg: lines.join('\n'), result: r, path: `${n.path}/${r.wwn}` };
  },
);

const deleteTarget = deleteCommand([{ name: 'wwn', doc: 'The target name.' }], async (ctx, n, what) => {
  const t = n.children.find((c) => c.name.toLowerCase() === what.toLowerCase());
  if (!t) throw new ShellError(`no target ${what}${hintName(what, n.children)}`);
  const sessions = t.target!.tpgs.reduce((sum, tp) => sum + (ctx.data.runtime.tpgs[`${t.name}/${tp.tag}`]?.sessions ?? 0), 0);
  if (sessions) await confirmDelete(ctx, `${what} has ${sessions} open sessions; delete it?`);
  await ctx.client.call('targets.delete', { wwn: t.target!.wwn });
  return `target ${t.path}${sessions ? ` and its ${sessions} sessions` : ''}`;
});

const discoveryAuth: Settings = {
  groups: (n): Record<string, readonly FieldSpec[]> => (n.fabric!.hasFeature('discovery_auth') ? { discovery_auth: n.fabric!.discoveryAuth } : {}),
  values: (n, _group, data) => (data.config.fabric_modules.find((m) => m.name === n.name)?.discovery_auth ?? {}) as Record<string, unknown>,
  apply: (ctx, n, _group, values) => ctx.client.call('fabric_modules.set', { name: n.name, discovery_auth: values }),
};

export const fabricNode: NodeType = { commands: [createTarget, deleteTarget], settings: discoveryAuth };

const createTpg = createCommand(
  (n) => [{ name: 'tag', doc: 'TPG tag (a number).' }, ...tpgParams(n)],
  async (ctx, n, p) => {
    const tag = intArg('tag', p.tag) ?? Math.max(0, ...n.target!.tpgs.map((t) => t.tag)) + 1;
    const enable = ctx.prefs.values.auto_enable_tpgt;
    const result = await ctx.client.call('tpgs.create', { wwn: n.target!.wwn, tag, fields: { ...fieldValues(n.fabric!.tpgFields, p), ...(enable ? {} : { enable: false }) } });
    return { msg: `Created TPG ${tag}${enable ? '' : ' (disabled: global auto_enable_tpgt is false)'}.`, result, path: `${n.path}/tpg${tag}` };
  },
);

const deleteTpg = deleteCommand([{ name: 'tag', doc: 'TPG tag (or tpgN).' }], async (ctx, n, what) => {
  const tag = intArg('tag', what)!;
  const sessions = ctx.data.runtime.tpgs[`${n.target!.wwn}/${tag}`]?.sessions ?? 0;
  if (sessions) await confirmDelete(ctx, `TPG ${tag} has ${sessions} open sessions; delete it?`);
  await ctx.client.call('tpgs.delete', { wwn: n.target!.wwn, tag });
  return `TPG ${tag} of ${n.path}${sessions ? ` and its ${sessions} sessions` : ''}`;
});

const targetInfo = infoCommand((_ctx, n) => ({
  lines: [`fabric: ${n.target!.fabric}`, `TPGs: ${n.target!.tpgs.map((t) => t.tag).join(', ')}`],
  json: { target: n.target },
}));

export const targetNode: NodeType = { commands: [createTpg, deleteTpg, targetInfo] };
