// The vhost fabric: each TPG owns a unix socket that a VMM's vhost-user-scsi
// device connects to (QEMU: -chardev socket,path=... -device
// vhost-user-scsi-pci,chardev=...). Every connection is one virtio-scsi HBA
// with its own I_T nexus; a new QEMU may connect after the old one left.

import { closeSync, mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import type { FabricModule, FabricService } from '../index';
import type { Target, Tpg } from '../../src/model/target';
import { log } from '../../src/core/log';
import { FdWatcher, unixAccept, unixListen } from '../../src/native';
import { VhostScsiDevice } from './device';

class TpgListener {
  private readonly fd: number;
  private watcher: FdWatcher | undefined;
  readonly devices = new Set<VhostScsiDevice>();

  constructor(
    readonly tpg: Tpg,
    readonly path: string,
  ) {
    mkdirSync(dirname(path), { recursive: true });
    this.fd = unixListen(path);
    this.watcher = new FdWatcher(this.fd, () => this.accept());
    log.info(`vhost ${tpg.portName}: listening on ${path}`);
  }

  private get numQueues(): number {
    const n = Number(this.tpg.attributes.num_queues ?? 1);
    return Number.isInteger(n) && n >= 1 && n <= 128 ? n : 1;
  }

  private accept(): void {
    for (;;) {
      let fd: number;
      try {
        fd = unixAccept(this.fd);
      } catch (e) {
        log.warn(`vhost ${this.path}: accept failed: ${(e as Error).message}`);
        return;
      }
      if (fd < 0) return;
      if (!this.tpg.enabled) {
        log.warn(`vhost ${this.path}: TPG disabled; connection refused`);
        closeSync(fd);
        continue;
      }
      try {
        const d = new VhostScsiDevice(fd, this.tpg, this.numQueues, this.path);
        this.devices.add(d);
        void d.done.then(() => this.devices.delete(d));
      } catch (e) {
        log.warn(`vhost ${this.path}: connection refused: ${(e as Error).message}`);
        closeSync(fd);
      }
    }
  }

  refresh(): void {
    for (const d of this.devices) d.refresh();
  }

  async close(): Promise<void> {
    this.watcher?.stop();
    this.watcher = undefined;
    closeSync(this.fd);
    rmSync(this.path, { force: true });
    await Promise.all([...this.devices].map((d) => d.close()));
  }
}

export const vhostFabric: FabricModule = {
  name: 'vhost',
  async serve(target: Target): Promise<FabricService> {
    const listeners = new Map<Tpg, TpgListener>();
    const sync = (): void => {
      for (const tpg of target.tpgs.values()) {
        const path = tpg.attributes.socket;
        if (typeof path !== 'string' || listeners.has(tpg)) continue;
        listeners.set(tpg, new TpgListener(tpg, path));
      }
    };
    sync();
    return {
      async refresh() {
        sync();
        for (const [tpg, l] of listeners) {
          if (!target.tpgs.has(tpg.tag) || target.tpgs.get(tpg.tag) !== tpg) {
            listeners.delete(tpg);
            await l.close();
          } else {
            l.refresh();
          }
        }
      },
      async close() {
        await Promise.all([...listeners.values()].map((l) => l.close()));
        listeners.clear();
      },
    };
  },
};
