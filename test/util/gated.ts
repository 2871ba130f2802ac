// A RAM backstore whose reads and writes wait until the test opens the gate:
// it makes "commands in flight" deterministic for task management tests.

import { RamBackstore } from '../../backstores/rd-mcp';
import { registerBackstore } from '../../app/registry';
import type { Sgl } from '../../src/core/sgl';

export class GatedRam extends RamBackstore {
  closed = true;
  private waiting: (() => void)[] = [];
  started = 0;

  private gate(): Promise<void> {
    this.started++;
    return new Promise((resolve) => this.waiting.push(resolve));
  }
  /** Lets every held operation finish, and later ones run straight through. */
  open(): void {
    this.closed = false;
    for (const f of this.waiting.splice(0)) f();
  }
  override read(offset: number, length: number, sgl: Sgl): any {
    if (!this.closed) return super.read(offset, length, sgl);
    return this.gate().then(() => super.read(offset, length, sgl));
  }
  override write(offset: number, length: number, sgl: Sgl): any {
    if (!this.closed) return super.write(offset, length, sgl);
    return this.gate().then(() => super.write(offset, length, sgl));
  }
}

export const gated: GatedRam[] = [];
registerBackstore('gated', async (o) => {
  const b = new GatedRam(o.size ?? 1 << 20, o.blockSize ?? 512, false);
  gated.push(b);
  return b;
});
