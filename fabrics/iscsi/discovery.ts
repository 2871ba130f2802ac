// SendTargets (RFC 7143 Appendix C): the targets an initiator may reach and
// the portals of each, as TargetName and TargetAddress=ip:port,tpgt keys.

import type { Root } from '../../src/model/root';
import type { Tpg } from '../../src/model/target';
import type { KeyPairs } from './keys';

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
  const out: KeyPairs = [];
  for (const target of root.targets.values()) {
    if (target.fabric !== 'iscsi') continue;
    if (which !== 'All' && which !== target.wwn) continue;
    if (which === 'All' && !discovery) continue;
    const addrs: string[] = [];
    for (const tpg of target.tpgs.values()) {
      if (!visible(tpg, initiator)) continue;
      for (const p of tpg.portals) addrs.push(targetAddress(p.ip_address, p.port, tpg.tag, localAddress));
    }
    if (addrs.length === 0) continue;
    out.push(['TargetName', target.wwn]);
    for (const a of addrs) out.push(['TargetAddress', a]);
  }
  return out;
}
