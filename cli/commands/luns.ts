// .../tpgN/luns: create a LUN from a storage object (mapped into every ACL
// unless told otherwise) and delete one; .../luns/lunN: its info.

import { boolArg, intArg, ShellError } from '../args';
import { completeParams, type Param, type NodeType, type ShellContext } from '../command';
import { formatSize, type Node } from '../tree';
import { createCommand, deleteCommand } from './common';
import { fmtStats, infoCommand } from './info';

const soPaths = (ctx: ShellContext) => Object.keys(ctx.data.runtime.storage_objects).sort();

const PARAMS: Param[] = [
  { name: 'storage_object', doc: 'Storage object path, e.g. /backstores/rd_mcp/ram0.', values: soPaths },
  { name: 'lun', doc: 'LUN number; the lowest free one when absent.' },
  { name: 'alias', doc: 'Name of the LUN link.' },
  { name: 'add_mapped_luns', doc: 'Map the new LUN into every ACL (default: global auto_add_mapped_luns, true).' },
];

const create = createCommand(
  () => PARAMS,
  async (ctx, n, p) => {
    if (!p.storage_object) throw new ShellError('missing required parameter storage_object');
    const so = p.storage_object.startsWith('/') ? p.storage_object : `/backstores/${p.storage_object}`;
    const r = await ctx.client.call<{ index: number }>('luns.create', {
      wwn: n.target!.wwn,
      tag: n.tpg!.tag,
      storage_object: so,
      ...(p.lun !== undefined ? { index: intArg('lun', p.lun) } : {}),
      ...(p.alias !== undefined ? { alias: p.alias } : {}),
      add_mapped_luns: boolArg('add_mapped_luns', p.add_mapped_luns, ctx.prefs.values.auto_add_mapped_luns),
    });
    return { msg: `Created LUN ${r.index}.`, result: r, path: `${n.path}/lun${r.index}` };
  },
  {
    aliases: { storage_object_path: 'storage_object' },
    // The storage object is usually typed first, as a path.
    complete: (ctx, _at, args, current) => (args.length === 0 && !current.includes('=') && current.startsWith('/') ? soPaths(ctx) : completeParams(ctx, PARAMS, current)),
  },
);

const del = deleteCommand([{ name: 'lun', doc: 'LUN number.' }], async (ctx, n, what) => {
  const index = intArg('lun', what)!;
  const so = n.tpg!.luns.find((l) => l.index === index)?.storage_object;
  await ctx.client.call('luns.delete', { wwn: n.target!.wwn, tag: n.tpg!.tag, index });
  return `LUN ${index}${so ? ` (${so})` : ''} of ${n.parent!.path}, and the mapped LUNs reaching it`;
});

export const lunsNode: NodeType = { commands: [create, del] };

/** A LUN's info, also at a mapped LUN (of the TPG LUN it reaches): its storage object's size and statistics. */
export const lunInfo = infoCommand((ctx, n: Node) => {
  const idx = n.kind === 'lun' ? n.lunIndex! : n.acl!.mapped_luns.find((m) => m.index === n.mappedIndex)!.tpg_lun;
  const l = n.tpg!.luns.find((x) => x.index === idx)!;
  const rt = ctx.data.runtime.storage_objects[l.storage_object];
  return {
    lines: [`storage object: ${l.storage_object} (${formatSize(rt?.size ?? 0)})`, `statistics of the storage object:`, ...fmtStats(rt?.stats).map((x) => `  ${x}`)],
    json: { lun: l, stats: rt?.stats },
  };
});

export const lunNode: NodeType = { commands: [lunInfo] };
