// /backstores/PLUGIN: create and delete storage objects, their fields from
// the plugin's spec.

import { specs } from '../../app/config/specs';
import { fieldValues, hintName, ShellError } from '../args';
import type { NodeType, Param } from '../command';
import type { Node } from '../tree';
import { confirmDelete, createCommand, deleteCommand } from './common';

/** name, the plugin's fields (required first), wwn. */
function params(n: Node): Param[] {
  const b = specs().backstore(n.plugin!);
  const fields = [...b.fields].sort((x, y) => Number(y.required) - Number(x.required));
  return [{ name: 'name', doc: 'Name of the storage object.' }, ...fields.map((f) => ({ name: f.name, doc: f.doc, field: f })), { name: 'wwn', doc: 'Unit serial number (VPD 80h); derived when absent.' }];
}

const create = createCommand(
  params,
  async (ctx, n, p) => {
    if (!p.name) throw new ShellError('missing required parameter name');
    const b = specs().backstore(n.plugin!);
    const fields = fieldValues(b.fields, p);
    for (const f of b.fields) if (f.required && fields[f.name] === undefined) throw new ShellError(`missing required parameter ${f.name}`);
    if (p.wwn) fields.wwn = p.wwn;
    const result = await ctx.client.call('storage_objects.create', { plugin: n.plugin, name: p.name, fields });
    return { msg: `Created ${n.plugin} storage object ${p.name}.`, result, path: `${n.path}/${p.name}` };
  },
  { aliases: { file_or_dev: 'dev' } },
);

const del = deleteCommand([{ name: 'name', doc: 'Name of the storage object.' }], async (ctx, n, what) => {
  const path = `/backstores/${n.plugin}/${what}`;
  const rt = ctx.data.runtime.storage_objects[path];
  if (!rt) throw new ShellError(`no storage object ${path}${hintName(what, n.children)}`);
  if (rt.used_by.length) await confirmDelete(ctx, `${what} is in use by ${rt.used_by.join(', ')}; delete it and those LUNs?`);
  await ctx.client.call('storage_objects.delete', { path });
  return `storage object ${path}${rt.used_by.length ? ` and the LUNs using it (${rt.used_by.join(', ')})` : ''}`;
});

export const pluginNode: NodeType = { commands: [create, del] };
