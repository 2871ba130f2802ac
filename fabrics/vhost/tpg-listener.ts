// A TPG's unix socket, which a VMM's vhost-user-scsi device connects to
// (QEMU: -chardev socket,path=... -device vhost-user-scsi-pci,chardev=...).
// Every connection is a vhost-user back end serving one virtio-scsi device
// with its own I_T nexus; a new QEMU may connect after the old one left. The
// socket file gets the TPG's socket_mode and socket_group (a QEMU run by
// libvirt is another user), never wider on the way.

import { chmodSync, chownSync, closeSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Tpg } from '../../src/model/target';
import { log } from '../../src/core/log';
import { FdWatcher, groupId, unixAccept, unixListen } from '../../native';
import { VhostUserBackend } from './vhost-user-backend';
import { VirtioScsiDevice } from './virtio-scsi-device';

/**
 * The socket's mode when a TPG names none. A configured TPG always has one (the
 * application fills in specs/fabrics/vhost.yaml's default); this serves TPGs an
 * embedding program builds by hand.
 */
const SOCKET_MODE = '0660';

/** The socket's permission bits and gid (-1: the daemon's own group) a TPG asks for. */
function socketOwnership(tpg: Tpg): { mode: number; gid: number } {
  const text = String(tpg.attributes.socket_mode ?? SOCKET_MODE);
  const group = tpg.attributes.socket_group;
  let gid = -1;
  if (typeof group === 'string') {
    gid = /^[0-9]+$/.test(group) ? Number(group) : groupId(group);
    if (gid < 0) throw new Error(`vhost ${tpg.portName}: socket_group: no group '${group}' on this host`);
  }
  return { mode: parseInt(text, 8), gid };
}

export class TpgListener {
  private readonly fd: number;
  private watcher: FdWatcher | undefined;
  private ownership: { mode: number; gid: number };
  readonly devices = new Set<VirtioScsiDevice>();

  constructor(
    readonly tpg: Tpg,
    readonly path: string,
  ) {
    mkdirSync(dirname(path), { recursive: true });
    this.ownership = socketOwnership(tpg);
    this.fd = unixListen(path, this.ownership.mode, this.ownership.gid);
    this.watcher = new FdWatcher(this.fd, () => this.accept());
    log.info(`vhost ${tpg.portName}: listening on ${path} (mode ${this.ownership.mode.toString(8).padStart(4, '0')})`);
  }

  /** A live change of socket_mode or socket_group: narrow first, then regroup, then the new mode. */
  private reown(): void {
    const want = socketOwnership(this.tpg);
    if (want.mode === this.ownership.mode && want.gid === this.ownership.gid) return;
    const cur = statSync(this.path).mode & 0o7777;
    chmodSync(this.path, cur & want.mode);
    if (want.gid !== this.ownership.gid) chownSync(this.path, -1, want.gid >= 0 ? want.gid : process.getegid!());
    chmodSync(this.path, want.mode);
    this.ownership = want;
    log.info(`vhost ${this.tpg.portName}: ${this.path} now mode ${want.mode.toString(8).padStart(4, '0')}${want.gid >= 0 ? ` group ${want.gid}` : ''}`);
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
        const backend = new VhostUserBackend(fd, this.path);
        const d = new VirtioScsiDevice(backend, this.tpg, this.numQueues);
        backend.start(d);
        this.devices.add(d);
        void backend.done.then(() => this.devices.delete(d));
      } catch (e) {
        log.warn(`vhost ${this.path}: connection refused: ${(e as Error).message}`);
        closeSync(fd);
      }
    }
  }

  refresh(): void {
    this.reown();
    for (const d of this.devices) d.refresh();
  }

  async close(): Promise<void> {
    this.watcher?.stop();
    this.watcher = undefined;
    closeSync(this.fd);
    rmSync(this.path, { force: true });
    await Promise.all([...this.devices].map((d) => d.backend.close()));
  }
}
