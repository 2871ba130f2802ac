// LBA range locks: writes hold their range shared, COMPARE AND WRITE holds it
// exclusively, so the compare and the write are atomic against every other
// write to those blocks (SBC-4 5.3). Synchronous backstores take and drop the
// lock within one tick, so the common case is a push and a splice.

export interface RangeHold {
  start: number;
  end: number;
  exclusive: boolean;
}

interface Waiter {
  range: RangeHold;
  grant: (r: RangeHold) => void;
}

export class RangeLock {
  private readonly held: RangeHold[] = [];
  private readonly waiting: Waiter[] = [];
  private exclusiveHeld = 0;

  /**
   * True when a shared hold would be granted at once. A write that finishes
   * synchronously then needs no hold at all: nothing else runs before it ends.
   */
  get sharedFree(): boolean {
    return this.exclusiveHeld === 0 && this.waiting.length === 0;
  }

  /** Returns the held range, or a promise of it when it must wait. */
  acquire(start: number, count: number, exclusive: boolean): RangeHold | Promise<RangeHold> {
    const r: RangeHold = { start, end: start + count, exclusive };
    if (this.waiting.length === 0 && !this.conflicts(r)) {
      this.hold(r);
      return r;
    }
    return new Promise<RangeHold>((resolve) => {
      this.waiting.push({ range: r, grant: resolve });
    });
  }

  release(r: RangeHold): void {
    const i = this.held.indexOf(r);
    if (i >= 0) {
      this.held.splice(i, 1);
      if (r.exclusive) this.exclusiveHeld--;
    }
    if (this.waiting.length) this.wake();
  }

  private hold(r: RangeHold): void {
    this.held.push(r);
    if (r.exclusive) this.exclusiveHeld++;
  }

  private conflicts(r: RangeHold): boolean {
    for (const h of this.held) {
      if (h.start < r.end && r.start < h.end && (h.exclusive || r.exclusive)) return true;
    }
    return false;
  }

  // FIFO among overlapping waiters, so a COMPARE AND WRITE is not starved by a stream of writes.
  private wake(): void {
    for (let i = 0; i < this.waiting.length; ) {
      const w = this.waiting[i].range;
      let blockedByEarlier = false;
      for (let j = 0; j < i; j++) {
        const e = this.waiting[j].range;
        if (e.start < w.end && w.start < e.end && (e.exclusive || w.exclusive)) blockedByEarlier = true;
      }
      if (!blockedByEarlier && !this.conflicts(w)) {
        const { grant } = this.waiting.splice(i, 1)[0];
        this.hold(w);
        grant(w);
      } else {
        i++;
      }
    }
  }
}
