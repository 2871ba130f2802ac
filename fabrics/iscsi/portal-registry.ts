// The listening portals of the process, by address and port: a portal opens
// when the first TPG lists it and closes when the last one lets it go. With
// I/O threads only one thread listens on it; the others' portal objects take
// the connections it hands them (handoff.ts).

import type { Root } from '../../src/model/root';
import type { Target, Tpg } from '../../src/model/target';
import { Portal } from './portal';
import { connectionRouter, setAdopter } from './handoff';

export const portalKey = (ip: string, port: number): string => `${ip}|${port}`;

export class PortalRegistry {
  private readonly byKey = new Map<string, Portal>();

  /** The portal on ip:port, opened (listening) on first use, now serving tpg too. */
  async attach(tpg: Tpg, ip: string, port: number, root: Root): Promise<Portal> {
    const key = portalKey(ip, port);
    let p = this.byKey.get(key);
    if (p === undefined) {
      p = new Portal(ip, port, root);
      this.byKey.set(key, p);
      try {
        if (connectionRouter()?.listens(ip, port) !== false) await p.listen();
      } catch (e) {
        this.byKey.delete(key);
        throw e;
      }
    }
    p.tpgs.add(tpg);
    return p;
  }

  /** tpg no longer listens on p; a portal no TPG lists closes. */
  async detach(tpg: Tpg, p: Portal): Promise<void> {
    await this.release(tpg, p)?.close();
  }

  /**
   * tpg no longer listens on p (no login finds it there); a portal no TPG
   * lists stops accepting at once and is returned, for the caller to close.
   */
  release(tpg: Tpg, p: Portal): Portal | undefined {
    p.tpgs.delete(tpg);
    if (p.tpgs.size !== 0 || this.byKey.get(portalKey(p.ip, p.port)) !== p) return undefined;
    this.byKey.delete(portalKey(p.ip, p.port));
    p.stop();
    return p;
  }

  /** Listens where the router says this thread does now, and no longer elsewhere (a portal changing threads). */
  async relisten(): Promise<void> {
    const router = connectionRouter();
    for (const p of this.byKey.values()) {
      const want = router?.listens(p.ip, p.port) !== false;
      if (want && !p.listening) await p.listen(20);
      else if (!want) p.unlisten();
    }
  }

  /** A connection handed to this thread, to its portal here. */
  portal(ip: string, port: number): Portal | undefined {
    return this.byKey.get(portalKey(ip, port));
  }

  /** Portals a target is attached to, per TPG. */
  attached(target: Target): [Tpg, Portal][] {
    const out: [Tpg, Portal][] = [];
    for (const p of this.byKey.values()) for (const t of p.tpgs) if (t.target === target) out.push([t, p]);
    return out;
  }
}

/** The process's portals. */
export const portalRegistry = new PortalRegistry();

setAdopter((h, socket) => {
  const p = portalRegistry.portal(h.ip, h.port);
  if (p === undefined) return false;
  p.adopt(socket, h);
  return true;
});
