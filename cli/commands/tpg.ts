// /FABRIC/WWN/tpgN: enable and disable, its attributes, parameters and auth
// (what the fabric's spec declares), and its info (sessions).

import type { FieldSpec } from '../../app/config/specs';
import { demoWriteProtectAdvice, demoWriteProtected } from '../../app/config/advice';
import type { Command, NodeType, Settings } from '../command';
import type { Node } from '../tree';
import { infoCommand } from './info';

/** The key of tpgs.set and acls.set for a settings group. */
export const GROUP_KEYS: Record<string, string> = { attribute: 'attributes', parameter: 'parameters', auth: 'auth' };

const settings: Settings = {
  groups(n) {
    const g: Record<string, readonly FieldSpec[]> = { attribute: n.fabric!.tpgAttributes };
    if (n.fabric!.tpgParameters.length) g.parameter = n.fabric!.tpgParameters;
    if (n.fabric!.hasFeature('auth')) g.auth = n.fabric!.auth;
    return g;
  },
  values: (n, group) => (group === 'attribute' ? n.tpg!.attributes : group === 'parameter' ? n.tpg!.parameters : n.tpg!.auth) as Record<string, unknown>,
  apply: (ctx, n, group, values) => ctx.client.call('tpgs.set', { wwn: n.target!.wwn, tag: n.tpg!.tag, [GROUP_KEYS[group]]: values }),
};

function enabling(name: 'enable' | 'disable', doc: string): Command {
  return {
    name,
    usage: name,
    doc,
    async run(ctx, n: Node) {
      await ctx.client.call('tpgs.set', { wwn: n.target!.wwn, tag: n.tpg!.tag, enable: name === 'enable' });
      await ctx.refresh();
      ctx.print(`TPG ${n.tpg!.tag} ${name}d.`, { ok: true });
    },
  };
}

export const enable = enabling('enable', 'Enables the TPG.');
export const disable = enabling('disable', 'Disables the TPG: no new logins.');

const info = infoCommand(async (ctx, n) => {
  const sessions = (await ctx.client.call<Record<string, unknown>[]>('sessions.list', { wwn: n.target!.wwn })).filter((s) => s.tpg === n.tpg!.tag);
  const lines = [`enabled: ${n.tpg!.enable}`, `sessions: ${sessions.length}`];
  if (demoWriteProtected(n.tpg!)) lines.push(`warning: ${demoWriteProtectAdvice(n.target!, n.tpg!)}`);
  for (const s of sessions) lines.push(`  session ${s.id}: ${s.initiator_port} LUNs ${(s.luns as number[]).join(',')}`);
  return { lines, json: { tpg: n.tpg, sessions } };
});

export const tpgNode: NodeType = { commands: [enable, disable, info], settings };
