// .../tpgN/portals: create and delete network portals (IP:PORT); the
// defaults come from the fabric's spec.

import { intArg, ShellError } from '../args';
import type { NodeType } from '../command';
import { portalName } from '../tree';
import { createCommand, deleteCommand } from './common';

const create = createCommand(
  (n) => {
    const p = n.fabric!.portal;
    return [
      { name: 'ip_address', doc: p.find((f) => f.name === 'ip_address')!.doc },
      { name: 'ip_port', doc: p.find((f) => f.name === 'port')!.doc },
    ];
  },
  async (ctx, n, p) => {
    const def = n.fabric!.portal;
    const ip = p.ip_address ?? String(def.find((f) => f.name === 'ip_address')!.default);
    const port = intArg('ip_port', p.ip_port) ?? (def.find((f) => f.name === 'port')!.default as number);
    const result = await ctx.client.call('portals.create', { wwn: n.target!.wwn, tag: n.tpg!.tag, ip_address: ip, port });
    const name = portalName({ ip_address: ip, port });
    return { msg: `Created network portal ${name}.${everyAddress(ip) ? ` It listens on every address of this host${p.ip_address === undefined ? ' (no address was given; portals create IP [PORT] limits it to one)' : ''}.` : ''}`, result, path: `${n.path}/${name}` };
  },
  { aliases: { port: 'ip_port' } },
);

/** 0.0.0.0 and :: listen on every address: said out loud whenever a portal opens one. */
export const everyAddress = (ip: string): boolean => ip === '0.0.0.0' || ip === '::' || ip === '[::]';

const del = deleteCommand([{ name: 'ip_address', doc: 'Address, or IP:PORT.' }, { name: 'ip_port', doc: 'TCP port.' }], async (ctx, n, what, a) => {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(what);
  const ip = m ? m[1] : what;
  const port = m ? Number(m[2]) : intArg('ip_port', a.pos[1] ?? a.kv.ip_port);
  if (port === undefined) throw new ShellError('delete needs ip_address and ip_port (or IP:PORT)');
  await ctx.client.call('portals.delete', { wwn: n.target!.wwn, tag: n.tpg!.tag, ip_address: ip, port });
  return `network portal ${portalName({ ip_address: ip, port })} of ${n.parent!.path}`;
});

export const portalsNode: NodeType = { commands: [create, del] };
