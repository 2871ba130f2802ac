// Which I/O thread serves what (io_threads > 1). The unit of placement is a
// home group: the endpoints and storage objects closed under sharing. An
// endpoint is a vhost controller (a target's TPGs naming one socket), an iSCSI
// TPG, or a loopback TPG; it is joined with every storage object its LUNs use,
// and a changer with its drives. A group is homed on one thread, so a command
// never crosses threads; the price is that one group's work is at most one
// core. iSCSI TPGs sharing a portal may live on different threads: one thread
// listens on it and hands each connection to its target's thread at login
// (iscsiRoutes below, fabrics/iscsi/handoff.ts).
//
// Placement is sticky: a group keeps the thread its members already run on.
// A change that joins groups running on two threads re-homes the lighter part
// (by weight: LUN count + 1 per endpoint and storage object) onto the heavier
// one's thread: its endpoints and storage objects are released there first,
// then reopened on the new home with what must survive (carry.ts: a RAM
// disk's shared pages, persistent reservations); its iSCSI sessions are asked
// to log out and log in again on the new home. io-threads.ts refuses to move
// a vhost controller a front-end is connected to.

import type { StorageObjectConfig, TargetConfig, TpgConfig, TsioConfig } from '../config/config';
import { soKey } from './reconcile';
import type { RemoteTpg } from '../../fabrics/iscsi/handoff';
import { portalKey } from '../../fabrics/iscsi/portal-registry';

/** Member key -> thread index, for stickiness across changes. */
export type Homes = ReadonlyMap<string, number>;

export interface Placement {
  /** The part of the configuration each thread serves. */
  parts: TsioConfig[];
  /** Every member (storage object path, endpoint key) -> its thread. */
  homes: Map<string, number>;
  /** Endpoint keys leaving a thread for another: removed everywhere first, then created on their new home. */
  moving: Set<string>;
}

const soMember = (path: string) => `so ${path}`;

/** The endpoint a TPG belongs to: its vhost controller, or the TPG itself. */
export function endpointKey(t: TargetConfig, tpg: TpgConfig): string {
  return t.fabric === 'vhost' && tpg.socket !== undefined ? `vhost ${t.wwn} ${tpg.socket}` : `${t.fabric} ${t.wwn} ${tpg.tag}`;
}

/** The target and socket of a vhost controller's endpoint key; undefined for other endpoints. */
export function vhostEndpoint(key: string): { wwn: string; socket: string } | undefined {
  if (!key.startsWith('vhost ')) return undefined;
  const rest = key.slice('vhost '.length);
  const wwn = rest.slice(0, rest.indexOf(' '));
  return { wwn, socket: rest.slice(wwn.length + 1) };
}

const targetMember = (t: TargetConfig) => `target ${t.fabric} ${t.wwn}`;

class UnionFind {
  private readonly up = new Map<string, string>();
  add(k: string): void {
    if (!this.up.has(k)) this.up.set(k, k);
  }
  find(k: string): string {
    let r = k;
    while (this.up.get(r) !== r) r = this.up.get(r)!;
    this.up.set(k, r);
    return r;
  }
  join(a: string, b: string): void {
    this.add(a);
    this.add(b);
    this.up.set(this.find(a), this.find(b));
  }
  groups(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const k of this.up.keys()) {
      const r = this.find(k);
      out.set(r, [...(out.get(r) ?? []), k]);
    }
    return out;
  }
}

export function place(next: TsioConfig, threads: number, homes: Homes): Placement {
  const uf = new UnionFind();
  const weight = new Map<string, number>();
  for (const so of next.storage_objects) uf.add(soMember(soKey(so)));
  for (const so of next.storage_objects) {
    if (so.plugin !== 'changer') continue;
    for (const d of (so.drives ?? '').split(',').map((x) => x.trim()).filter(Boolean)) {
      if (next.storage_objects.some((x) => x.plugin === 'tape' && x.name === d)) uf.join(soMember(soKey(so)), soMember(`/backstores/tape/${d}`));
    }
  }
  for (const t of next.targets) {
    if (t.tpgs.length === 0) uf.add(targetMember(t));
    for (const tpg of t.tpgs) {
      const ep = endpointKey(t, tpg);
      uf.add(ep);
      weight.set(ep, (weight.get(ep) ?? 0) + tpg.luns.length);
      for (const l of tpg.luns) uf.join(ep, soMember(l.storage_object));
    }
  }

  const load = new Array<number>(threads).fill(0);
  const out = new Map<string, number>();
  const moving = new Set<string>();
  const groups = [...uf.groups().values()];
  // Groups already running first, so the load new groups balance against is known.
  const homeOf = (members: string[]): number | undefined => {
    // Where the heaviest part of it already runs: joined parts from other threads move there.
    const votes = new Map<number, number>();
    for (const m of members) if (homes.has(m)) votes.set(homes.get(m)!, (votes.get(homes.get(m)!) ?? 0) + (weight.get(m) ?? 0) + 1);
    return [...votes].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0]?.[0];
  };
  const chosen = groups.map((members) => ({ members, home: homeOf(members), weight: members.reduce((s, m) => s + (weight.get(m) ?? 0), 0) + 1 }));
  for (const g of chosen) if (g.home !== undefined) load[g.home] += g.weight;
  for (const g of chosen.filter((x) => x.home === undefined).sort((a, b) => b.weight - a.weight || a.members[0].localeCompare(b.members[0]))) {
    g.home = load.indexOf(Math.min(...load));
    load[g.home] += g.weight;
  }
  for (const g of chosen) {
    for (const m of g.members) {
      out.set(m, g.home!);
      if (homes.has(m) && homes.get(m) !== g.home) moving.add(m);
    }
  }
  return { parts: split(next, threads, out), homes: out, moving };
}

