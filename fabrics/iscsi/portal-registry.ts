// The listening portals of the process, by address and port: a portal opens
// when the first TPG lists it and closes when the last one lets it go.

import type { Root } from '../../src/model/root';
import type { Target, Tpg } from '../../src/model/target';
import { Portal } from './portal';

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
        await p.listen();
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

  /** Portals a target is attached to, per TPG. */
  attached(target: Target): [Tpg, Portal][] {
    const out: [Tpg, Portal][] = [];
    for (const p of this.byKey.values()) for (const t of p.tpgs) if (t.target === target) out.push([t, p]);
    return out;
  }
}

/** The process's portals. */
export const portalRegistry = new PortalRegistry();
