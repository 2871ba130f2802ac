// /FABRIC/WWN/tpgN: enable and disable, its attributes, parameters and auth
// (what the fabric's spec declares), and its info (sessions).

import type { FieldSpec } from '../../app/config/specs';
import { demoWriteProtectAdvice, demoWriteProtected } from '../../app/config/advice';
import type { Command, NodeType, Settings } from '../command';
import type { Node } from '../tree';
import { infoCommand } from './info';
import type { VhostTpgState } from '../../app/control/wire';

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
  if (n.vhost) lines.push(...vhostLines(n.vhost));
  return { lines, json: { tpg: n.tpg, sessions, ...(n.vhost ? { vhost: n.vhost } : {}) } };
});

const RECONNECTS = {
  yes: 'can reconnect (survives a tsiod restart)',
  no: "cannot reconnect (if tsiod stops, the guest's I/O hangs until the VM restarts)",
  unknown: "may not reconnect (it has not yet; QEMU 7.2's vhost-user-scsi cannot, and its guest's I/O would hang until the VM restarts)",
} as const;

/** A vhost TPG: its controller, its target there, and the front-ends connected with what they negotiated. */
function vhostLines(v: VhostTpgState): string[] {
  const lines = [
    `socket: ${v.socket} (one ${v.device === 'blk' ? 'virtio-blk disk' : 'virtio-scsi controller'})`,
    ...(v.device === 'blk' ? [] : [`target: ${v.target} (the guest's H:0:${v.target}:LUN)${v.serving ? '' : ', not served: disabled, or another TPG on the socket has this target'}`]),
    `device: ${v.device}`,
    `num_queues: ${v.num_queues}`,
    `front-ends: ${v.frontends.length}`,
  ];
  for (const fe of v.frontends) {
    lines.push(`  connection ${fe.connection} since ${fe.since}: ${fe.queues} queues running`);
    lines.push(`    protocol features: ${fe.protocol_features.join(', ') || 'none'}`);
    lines.push(`    inflight: ${fe.inflight ? 'yes' : 'no'}, ${RECONNECTS[fe.reconnects]}`);
    // Calls per request is what the guest pays in interrupts; kicks, in exits.
    lines.push(`    requests: ${fe.requests}, kicks: ${fe.kicks}, calls: ${fe.calls}`);
  }
  return lines;
}

export const tpgNode: NodeType = { commands: [enable, disable, info], settings };
