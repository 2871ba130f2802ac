// SendTargets (RFC 7143 Appendix C): the targets an initiator may reach and
// the portals of each, as TargetName and TargetAddress=ip:port,tpgt keys.

import type { Root } from '../../src/model/root';
import type { Tpg } from '../../src/model/target';
import type { KeyPairs } from './keys';
import { connectionRouter } from './handoff';

/** ip:port,tag; IPv6 in brackets; a wildcard portal answers with the address the asking connection reached (localAddress). */
export function targetAddress(ip: string, port: number, tag: number, localAddress: string): string {
  let addr = ip;
  if (addr === '0.0.0.0' || addr === '::' || addr === '') addr = localAddress.replace(/^::ffff:/, '');
  if (addr.includes(':')) addr = `[${addr}]`;
  return `${addr}:${port},${tag}`;
}

function visible(tpg: Tpg, initiator: string): boolean {
  if (!tpg.enabled) return false;
  if (tpg.acls.has(initiator)) return true;
  return tpg.demoMode && tpg.attributes.demo_mode_discovery !== false;
}

/**
 * The SendTargets answer: every iSCSI target (All), or the named one, that
 * this initiator may log in to. In a normal session only its own target.
 */
export function sendTargets(root: Root, localAddress: string, initiator: string, which: string, discovery: boolean): KeyPairs {
  // Target -> its addresses, in order: this thread's targets, then those of other threads (I/O threads).
  const found = new Map<string, string[]>();
  const wanted = (wwn: string): boolean => (which === 'All' ? discovery : which === wwn);
  const add = (wwn: string, addr: string): void => {
    const list = found.get(wwn) ?? [];
    list.push(addr);
    found.set(wwn, list);
  };
  for (const target of root.targets.values()) {
    if (target.fabric !== 'iscsi' || !wanted(target.wwn)) continue;
    for (const tpg of target.tpgs.values()) {
      if (!visible(tpg, initiator)) continue;
      for (const p of tpg.portals) add(target.wwn, targetAddress(p.ip_address, p.port, tpg.tag, localAddress));
    }
  }
  for (const r of connectionRouter()?.remoteTpgs() ?? []) {
    if (!wanted(r.wwn) || !r.enabled || !(r.openDiscovery || r.acls.includes(initiator))) continue;
    for (const p of r.portals) add(r.wwn, targetAddress(p.ip, p.port, r.tag, localAddress));
  }
  const out: KeyPairs = [];
  for (const [wwn, addrs] of found) {
    out.push(['TargetName', wwn]);
    for (const a of addrs) out.push(['TargetAddress', a]);
  }
  return out;
}