/** Each thread's part: its storage objects, and each target with the TPGs homed there. */
function split(cfg: TsioConfig, threads: number, homes: Map<string, number>): TsioConfig[] {
  const parts: TsioConfig[] = [];
  for (let i = 0; i < threads; i++) {
    const storage_objects: StorageObjectConfig[] = cfg.storage_objects.filter((so) => homes.get(soMember(soKey(so))) === i);
    const targets: TargetConfig[] = [];
    for (const t of cfg.targets) {
      const tpgs = t.tpgs.filter((tpg) => homes.get(endpointKey(t, tpg)) === i);
      if (tpgs.length > 0 || (t.tpgs.length === 0 && homes.get(targetMember(t)) === i)) targets.push({ ...t, tpgs });
    }
    parts.push({ source: cfg.source, storage_objects, targets, fabric_modules: cfg.fabric_modules });
  }
  return parts;
}

/** A thread's part without the endpoints arriving from another thread (applied first, so they are released first). */
export function withoutArrivals(part: TsioConfig, moving: Set<string>): TsioConfig {
  const storage_objects = part.storage_objects.filter((so) => !moving.has(soMember(soKey(so))));
  const here = new Set(storage_objects.map(soKey));
  const targets = part.targets.map((t) => ({
    ...t,
    tpgs: t.tpgs.filter((tpg) => !moving.has(endpointKey(t, tpg))).map((tpg) => ({ ...tpg, luns: tpg.luns.filter((l) => here.has(l.storage_object)) })),
  }));
  return { ...part, storage_objects, targets: targets.filter((t, i) => t.tpgs.length > 0 || part.targets[i].tpgs.length === 0) };
}

/** Who listens on each iSCSI portal and where each iSCSI TPG lives: what every thread's router knows (io-worker.ts). */
export interface IscsiRoutes {
  /** Portal (portalKey) -> the thread listening on it. */
  owners: Record<string, number>;
  tpgs: (RemoteTpg & { thread: number })[];
}

/**
 * A portal is listened on by one of the threads serving a TPG that lists it: the one that did so far while it
 * still serves one (a listener never moves without need), else the lowest.
 */
export function iscsiRoutes(cfg: TsioConfig, homes: ReadonlyMap<string, number>, owners: Readonly<Record<string, number>>): IscsiRoutes {
  const on = new Map<string, Set<number>>();
  const tpgs: IscsiRoutes['tpgs'] = [];
  for (const t of cfg.targets) {
    if (t.fabric !== 'iscsi') continue;
    for (const tpg of t.tpgs) {
      const thread = homes.get(endpointKey(t, tpg));
      if (thread === undefined) continue;
      const portals = tpg.portals.map((p) => ({ ip: p.ip_address, port: p.port }));
      const openDiscovery = tpg.attributes.generate_node_acls === true && tpg.attributes.demo_mode_discovery !== false;
      tpgs.push({ wwn: t.wwn, tag: tpg.tag, thread, enabled: tpg.enable, acls: tpg.node_acls.map((a) => a.node_wwn), openDiscovery, portals });
      for (const p of portals) on.set(portalKey(p.ip, p.port), (on.get(portalKey(p.ip, p.port)) ?? new Set()).add(thread));
    }
  }
  const out: Record<string, number> = {};
  for (const [key, threads] of on) out[key] = threads.has(owners[key]) ? owners[key] : Math.min(...threads);
  return { owners: out, tpgs };
}
