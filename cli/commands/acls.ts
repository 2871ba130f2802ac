// .../tpgN/acls: create and delete node ACLs; .../acls/INITIATOR: its mapped
// LUNs, attributes and auth, and its info (sessions, CHAP); a mapped LUN's
// info is its TPG LUN's.

import type { FieldSpec } from '../../app/config/specs';
import { boolArg, intArg, ShellError } from '../args';
import type { NodeType, Settings } from '../command';
import { createCommand, deleteCommand } from './common';
import { infoCommand } from './info';
import { lunInfo } from './luns';
import { GROUP_KEYS } from './tpg';

const createAcl = createCommand(
  () => [
    { name: 'wwn', doc: 'Initiator name the ACL admits.' },
    { name: 'add_mapped_luns', doc: 'Map every TPG LUN into the new ACL (default: global auto_add_mapped_luns, true).' },
  ],
  async (ctx, n, p) => {
    if (!p.wwn) throw new ShellError('missing required parameter wwn');
    const result = await ctx.client.call('acls.create', { wwn: n.target!.wwn, tag: n.tpg!.tag, node_wwn: p.wwn, add_mapped_luns: boolArg('add_mapped_luns', p.add_mapped_luns, ctx.prefs.values.auto_add_mapped_luns) });
    return { msg: `Created Node ACL for ${p.wwn}`, result, path: `${n.path}/${p.wwn}` };
  },
);

const deleteAcl = deleteCommand([{ name: 'wwn', doc: 'Initiator name of the ACL.' }], async (ctx, n, what) => {
  await ctx.client.call('acls.delete', { wwn: n.target!.wwn, tag: n.tpg!.tag, node_wwn: what });
  return `Node ACL ${what} of ${n.parent!.path}`;
});

export const aclsNode: NodeType = { commands: [createAcl, deleteAcl] };

const createMappedLun = createCommand(
  () => [
    { name: 'mapped_lun', doc: 'LUN number the initiator sees.' },
    { name: 'tpg_lun', doc: 'The TPG LUN it reaches.' },
    { name: 'write_protect', doc: 'Read-only for this initiator (default false).' },
  ],
  async (ctx, n, p) => {
    if (p.mapped_lun === undefined || p.tpg_lun === undefined) throw new ShellError('create needs mapped_lun and tpg_lun');
    const idx = intArg('mapped_lun', p.mapped_lun)!;
    const result = await ctx.client.call('mapped_luns.create', {
      wwn: n.target!.wwn,
      tag: n.tpg!.tag,
      node_wwn: n.acl!.node_wwn,
      index: idx,
      tpg_lun: intArg('tpg_lun', p.tpg_lun),
      write_protect: boolArg('write_protect', p.write_protect, false),
    });
    return { msg: `Created Mapped LUN ${idx}.`, result, path: `${n.path}/mapped_lun${idx}` };
  },
);

const deleteMappedLun = deleteCommand([{ name: 'mapped_lun', doc: 'Mapped LUN number.' }], async (ctx, n, what) => {
  const index = intArg('mapped_lun', what);
  await ctx.client.call('mapped_luns.delete', { wwn: n.target!.wwn, tag: n.tpg!.tag, node_wwn: n.acl!.node_wwn, index });
  return `Mapped LUN ${index} of ${n.path}`;
});

const settings: Settings = {
  groups(n) {
    const g: Record<string, readonly FieldSpec[]> = { attribute: n.fabric!.aclAttributes };
    if (n.fabric!.hasFeature('auth') || n.fabric!.hasFeature('acls_auth')) g.auth = n.fabric!.auth;
    return g;
  },
  values: (n, group) => (group === 'attribute' ? n.acl!.attributes : n.acl!.auth) as Record<string, unknown>,
  apply: (ctx, n, group, values) => ctx.client.call('acls.set', { wwn: n.target!.wwn, tag: n.tpg!.tag, node_wwn: n.acl!.node_wwn, [GROUP_KEYS[group]]: values }),
};

const aclInfo = infoCommand(async (ctx, n) => {
  const acl = await ctx.client.call<Record<string, unknown>>('acls.get', { wwn: n.target!.wwn, tag: n.tpg!.tag, node_wwn: n.acl!.node_wwn });
  const sessions = acl.sessions as number[];
  const auth = n.acl!.auth;
  return {
    lines: [`sessions: ${sessions.length ? sessions.join(', ') : 'none'}`, `auth: ${auth?.userid ? `CHAP user ${auth.userid}${auth.mutual_userid ? ', mutual' : ''}` : 'none'}`],
    json: { acl },
  };
});

export const aclNode: NodeType = { commands: [createMappedLun, deleteMappedLun, aclInfo], settings };

export const mappedLunNode: NodeType = { commands: [lunInfo] };
