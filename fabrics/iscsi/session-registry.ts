// The live iSCSI sessions of the process, by TSIH: logins find the session
// they join or reinstate here, the fabric module the sessions of a target,
// and the receive-slab sweep every session.

import type { IscsiSession, SessionList } from './iscsi-session';
import { rxPool } from './rx-slab';

export class SessionRegistry implements SessionList {
  private readonly byTsih = new Map<number, IscsiSession>();
  private nextTsih = 1;

  newTsih(): number {
    for (;;) {
      const t = this.nextTsih;
      this.nextTsih = this.nextTsih >= 0xffff ? 1 : this.nextTsih + 1;
      if (!this.byTsih.has(t)) return t;
    }
  }

  add(s: IscsiSession): void {
    this.byTsih.set(s.tsih, s);
  }

  remove(s: IscsiSession): void {
    this.byTsih.delete(s.tsih);
  }

  get(tsih: number): IscsiSession | undefined {
    return this.byTsih.get(tsih);
  }

  values(): IterableIterator<IscsiSession> {
    return this.byTsih.values();
  }
}

/** The process's sessions. */
export const sessionRegistry = new SessionRegistry();

rxPool.onSweep(() => {
  for (const s of sessionRegistry.values()) s.unpin();
});
