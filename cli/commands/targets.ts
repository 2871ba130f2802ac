// /FABRIC: create and delete targets (and the fabric's discovery_auth);
// /FABRIC/WWN: create and delete its TPGs. TPG fields come from the fabric's
// spec.

import type { FieldSpec } from '../../app/config/specs';
import { fieldValues, hintName, intArg, ShellError } from '../args';
import type { NodeType, Param, Settings } from '../command';
import type { Node } from '../tree';
import { confirmDelete, createCommand, deleteCommand } from './common';
import { infoCommand } from './info';

const tpgParams = (n: Node): Param[] => n.fabric!.tpgFields.map((f) => ({ name: f.name, doc: f.doc, field: f }));

const createTarget = createCommand(
  (n) => [{ name: 'wwn', doc: `Target name: ${n.fabric!.wwnExpect}; generated when absent.` }, ...tpgParams(n)],
  async (ctx, n, p) => {
    const tpgFields = fieldValues(n.fabric!.tpgFields, p);
    const r = await ctx.client.call<{ wwn: string; tpgs: number[] }>('targets.create', { fabric: n.name, ...(p.wwn ? { wwn: p.wwn } : {}), ...(Object.keys(tpgFields).length ? { tpg_fields: tpgFields } : {}) });
    return { msg: `Created target ${r.wwn}.${r.tpgs.length ? `\nCreated TPG ${r.tpgs[0]}.` : ''}`, result: r };
  },
);

const deleteTarget = deleteCommand(async (ctx, n, what) => {
  const t = n.children.find((c) => c.name.toLowerCase() === what.toLowerCase());
  if (!t) throw new ShellError(`no target ${what}${hintName(what, n.children)}`);
  const sessions = t.target!.tpgs.reduce((sum, tp) => sum + (ctx.data.runtime.tpgs[`${t.name}/${tp.tag}`]?.sessions ?? 0), 0);
  if (sessions) await confirmDelete(ctx, `${what} has ${sessions} open sessions; delete it?`);
  await ctx.client.call('targets.delete', { wwn: t.target!.wwn });
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
    const result = await ctx.client.call('tpgs.create', { wwn: n.target!.wwn, tag, fields: fieldValues(n.fabric!.tpgFields, p) });
    return { msg: `Created TPG ${tag}.`, result };
  },
);

const deleteTpg = deleteCommand(async (ctx, n, what) => {
  const tag = intArg('tag', what)!;
  const sessions = ctx.data.runtime.tpgs[`${n.target!.wwn}/${tag}`]?.sessions ?? 0;
  if (sessions) await confirmDelete(ctx, `TPG ${tag} has ${sessions} open sessions; delete it?`);
  await ctx.client.call('tpgs.delete', { wwn: n.target!.wwn, tag });
});

const targetInfo = infoCommand((_ctx, n) => ({
  lines: [`fabric: ${n.target!.fabric}`, `TPGs: ${n.target!.tpgs.map((t) => t.tag).join(', ')}`],
  json: { target: n.target },
}));

export const targetNode: NodeType = { commands: [createTpg, deleteTpg, targetInfo] };
