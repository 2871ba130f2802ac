// /backstores/PLUGIN/NAME: a storage object's attributes, its persistent
// reservations (shown, or cleared as the administrator's escape hatch) and
// its info (size, serial, users, I/O statistics).

import { specs } from '../../app/config/specs';
import type { PrView } from '../../app/control/wire';
import { boolArg, ShellError } from '../args';
import type { Command, NodeType, Settings } from '../command';
import { formatSize, type Node } from '../tree';
import { fmtStats, infoCommand } from './info';

const soPath = (n: Node) => `/backstores/${n.plugin}/${n.so!.name}`;

const settings: Settings = {
  groups: () => ({ attribute: specs().storageAttributes }),
  values: (n) => n.so!.attributes as unknown as Record<string, unknown>,
  apply: (ctx, n, _group, values) => ctx.client.call('storage_objects.set', { path: soPath(n), attributes: values }),
};

/** Shows, or (with clear) drops, the storage object's persistent reservation state. */
export const reservations: Command = {
  name: 'reservations',
  usage: 'reservations [clear [confirm=true]]',
  doc: 'Persistent reservation state of the storage object; clear drops every registration and the reservation (admin escape hatch).',
  params: () => [
    { name: 'action', doc: 'clear: drop them.' },
    { name: 'confirm', doc: 'true: clear without asking.' },
  ],
  complete: (_ctx, _at, args) => (args.length === 0 ? ['clear'] : ['confirm=true']),
  async run(ctx, n, a) {
    const path = soPath(n);
    if (a.pos[0] === 'clear') {
      if (!boolArg('confirm', a.kv.confirm, false)) {
        if (!ctx.opts.interactive || !ctx.opts.prompter) throw new ShellError('reservations clear drops every registration: run it as reservations clear confirm=true');
        if (!(await ctx.opts.prompter.confirm(`Drop every registration and the reservation of ${path}? Cluster fencing relies on them.`, false))) return void ctx.out('Not cleared.');
      }
      const r = await ctx.client.call<{ cleared: number }>('storage_objects.clear_reservations', { path });
      ctx.print(`${r.cleared} registrations of ${path} cleared.`, r);
      return;
    }
    if (a.pos[0] !== undefined) throw new ShellError(`reservations: unknown argument '${a.pos[0]}' (reservations [clear [confirm=true]])`);
    const v = await ctx.client.call<PrView>('storage_objects.reservations', { path });
    const lines = [`generation 0x${v.generation.toString(16)}, APTPL ${v.aptpl ? 'on' : 'off'}`];
    if (v.reservation) lines.push(`reservation: ${v.reservation.type} held by ${v.reservation.initiator_port} key ${v.reservation.key}`);
    else lines.push('reservation: none');
    lines.push(`registrations: ${v.registrations.length}`);
    for (const r of v.registrations) lines.push(`  ${r.key} ${r.initiator_port} -> ${r.target_port}${r.holder ? ' (holder)' : ''}`);
    ctx.print(lines.join('\n'), v);
  },
};

const info = infoCommand((ctx, n) => {
  const rt = ctx.data.runtime.storage_objects[soPath(n)];
  const so = n.so!;
  const lines = [`plugin: ${so.plugin}`, `size: ${formatSize(rt.size)} (${rt.size} bytes), block size ${rt.block_size}`, `serial: ${rt.serial}`];
  if (so.dev) lines.push(`dev: ${so.dev}`);
  if (rt.health !== undefined) lines.push(`health: ${rt.health}`);
  if (rt.cluster !== undefined) lines.push(`cluster: ${Object.entries(rt.cluster).map(([k, v]) => `${k} ${String(v)}`).join(', ')}`);
  if (rt.alua !== undefined) {
    const a = rt.alua;
    lines.push(`ALUA: group ${a.group} ${a.state}, owner group ${a.owner}${a.moving ? `, moving ${a.moving}` : ''}${a.fenced ? ', fenced' : ''}`);
  }
  lines.push(`used by: ${rt.used_by.length ? rt.used_by.join(', ') : 'nothing'}`, ...fmtStats(rt.stats));
  return { lines, json: { config: so, runtime: rt } };
});

export const storageObjectNode: NodeType = { commands: [reservations, info], settings };
